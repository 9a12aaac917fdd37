"""``labkit.sweep``: throughput and latency over a grid of workers x concurrency.

For each worker count the deployment is scaled (the seconds until the new
workers answer are recorded), warmed up, and then loaded at each
concurrency for a set time or number of requests. The result is a table
(one row per point), two plots and the ratios the lab's targets ask for.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from .._errors import BenchmarkError
from ..notebook.display import EMPTY, Table, chart, save_chart
from ..notebook.progress import Progress
from . import load as _load
from .bench import ROW, Measure, machine, measures_table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .._deploy import Deployment

COLUMNS = ["engine", "workers", "concurrency", "requests", "errors", "seconds", "throughput_rps",
           "p50_ms", "p95_ms", "p99_ms", "worker_rss_mb", "scaled_from", "scale_s", "cores"]
# Two workers should serve at least this many times the requests of one (the lab's scaling target).
SCALING_TARGET = 1.6


@dataclass
class SweepResult:
    """What ``sweep`` measured: ``frame`` has one row per (workers, concurrency)."""

    frame: "pd.DataFrame"
    machine: dict = field(default_factory=dict)

    @property
    def cores(self) -> int:
        return int(self.frame["cores"].iloc[0]) if len(self.frame) else os.cpu_count() or 1

    @classmethod
    def read_csv(cls, path: str | Path) -> "SweepResult":
        """A sweep saved with ``to_csv``, e.g. to plot it again in a notebook."""
        import pandas as pd

        return cls(pd.read_csv(path))

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        self.frame.to_csv(path, index=False)
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``sweep.csv`` and ``sweep.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = out / "sweep.png"
        save_chart(self.plot(), png)
        return {"csv": self.to_csv(out / "sweep.csv"), "png": png}

    def targets(self) -> list[Measure]:
        """The scaling target, measured at the highest concurrency, and the failed requests."""
        frame = self.frame
        measures = [Measure("failed requests, all points", float(frame["errors"].sum()), "", "0",
                            None, bool(frame["errors"].sum() == 0))]
        top = frame[frame["concurrency"] == frame["concurrency"].max()].set_index("workers")
        if {1, 2} <= set(top.index):
            one, two = top.loc[1, "throughput_rps"], top.loc[2, "throughput_rps"]
            ratio = two / one if one else math.nan
            measures.append(Measure(
                f"throughput, 2 workers / 1 worker, concurrency {int(frame['concurrency'].max())}",
                two, "req/s", f">= {SCALING_TARGET}x", ratio, bool(ratio >= SCALING_TARGET)))
        for _, row in frame.drop_duplicates("workers").iterrows():
            if row["scaled_from"] != row["workers"]:
                measures.append(Measure(f"time to scale {int(row['scaled_from'])} -> {int(row['workers'])} "
                                        "workers answering", row["scale_s"], "s"))
        return measures

    def points(self) -> Table:
        """One row per (workers, concurrency): throughput, latency percentiles, errors, memory."""
        rows = [[str(int(r.workers)), str(int(r.concurrency)), f"{r.throughput_rps:.1f}", f"{r.p50_ms:.1f}",
                 f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}", str(int(r.errors)), _number(r.worker_rss_mb, "{:.0f}")]
                for r in self.frame.itertuples()]
        return Table(["workers", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "RSS/worker MB"],
                     rows, right=tuple(range(8)))

    def markdown(self) -> str:
        return self.points().markdown() + "\n\n" + measures_table(self.targets()).markdown()

    def _repr_html_(self) -> str:
        return self.points().html() + "<p></p>" + measures_table(self.targets()).html()

    def plot(self) -> "Figure":
        """Throughput against workers, and latency percentiles against concurrency."""
        import numpy as np
        from matplotlib import colormaps
        from matplotlib.lines import Line2D
        from matplotlib.ticker import ScalarFormatter

        frame = self.frame.sort_values(["workers", "concurrency"])
        engines = ", ".join(sorted(set(frame["engine"])))
        fig = chart(12, 4.8)
        left, right = fig.subplots(1, 2)

        # Squares in shades of one colour map: on the right, circles in C0, C1... stand for worker counts.
        groups = frame.groupby("concurrency")
        shades = colormaps["viridis"](np.linspace(0.1, 0.8, len(groups)))
        for shade, (concurrency, points) in zip(shades, groups):
            left.plot(points["workers"], points["throughput_rps"], marker="s", color=shade,
                      label=f"concurrency {concurrency}")
        left.axvline(self.cores, color="black", linestyle=":", linewidth=2,
                     label=f"{self.cores} CPU cores on this machine")
        left.set_xticks(sorted(set(frame["workers"]) | {self.cores}))
        left.set_ylim(bottom=0)
        left.set_xlabel("Celery workers (processes)")
        left.set_ylabel("throughput (successful requests / s)")
        left.set_title("Throughput against workers")
        left.grid(alpha=0.3)
        left.legend(loc="best")

        styles: dict[str, Any] = {"p50_ms": "-", "p95_ms": "--", "p99_ms": ":"}
        colours = {}
        for index, (workers, points) in enumerate(frame.groupby("workers")):
            colours[workers] = f"C{index}"
            for column, style in styles.items():
                right.plot(points["concurrency"], points[column], linestyle=style, marker="o",
                           color=colours[workers])
        right.set_xscale("log", base=2)
        right.set_xticks(sorted(set(frame["concurrency"])))
        right.xaxis.set_major_formatter(ScalarFormatter())
        # Log scale: one stalled request (seconds) must not flatten the milliseconds of the rest.
        right.set_yscale("log")
        right.set_xlabel("concurrency (clients sending at once)")
        right.set_ylabel("latency per request (ms), log scale")
        right.set_title("Latency percentiles against concurrency")
        right.grid(alpha=0.3)
        # Two legends: colour is the worker count, line style the percentile.
        worker_keys = [Line2D([], [], color=c, marker="o", label=_workers(w))
                       for w, c in colours.items()]
        percentile_keys = [Line2D([], [], color="black", linestyle=s, label=c.split("_")[0])
                           for c, s in styles.items()]
        right.add_artist(right.legend(handles=worker_keys, loc="upper left"))
        right.legend(handles=percentile_keys, loc="upper center")

        when = self.machine.get("date", "")[:16].replace("T", " ")
        when = f"({when} UTC)" if when else ""
        fig.suptitle(f"Scaling sweep, {engines} engine, on a {self.cores}-core machine {when}".strip())
        return fig


def _workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


def _number(value: float, fmt: str) -> str:
    # A VM reports no memory per worker: a dash, not NaN.
    return EMPTY if value is None or math.isnan(value) else fmt.format(value)


def worker_rss_mb(lab: "Deployment") -> float:
    """Mean resident memory of the workers the backend reports; NaN where it reports none (a VM)."""
    sizes = [rss for p in lab.status().processes
             if p["role"].startswith("worker") and (rss := p.get("rss_mb")) is not None]
    return sum(sizes) / len(sizes) if sizes else math.nan


def _check_grid(workers: Sequence[int], concurrency: Sequence[int], duration: float | None,
                requests: int | None) -> None:
    if not workers or not concurrency:
        raise BenchmarkError("The sweep needs at least one worker count and one concurrency: give e.g. 1,2,3.")
    for name, values in (("workers", workers), ("concurrency", concurrency)):
        bad = [v for v in values if not isinstance(v, int) or v < 1]
        if bad:
            raise BenchmarkError(f"{name} {bad} are not whole numbers of at least 1: give e.g. 1,2,3.")
    if duration is None and requests is None:
        raise BenchmarkError("The sweep needs a duration or a number of requests per point: give one of them.")
    if duration is not None and duration <= 0 or requests is not None and requests < 1:
        raise BenchmarkError(f"duration={duration}, requests={requests}: give a positive duration or count.")


def sweep(
    lab: "Deployment",
    workers: Sequence[int] = (1, 2, 3),
    concurrency: Sequence[int] = (1, 4, 16),
    duration: float | None = 5.0,
    requests: int | None = None,
    warmup: int = 50,
    progress: str | None = None,
    stream: TextIO | None = None,
) -> SweepResult:
    """Load ``lab`` at every (workers, concurrency) point; it ends with the workers it had.

    Each point runs for ``duration`` seconds or ``requests`` requests,
    whichever comes first. After each scaling, ``warmup`` requests per
    worker make sure the new workers serve before the clock starts.
    ``progress`` is ``bar``, ``lines`` or ``off`` (default: the
    deployment's setting).
    """
    import pandas as pd

    _check_grid(workers, concurrency, duration, requests)
    start = lab.status()
    if not start.healthy:
        raise BenchmarkError(f"The deployment is not ready ({start.problem}): check `labkit status` first.")
    display = Progress(len(workers) * (1 + len(concurrency)), "sweep", progress or lab.settings.progress, stream)
    rows: list[dict] = []
    current = start.workers
    try:
        for count in workers:
            with display.step(f"scale {current} -> {_workers(count)}, warm up"):
                scale_s = lab.scale(count)
                _load.run(lab.url, [ROW], concurrency=max(concurrency), requests=warmup * count)
            scaled_from, current = current, count
            for clients in concurrency:
                with display.step(f"{_workers(count)}, concurrency {clients}"):
                    result = _load.run(lab.url, [ROW], concurrency=clients, requests=requests, duration=duration)
                rows.append({**result.summary(), "workers": count, "seconds": round(result.seconds, 2),
                             "scaled_from": scaled_from, "scale_s": round(scale_s, 2)})
            # Measured after the load: by then every worker has run the model.
            rss = worker_rss_mb(lab)
            for row in rows[-len(concurrency):]:
                row["worker_rss_mb"] = round(rss, 1)
    finally:
        display.close()
        # Also after a failed step, whose scaling may have stopped half-way.
        lab.scale(start.workers)
    frame = pd.DataFrame(rows).assign(engine=start.engine, cores=os.cpu_count() or 1)[COLUMNS]
    return SweepResult(frame, machine())
