"""``labkit.deploy(...)`` and the Deployment object it returns."""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Sequence

import httpx
import psutil

from . import backends
from .backends.base import ProcessRow, State, url_of
from ._config import DEFAULT_NAME, Settings
from ._errors import ConfigError, DeployError, LabkitError, NotDeployed, PredictionError, ScaleError, ServerNotReady
from ._state import RunDir, private_dir
from .infra import health as _health
from .infra import procs
from .notebook.display import Table, cell, table
from .notebook.progress import Progress, Step, tell


@dataclass
class Status:
    """A snapshot of a deployment: what /healthz says and which processes run.

    ``healthy`` says that the server answers with at least one worker;
    ``condition`` also counts them against ``expected_workers`` (what it was
    deployed or scaled with): "healthy", "degraded" (fewer answer, say while a
    killed worker is being replaced) or "not ready". ``summary`` says it in a
    few words: "degraded: 1 of 2 workers".
    """

    name: str
    backend: str
    url: str
    healthy: bool
    workers: int
    worker_names: list[str]
    problem: str | None
    processes: list[ProcessRow] = field(default_factory=list)  # the same keys from every backend
    engine: str = "keras"  # what the workers serve the model with
    expected_workers: int | None = None  # None: not recorded (a deployment older than this field)
    address: str | None = None  # the VM's or machine's address (openstack, machine); None on this host

    @property
    def condition(self) -> str:
        if not self.healthy:
            return "not ready"
        if self.expected_workers is not None and self.workers < self.expected_workers:
            return "degraded"
        return "healthy"

    @property
    def summary(self) -> str:
        """"healthy: 2 of 2 workers", "degraded: 1 of 2 workers" or "not ready: <why>"."""
        if self.condition == "not ready":
            return f"not ready: {self.problem}"
        expected = self.expected_workers if self.expected_workers is not None else self.workers
        return f"{self.condition}: {self.workers} of {expected} worker{'s' if expected != 1 else ''}"

    def to_dict(self) -> dict:
        return {**self.__dict__, "condition": self.condition, "summary": self.summary}

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
        head = (
            f"<p><b>{html.escape(self.name)}</b> ({html.escape(self.backend)}) at {_link(self.url)}: "
            f"{html.escape(self.summary)}, {html.escape(self.engine)} engine</p>"
        )
        return head + table(self.processes_frame())


