"""Ask a running server how it is: ``GET /healthz``, the same for every backend."""

from __future__ import annotations

import time
from typing import Callable

import httpx


def fetch(url: str, timeout: float = 3.0) -> dict:
    """The server's /healthz answer, plus ``reachable``; never raises."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=timeout)
    except httpx.HTTPError as exc:
        return {"reachable": False, "status": "unreachable", "workers": 0, "error": str(exc)}
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    body.setdefault("workers", 0)
    return {"reachable": True, "http_status": response.status_code, **body}


#: Answers in a row, each on a new connection, that must agree before a wait ends: each of
#: gunicorn's processes pings the workers on its own, and the one the next request reaches may
#: not have news yet (it said "no worker" right after another had said "1 worker").
AGREEING_ANSWERS = 4


def wait_for_workers(
    url: str,
    workers: int,
    timeout: float,
    still_starting: Callable[[], None] = lambda: None,
) -> dict:
    """Poll until the server is healthy with exactly ``workers`` workers answering,
    ``AGREEING_ANSWERS`` times in a row.

    ``still_starting`` runs between polls and may raise to give up early
    (a process died). Returns the last health answer; raises TimeoutError.
    """
    deadline = time.monotonic() + timeout
    agreeing = 0
    while True:
        health = fetch(url)
        agreeing = agreeing + 1 if health.get("status") == "ok" and health["workers"] == workers else 0
        if agreeing == AGREEING_ANSWERS:
            return health
        if time.monotonic() >= deadline:
            raise TimeoutError(health)
        if not agreeing:
            still_starting()
        time.sleep(0.05 if agreeing else 0.2)


def wait_or_raise(
    url: str,
    workers: int,
    timeout: float,
    error: type[Exception],
    still_starting: Callable[[], None] = lambda: None,
    advice: str = "See `labkit logs`; raise LABKIT_START_TIMEOUT on a slow machine.",
) -> dict:
    """``wait_for_workers``, raising ``error`` with what a student should do when time runs out."""
    try:
        return wait_for_workers(url, workers, timeout, still_starting)
    except TimeoutError as exc:
        raise error(
            f"The server did not report {workers} worker(s) within {timeout:.0f} s "
            f"(last answer: {exc.args[0]}). {advice}"
        ) from None
