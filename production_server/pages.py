"""The HTML pages: the welcome page and the predictions page of the original lab."""

from __future__ import annotations

import socket
from functools import lru_cache

from flask import Blueprint, current_app, render_template, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from . import data, tasks, validation
from .dispatch import Unavailable, call, workers_online

bp = Blueprint("pages", __name__)


@lru_cache(maxsize=1)
def _dataset() -> data.Dataset:
    return data.load()


def describe_worker(name: str, here: str) -> str:
    """A Celery node name for people: ``worker-1.lab@vm`` is "worker-1 (deployment lab) on this machine (vm)".

    The local backend names its workers ``worker-N.<deployment>@<host>``, the
    VMs ``worker-N@<host>``, Compose ``worker@<container>``. ``here`` is the
    web server's own host name: a worker there runs "on this machine".
    """
    node, _, host = name.partition("@")
    worker, _, deployment = node.partition(".")
    text = worker + (f" (deployment {deployment})" if deployment else "")
    if host == here:
        return f"{text} on this machine ({host})"
    return f"{text} on {host}" if host else text


def _status() -> dict:
    """What the welcome page reports; never fails, says what is missing instead."""
    try:
        workers = workers_online()
    except Unavailable as exc:
        return {"workers": [], "problem": str(exc), "model": None}
    if not workers:
        return {"workers": [], "problem": "no worker is online", "model": None}
    here = socket.gethostname()
    workers = [describe_worker(name, here) for name in workers]
    try:
        info = call(tasks.model_info)
    except Unavailable as exc:
        return {"workers": workers, "problem": str(exc), "model": None}
    return {"workers": workers, "problem": None, "model": info}


@bp.get("/")
def index():
    return render_template("index.html", **_status())


def _sample_form(form) -> tuple[int, int]:
    count = int(validation.number(_as_number(form.get("rows", "")), "the number of rows"))
    start = int(validation.number(_as_number(form.get("start", "0")), "the first row"))
    total = len(_dataset())
    if not 1 <= count <= 100:
        raise validation.InvalidInput("show between 1 and 100 rows")
    if not 0 <= start < total:
        raise validation.InvalidInput(f"the first row must be between 0 and {total - 1}")
    return start, min(count, total - start)


def _as_number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _patient_form(form) -> list[float]:
    return [validation.measurement(_as_number(form.get(name, "")), i) for i, name in enumerate(data.FEATURES)]


def _comparison(dataset: data.Dataset, start: int, count: int) -> dict:
    """True versus predicted classes for ``count`` rows from ``start``, with their accuracy."""
    chosen = slice(start, start + count)
    answer = call(tasks.evaluate, dataset.features[chosen].tolist(), dataset.labels[chosen].tolist())
    table = [
        {"row": start + i, "measurements": dataset.features[start + i].tolist(), "truth": int(truth),
         "predicted": pred, "probability": prob}
        for i, (truth, pred, prob) in enumerate(
            zip(dataset.labels[chosen], answer["predictions"], answer["probabilities"])
        )
    ]
    return {"table": table, "accuracy": answer["accuracy"], "model_version": answer["model_version"]}


@bp.route("/predictions", methods=["GET", "POST"])
def predictions():
    dataset = _dataset()
    defaults = {"form": "sample", "start": 0, "rows": current_app.config["SAMPLE_ROWS"]}
    context = {
        "features": data.FEATURES,
        "ranges": validation.RANGES,
        "patient": dict(zip(data.FEATURES, dataset.features[0].tolist())),
        "start": defaults["start"],
        "rows": defaults["rows"],
    }
    # A first visit shows what the sample form shows with its default inputs.
    form = request.form if request.method == "POST" else defaults
    try:
        if form.get("form") == "patient":
            # Keep what the user typed, even if it is wrong, so nothing is lost on a bad entry.
            context["patient"] = {name: form.get(name, "") for name in data.FEATURES}
            values = _patient_form(form)
            answer = call(tasks.predict, [values])
            context["patient_result"] = {
                "probability": answer["probabilities"][0],
                "prediction": answer["predictions"][0],
                "model_version": answer["model_version"],
            }
        else:
            start, count = _sample_form(form)
            context.update(start=start, rows=count)
            context.update(_comparison(dataset, start, count))
    except validation.InvalidInput as exc:
        return render_template("predictions.html", error=str(exc), **context), 400
    except Unavailable as exc:
        return render_template("predictions.html", error=f"Try again in a moment: {exc}.", **context), 503
    return render_template("predictions.html", **context)


def error_page(exc: HTTPException):
    """Errors on the pages (and unknown paths outside the API) as a page of the site."""
    if isinstance(exc, NotFound):
        message = f"There is no page at {request.path}."
    elif isinstance(exc, MethodNotAllowed):
        allowed = " or ".join(sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        message = f"{request.path} does not answer {request.method} requests" + (f", only {allowed}." if allowed else ".")
    else:
        message = exc.description or ""
    return render_template("error.html", status=exc.code, name=exc.name, message=message), exc.code or 500