class Deployment:
    """A running production server, wherever its backend put it.

    Get one from ``labkit.deploy()`` (starts it) or ``labkit.attach()``
    (finds one that runs already, e.g. after a kernel restart).

    ``steps`` are the steps of the deploy that started it, also when this
    object only found it; ``reused`` says that this object did not start it
    (deploy() found it running, or attach()), so destroy() takes it away from
    whoever did, and close() leaves it running.
    """

    def __init__(self, run: RunDir, state: State, settings: Settings, steps: Sequence[Step] | None = None,
                 reused: bool = False):
        self._run = run
        self._state = state
        self._state_id = state.get("id")  # which deployment of this name this object stands for
        self._settings = settings
        self.backend = backends.from_state(state)
        self.steps = list(steps) if steps is not None else [Step(**step) for step in state.get("steps", [])]
        self.reused = reused

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} backend={self.backend.name} url={self._state.get('url')}>"

    def _repr_html_(self) -> str:
        now = self._run.read() if self._run.exists() else None
        if now is None or now.get("id") != self._state.get("id"):  # gone, or another deployment of that name
            return f"<p><b>{html.escape(self.name)}</b> was taken down: run labkit.deploy() to start a new one.</p>"
        self._state = now  # scaled from another shell since, say
        took = f"{sum(s.seconds for s in self.steps):.1f} s" if self.steps else cell(None)
        row = [self.backend.name, str(self.workers), self._state.get("engine", "keras"), _when(self.since), took]
        card = (f"<p><b>{html.escape(self.name)}</b> at {_link(self.url)}</p>"
                + Table(["backend", "workers", "engine", "running since", "deploy took"], [row]).html())
        if self.reused:
            card += ("<p>Reused: started elsewhere, so close() leaves it running; "
                     "destroy() stops it for everyone.</p>")
        return card

    @property
    def name(self) -> str:
        return self._state["name"]

    @property
    def url(self) -> str:
        return url_of(self._state)

    @property
    def since(self) -> datetime | None:
        """When it was deployed (UTC), as its state records it."""
        created = self._state.get("created")
        return datetime.fromisoformat(created) if created else None

    @property
    def workers(self) -> int:
        """How many workers it was deployed or last scaled with; ``status()`` counts those that answer."""
        if "workers" in self._state:
            return int(self._state["workers"])
        return _health.fetch(self.url).get("workers", 0)  # a deployment recorded before labkit noted them

    def running_note(self) -> str:
        """"'lab' is already running (local backend, since 08:31, 1 worker)": how a reuse is told."""
        return (f"{self.name!r} is already running ({self.backend.name} backend, since {_when(self.since)}, "
                f"{_workers(self.workers)})")

    @property
    def run_dir(self) -> RunDir:
        return self._run

    @property
    def settings(self) -> Settings:
        """The settings it was deployed or attached with (timeouts, progress display)."""
        return self._settings

    @property
    def state(self) -> State:
        """What labkit recorded about this deployment (ports, processes); holds the broker password."""
        return self._refresh()

    def _refresh(self) -> State:
        """The state as it is now, if this is still the deployment this object stands for.

        Under the lock, what a command that changes it acts on: it may have
        waited while another command took this deployment down, and maybe
        started a new one of the same name.
        """
        if not self._run.exists():
            raise NotDeployed(f"The deployment {self.name!r} was taken down: run labkit.deploy() to start a new one.")
        state = self._run.read()
        if state.get("id") != self._state_id:
            raise NotDeployed(f"The deployment {self.name!r} was taken down, and another one of that name started "
                              f"since: find it with labkit.attach({self.name!r}) (or `labkit status`), then retry.")
        self._state = state
        return state

    def _locked(self, doing: str):
        """The deployment's lock, saying what we do with it; a wait for it is told as deploy() tells things."""
        return self._run.locked(doing, waiting=_waiting_note(self._settings.progress))

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
            expected_workers=state.get("workers"),
            address=state.get("address") or state.get("floating_ip"),
        )

    def scale(self, workers: int) -> float:
        """Run exactly ``workers`` workers; returns the seconds until all of them answered."""
        if not isinstance(workers, int) or workers < 1:
            raise ScaleError(f"Cannot scale to {workers!r} workers: give a whole number of at least 1.")
        started = time.perf_counter()
        with self._locked("scaling"):
            self._state = {**self.backend.scale(self._run, self._refresh(), workers), "workers": workers}
            self._run.write(self._state)
        return time.perf_counter() - started

    def scale_out(self, vms: int, workers_per_vm: int = 1) -> float:
        """Run exactly ``vms`` worker VMs beside the server (0 removes them); returns the seconds it took."""
        if not isinstance(vms, int) or vms < 0:
            raise ScaleError(f"Cannot scale out to {vms!r} VMs: give a whole number, 0 or more.")
        backend = self._vms("scale out")  # refused before anything is locked or changed
        started = time.perf_counter()
        with self._locked("scaling out"):
            self._state = backend.scale_out(
                self._run, self._refresh(), vms, Progress(0, f"scaling out {self.name!r}", self._settings.progress),
                workers_per_vm=workers_per_vm)
        return time.perf_counter() - started

    def bake(self, image_name: str | None = None) -> dict:
        """Snapshot the server into an image that deploys faster (``CloudSettings(image=...)``); returns it."""
        name = image_name or f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        name = name if name.startswith("labkit-") else f"labkit-{name}"  # how `labkit cleanup` finds it
        backend = self._vms("bake")
        with self._locked("baking an image of"):
            return backend.bake(
                self._run, self._refresh(), name, Progress(0, f"baking {name!r}", self._settings.progress))

    def _vms(self, verb: str) -> backends.VMs:
        if not isinstance(self.backend, backends.VMs):
            raise ConfigError(
                f"The {self.backend.name} backend cannot {verb}: that needs VMs "
                "(the openstack backend). On one machine, use scale(n) to run more workers."
            )
        return self.backend

    def predict(self, rows: Sequence[Sequence[float]]):
        """Send rows of 8 values to ``/api/predict``; returns a table with the answers."""
        import pandas as pd

        from production_server.contract import FEATURES

        rows = [list(r) for r in rows]
        answer = self.post_predict(rows)
        frame = pd.DataFrame(rows, columns=list(FEATURES) if rows and len(rows[0]) == len(FEATURES) else None)
        # Three places, as a reader compares probabilities; post_predict() keeps the full answer.
        frame["probability"] = [round(p, 3) for p in answer["probabilities"]]
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

    def model_info(self) -> "ModelInfo":
        """What ``/api/model`` says of the model the workers serve (a dict; a table in a notebook)."""
        response = httpx.get(f"{self.url}/api/model", timeout=self._settings.predict_timeout + 5)
        if response.status_code != 200:
            raise ServerNotReady(f"No model information: {_error_message(response)}.")
        return ModelInfo(response.json())

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's log, one section each."""
        parts = self.backend.logs(self._run, self._refresh(), lines)
        return "\n\n".join(f"==> {role} <==\n{text}" for role, text in parts.items())

    def destroy(self) -> None:
        """Stop everything this deployment started and remove its run directory.

        Safe to call twice; and a stale object (say, an atexit hook of an old
        kernel) never takes down a newer deployment of the same name.
        """
        with self._locked("taking down"):
            if not self._run.exists():
                return
            state = self._run.read()
            if state.get("id") != self._state_id:
                return
            self.backend.down(self._run, state)
            self._run.remove()

    def close(self) -> None:
        """The end of a notebook or a ``with`` block: take down what this object started.

        A deployment it found running (``reused``: a `labkit up` in a shell, another
        notebook) stays up for whoever started it, and close() says so;
        destroy() takes it down regardless.
        """
        if not self.reused:
            self.destroy()
        elif self._run.exists() and self._run.read().get("id") == self._state_id:
            tell(f"{self.name!r} keeps running: it was running before this deploy found it "
                 f"(lab.destroy() or `labkit down --name {self.name}` takes it down).", self._settings.progress)

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json().get("error", response.text[:200])
    except ValueError:
        return f"HTTP {response.status_code}"


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _link(url: str) -> str:
    return f"<a href='{html.escape(url)}' target='_blank'>{html.escape(url)}</a>"


