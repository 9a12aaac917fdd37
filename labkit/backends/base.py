"""The protocol every backend implements, and the capabilities only some have.

A backend knows how to start the production server somewhere and how to
change or stop it; everything it needs later goes into the state dict that
labkit saves in the deployment's run directory. Talking to the running
server (health, predictions) is the same for every backend and lives in
``labkit._deploy.Deployment``.

What only some backends can do is a protocol of its own, checked with
``isinstance``: ``VMs`` (more VMs, images), ``CICD`` (a pipeline's two
sides). A backend has a capability by having its methods, nothing else.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from .._config import Settings
from .._state import RunDir
from ..notebook.progress import Progress

if TYPE_CHECKING:
    from ..infra.hosts import Sides


def new_state(run: RunDir, backend: str, **fields: Any) -> dict[str, Any]:
    """The state ``up`` starts with: what every backend records (``url`` once the server answers), then its own."""
    return {"id": secrets.token_hex(8), "name": run.name, "backend": backend, "url": None,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields}


class _Row(TypedDict):
    role: str  # "web", "worker-2", "server", "worker VM lab-w1", "machine"
    id: str | int | None  # a pid, a container's name, a server's id
    state: str  # as its supervisor says: running, starting, exited, ACTIVE, stopped, gone...
    alive: bool


class ProcessRow(_Row, total=False):
    """One process, container or VM of a deployment, as ``status().processes`` lists it.

    The same keys from every backend (``_Row``'s), so a table or a measurement never
    depends on which one ran; what only some backends know is optional (these).
    """

    rss_mb: float | None  # resident memory, where labkit can measure it (local processes)
    health: str  # a container's health check: healthy, unhealthy, starting, or "-"
    address: str | None  # where a VM answers


class Backend(Protocol):
    name: str

    @property
    def engines(self) -> tuple[str, ...]:
        """What its workers can serve the model with ("keras", "onnx")."""

    def plan_steps(self, workers: int) -> list[str]:
        """The titles of the steps ``up`` will run, for the progress display."""

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> dict:
        """Start everything; return the state (must hold ``url``). Record state as it goes."""

    def scale(self, run: RunDir, state: dict, workers: int) -> dict:
        """Start or stop workers until ``workers`` run; return the new state."""

    def processes(self, state: dict) -> list[ProcessRow]:
        """One row per process, container or VM."""

    def logs(self, run: RunDir, state: dict, lines: int) -> dict[str, str]:
        """The last lines of each log, by role."""

    def down(self, run: RunDir, state: dict) -> None:
        """Stop everything ``up`` and ``scale`` started, even if some of it already died."""

    def running(self, state: dict) -> bool:
        """Whether the deployment's processes are still there (for reattaching)."""


@runtime_checkable
class VMs(Protocol):
    """A backend whose server is a VM: it can add worker VMs and snapshot the server into an image."""

    def scale_out(self, run: RunDir, state: dict, vms: int, progress: Progress, workers_per_vm: int = 1) -> dict:
        """Launch ``vms`` worker VMs that join the server's broker; return the new state."""

    def bake(self, run: RunDir, state: dict, image_name: str, progress: Progress) -> dict:
        """Snapshot the contextualized server into an image; return what describes it."""


@runtime_checkable
class CICD(Protocol):
    """A backend on which the CI/CD exercise runs: where its two sides are, and a model switched in place."""

    def prepare_cicd(self, run: RunDir, state: dict, settings: Settings, root: Path) -> Sides:
        """Make the pipeline's sides ready (launch and install what they need); return them."""

    def cicd_sides(self, run: RunDir, state: dict, settings: Settings, root: Path) -> Sides:
        """The sides of a pipeline prepared already."""

    def serve_model_from(self, run: RunDir, state: dict, pointer: Path) -> dict:
        """Restart the workers, one at a time, on the model at ``pointer``; return the new state."""
