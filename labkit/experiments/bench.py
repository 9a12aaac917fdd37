"""``labkit bench``: where the time of a prediction goes, measured in one run.

Every figure comes from the same run on the same machine, and the targets
are ratios between them, because a shared machine's absolute speed varies
from run to run.

1. the floor: a trivial Celery task's round trip on the deployment's broker;
2. ``POST /api/predict`` with one row, one request at a time: p50 and p99;
3. throughput at a set concurrency with 1 and with 2 workers;
4. the original lab's design (reload the model, ``model.predict``, per
   request) against ours, both as Celery round trips.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from .._deploy import Deployment
from .._errors import BenchmarkError
from ..notebook.display import Table, amount
from . import load

ROW = [6.0, 148.0, 72.0, 35.0, 0.0, 33.6, 0.627, 50.0]


@dataclass
class Measure:
    what: str
    value: float
    unit: str
    target: str = ""
    ratio: float | None = None
    met: bool | None = None


@dataclass
class BenchReport:
    measures: list[Measure]
    machine: dict = field(default_factory=dict)

    def frame(self):
        import pandas as pd

        return pd.DataFrame([m.__dict__ for m in self.measures])

    def to_dict(self) -> dict:
        return {"machine": self.machine, "measures": [m.__dict__ for m in self.measures]}

    def table(self) -> Table:
        return measures_table(self.measures)

    def markdown(self) -> str:
        return self.table().markdown()

    def _repr_html_(self) -> str:
        return self.table().html()


def ratio_text(ratio: float | None) -> str:
    return f"{ratio:.1f}x" if ratio is not None else ""


def met_text(met: bool | None) -> str:
    # A target not met is bold: it must not be overlooked in a table of numbers.
    return {True: "yes", False: "**no**", None: ""}[met]


def measures_table(measures: list[Measure]) -> Table:
    rows = [[m.what, amount(m.value, m.unit), ratio_text(m.ratio), m.target, met_text(m.met)]
            for m in measures]
    return Table(["measure", "value", "ratio", "target", "met"], rows, right=(1, 2))


def _celery_round_trips(broker_url: str, task: str, args: tuple, count: int) -> np.ndarray:
    from celery import Celery

    app = Celery("labkit-bench", broker=broker_url, backend="rpc://")
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    times = []
    try:
        app.send_task(task, args=args).get(timeout=60)  # warm up the connection and reply queue
        for _ in range(count):
            started = time.perf_counter()
            app.send_task(task, args=args).get(timeout=60)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        app.close()
    return np.asarray(times)


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run(lab: Deployment, requests: int = 2000, concurrency: int = 16, sequential: int = 300,
        baseline_calls: int = 20, say=print) -> BenchReport:
    """Measure everything in one run; the deployment is left with the workers it had."""
    broker = lab.state["broker"]["url"]
    if not broker or not broker.startswith("amqp"):
        raise BenchmarkError("The benchmark needs the deployment's broker URL: run it on a local deployment.")
    workers_before = lab.status().workers or 1
    measures: list[Measure] = []

    say("1/4 the floor: a trivial Celery task's round trip ...")
    floor = _celery_round_trips(broker, "lab.noop", (), sequential)
    floor_p50 = float(np.percentile(floor, 50))
    measures.append(Measure("Celery round trip, trivial task (the floor), p50", floor_p50, "ms"))

    say("2/4 POST /api/predict, one row, one request at a time ...")
    seq = load.run(lab.url, [ROW], concurrency=1, requests=sequential)
    if seq.errors:
        raise BenchmarkError(f"{seq.errors} of {seq.requests} requests failed, e.g. {seq.error_samples[0]}")
    p50 = seq.percentile(50)
    measures.append(Measure("POST /api/predict, 1 row, sequential, p50", p50, "ms", "<= 2x the floor",
                            p50 / floor_p50, p50 <= 2 * floor_p50))
    measures.append(Measure("POST /api/predict, 1 row, sequential, p99", seq.percentile(99), "ms"))

    say(f"3/4 throughput at concurrency {concurrency} with 1 and 2 workers ...")
    throughput = {}
    for workers in (1, 2):
        lab.scale(workers)
        load.run(lab.url, [ROW], concurrency=concurrency, requests=concurrency * 10)  # warm-up
        result = load.run(lab.url, [ROW], concurrency=concurrency, requests=requests)
        if result.errors:
            raise BenchmarkError(f"{result.errors} requests failed with {workers} worker(s): {result.error_samples[0]}")
        throughput[workers] = result.throughput
    measures.append(Measure(f"throughput, concurrency {concurrency}, 1 worker", throughput[1], "req/s"))
    measures.append(Measure(f"throughput, concurrency {concurrency}, 2 workers", throughput[2], "req/s",
                            ">= 400 req/s", throughput[2] / throughput[1], throughput[2] >= 400))
    lab.scale(workers_before)

    say("4/4 the original design: reload the model and call model.predict per request ...")
    ours = _celery_round_trips(broker, "lab.predict", ([ROW],), sequential)
    naive = _celery_round_trips(broker, "lab.predict_reload", ([ROW],), baseline_calls)
    ours_p50, naive_p50 = float(np.percentile(ours, 50)), float(np.percentile(naive, 50))
    measures.append(Measure("our predict task, Celery round trip, p50", ours_p50, "ms"))
    measures.append(Measure("original design's task, Celery round trip, p50", naive_p50, "ms",
                            ">= 20x slower than ours", naive_p50 / ours_p50, naive_p50 >= 20 * ours_p50))
    return BenchReport(measures, machine())
