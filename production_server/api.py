"""The JSON API: predictions, model metadata and the health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from . import tasks, validation
from .dispatch import Unavailable, call, health

bp = Blueprint("api", __name__)


def error(status: int, message: str, /, **extra):
    return jsonify({"error": message, **extra}), status


@bp.errorhandler(validation.InvalidInput)
def invalid_input(exc: validation.InvalidInput):
    return error(400, str(exc))


@bp.errorhandler(Unavailable)
def unavailable(exc: Unavailable):
    response = error(503, str(exc))
    response[0].headers["Retry-After"] = "1"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge):
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return error(413, f"the request body is larger than {limit} bytes: send fewer rows per request")


class ModelFault(RuntimeError):
    """The workers answered something that is not a probability; the request was fine."""


@bp.errorhandler(ModelFault)
def model_fault(exc: ModelFault):
    return error(500, str(exc))


def owns(path: str) -> bool:
    """Whether errors on ``path`` are JSON: the API's paths, also those no route matches."""
    return path.startswith("/api/") or path in ("/api", "/healthz")


def error_response(exc: HTTPException):
    """Any HTTP error (routing errors too, which happen before any view runs) as JSON."""
    if isinstance(exc, NotFound):
        return error(404, f"there is no API endpoint at {request.path}: "
                          "the API has POST /api/predict, GET /api/model and GET /healthz")
    return error(exc.code or 500, exc.description or exc.name)


def request_body() -> bytes:
    """The request body; a 413 past MAX_CONTENT_LENGTH, also when it comes in chunks.

    werkzeug stops a body of no stated length (chunked) at the limit without a
    word; one byte more from the server's stream tells a body of exactly the
    limit from a longer one.
    """
    body = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(body) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return body


def checked(answer: dict) -> dict:
    """The workers' answer, if every probability is a number from 0 to 1 (never NaN)."""
    for i, probability in enumerate(answer["probabilities"]):
        if not 0.0 <= probability <= 1.0:  # False for NaN too
            raise ModelFault(
                f"the model answered {probability} for instances[{i}], which is not a probability: "
                "the served model is at fault, not the request; tell whoever trained it"
            )
    return answer


@bp.post("/api/predict")
def predict():
    if not request.is_json:
        raise validation.InvalidInput(
            f"Content-Type must be application/json, not {request.content_type or 'missing'}"
        )
    payload = validation.parse_json(request_body())
    rows = validation.instances(payload, int(current_app.config["MAX_ROWS"]))
    return jsonify(checked(call(tasks.predict, rows)))


@bp.get("/api/model")
def model_metadata():
    return jsonify(call(tasks.model_info))


@bp.get("/healthz")
def healthz():
    # From the last background ping (health.py): answered at once, with the age of the news.
    reading = health()
    age = reading.age()
    news = {"checked_s_ago": None if age is None else round(age, 2)}
    problem = reading.problem or (None if reading.workers else "the broker answers, but no worker replied to a ping")
    if problem:
        response = error(503, problem, status="unavailable", workers=0, worker_names=[], **news)
        response[0].headers["Retry-After"] = "1"
        return response
    return jsonify({"status": "ok", "workers": len(reading.workers), "worker_names": list(reading.workers), **news})
