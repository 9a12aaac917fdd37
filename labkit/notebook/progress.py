"""Progress markers: ``[labkit] step K/N: what (seconds)``.

Every backend prints the same one-line markers (the cloud-init scripts echo
them into the console log too), so one parser turns either into a progress
bar or a table of step timings.
"""

from __future__ import annotations

import html
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

# Not anchored at the line start: on the console, journald prefixes cloud-init's
# output with "[ uptime] cloud-init[pid]: ".
MARKER_RE = re.compile(r"\[labkit\] step (\d+)/(\d+): (.+) \((\d+(?:\.\d+)?)s\)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Step:
    index: int
    total: int
    what: str
    seconds: float

    def marker(self) -> str:
        return f"[labkit] step {self.index}/{self.total}: {self.what} ({self.seconds:.1f}s)"


FAILED_RE = re.compile(r"\[labkit\] step (\d+)/(\d+): (.+) FAILED \((.+)\)\s*$", re.MULTILINE)


def parse(text: str) -> list[Step]:
    """All markers in a log, in order."""
    return [Step(int(k), int(n), what, float(s)) for k, n, what, s in MARKER_RE.findall(text)]


def failure(text: str) -> str | None:
    """The first failed step in a log, as one sentence, or None."""
    match = FAILED_RE.search(text)
    if match is None:
        return None
    k, n, what, detail = match.groups()
    return f"step {k}/{n} ({what}) failed: {detail}"


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell else None
    return type(ip).__name__ == "ZMQInteractiveShell"


def tell(sentence: str, mode: str) -> None:
    """One sentence where the progress display is: a line of text in a notebook, a ``[labkit]`` line elsewhere.

    Not a warning: Python shows a warning once per line of code (a cell run
    again would say nothing), with a file name and line number before it, and
    as an error where warnings are errors (pytest here).
    """
    if mode == "off":
        return
    if _in_notebook():
        from IPython.display import HTML, display

        display(HTML(f"<p>{html.escape(sentence)}</p>"))
    else:
        print(f"[labkit] {sentence}", flush=True)


class Progress:
    """Shows steps as they run: a tqdm bar in a notebook, marker lines elsewhere."""

    def __init__(self, total: int, title: str, mode: str = "auto", stream=None):
        if mode == "auto":
            mode = "bar" if _in_notebook() else "lines"
        self.total = total
        self.title = title
        self.mode = mode
        self.stream = stream or sys.stdout
        self.done: list[Step] = []
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            # One count only, in the description: tqdm's own n/total beside "step K/N" would read
            # "step 7/12 ... 6/12" (the step running against the steps done).
            self._bar = tqdm(total=total, desc=title, bar_format="{desc} {bar} {elapsed}")

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.running(what)
        index = len(self.done) + 1
        started = time.perf_counter()
        yield
        self.record(Step(index, self.total, what, time.perf_counter() - started))

    def running(self, what: str) -> None:
        """Show ``what`` as the step that runs now (it is recorded when done, by ``step`` or ``record``).

        For a step timed elsewhere, e.g. the rollout that production times during a push.
        """
        if self._bar is not None:
            self._bar.set_description_str(f"{self.title}, step {self.next_index()}/{self.total}: {what}")

    def expect(self, total: int) -> None:
        """Change how many steps there will be (a VM announces its own in its first marker)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def next_index(self) -> int:
        return len(self.done) + 1

    def record(self, step: Step) -> None:
        self.done.append(step)
        if self._bar is not None:
            self._bar.update(1)
        elif self.mode == "lines":
            print(step.marker(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            done = len(self.done)
            self._bar.set_description_str(f"{self.title}: {'done' if done == self.total else 'stopped'}, "
                                          f"{done} of {self.total} steps")
            self._bar.close()