def _when(moment: datetime | str | None) -> str:
    """A time as a student reads it, in their time zone: "08:31" today, else "1 Dec 2026, 08:31"."""
    if moment is None:
        return "an unknown time"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = moment.astimezone() if moment.tzinfo else moment.replace(tzinfo=timezone.utc).astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M")
    return f"{local.day} {local.strftime('%b %Y, %H:%M')}"


class ModelInfo(dict):
    """``/api/model``'s answer: the metadata of the model served, its engine and the worker that answered.

    Index it like the dict it is (``info["version"]``); a notebook shows a table.
    """

    def rows(self) -> list[list[str]]:
        """The fields a reader wants, as text; those the metadata lacks are left out."""
        params = self.get("params") or {}
        training = []
        if "epochs" in params:
            training.append(f"{params['epochs']} epochs")
        if params.get("hidden"):
            training.append("hidden layers " + ",".join(str(h) for h in params["hidden"]))
        if "seed" in params:
            training.append(f"seed {params['seed']}")
        accuracy, trained, served_by = self.get("accuracy"), self.get("trained_at"), self.get("served_by")
        rows = [
            ("version", self.get("version")),
            ("engine", self.get("engine")),
            ("held-out accuracy", None if accuracy is None else cell(accuracy, 3)),
            ("trained at", trained and _when(trained)),
            ("training", ", ".join(training)),
            ("answered by", served_by and f"the worker {served_by}"),
        ]
        return [[name, str(value)] for name, value in rows if value not in (None, "")]

    def _repr_html_(self) -> str:
        return Table(["the model served", ""], self.rows()).html()


