"""Deploy times side by side: which steps two (or more) deployments ran, and how long each took.

    >>> fresh = labkit.deploy(backend)                  # a stock image: apt, pip, npm on the VM
    >>> image = fresh.bake()
    >>> baked = labkit.deploy(backend_from_image, name="baked")
    >>> compare_steps({"stock image": fresh, "baked image": baked})
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ._progress import Step

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
        steps: Sequence[Step] = getattr(run, "steps", run)
        columns[label] = {}
        for step in steps:
            columns[label][step.what] = columns[label].get(step.what, 0.0) + step.seconds
            if step.what not in order:
                order.append(step.what)
    frame = pd.DataFrame(columns, index=order, dtype=float)
    frame.loc[TOTAL] = frame.sum()
    frame.index.name = "step"
    return frame.round(1)
