"""The Celery tasks the web front end sends to the workers.

The model is loaded once per worker process (``serving_model``), never per
task, with the engine ``SERVER_MODEL_ENGINE`` names (keras or onnx, see
``engines.py``); ``predict_reload`` keeps the original lab's design,
reloading the Keras model and calling ``model.predict`` on every request, as
the benchmark's baseline.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

import numpy as np
from celery import shared_task
from flask import current_app

from . import engines, inference, releases


@lru_cache(maxsize=1)
def _load(model_dir: str, engine: str) -> engines.Engine:
    served = engines.load(Path(model_dir), engine)
    # The first call traces Keras' graph (~70 ms) or sets up ONNX Runtime's
    # buffers; pay for it now, not in a request.
    served.predict_proba(np.zeros((1, inference.N_FEATURES)))
    return served


def serving_model() -> engines.Engine:
    # Resolved on every task: when CI/CD switches the release pointer, the
    # cache misses once and this worker serves the new release from its next task.
    return _load(releases.resolve(current_app.config["MODEL_DIR"]), current_app.config["MODEL_ENGINE"])


def _answer(probabilities: np.ndarray, version: str) -> dict:
    return {
        "predictions": (probabilities >= 0.5).astype(int).tolist(),
        "probabilities": [round(float(p), 6) for p in probabilities],
        "model_version": version,
    }


@shared_task(name="lab.predict")
def predict(rows: list[list[float]]) -> dict:
    served = serving_model()
    return _answer(served.predict_proba(rows), served.version)


@shared_task(name="lab.evaluate")
def evaluate(rows: list[list[float]], labels: list[int]) -> dict:
    served = serving_model()
    answer = _answer(served.predict_proba(rows), served.version)
    correct = np.asarray(answer["predictions"]) == np.asarray(labels)
    answer["accuracy"] = float(correct.mean()) if len(labels) else 0.0
    return answer


@shared_task(name="lab.model_info")
def model_info() -> dict:
    served = serving_model()
    return {**served.metadata, "engine": served.name, "served_by": f"{socket.gethostname()}:{os.getpid()}"}


@shared_task(name="lab.noop")
def noop() -> None:
    """The floor under every request: a task that does nothing."""


@shared_task(name="lab.predict_reload")
def predict_reload(rows: list[list[float]]) -> dict:
    """The original lab's design, kept as the baseline for `labkit bench`."""
    from . import model  # Keras, as the original loads it on every request

    trained = model.load(Path(current_app.config["MODEL_DIR"]))
    batch = np.asarray(rows, dtype=np.float32)
    probabilities = np.asarray(trained.model.predict(batch, verbose=0)).reshape(-1)
    return _answer(probabilities, trained.version)
