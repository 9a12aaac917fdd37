"""Load on a server while a block runs.

``steady_load``: the CI/CD tests count its failed requests. The drills, where it matters which
answer came when, use ``labkit.experiments.load.recorded_load`` (as scripts/bench_faults.py does)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from labkit.experiments import load

ROWS = load.DRILL_ROWS


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
            result = load.run(url, ROWS, concurrency=2, requests=20)
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
