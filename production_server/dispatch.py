"""Send a task to the workers and wait for its answer, within a deadline.

Every way of not getting an answer (broker down, no worker, a worker too
slow) becomes ``Unavailable``, which the views turn into a 503.
"""

from __future__ import annotations

import celery.exceptions
from flask import current_app

from .health import Reading, Unreachable


class Unavailable(RuntimeError):
    """No answer from the workers; the message says why."""


def call(task, *args, timeout: float | None = None):
    timeout = float(timeout or current_app.config["PREDICT_TIMEOUT"])
    try:
        # expires: a request nobody picked up in time is dropped, not run
        # later for a client that has already been told 503.
        result = task.apply_async(args, expires=timeout)
        return result.get(timeout=timeout)
    except celery.exceptions.TimeoutError:
        raise Unavailable(f"no worker answered within {timeout:g} s") from None
    except current_app.extensions["broker_errors"] as exc:
        # kombu's OperationalError, and whatever the transport raises raw (amqp's
        # RecoverableConnectionError, ConnectionForced, socket errors): a 503, never a 500.
        raise Unavailable(f"the message broker is unreachable ({exc})") from None


def ping(celery_app, timeout: float, broker_errors: tuple[type[BaseException], ...]) -> list[str]:
    """Names of the workers that answer a broadcast ping within ``timeout`` seconds (it always
    waits that long: it cannot know how many to expect). Raises ``Unreachable`` without a broker."""
    try:
        replies = celery_app.control.ping(timeout=timeout)
    except broker_errors as exc:
        raise Unreachable(f"the message broker is unreachable ({exc})") from None
    return sorted(name for reply in replies for name in reply)


def health() -> Reading:
    """The last background check of the workers (see health.py): at once, with its age."""
    return current_app.extensions["worker_watch"].reading()


def workers_online() -> list[str]:
    """Names of the workers that answered the last background ping; raises Unavailable if the
    broker did not (or the news is too old to trust). Never waits for a ping."""
    reading = health()
    if reading.problem:
        raise Unavailable(reading.problem)
    return list(reading.workers)
