"""``labkit.compare_engines``: the keras and the onnx engine, measured in one run.

Each engine gets a fresh deployment of its own, one after the other, so
neither shares the machine with the other. Per engine: how long one new
worker takes to answer, its resident memory, the latency of single
requests, and how long a scale-up takes; then the ratios and the targets.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from production_server.contract import ENGINES

from .._config import Settings
from .._errors import BenchmarkError
from ..notebook.display import Table, amount
from ..notebook.progress import Progress
from . import load
from .bench import ROW, machine, met_text, ratio_text
from .sweep import worker_rss_mb

if TYPE_CHECKING:
    import pandas as pd

# The targets the comparison is judged by: seconds until the scaled-up workers answer, and how much
# less memory onnx should need.
SCALE_UP_LIMIT_S = {"keras": 10.0, "onnx": 3.0}
RSS_RATIO_TARGET = 3.0


@dataclass(frozen=True)
class EngineFigures:
    engine: str
    startup_s: float  # one worker started beside a running one, until it answers
    scale_up_s: float  # 1 -> scale_to workers, until all answer
    worker_rss_mb: float  # mean over the scaled-up workers, after they served requests
    p50_ms: float  # POST /api/predict, one row, one request at a time
    p99_ms: float
    requests: int
    errors: int


@dataclass(frozen=True)
class Check:
    what: str
    unit: str
    keras: float
    onnx: float
    target: str = ""
    met: bool | None = None
    met_detail: str = ""  # per engine, where the target names each

    @property
    def ratio(self) -> float:
        """keras / onnx: how many times more keras needs."""
        return self.keras / self.onnx if self.onnx else math.nan


@dataclass
class EngineComparison:
    figures: dict[str, EngineFigures]
    scale_to: int = 3
    machine: dict = field(default_factory=dict)

    @property
    def frame(self) -> "pd.DataFrame":
        """One row per engine."""
        import pandas as pd

        return pd.DataFrame([asdict(f) for f in self.figures.values()])

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(path, index=False)
        return path

    def checks(self) -> list[Check]:
        k, o = self.figures["keras"], self.figures["onnx"]
        scale_met = {e: self.figures[e].scale_up_s <= SCALE_UP_LIMIT_S[e] for e in ENGINES}
        return [
            Check("worker start-up, until it answers", "s", k.startup_s, o.startup_s),
            Check(f"time to scale 1 -> {self.scale_to} workers answering", "s", k.scale_up_s, o.scale_up_s,
                  f"keras <= {SCALE_UP_LIMIT_S['keras']:g} s, onnx <= {SCALE_UP_LIMIT_S['onnx']:g} s",
                  all(scale_met.values()), ", ".join(f"{e} {met_text(m)}" for e, m in scale_met.items())),
            Check("memory per worker (RSS)", "MB", k.worker_rss_mb, o.worker_rss_mb,
                  f">= {RSS_RATIO_TARGET:g}x less with onnx",
                  bool(k.worker_rss_mb / o.worker_rss_mb >= RSS_RATIO_TARGET)),
            Check("POST /api/predict, 1 row, sequential, p50", "ms", k.p50_ms, o.p50_ms),
            Check("POST /api/predict, 1 row, sequential, p99", "ms", k.p99_ms, o.p99_ms),
            Check("failed requests", "", k.errors, o.errors, "0", k.errors == 0 and o.errors == 0),
        ]

    def table(self) -> Table:
        rows = [[c.what, amount(c.keras, c.unit), amount(c.onnx, c.unit),
                 ratio_text(None if math.isnan(c.ratio) else c.ratio), c.target, c.met_detail or met_text(c.met)]
                for c in self.checks()]
        return Table(["measure", "keras", "onnx", "keras / onnx", "target", "met"], rows, right=(1, 2, 3))

    def markdown(self) -> str:
        return self.table().markdown()

    def _repr_html_(self) -> str:
        return self.table().html()


def _measure(settings: Settings, engine: str, name: str, requests: int, scale_to: int,
             display: Progress) -> EngineFigures:
    from .._deploy import deploy

    # The comparison shows its own steps; the deployments' steps would only interleave with them.
    engine_settings = replace(settings, engine=engine, progress="off")
    with display.step(f"{engine}: deploy with 1 worker"):
        lab = deploy(name=name, workers=1, settings=engine_settings)
    with lab:
        served = lab.model_info().get("engine")
        if served != engine:
            raise BenchmarkError(f"The {engine} deployment serves the engine {served!r}: check that "
                                 f"`labkit up --engine {engine}` works, then run the comparison again.")
        with display.step(f"{engine}: start a second worker"):
            startup = lab.scale(2)
            lab.scale(1)
        with display.step(f"{engine}: {requests} requests, one at a time"):
            load.run(lab.url, [ROW], concurrency=1, requests=20)  # connections and first calls
            sequential = load.run(lab.url, [ROW], concurrency=1, requests=requests)
        with display.step(f"{engine}: scale 1 -> {scale_to} workers"):
            scale_up = lab.scale(scale_to)
            # Every worker serves before its memory counts: the first calls allocate.
            warm = load.run(lab.url, [ROW], concurrency=2 * scale_to, requests=30 * scale_to)
            rss = worker_rss_mb(lab)
    return EngineFigures(
        engine=engine, startup_s=round(startup, 2), scale_up_s=round(scale_up, 2), worker_rss_mb=round(rss, 1),
        p50_ms=round(sequential.percentile(50), 2), p99_ms=round(sequential.percentile(99), 2),
        requests=sequential.requests + warm.requests, errors=sequential.errors + warm.errors,
    )


def _where_both_engines_run(settings: Settings) -> Settings:
    """The settings' backend if it serves both engines; else the local backend, which does, saying so.

    What differs between the engines is the worker process (its start-up, memory and speed), the
    same on this computer as on a VM; the machine and OpenStack backends serve Keras only so far.
    """
    from .. import backends
    from ..notebook.progress import tell

    chosen = backends.get(settings.backend)
    if set(ENGINES) <= set(chosen.engines):
        return settings
    tell(f"The {chosen.name} backend serves the model with Keras only, so the engines are compared on the "
         "local backend: the same workers, as processes on this computer.", settings.progress)
    return replace(settings, backend="local")


def compare_engines(
    settings: Settings | None = None,
    *,
    requests: int = 300,
    scale_to: int = 3,
    name: str = "engines",
    progress: str | None = None,
    stream: TextIO | None = None,
) -> EngineComparison:
    """Deploy keras, then onnx, as ``NAME-keras`` and ``NAME-onnx``; measure each; take both down."""
    from .._deploy import deployments

    settings = settings or Settings.from_env()
    if scale_to < 2 or requests < 1:
        raise BenchmarkError(f"scale_to={scale_to}, requests={requests}: give scale_to >= 2 and requests >= 1.")
    running = set(deployments(settings)) & {f"{name}-{e}" for e in ENGINES}
    if running:
        first = sorted(running)[0]
        raise BenchmarkError(f"A deployment called {first!r} runs already and the comparison needs fresh ones: "
                             f"take it down with `labkit down --name {first}`, or give another name.")
    settings = _where_both_engines_run(settings)
    display = Progress(4 * len(ENGINES), "comparing engines", progress or settings.progress, stream or sys.stdout)
    try:
        figures = {e: _measure(settings, e, f"{name}-{e}", requests, scale_to, display) for e in ENGINES}
    finally:
        display.close()
    return EngineComparison(figures, scale_to, machine())
