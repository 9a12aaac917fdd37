"""A steady load on a server while a block runs: the CI/CD tests count its failed requests."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

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