def deploy(
    backend: "str | backends.Backend | None" = None,
    *,
    name: str = DEFAULT_NAME,
    workers: int = 1,
    settings: Settings | None = None,
    progress: str | None = None,
    engine: str | None = None,
    template: str | None = None,
    task: int | None = None,
) -> Deployment:
    """Start the production server and return it once it answers with ``workers`` workers.

    ``template`` (openstack and machine backends) is the VM to boot:
    "single-server" (Task 1, the default) or "docker-server" (Task 2).
    ``task=2`` says what a notebook means whatever backend was chosen: the
    docker-server VM where the backend boots VMs; the docker backend is Task
    2 already, and the local backend runs either as processes.

    ``engine`` (default: ``settings.engine``, "keras") is what the workers
    run the model with: "keras" or "onnx" (ONNX Runtime, no TensorFlow).
    ``progress`` (default: ``settings.progress``) is "auto", "bar", "lines" or "off".
    If a deployment with this name already runs, it is returned as it is
    (``reused`` set, its ``steps`` those of when it was deployed) and the
    progress display says so in one sentence: calling ``deploy`` twice never
    starts a second stack.
    """
    if task not in (None, 1, 2):
        raise ConfigError(f"task={task!r}: the lab has Task 1 (single server) and Task 2 (containers).")
    if task == 2 and template is None:
        chosen = backend if isinstance(backend, str) else backend.name if backend is not None else None
        if (chosen or (settings or Settings.from_env()).backend) in backends.TEMPLATED:
            template = "docker-server"
    lab = start_or_reuse(backend, name=name, workers=workers, settings=settings, progress=progress, engine=engine,
                         template=template)
    if lab.reused:
        hints = [f"use lab.scale({workers}) for {_workers(workers)}"] if lab.workers != workers else []
        served = lab.state.get("engine", "keras")
        if engine is not None and engine != served:
            hints.append(f"it serves with {served}: lab.destroy() it first, then deploy with engine={engine!r}")
        tell(f"{lab.running_note()}: reusing it{''.join('; ' + hint for hint in hints)}.", lab.settings.progress)
    return lab


