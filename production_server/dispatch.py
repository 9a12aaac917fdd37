"""Send a task to the workers and wait for its answer, within a deadline.

Every way of not getting an answer (broker down, no worker, a worker too
slow) becomes ``Unavailable``, which the views turn into a 503.
"""

from __future__ import annotations

import celery.exceptions
import kombu.exceptions
from flask import current_app


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
    except (kombu.exceptions.OperationalError, ConnectionError, OSError) as exc:
        raise Unavailable(f"the message broker is unreachable ({exc})") from None


def workers_online(timeout: float | None = None) -> list[str]:
    """Names of the workers that answer a ping; raises Unavailable if the broker does not."""
    celery_app = current_app.extensions["celery"]
    timeout = float(timeout or current_app.config["HEALTH_TIMEOUT"])
    try:
        replies = celery_app.control.ping(timeout=timeout)
    except (kombu.exceptions.OperationalError, ConnectionError, OSError) as exc:
        raise Unavailable(f"the message broker is unreachable ({exc})") from None
    return sorted(name for reply in replies for name in reply)
