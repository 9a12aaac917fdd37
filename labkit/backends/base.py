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
from .._errors import ServerNotReady
from .._state import RunDir
from ..notebook.progress import Progress

if TYPE_CHECKING:
    from ..infra.hosts import Sides


class _Recorded(TypedDict):
    id: str  # this deployment, not another of the same name started later
    name: str
    backend: str
    url: str | None  # None until the server answers
    created: str


class State(_Recorded, total=False):
    """A deployment's state as its run directory records it (``state.json``): what every backend
    records (``_Recorded``'s keys), then what ``Deployment`` adds, then each backend's own.

    It holds the broker password: it stays in the private run directory.
    """

    # Deployment's
    workers: int
    engine: str
    steps: list[dict[str, Any]]
    started_by: dict[str, Any]
    # local
    host: str
    port: int | None
    model_dir: str
    data_dir: str | None
    predict_timeout: float
    broker: dict[str, Any]  # private or not, its URL, user and password, the node's ports
    supervisor: dict[str, str]
    programs: dict[str, dict[str, Any]]  # supervisord's programs by name, with their parameters
    processes: list[dict[str, Any]]  # the processes as last seen (procs.Proc records)
    web_socket: str
    # docker
    compose: dict[str, str]  # the project: name, file, env_file, password
    # machine
    template: str
    address: str | None
    machine: dict[str, Any] | None
    # openstack
    server_id: str | None
    floating_ip: str | None
    owner: str
    cloud: dict[str, Any]  # which cloud, as the connection records it
    launch: dict[str, Any]  # what worker VMs launch with
    worker_vms: list[dict[str, Any]]
    images: list[dict[str, Any]]
    development_vm: dict[str, Any]
    known_hosts: str
    ssh_user: str
    ssh_key: str


def url_of(state: State) -> str:
    """The server's URL, which ``up`` records once the server answers."""
    if not state["url"]:
        raise ServerNotReady(f"The deployment {state['name']!r} has no server address yet: it is still starting, "
                             "or its start failed; `labkit status` says which.")
    return state["url"]


def new_state(run: RunDir, backend: str, **fields: Any) -> State:
    """The state ``up`` starts with: what every backend records (``url`` once the server answers), then its own."""
    state: State = {"id": secrets.token_hex(8), "name": run.name, "backend": backend, "url": None,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    state.update(fields)  # type: ignore[typeddict-item]  # each backend's own keys, all declared in State
    return state


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

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> State:
        """Start everything; return the state (must hold ``url``). Record state as it goes."""

    def scale(self, run: RunDir, state: State, workers: int) -> State:
        """Start or stop workers until ``workers`` run; return the new state."""

    def processes(self, state: State) -> list[ProcessRow]:
        """One row per process, container or VM."""

    def logs(self, run: RunDir, state: State, lines: int) -> dict[str, str]:
        """The last lines of each log, by role."""

    def down(self, run: RunDir, state: State) -> None:
        """Stop everything ``up`` and ``scale`` started, even if some of it already died."""

    def running(self, state: State) -> bool:
        """Whether the deployment's processes are still there (for reattaching)."""


@runtime_checkable
class VMs(Protocol):
    """A backend whose server is a VM: it can add worker VMs and snapshot the server into an image."""

    def scale_out(self, run: RunDir, state: State, vms: int, progress: Progress, workers_per_vm: int = 1) -> State:
        """Launch ``vms`` worker VMs that join the server's broker; return the new state."""

    def bake(self, run: RunDir, state: State, image_name: str, progress: Progress) -> dict:
        """Snapshot the contextualized server into an image; return what describes it."""


@runtime_checkable
class CICD(Protocol):
    """A backend on which the CI/CD exercise runs: where its two sides are, and a model switched in place."""

    def prepare_cicd(self, run: RunDir, state: State, settings: Settings, root: Path) -> Sides:
        """Make the pipeline's sides ready (launch and install what they need); return them."""

    def cicd_sides(self, run: RunDir, state: State, settings: Settings, root: Path) -> Sides:
        """The sides of a pipeline prepared already."""

    def serve_model_from(self, run: RunDir, state: State, pointer: Path) -> State:
        """Restart the workers, one at a time, on the model at ``pointer``; return the new state."""
