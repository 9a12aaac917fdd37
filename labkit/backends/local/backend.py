"""The local backend: the production server as processes on this machine.

The same code a VM runs: a private RabbitMQ node, N Celery workers (one
process each, solo pool) and gunicorn serving the Flask app on a unix socket,
behind a private nginx on 127.0.0.1 that buffers requests and answers, so
slow or idle clients cannot hold gunicorn's threads (``labkit.infra.nginx``).
Nothing listens beyond the loopback.

As systemd does on a VM, a supervisor runs them: each deployment has its own
supervisord (``labkit.backends.local.supervisor``), the one process labkit starts; it
starts the programs, restarts any that dies (a worker or gunicorn killed with
``kill -9``, a crashed broker) and stops them all at ``down``. ``state.json``
records supervisord and, as last seen, the pid of each program.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil

from production_server.contract import ENGINES

from ..._config import Settings
from ..._errors import DeployError, PrerequisiteMissing, ScaleError
from ..._state import RunDir
from ...infra import health as _health
from ...infra import nginx as _nginx
from ...infra import procs
from ...infra.rabbitmq import Node, find_programs
from ..base import ProcessRow, State, new_state, url_of
from ...notebook.progress import Progress
from .supervisor import STATES_UP, Program, Supervisor, proc_of, rows, socket_path

WEB_PROCESSES = 2
WEB_THREADS = 8
# Ports tried for the proxy when another program takes the one chosen before nginx binds it.
PORT_TRIES = 5


class LocalBackend:
    name = "local"
    engines = ENGINES  # what its workers can serve the model with

    # -- up ---------------------------------------------------------------
    def plan_steps(self, workers: int) -> list[str]:
        return [
            "check prerequisites",
            "start the supervisor and RabbitMQ",
            f"start {workers} Celery worker{'s' if workers != 1 else ''}",
            "start the web server (gunicorn behind nginx)",
            "wait for the workers to answer",
        ]

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> State:
        titles = self.plan_steps(workers)
        with progress.step(titles[0]):
            self._check_prerequisites(settings)
            state = new_state(
                run, self.name,
                port=None,
                model_dir=str(settings.model_dir),
                data_dir=str(settings.data_dir) if settings.data_dir else None,
                predict_timeout=settings.predict_timeout,
                engine=settings.engine,
                broker={"private": settings.broker_url is None, "url": settings.broker_url, "node": None},
                supervisor={"folder": str(run.path)},
                programs={},  # what supervisord.conf holds: program name -> its parameters
                processes=[],
            )
            run.create()
            run.write(state)

        with progress.step(titles[1]):
            if state["broker"]["private"]:
                node = Node.plan(run.path / "rabbitmq", run.name)
                state["broker"].update(url=node.url, node=node.to_dict())
                state["programs"].update(epmd={}, rabbitmq={})
            supervisor = Supervisor(run.path)
            supervisor.write(self._programs(state))
            # Its programs inherit its environment; the student's cloud credentials stay out.
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            state["processes"] = [supervisor.start(env).to_dict()]
            run.write(state)  # a crash from now on still leaves a record to clean up
            if state["broker"]["private"]:
                self._wait_for_broker(run, state, timeout=60)
            self._sync(run, state)

        with progress.step(titles[2]):
            for index in range(1, workers + 1):
                state["programs"][f"worker-{index}"] = {"model_dir": state["model_dir"]}
            self._apply(run, state)

        with progress.step(titles[3]):
            self._start_web(run, state, settings.host, settings.port)

        with progress.step(titles[4]):
            self._wait_for_workers(run, state, workers, settings.start_timeout)
        return state

    def _check_prerequisites(self, settings: Settings) -> None:
        if settings.broker_url is None:
            find_programs()
        _nginx.find()
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

    # -- the programs supervisord runs ----------------------------------
    def _programs(self, state: State) -> list[Program]:
        """supervisord.conf's programs for ``state["programs"]``: the same text for the same state."""
        programs = []
        wanted = state["programs"]
        if "epmd" in wanted or "rabbitmq" in wanted:
            node = Node(**state["broker"]["node"])
            server, _ = find_programs()
            # The node's own variables (its folder, ports, files); the rest comes from supervisord.
            env = {k: v for k, v in node.environment().items()
                   if k == "HOME" or k.startswith(("RABBITMQ_", "ERL_"))}
            if "epmd" in wanted:
                programs.append(Program("epmd", node.epmd_command(), env, directory=node.folder, priority=100))
            if "rabbitmq" in wanted:
                # The script then runs the Erlang VM itself (exec), not as a child it waits for:
                # supervisord sees the node's own exit, and its SIGTERM is the node's clean stop.
                env = {**env, "RUNNING_UNDER_SYSTEMD": "true"}
                programs.append(Program("rabbitmq", [server], env, directory=node.folder, priority=200,
                                        stopwaitsecs=30))
        folder = state["supervisor"]["folder"]
        for name in sorted((n for n in wanted if n.startswith("worker-")), key=lambda n: int(n.split("-")[1])):
            index = int(name.split("-")[1])
            # SIGTERM is Celery's warm shutdown: the task in hand finishes first.
            programs.append(Program(name, self._worker_command(state, index),
                                    self._server_env(state, wanted[name]["model_dir"]), directory=folder,
                                    priority=300, stopwaitsecs=30))
        if "web" in wanted:
            # Its own model_dir, fixed when it started: a new pointer (serve_model_from) restarts
            # the workers only, and the web server keeps serving.
            programs.append(Program("web", self._web_command(f"unix:{state['web_socket']}"),
                                    self._server_env(state, wanted["web"]["model_dir"]), directory=folder,
                                    priority=400, stopwaitsecs=10))
        if "proxy" in wanted:
            # SIGQUIT is nginx's graceful stop: answers in progress are finished.
            programs.append(Program("proxy", _nginx.command(Path(wanted["proxy"]["conf"])), directory=folder,
                                    priority=450, stopwaitsecs=10, stopsignal="QUIT"))
        return programs

    def _server_env(self, state: State, model_dir: str) -> dict:
        """What the web server and the workers get on top of supervisord's environment."""
        env = {
            "SERVER_BROKER_URL": state["broker"]["url"],
            "SERVER_MODEL_DIR": model_dir,
            "SERVER_PREDICT_TIMEOUT": str(state["predict_timeout"]),
            "SERVER_MODEL_ENGINE": state.get("engine", "keras"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        if state.get("data_dir"):
            env["LABKIT_DATA_DIR"] = state["data_dir"]
        return env

    @staticmethod
    def _supervisor(state: State) -> Supervisor:
        return Supervisor(Path(state["supervisor"]["folder"]))

    def _apply(self, run: RunDir, state: State) -> None:
        """Rewrite supervisord.conf from the state and apply it (``supervisorctl update``)."""
        run.write(state)
        supervisor = self._supervisor(state)
        supervisor.write(self._programs(state))
        supervisor.update()
        self._sync(run, state)

    def _sync(self, run: RunDir, state: State) -> None:
        """Record the programs' pids as supervisord sees them now (they change when it restarts one)."""
        info = self._supervisor(state).info()
        if info is None:
            return
        state["processes"] = [*[p for p in state["processes"] if p["role"] == "supervisord"],
                              *[proc.to_dict() for p in info if (proc := proc_of(p)) is not None]]
        run.write(state)

    def _program_proc(self, state: State, name: str) -> procs.Proc | None:
        info = self._supervisor(state).info() or []
        return next((proc_of(p) for p in info if p["name"] == name), None)

    def _wait_for_broker(self, run: RunDir, state: State, timeout: float) -> None:
        """Until the node accepts our user (it boots in about 5 s)."""
        node = Node(**state["broker"]["node"])
        deadline = time.monotonic() + timeout
        proc = None

        def started() -> bool:
            nonlocal proc
            proc = self._program_proc(state, "rabbitmq")
            return proc is not None

        if not procs.wait_until(started, timeout, 0.1, abort=lambda: self._check_programs(run, state)):
            raise DeployError(f"supervisord did not start RabbitMQ within {timeout:.0f} s; see "
                              f"{run.logs / 'supervisord.log'}. Run `labkit down`, then `labkit up` again.")
        assert proc is not None  # started() saw it
        node.wait_ready(proc, run.logs / "rabbitmq.log", max(1.0, deadline - time.monotonic()))

    def _start_web(self, run: RunDir, state: State, host: str, preferred_port: int) -> None:
        """gunicorn on a unix socket in the run directory, then nginx on ``preferred_port`` or the next free one.

        The port is free when chosen, but supervisord starts nginx a moment
        later: another deployment starting at the same moment may take it
        first. nginx then cannot bind; labkit sees that (the port is not
        nginx's) and moves on to the next port.
        """
        state["web_socket"] = str(socket_path(run.path, "web.sock"))
        state["programs"]["web"] = {"model_dir": state["model_dir"]}
        self._apply(run, state)
        self._wait_until(run, state, lambda: procs.unix_socket_answers(Path(state["web_socket"])),
                         "gunicorn did not listen on its socket", run.logs / "web.log")
        port = preferred_port
        log = run.logs / "proxy.log"
        for _ in range(PORT_TRIES):
            try:
                with procs.listening_socket(port, host) as sock:  # free, or in TIME_WAIT only
                    port = sock.getsockname()[1]
            except OSError as exc:
                raise DeployError(f"{exc}: set LABKIT_PORT to another first port.") from None
            state.update({"host": host, "port": port, "url": f"http://{host}:{port}"})
            # The port is in the file's name: another port is another command, which update restarts.
            conf = _nginx.write(run.path / "nginx", host, port, Path(state["web_socket"]), f"nginx-{port}.conf")
            state["programs"]["proxy"] = {"conf": str(conf)}
            offset = log.stat().st_size if log.exists() else 0
            self._apply(run, state)
            if self._proxy_listens(run, state, log, offset):
                self._sync(run, state)
                return
            port += 1
        raise DeployError(f"nginx could not bind a port from {preferred_port} to {port - 1}: other programs "
                          "took each one as it started. Set LABKIT_PORT to another first port.")

    def _wait_until(self, run: RunDir, state: State, predicate, what: str, log: Path, timeout: float = 30) -> None:
        if not procs.wait_until(predicate, timeout, 0.1, abort=lambda: self._check_programs(run, state)):
            raise DeployError(f"{what} within {timeout:.0f} s; the end of {log}:\n{procs.tail(log)}\n"
                              "Run `labkit down`, then `labkit up` again.")

    def _proxy_listens(self, run: RunDir, state: State, log: Path, offset: int) -> bool:
        """True once nginx listens on the port; False if another program has it."""
        taken = []

        def settled() -> bool:
            proxy = self._program_proc(state, "proxy")
            if proxy is not None and procs.listens(proxy, state["host"], state["port"] or 0):
                return True
            with open(log, "rb") if log.exists() else open(os.devnull, "rb") as f:
                f.seek(offset)
                taken.append(b"Address already in use" in f.read())
            return taken[-1]

        self._wait_until(run, state, settled, f"nginx did not listen on port {state['port']}", log)
        return not (taken and taken[-1])

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

    def _worker_command(self, state: State, index: int) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "production_server.worker", "worker",
            "--pool", "solo",
            "--hostname", f"worker-{index}.{state['name']}@%h",
            "--loglevel", "INFO",
            # No gossip or mingle: workers here need not know about each other,
            # and skipping them saves a second at every start.
            "--without-gossip", "--without-mingle",
        ]

    @staticmethod
    def _recorded_procs(state: State, prefix: str = "") -> list[procs.Proc]:
        return [procs.Proc.from_dict(p) for p in state["processes"] if p["role"].startswith(prefix)]

    def _workers(self, state: State) -> list[str]:
        return sorted((n for n in state["programs"] if n.startswith("worker-")), key=lambda n: int(n.split("-")[1]))

    def _check_programs(self, run: RunDir, state: State) -> None:
        """Raise if supervisord is gone, or gave up on a program that kept dying as it started."""
        if not all(p.alive() for p in self._recorded_procs(state, "supervisord")):
            raise DeployError(f"The deployment's supervisord stopped; the end of {run.logs / 'supervisord.log'}:\n"
                              f"{procs.tail(run.logs / 'supervisord.log')}\nRun `labkit down`, then `labkit up`.")
        for process in self._supervisor(state).info() or []:
            if process["statename"] == "FATAL":
                log = run.logs / f"{process['name']}.log"
                raise DeployError(
                    f"The {process['name']} process kept stopping as it started; the end of {log}:\n"
                    f"{procs.tail(log)}\nFix what it says, then run `labkit down` and `labkit up`."
                )

    def _wait_for_workers(self, run: RunDir, state: State, workers: int, timeout: float) -> dict:
        health = _health.wait_or_raise(url_of(state), workers, timeout, DeployError,
                                       lambda: self._check_programs(run, state))
        self._sync(run, state)
        return health

    # -- scale ------------------------------------------------------------
    def scale(self, run: RunDir, state: State, workers: int) -> State:
        current = self._workers(state)
        if workers > len(current):
            used = {int(n.split("-")[1]) for n in current}
            free = (i for i in range(1, workers + len(current) + 1) if i not in used)
            for _ in range(workers - len(current)):
                state["programs"][f"worker-{next(free)}"] = {"model_dir": state["model_dir"]}
        else:
            for name in current[workers:]:
                del state["programs"][name]  # update stops it: SIGTERM, Celery's warm shutdown
        try:
            self._apply(run, state)
            self._restart_fatal(state)
            self._wait_for_workers(run, state, workers, timeout=180)
        except DeployError as exc:
            raise ScaleError(str(exc)) from None
        return state

    def _restart_fatal(self, state: State) -> None:
        """Programs supervisord gave up on (they kept dying as they started) get another chance."""
        supervisor = self._supervisor(state)
        for process in supervisor.info() or []:
            if process["statename"] == "FATAL":
                supervisor.start_program(process["name"])

    def serve_model_from(self, run: RunDir, state: State, pointer: Path, timeout: float = 180) -> State:
        """Restart the workers one at a time with SERVER_MODEL_DIR=``pointer`` (CI/CD's model folder).

        Each replacement answers before the worker it replaces stops (warm
        shutdown: its task in hand finishes, the tasks it prefetched go back
        to the queue), so requests in flight are not dropped.
        """
        state["model_dir"] = str(pointer)
        run.write(state)  # workers started later (scale) use the pointer too
        old = self._workers(state)
        for name in old:
            used = {int(n.split("-")[1]) for n in self._workers(state)}
            state["programs"][f"worker-{min(set(range(1, len(used) + 2)) - used)}"] = {"model_dir": str(pointer)}
            self._apply(run, state)
            self._wait_for_workers(run, state, len(old) + 1, timeout)
            del state["programs"][name]
            self._apply(run, state)
            self._wait_for_workers(run, state, len(old), timeout)
        return state

    # -- CI/CD: both sides are folders under the pipeline's own folder ---
    def cicd_sides(self, run: RunDir, state: State, settings: Settings, root: Path):
        from ...infra.hosts import LocalHost, Sides

        data_dir = state.get("data_dir") or (str(settings.data_dir) if settings.data_dir else None)
        here = LocalHost(env={"LABKIT_DATA_DIR": data_dir, "TF_CPP_MIN_LOG_LEVEL": "2"} if data_dir else {})
        production = root / "production"
        return Sides(
            production=here, production_root=str(production), python=sys.executable, pythonpath=None,
            served_model=state["model_dir"], url=url_of(state), data_dir=data_dir,
            development=here, development_dir=str(root / "development"), dev_python=sys.executable,
            repo_url=str(production / "repo.git"),
        )

    prepare_cicd = cicd_sides  # nothing to launch or install: this machine has it all

    # -- look -------------------------------------------------------------
    def processes(self, state: State) -> list[ProcessRow]:
        """One row per process: supervisord, then its programs as it sees them (state: running, starting...)."""
        recorded = self._recorded_procs(state)
        if "supervisor" not in state:
            return [_recorded_row(proc) for proc in recorded]
        out = [_recorded_row(proc, own=True) for proc in recorded if proc.role == "supervisord"]
        info = self._supervisor(state).info()
        if info is None:  # supervisord is gone: what was last recorded
            return out + [_recorded_row(proc) for proc in recorded if proc.role != "supervisord"]
        return out + rows(info)

    def logs(self, run: RunDir, state: State, lines: int) -> dict[str, str]:
        return {p.stem: procs.tail(p, lines) for p in sorted(run.logs.glob("*.log"))}

    def running(self, state: State) -> bool:
        if "supervisor" not in state:
            return False
        root = self._recorded_procs(state, "supervisord")
        if not root or not all(p.alive() for p in root):
            return False
        up = {p["name"] for p in self._supervisor(state).info() or [] if p["statename"] in STATES_UP}
        return {"web", "proxy"} <= up

    # -- the broker, for failure drills -----------------------------------
    def stop_broker(self, run: RunDir, state: State) -> None:
        """Stop the private RabbitMQ node (keeping its data), as an outage would; supervisord leaves it stopped."""
        self._supervisor(state).stop("rabbitmq")
        state["processes"] = [p for p in state["processes"] if p["role"] != "rabbitmq"]
        run.write(state)
        self._sync(run, state)

    def start_broker(self, run: RunDir, state: State) -> None:
        """Start the private node again on the same ports, with the same user; returns once it accepts the user."""
        self._supervisor(state).start_program("rabbitmq")
        self._wait_for_broker(run, state, timeout=60)
        self._sync(run, state)

    # -- down -------------------------------------------------------------
    def down(self, run: RunDir, state: State) -> None:
        # All at once: a notebook kernel shutting down gives us only seconds (supervisord's own
        # shutdown stops its programs one after the other). Workers still finish the task in hand.
        if "supervisor" in state and all(p.alive() for p in self._recorded_procs(state, "supervisord")):
            self._supervisor(state).stop_all_programs()
        procs.stop_all(self._recorded_procs(state), timeout=20)
        # Whatever the records missed: a program restarted after the last record, whose
        # supervisord was killed. Each runs in the run directory.
        if run.path.is_dir():
            procs.stop_all(procs.of_folder(run.path), timeout=10)
        if "supervisor" in state:
            self._supervisor(state).forget_socket()
        if port := state.get("port"):
            host = state.get("host", "127.0.0.1")
            procs.wait_until(lambda: not procs.port_in_use(port, host), timeout=5, interval=0.1)


def _recorded_row(proc: procs.Proc, own: bool = False) -> ProcessRow:
    """A row for a recorded process; ``own``: its own memory only, not its children's (supervisord's programs)."""
    handle = proc.handle()
    rss = None
    if handle is not None:
        try:
            rss = handle.memory_info().rss / 2**20 if own else proc.rss_mb()
        except psutil.Error:  # it ended meanwhile
            rss = None
    return {"role": proc.role, "id": proc.pid, "state": "running" if rss is not None else "gone",
            "alive": rss is not None, "rss_mb": round(rss, 1) if rss is not None else None}
