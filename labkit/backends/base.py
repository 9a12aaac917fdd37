"""The one protocol every backend implements.

A backend knows how to start the production server somewhere and how to
change or stop it; everything it needs later goes into the state dict that
labkit saves in the deployment's run directory. Talking to the running
server (health, predictions) is the same for every backend and lives in
``labkit._deploy.Deployment``.
"""

from __future__ import annotations

from typing import Protocol

from .._config import Settings
from .._progress import Progress
from .._state import RunDir


class Backend(Protocol):
    name: str

    def plan_steps(self, workers: int) -> list[str]:
        """The titles of the steps ``up`` will run, for the progress display."""

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> dict:
        """Start everything; return the state (must hold ``url``). Record state as it goes."""

    def scale(self, run: RunDir, state: dict, workers: int) -> dict:
        """Start or stop workers until ``workers`` run; return the new state."""

    def processes(self, state: dict) -> list[dict]:
        """One row per process or container: role, id, alive, memory."""

    def logs(self, run: RunDir, state: dict, lines: int) -> dict[str, str]:
        """The last lines of each log, by role."""

    def down(self, run: RunDir, state: dict) -> None:
        """Stop everything ``up`` and ``scale`` started, even if some of it already died."""

    def running(self, state: dict) -> bool:
        """Whether the deployment's processes are still there (for reattaching)."""
