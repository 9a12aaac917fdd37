"""``labkit.deploy(...)`` and the Deployment object it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import httpx

from . import _health, backends
from ._config import DEFAULT_NAME, Settings
from ._errors import ConfigError, DeployError, LabkitError, NotDeployed, PredictionError, ScaleError, ServerNotReady
from ._progress import Progress, Step
from ._state import RunDir


@dataclass
class Status:
    """A snapshot of a deployment: what /healthz says and which processes run."""

    name: str
    backend: str
    url: str
    healthy: bool
    workers: int
    worker_names: list[str]
    problem: str | None
    processes: list[dict] = field(default_factory=list)
    engine: str = "keras"  # what the workers serve the model with

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def workers_by_host(self) -> dict[str, list[str]]:
        """The answering workers grouped by the machine they run on (``worker-1@HOST``)."""
        hosts: dict[str, list[str]] = {}
        for worker in sorted(self.worker_names):
            hosts.setdefault(worker.rpartition("@")[2], []).append(worker)
        return hosts

    def processes_frame(self):
        import pandas as pd

        return pd.DataFrame(self.processes)

    def _repr_html_(self) -> str:
        state = "healthy" if self.healthy else f"not ready: {self.problem}"
        head = (
            f"<p><b>{self.name}</b> ({self.backend}) at <a href='{self.url}' target='_blank'>{self.url}</a>: "
            f"{state}, {self.workers} worker(s) answering, {self.engine} engine</p>"
        )
        return head + self.processes_frame().to_html(index=False)


class Deployment:
    """A running production server, wherever its backend put it.

    Get one from ``labkit.deploy()`` (starts it) or ``labkit.attach()``
    (finds one that runs already, e.g. after a kernel restart).
    """

    def __init__(self, run: RunDir, state: dict, settings: Settings, steps: Sequence[Step] = ()):
        self._run = run
        self._state = state
        self._settings = settings
        self.backend = backends.from_state(state)
        self.steps = list(steps)

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} backend={self.backend.name} url={self.url}>"

    @property
    def name(self) -> str:
        return self._state["name"]

    @property
    def url(self) -> str:
        return self._state["url"]

    @property
    def run_dir(self) -> RunDir:
        return self._run

    @property
    def settings(self) -> Settings:
        """The settings it was deployed or attached with (timeouts, progress display)."""
        return self._settings

    @property
    def state(self) -> dict:
        """What labkit recorded about this deployment (ports, processes); holds the broker password."""
        return self._refresh()

    def _refresh(self) -> dict:
        if not self._run.exists():
            raise NotDeployed(f"The deployment {self.name!r} was taken down: run labkit.deploy() to start a new one.")
        self._state = self._run.read()
        return self._state

    def status(self) -> Status:
        state = self._refresh()
        health = _health.fetch(self.url)
        healthy = health.get("status") == "ok"
        return Status(
            name=self.name,
            backend=state["backend"],
            url=self.url,
            healthy=healthy,
            workers=health["workers"] if healthy else 0,
            worker_names=health.get("worker_names", []),
            problem=None if healthy else health.get("error", "unknown"),
            processes=self.backend.processes(state),
            engine=state.get("engine", "keras"),
        )

    def scale(self, workers: int) -> float:
        """Run exactly ``workers`` workers; returns the seconds until all of them answered."""
        if not isinstance(workers, int) or workers < 1:
            raise ScaleError(f"Cannot scale to {workers!r} workers: give a whole number of at least 1.")
        started = time.perf_counter()
        with self._run.locked():
            self._state = self.backend.scale(self._run, self._refresh(), workers)
        return time.perf_counter() - started

    def scale_out(self, vms: int, workers_per_vm: int = 1) -> float:
        """Run exactly ``vms`` worker VMs beside the server (0 removes them); returns the seconds it took."""
        if not isinstance(vms, int) or vms < 0:
            raise ScaleError(f"Cannot scale out to {vms!r} VMs: give a whole number, 0 or more.")
        started = time.perf_counter()
        with self._run.locked():
            self._state = self._cloud_only("scale_out")(
                self._run, self._refresh(), vms, Progress(0, f"scaling out {self.name!r}", self._settings.progress),
                workers_per_vm=workers_per_vm)
        return time.perf_counter() - started

    def bake(self, image_name: str | None = None) -> dict:
        """Snapshot the server into an image that deploys faster (``CloudSettings(image=...)``); returns it."""
        name = image_name or f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        name = name if name.startswith("labkit-") else f"labkit-{name}"  # how `labkit cleanup` finds it
        with self._run.locked():
            return self._cloud_only("bake")(
                self._run, self._refresh(), name, Progress(0, f"baking {name!r}", self._settings.progress))

    def _cloud_only(self, verb: str):
        method = getattr(self.backend, verb, None)
        if method is None:
            raise ConfigError(
                f"The {self.backend.name} backend cannot {verb.replace('_', ' ')}: that needs VMs "
                "(the openstack backend). On one machine, use scale(n) to run more workers."
            )
        return method

    def predict(self, rows: Sequence[Sequence[float]]):
        """Send rows of 8 values to ``/api/predict``; returns a table with the answers."""
        import pandas as pd

        from production_server.data import FEATURES

        rows = [list(r) for r in rows]
        answer = self.post_predict(rows)
        frame = pd.DataFrame(rows, columns=list(FEATURES) if rows and len(rows[0]) == len(FEATURES) else None)
        frame["probability"] = answer["probabilities"]
        frame["prediction"] = answer["predictions"]
        frame.attrs["model_version"] = answer["model_version"]
        return frame

    def post_predict(self, rows: list, timeout: float | None = None) -> dict:
        """The raw JSON answer of ``POST /api/predict``."""
        try:
            response = httpx.post(
                f"{self.url}/api/predict", json={"instances": rows},
                timeout=timeout or self._settings.predict_timeout + 5,
            )
        except httpx.HTTPError as exc:
            raise ServerNotReady(f"{self.url} did not answer ({exc}): check `labkit status`.") from None
        if response.status_code == 200:
            return response.json()
        message = _error_message(response)
        if response.status_code == 503:
            raise ServerNotReady(f"The server has no worker to answer: {message}. Check `labkit status`.")
        raise PredictionError(f"The server refused the rows: {message}.")

    def model_info(self) -> dict:
        response = httpx.get(f"{self.url}/api/model", timeout=self._settings.predict_timeout + 5)
        if response.status_code != 200:
            raise ServerNotReady(f"No model information: {_error_message(response)}.")
        return response.json()

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's log, one section each."""
        parts = self.backend.logs(self._run, self._refresh(), lines)
        return "\n\n".join(f"==> {role} <==\n{text}" for role, text in parts.items())

    def destroy(self) -> None:
        """Stop everything this deployment started and remove its run directory.

        Safe to call twice; and a stale object (say, an atexit hook of an old
        kernel) never takes down a newer deployment of the same name.
        """
        with self._run.locked():
            if not self._run.exists():
                return
            state = self._run.read()
            if state.get("id") != self._state.get("id"):
                return
            self.backend.down(self._run, state)
            self._run.remove()

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json().get("error", response.text[:200])
    except ValueError:
        return f"HTTP {response.status_code}"


