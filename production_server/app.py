"""The Flask application factory (``production_server:create_app()`` forwards here)."""

from __future__ import annotations

import secrets

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, ClientDisconnected, HTTPException

from .config import DEFAULTS, ConfigurationError


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON without NaN and Infinity, which RFC 8259 has no words for: a value
    that would need them raises instead, and the client gets a 500 that is valid JSON."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class Server(Flask):
    json_provider_class = StrictJSONProvider

    def make_default_options_response(self):
        # Flask answers OPTIONS with an empty text/html 200; nothing is the honest content.
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


def create_app(test_config: dict | None = None) -> Flask:
    app = Server(__package__)
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

    @app.errorhandler(ParseException)
    def malformed_body(exc: ParseException):
        # gunicorn parses a chunked body while the view reads it: a bad chunk size
        # surfaces here, and is the client's error, not the server's.
        return http_error(BadRequest(f"the request body is malformed ({exc}): send it again, well formed"))

    @app.after_request
    def read_the_rest_of_the_body(response):
        # gunicorn says "Connection: keep-alive", then skips at most 64 KiB of a body the view
        # left unread, or closes the connection after all. A body of a known length within
        # MAX_CONTENT_LENGTH is read here, so that keep-alive holds; for longer or chunked
        # bodies gunicorn_conf.py has the connection close, and the reply says so.
        length = request.content_length
        if length and length <= app.config["MAX_CONTENT_LENGTH"]:
            try:
                request.stream.exhaust()
            except ClientDisconnected:
                pass  # the client has gone: there is no connection left to keep
        return response

    return app
