"""Where the time went, shown as tables and plots for the notebooks.

``step_times(lab)``: how long each step of a deployment took (on OpenStack
that includes the VM's own steps, read from its console log).
``compare_steps({...})``: two or more deployments' steps side by side (a
stock image against a baked one).
``time_predictions(lab)``: the latency of single predictions, one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from ..notebook.display import Table, chart
from ..notebook.progress import Step
from . import load

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .._deploy import Deployment

# The first three patients of the data set: the same rows the welcome page shows.
SAMPLE_ROWS = [
    [6, 148, 72, 35, 0, 33.6, 0.627, 50],
    [1, 85, 66, 29, 0, 26.6, 0.351, 31],
    [8, 183, 64, 0, 0, 23.3, 0.672, 32],
]


@dataclass(frozen=True)
class StepTimes:
    steps: tuple[Step, ...]

    def frame(self):
        import pandas as pd

        total = sum(step.seconds for step in self.steps) or 1.0
        return pd.DataFrame(
            [{"step": s.index, "what": s.what, "seconds": round(s.seconds, 1),
              "share": f"{100 * s.seconds / total:.0f}%"} for s in self.steps]
        )

    @property
    def total(self) -> float:
        return sum(step.seconds for step in self.steps)

    def plot(self) -> "Figure":
        fig = chart(8, 0.4 * len(self.steps) + 1.2)
        ax = fig.add_subplot()
        labels = [f"{s.index}. {s.what}" for s in self.steps]
        ax.barh(labels, [s.seconds for s in self.steps], color="#4c72b0")
        ax.invert_yaxis()  # step 1 on top, as they ran
        ax.set_xlabel("seconds")
        ax.set_title(f"Deployment steps: {self.total:.0f} s in all")
        return fig

    def table(self) -> Table:
        total = self.total or 1.0
        rows = [[str(s.index), s.what, f"{s.seconds:.1f}", f"{100 * s.seconds / total:.0f}%"] for s in self.steps]
        return Table(["step", "what", "seconds", "share"], rows, right=(0, 2, 3))

    def _repr_html_(self) -> str:
        if not self.steps:
            return "<p>No steps were recorded for this deployment.</p>"
        return self.table().html() + f"<p>Total: {self.total:.1f} s</p>"


def step_times(lab_or_steps: "Deployment | Iterable[Step]") -> StepTimes:
    steps: Iterable[Step] = getattr(lab_or_steps, "steps", lab_or_steps)  # type: ignore[arg-type]
    return StepTimes(tuple(steps))


TOTAL = "total"


def compare_steps(runs: Mapping[str, object]):
    """A DataFrame: one row per step title (in the order they first ran), one column of seconds per run.

    ``runs`` maps a label to a ``Deployment`` (its ``.steps``) or to a list
    of ``Step``. A step a run did not have is empty (NaN), so the table
    shows what baking removed; the last row is each run's total.
    """
    import pandas as pd

    columns: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for label, run in runs.items():
        steps: Sequence[Step] = getattr(run, "steps", run)  # type: ignore[arg-type]  # a Deployment, or its steps
        columns[label] = {}
        for step in steps:
            columns[label][step.what] = columns[label].get(step.what, 0.0) + step.seconds
            if step.what not in order:
                order.append(step.what)
    frame = pd.DataFrame(columns, index=order, dtype=float)
    frame.loc[TOTAL] = frame.sum()
    frame.index.name = "step"
    return frame.round(1)


@dataclass(frozen=True)
class PredictionTimes:
    result: load.LoadResult

    def frame(self):
        import pandas as pd

        return pd.DataFrame({"latency_ms": self.result.latencies_ms})

    def summary(self):
        import pandas as pd

        return pd.Series(self.result.summary(), name="one prediction at a time")

    def table(self) -> Table:
        r = self.result
        rows = [["predictions sent, one at a time", str(r.requests)], ["failed", str(r.errors)],
                *([f"latency p{q}", f"{r.percentile(q):.1f} ms"] for q in (50, 95, 99)),
                ["throughput", f"{r.throughput:.1f} predictions/s"]]
        return Table(["measure", "value"], rows, right=(1,))

    def plot(self) -> "Figure":
        fig = chart(7, 3.2)
        ax = fig.add_subplot()
        ax.hist(self.result.latencies_ms, bins=30, color="#4c72b0")
        for q, style in ((50, "-"), (99, "--")):
            ax.axvline(self.result.percentile(q), color="black", linestyle=style, label=f"p{q}")
        ax.set_xlabel("latency of POST /api/predict (ms)")
        ax.set_ylabel("requests")
        ax.set_title(f"{self.result.requests} predictions, {self.result.errors} errors")
        ax.legend()
        return fig

    def _repr_html_(self) -> str:
        return self.table().html()


def time_predictions(lab: "Deployment", n: int = 100, rows: Sequence[Sequence[float]] = SAMPLE_ROWS) -> PredictionTimes:
    """Send ``n`` one-row predictions one after another and record each one's latency."""
    return PredictionTimes(load.run(lab.url, [list(r) for r in rows], concurrency=1, requests=n))
