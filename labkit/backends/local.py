"""The local backend: the production server as processes on this machine.

The same code a VM runs: a private RabbitMQ node, N Celery workers (one
process each, solo pool) and gunicorn serving the Flask app on 127.0.0.1.
Nothing listens beyond the loopback.
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path

from production_server.engines import ENGINES

from .. import _health, _procs
from .._config import Settings
from .._errors import DeployError, PrerequisiteMissing, ScaleError
from .._progress import Progress
from .._rabbitmq import Node, find_programs
from .._state import RunDir

WEB_PROCESSES = 2
WEB_THREADS = 8


class LocalBackend:
    name = "local"
    engines = ENGINES  # what its workers can serve the model with

    # -- up ---------------------------------------------------------------
    def plan_steps(self, workers: int) -> list[str]:
        return [
            "check prerequisites",
            "start RabbitMQ",
            f"start {workers} Celery worker{'s' if workers != 1 else ''}",
            "start the web server (gunicorn)",
            "wait for the workers to answer",
        ]

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> dict:
        titles = self.plan_steps(workers)
        with progress.step(titles[0]):
            self._check_prerequisites(settings)
            state = {
                "id": secrets.token_hex(8),
                "name": run.name,
                "backend": self.name,
                "url": None,
                "port": None,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model_dir": str(settings.model_dir),
                "data_dir": str(settings.data_dir) if settings.data_dir else None,
                "predict_timeout": settings.predict_timeout,
                "engine": settings.engine,
                "broker": {"private": settings.broker_url is None, "url": settings.broker_url, "node": None},
                "processes": [],
            }
            run.create()
            run.write(state)

        with progress.step(titles[1]):
            if state["broker"]["private"]:
                node = Node.plan(run.path / "rabbitmq", run.name)
                state["broker"].update(url=node.url, node=node.to_dict())
                run.write(state)  # before starting: a crash now still leaves a record to clean up
                self._start_node(run, state, node)

        with progress.step(titles[2]):
            for index in range(1, workers + 1):
                self._start_worker(run, state, index)

        with progress.step(titles[3]):
            self._start_web(run, state, settings.host, settings.port)

        with progress.step(titles[4]):
            self._wait_for_workers(run, state, workers, settings.start_timeout)
        return state

    def _check_prerequisites(self, settings: Settings) -> None:
        if settings.broker_url is None:
            find_programs()
        metadata = Path(settings.model_dir) / "metadata.json"
        if not metadata.is_file():
            raise PrerequisiteMissing(
                f"No trained model in {settings.model_dir}: run `labkit train` first "
                "(or set LABKIT_MODEL_DIR to a folder that holds model.keras and metadata.json)."
            )
        if settings.engine == "onnx" and not (Path(settings.model_dir) / "model.onnx").is_file():
            raise PrerequisiteMissing(
                f"No model.onnx in {settings.model_dir}: the model was trained before the ONNX engine "
                "existed. Run `labkit train` again, or deploy with engine='keras'."
            )

    def _start_node(self, run: RunDir, state: dict, node: Node) -> None:
        self._record(run, state, node.start_epmd(run.logs))
        self._record(run, state, node.start_server(run.logs))

    # -- the processes ----------------------------------------------------
    def _env(self, state: dict) -> dict:
        # The server needs none of the student's cloud credentials.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
            "SERVER_BROKER_URL": state["broker"]["url"],
            "SERVER_MODEL_DIR": state["model_dir"],
            "SERVER_PREDICT_TIMEOUT": str(state["predict_timeout"]),
            "SERVER_MODEL_ENGINE": state.get("engine", "keras"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        if state.get("data_dir"):
            env["LABKIT_DATA_DIR"] = state["data_dir"]
        return env

    def _start_web(self, run: RunDir, state: dict, host: str, preferred_port: int) -> None:
        """gunicorn on ``preferred_port`` or the next free one.

        labkit binds the socket and gunicorn inherits it (``fd://``): two
        deployments starting at the same moment cannot both pick a port
        and then race for it.
        """
        try:
            sock = _procs.listening_socket(preferred_port, host)
        except OSError as exc:
            raise DeployError(f"{exc}: set LABKIT_PORT to another first port.") from None
        with sock:
            port = sock.getsockname()[1]
            state.update(host=host, port=port, url=f"http://{host}:{port}")
            cmd = self._web_command(f"fd://{sock.fileno()}")
            web = _procs.spawn("web", cmd, self._env(state), run.logs / "web.log", pass_fds=(sock.fileno(),))
        self._record(run, state, web)

    def _web_command(self, bind: str) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "--config", "python:production_server.gunicorn_conf",
            "--worker-class", "gthread",
            "--workers", str(WEB_PROCESSES),
            "--threads", str(WEB_THREADS),
            "--bind", bind,
            "--graceful-timeout", "5",
            # gunicorn 27 opens a control socket in ~/.gunicorn by default,
            # one path for every deployment of this user: not wanted here.
            "--no-control-socket",
            "production_server:create_app()",
        ]

    def _worker_command(self, state: dict, index: int) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "production_server.worker", "worker",
            "--pool", "solo",
            "--hostname", f"worker-{index}.{state['name']}@%h",
            "--loglevel", "INFO",
            # No gossip or mingle: workers here need not know about each other,
            # and skipping them saves a second at every start.
            "--without-gossip", "--without-mingle",
        ]

    def _start_worker(self, run: RunDir, state: dict, index: int) -> None:
        proc = _procs.spawn(
            f"worker-{index}", self._worker_command(state, index), self._env(state), run.logs / f"worker-{index}.log"
        )
        self._record(run, state, proc)

    def _record(self, run: RunDir, state: dict, proc: _procs.Proc) -> None:
        state["processes"].append(proc.to_dict())
        run.write(state)

    @staticmethod
    def _procs(state: dict, prefix: str = "") -> list[_procs.Proc]:
        return [_procs.Proc.from_dict(p) for p in state["processes"] if p["role"].startswith(prefix)]

    def _workers(self, state: dict) -> list[_procs.Proc]:
        return sorted(self._procs(state, "worker-"), key=lambda p: int(p.role.split("-")[1]))

    def _wait_for_workers(self, run: RunDir, state: dict, workers: int, timeout: float) -> dict:
        def check_processes() -> None:
            for proc in self._procs(state):
                if not proc.alive():
                    log = run.logs / f"{proc.role}.log"
                    raise DeployError(
                        f"The {proc.role} process stopped while starting; the end of {log}:\n"
                        f"{_procs.tail(log)}\nFix what it says, then run `labkit down` and `labkit up`."
                    )

        return _health.wait_or_raise(state["url"], workers, timeout, DeployError, check_processes)

    # -- scale ------------------------------------------------------------
    def scale(self, run: RunDir, state: dict, workers: int) -> dict:
        current = [p for p in self._workers(state) if p.alive()]
        # Forget workers that died (kill -9, crash): scaling replaces them.
        state["processes"] = [p for p in state["processes"] if not p["role"].startswith("worker-")]
        state["processes"] += [p.to_dict() for p in current]
        if workers > len(current):
            used = {int(p.role.split("-")[1]) for p in current}
            free = (i for i in range(1, workers + len(current) + 1) if i not in used)
            for _ in range(workers - len(current)):
                self._start_worker(run, state, next(free))
        else:
            for proc in current[workers:]:
                # SIGTERM is Celery's warm shutdown: the task in hand finishes first.
                _procs.stop(proc, timeout=30)
                state["processes"].remove(proc.to_dict())
        run.write(state)
        try:
            self._wait_for_workers(run, state, workers, timeout=180)
        except DeployError as exc:
            raise ScaleError(str(exc)) from None
        return state

    def serve_model_from(self, run: RunDir, state: dict, model_dir: Path, timeout: float = 180) -> dict:
        """Restart the workers one at a time with SERVER_MODEL_DIR=``model_dir`` (CI/CD's pointer).

        Each replacement answers before the worker it replaces stops (warm
        shutdown: its task in hand finishes, the tasks it prefetched go back
        to the queue), so requests in flight are not dropped.
        """
        state["model_dir"] = str(model_dir)
        run.write(state)  # workers started later (scale) use the pointer too
        old = [p for p in self._workers(state) if p.alive()]
        for proc in old:
            used = {int(p.role.split("-")[1]) for p in self._workers(state)}
            self._start_worker(run, state, min(set(range(1, len(used) + 2)) - used))
            self._wait_for_workers(run, state, len(old) + 1, timeout)
            _procs.stop(proc, timeout=30)
            state["processes"].remove(proc.to_dict())
            run.write(state)
            self._wait_for_workers(run, state, len(old), timeout)
        return state

    # -- CI/CD: both sides are folders under the pipeline's own folder ---
    def cicd_sides(self, run: RunDir, state: dict, settings: Settings, root: Path):
        from ..cicd._hosts import LocalHost, Sides

        data_dir = state.get("data_dir") or (str(settings.data_dir) if settings.data_dir else None)
        here = LocalHost(env={"LABKIT_DATA_DIR": data_dir, "TF_CPP_MIN_LOG_LEVEL": "2"} if data_dir else {})
        production = root / "production"
        return Sides(
            production=here, production_root=str(production), python=sys.executable, pythonpath=None,
            served_model=state["model_dir"], url=state["url"], data_dir=data_dir,
            development=here, development_dir=str(root / "development"), dev_python=sys.executable,
            repo_url=str(production / "repo.git"),
        )

    prepare_cicd = cicd_sides  # nothing to launch or install: this machine has it all

    # -- look -------------------------------------------------------------
    def processes(self, state: dict) -> list[dict]:
        rows = []
        for proc in self._procs(state):
            rss = proc.rss_mb()
            rows.append({"role": proc.role, "pid": proc.pid, "alive": rss is not None,
                         "rss_mb": round(rss, 1) if rss is not None else None})
        return rows

    def logs(self, run: RunDir, state: dict, lines: int) -> dict[str, str]:
        return {p.stem: _procs.tail(p, lines) for p in sorted(run.logs.glob("*.log"))}

    def running(self, state: dict) -> bool:
        web = self._procs(state, "web")
        return bool(web) and all(p.alive() for p in web)

    # -- the broker, for failure drills -----------------------------------
    def stop_broker(self, run: RunDir, state: dict) -> None:
        """Stop the private RabbitMQ node (keeping its data), as an outage would."""
        for proc in self._procs(state, "rabbitmq"):
            _procs.stop(proc)
        state["processes"] = [p for p in state["processes"] if p["role"] != "rabbitmq"]
        run.write(state)

    def start_broker(self, run: RunDir, state: dict) -> None:
        """Start the private node again on the same ports, with the same user."""
        node = Node(**state["broker"]["node"])
        self._record(run, state, node.start_server(run.logs))

    # -- down -------------------------------------------------------------
    def down(self, run: RunDir, state: dict) -> None:
        # All at once: a notebook kernel shutting down gives us only seconds.
        # Workers still finish the task in hand (Celery's warm shutdown).
        _procs.stop_all(self._procs(state), timeout=20)
        if state.get("port"):
            host = state.get("host", "127.0.0.1")
            _procs.wait_until(lambda: not _procs.port_in_use(state["port"], host), timeout=5, interval=0.1)