def start_or_reuse(backend: "str | backends.Backend | None" = None, *, name: str = DEFAULT_NAME, workers: int = 1,
                   settings: Settings | None = None, progress: str | None = None,
                   engine: str | None = None, template: str | None = None,
                   started_by: dict | None = None) -> Deployment:
    """``deploy()`` without its sentence about a reuse, for a caller that says it its own way (`labkit up`).

    ``started_by`` is who owns what it starts: by default this process, so that
    another process (a restarted kernel) can tell whether its owner still lives.
    """
    settings = settings or Settings.from_env()
    if engine is not None:
        settings = replace(settings, engine=engine)
    if progress is not None:
        settings = replace(settings, progress=progress)
    backend_impl = backend if backend is not None and not isinstance(backend, str) else backends.get(
        backend or settings.backend, template=template)
    if settings.engine not in backend_impl.engines:
        raise ConfigError(
            f"The {backend_impl.name} backend serves the model with Keras only so far: "
            "deploy it with engine='keras' (or unset LABKIT_ENGINE)."
        )
    if not isinstance(workers, int) or workers < 1:
        raise DeployError(f"workers={workers!r}: a deployment needs a whole number of at least 1 worker.")
    run = RunDir(settings.deployments_dir, name)
    private_dir(settings.home)  # it holds the broker's password and the locks: 0700, as are those inside
    with run.locked("deploying", waiting=_waiting_note(settings.progress)):
        if run.exists():
            state = run.read()
            if backends.from_state(state).running(state):
                # A notebook kernel that died without its atexit left it: this kernel takes it over.
                return Deployment(run, state, settings, reused=not _orphaned(state))
            # Left over from a crash: clean up whatever still runs, then start afresh.
            backends.from_state(state).down(run, state)
            run.remove()
        steps = backend_impl.plan_steps(workers)
        display = Progress(len(steps), f"deploying {name!r}", settings.progress)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            state = backend_impl.up(run, settings, workers, display)
            # Whoever finds it later (deploy() again, attach(), another shell) sees how it was deployed.
            state = {"created": started, **state, "workers": workers, "steps": [asdict(s) for s in display.done],
                     "started_by": started_by or _this_process()}
            run.write(state)
        except BaseException:
            # Including KeyboardInterrupt: a half-started stack must not outlive the attempt.
            if run.exists():
                backend_impl.down(run, run.read())
            run.remove()
            raise
        finally:
            display.close()
    return Deployment(run, state, settings, display.done)


def _this_process() -> dict:
    me = psutil.Process()
    return {"pid": me.pid, "started": me.create_time()}


def _orphaned(state: State) -> bool:
    """Started by a Python process (a notebook's kernel) that is gone: nobody else will take it down.

    A deployment of `labkit up` belongs to the shell's user (``started_by`` has
    no pid), and one of older labkit versions, with no ``started_by``, to nobody known.
    """
    owner = state.get("started_by") or {}
    if "pid" not in owner:
        return False
    return not procs.Proc("owner", owner["pid"], owner["started"]).alive()


def _waiting_note(mode: str):
    """What a command waiting for a deployment's lock says, once: for whom it waits."""
    return lambda holder: tell(f"Waiting for another labkit command, which is {holder} ...", mode)


def attach(name: str = DEFAULT_NAME, settings: Settings | None = None) -> Deployment:
    """The running deployment called ``name``; raises NotDeployed if there is none.

    One being deployed (its state not written yet, or a crashed one of that
    name being replaced) is found once its deploy is over: `labkit down` in
    the first moments of a `labkit up` takes down what that up started.
    """
    settings = settings or Settings.from_env()
    run = RunDir(settings.deployments_dir, name)
    holder = run.holder()
    if holder is not None and (holder.get("doing") == "deploying" or not run.exists()):
        with run.locked("looking for", waiting=_waiting_note(settings.progress)):
            pass
    if not run.exists():
        raise NotDeployed(f"No deployment called {name!r} is running: start one with `labkit up --name {name}`.")
    return Deployment(run, run.read(), settings, reused=True)


class Deployments(list):
    """The names of the deployments that run (a list); a notebook shows a sentence or a table."""

    def __init__(self, names: Sequence[str], settings: Settings):
        super().__init__(names)
        self._settings = settings

    def _repr_html_(self) -> str:
        if not self:
            return "<p>No deployment of this lab is running.</p>"
        rows = []
        for name in self:
            try:
                state = RunDir(self._settings.deployments_dir, name).read()
            except (OSError, ValueError):  # taken down since the list was made
                continue
            rows.append([name, state["backend"], state.get("url") or cell(None), cell(state.get("workers")),
                         _when(state.get("created"))])
        return Table(["name", "backend", "url", "workers", "running since"], rows).html()


def deployments(settings: Settings | None = None) -> Deployments:
    """The names of the deployments that run, as a list."""
    from ._state import names

    settings = settings or Settings.from_env()
    return Deployments(names(settings.deployments_dir), settings)


__all__ = ["Deployment", "Deployments", "ModelInfo", "Status", "attach", "deploy", "deployments", "LabkitError"]