def deploy(
    backend: "str | backends.Backend | None" = None,
    *,
    name: str = DEFAULT_NAME,
    workers: int = 1,
    settings: Settings | None = None,
    progress: str | None = None,
    engine: str | None = None,
) -> Deployment:
    """Start the production server and return it once it answers with ``workers`` workers.

    ``engine`` (default: ``settings.engine``, "keras") is what the workers
    run the model with: "keras" or "onnx" (ONNX Runtime, no TensorFlow).
    ``progress`` (default: ``settings.progress``) is "auto", "bar", "lines" or "off".
    If a deployment with this name already runs, it is returned as it is:
    calling ``deploy`` twice never starts a second stack.
    """
    settings = settings or Settings.from_env()
    if engine is not None:
        settings = replace(settings, engine=engine)
    if progress is not None:
        settings = replace(settings, progress=progress)
    backend_impl = backend if backend is not None and not isinstance(backend, str) else backends.get(
        backend or settings.backend)
    if settings.engine not in getattr(backend_impl, "engines", ("keras",)):
        raise ConfigError(
            f"The {backend_impl.name} backend serves the model with Keras only so far: "
            "deploy it with engine='keras' (or unset LABKIT_ENGINE)."
        )
    if not isinstance(workers, int) or workers < 1:
        raise DeployError(f"workers={workers!r}: a deployment needs a whole number of at least 1 worker.")
    run = RunDir(settings.deployments_dir, name)
    with run.locked():
        if run.exists():
            state = run.read()
            if backends.from_state(state).running(state):
                return Deployment(run, state, settings)
            # Left over from a crash: clean up whatever still runs, then start afresh.
            backends.from_state(state).down(run, state)
            run.remove()
        steps = backend_impl.plan_steps(workers)
        display = Progress(len(steps), f"deploying {name!r}", settings.progress)
        try:
            state = backend_impl.up(run, settings, workers, display)
        except BaseException:
            # Including KeyboardInterrupt: a half-started stack must not outlive the attempt.
            if run.exists():
                backend_impl.down(run, run.read())
            run.remove()
            raise
        finally:
            display.close()
    return Deployment(run, state, settings, display.done)


def attach(name: str = DEFAULT_NAME, settings: Settings | None = None) -> Deployment:
    """The running deployment called ``name``; raises NotDeployed if there is none."""
    settings = settings or Settings.from_env()
    run = RunDir(settings.deployments_dir, name)
    if not run.exists():
        raise NotDeployed(f"No deployment called {name!r} is running: start one with `labkit up --name {name}`.")
    return Deployment(run, run.read(), settings)


def deployments(settings: Settings | None = None) -> list[str]:
    from ._state import names

    settings = settings or Settings.from_env()
    return names(settings.deployments_dir)


__all__ = ["Deployment", "Status", "attach", "deploy", "deployments", "LabkitError"]
