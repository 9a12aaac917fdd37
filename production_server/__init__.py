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
``SERVER_HEALTH_INTERVAL`` seconds between two background pings that
                           /healthz answers from (default 1)
``SERVER_MAX_ROWS``        most rows one /api/predict call may send
=========================  ==================================================

Run it with gunicorn, never Flask's development server, with the settings
in ``gunicorn_conf.py`` (its request limits, and when a connection closes)::

    gunicorn -c python:production_server.gunicorn_conf -k gthread -w 2 --threads 8 \
        -b 0.0.0.0:5100 'production_server:create_app()'

Every answer is JSON a strict parser takes (RFC 8259: no NaN, no Infinity),
or a page of the site; OPTIONS is a 204 with ``Allow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import DEFAULTS, ConfigurationError, default_model_dir

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DEFAULTS", "ConfigurationError", "create_app", "default_model_dir"]


def create_app(test_config: dict | None = None) -> Flask:
    """The Flask app (``app.create_app``), imported only when asked for: labkit and the CI/CD gate
    import this package for its other modules, without the web framework."""
    from .app import create_app as factory

    return factory(test_config)
