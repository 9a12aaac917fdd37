"""Load on a server while a block runs.

``steady_load``: the CI/CD tests count its failed requests. ``recorded_load``: every answer
with its status and time, for drills where it matters which answer came when (the broker
going away and coming back)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from labkit import _load

ROWS = [[6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.351, 31], [8, 183, 64, 0, 0, 23.3, 0.672, 32]]


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    samples: tuple = ()


@contextmanager
def steady_load(url: str):
    """Requests from 2 clients for as long as the block runs, in rounds of 20 with short pauses:
    steady, but leaving the 2 cores room for the training and the gate it runs beside."""
    totals, done = Totals(), threading.Event()

    def loop() -> None:
        while not done.is_set():
            result = _load.run(url, ROWS, concurrency=2, requests=20)
            totals.requests += result.requests
            totals.errors += result.errors
            totals.samples += result.error_samples
            done.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield totals
    finally:
        done.set()
        thread.join(timeout=120)


# -- every answer, with its status and time: for drills where the status matters ----------------

@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the request went out
    done: float  # ... and when its answer (or its failure) came
    status: int  # the HTTP status; 0 when there was no HTTP answer at all
    detail: str = ""  # the start of the body, or the exception, when status is not 200


class Recorder:
    """The answers a ``recorded_load`` has had so far, in the order they came."""

    def __init__(self) -> None:
        self._answers: list[Answer] = []
        self._lock = threading.Lock()

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    def answers(self, sent_after: float = float("-inf")) -> list[Answer]:
        with self._lock:
            return sorted((a for a in self._answers if a.sent >= sent_after), key=lambda a: a.sent)

    def statuses(self, sent_after: float = float("-inf")) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers(sent_after):
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return dict(sorted(counts.items()))

    def first_run_of_successes(self, after: float, length: int) -> float | None:
        """When the first ``length`` requests in a row (by the time they were sent, from ``after``)
        all came back 200: the time the last of them came back, or None if that has not happened."""
        run: list[Answer] = []
        for answer in self.answers(after):
            run = run + [answer] if answer.status == 200 else []
            if len(run) == length:
                return max(a.done for a in run)
        return None


@contextmanager
def recorded_load(url: str, clients: int = 4, path: str = "/api/predict", timeout: float = 15.0,
                  pause: float = 0.0):
    """Requests from ``clients`` threads for as long as the block runs, each ``pause`` seconds
    after the last answer (back to back by default); yields the ``Recorder`` of every answer.
    ``path`` is /api/predict (a POST of one row) or a page to GET. Each thread keeps one
    connection, and opens a new one after a failure. A request that gets no answer within
    ``timeout`` seconds is recorded with status 0."""
    parts = urlsplit(url)
    recorder, done = Recorder(), threading.Event()
    bodies = [json.dumps({"instances": [row]}).encode() for row in ROWS]

    def client(number: int) -> None:
        conn = None
        sent = 0
        while not done.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            started = time.monotonic()
            try:
                if path == "/api/predict":
                    conn.request("POST", path, bodies[(number + sent) % len(bodies)],
                                 {"Content-Type": "application/json"})
                else:
                    conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                status, detail = response.status, "" if response.status == 200 else body[:160].decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            recorder.add(Answer(started, time.monotonic(), status, detail))
            sent += 1
            if pause or status == 0:
                done.wait(pause or 0.05)  # with no server at all, do not spin
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield recorder
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=timeout + 5)
