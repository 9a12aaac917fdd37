"""The HTML pages: the welcome page and the predictions page of the original lab."""

from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, current_app, render_template, request

from . import data, tasks, validation
from .dispatch import Unavailable, call, workers_online

bp = Blueprint("pages", __name__)


@lru_cache(maxsize=1)
def _dataset() -> data.Dataset:
    return data.load()


def _status() -> dict:
    """What the welcome page reports; never fails, says what is missing instead."""
    try:
        workers = workers_online()
    except Unavailable as exc:
        return {"workers": [], "problem": str(exc), "model": None}
    if not workers:
        return {"workers": [], "problem": "no worker is online", "model": None}
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
    values = [_as_number(form.get(name, "")) for name in data.FEATURES]
    return [validation.number(v, name.replace("_", " ")) for v, name in zip(values, data.FEATURES)]


@bp.route("/predictions", methods=["GET", "POST"])
def predictions():
    dataset = _dataset()
    context = {
        "features": data.FEATURES,
        "patient": dict(zip(data.FEATURES, dataset.features[0].tolist())),
        "start": 0,
        "rows": current_app.config["SAMPLE_ROWS"],
    }
    if request.method == "GET":
        return render_template("predictions.html", **context)

    form = request.form
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
            chosen = slice(start, start + count)
            answer = call(
                tasks.evaluate,
                dataset.features[chosen].tolist(),
                dataset.labels[chosen].tolist(),
            )
            context["table"] = [
                {"row": start + i, "measurements": dataset.features[start + i].tolist(), "truth": int(truth),
                 "predicted": pred, "probability": prob}
                for i, (truth, pred, prob) in enumerate(
                    zip(dataset.labels[chosen], answer["predictions"], answer["probabilities"])
                )
            ]
            context["accuracy"] = answer["accuracy"]
            context["model_version"] = answer["model_version"]
    except validation.InvalidInput as exc:
        return render_template("predictions.html", error=str(exc), **context), 400
    except Unavailable as exc:
        return render_template("predictions.html", error=f"Try again in a moment: {exc}.", **context), 503
    return render_template("predictions.html", **context)
