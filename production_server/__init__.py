"""The production server: a Flask front end that hands predictions to Celery workers.

Configuration comes from the environment, prefixed ``SERVER_`` (read by
``app.config.from_prefixed_env``), so cloud-init, Compose and labkit's local
backend only have to set variables:

=========================  ==================================================
``SERVER_BROKER_URL``      the RabbitMQ URL (required; there is no default
                           account)
``SERVER_RESULT_BACKEND``  where results come back (default ``rpc://``)
``SERVER_MODEL_DIR``       folder holding model.keras, model.onnx and
                           metadata.json
``SERVER_MODEL_ENGINE``    what the workers run the model with: ``keras``
                           (default) or ``onnx`` (ONNX Runtime, no TensorFlow)
``SERVER_PREDICT_TIMEOUT`` seconds to wait for a worker before a 503
``SERVER_HEALTH_TIMEOUT``  seconds to wait for workers' ping replies
``SERVER_MAX_ROWS``        most rows one /api/predict call may send
=========================  ==================================================

Run it with gunicorn, never Flask's development server::

    gunicorn -k gthread -w 2 --threads 8 -b 0.0.0.0:5100 'production_server:create_app()'
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, request
from werkzeug.exceptions import HTTPException

DEFAULTS = {
    "BROKER_URL": None,
    "RESULT_BACKEND": "rpc://",
    "MODEL_DIR": str(Path.home() / ".local" / "share" / "labkit" / "model"),
    "MODEL_ENGINE": "keras",
    "PREDICT_TIMEOUT": 5.0,
    "HEALTH_TIMEOUT": 0.5,
    "MAX_ROWS": 1000,
    # Enough for MAX_ROWS rows of 8 long floats; werkzeug answers 413 past it.
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "SAMPLE_ROWS": 10,
}


class ConfigurationError(RuntimeError):
    pass


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    # Forms carry no session state, but Flask wants a key; never a fixed one.
    app.config["SECRET_KEY"] = secrets.token_hex(16)
    if test_config is None:
        app.config.from_prefixed_env("SERVER")
    else:
        app.config.from_mapping(test_config)
    if not app.config["BROKER_URL"]:
        raise ConfigurationError(
            "SERVER_BROKER_URL is not set: give the server the URL of its RabbitMQ, "
            "e.g. amqp://USER:PASSWORD@127.0.0.1:5672// (labkit sets it for you)."
        )
    app.config["DEBUG"] = False  # never, whatever the environment says

    from .engines import check

    check(app.config["MODEL_ENGINE"])

    from .celery_app import celery_init_app

    celery_init_app(app)

    from . import api, pages

    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # API clients get JSON, people a page of the site; never Flask's default page.
        answer = api.error_response if api.owns(request.path) else pages.error_page
        response = app.make_response(answer(exc))
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                response.headers[key] = value  # Allow, on a 405
        return response

    return app


def default_model_dir() -> Path:
    return Path(os.environ.get("SERVER_MODEL_DIR", DEFAULTS["MODEL_DIR"]))
