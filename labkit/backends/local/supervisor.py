"""One supervisord per local deployment: what systemd is on a VM.

labkit writes ``supervisord.conf`` in the run directory and starts
``supervisord -n`` as the deployment's one root process; supervisord starts
the programs (epmd, RabbitMQ, the workers, the web server), restarts any that
dies, and stops them all when it is told to stop. labkit talks to it over
XML-RPC on a unix socket in the run directory (mode 0700, no TCP listener),
as ``supervisorctl`` does.

    <run>/supervisord.conf   [program:NAME] sections, rewritten by scale
    <run>/supervisor.sock    the control socket (in /tmp/labkit-UID/ if the run
                             directory's path is too long for a unix socket)
    <run>/logs/NAME.log      each program's output; supervisord.log its own

Changing the set of programs is ``update``: supervisorctl's algorithm, which
stops removed programs, starts added ones, restarts changed ones and leaves
the others alone (rendering is deterministic, so an unchanged section stays
unchanged).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import tempfile
import xmlrpc.client
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..._errors import DeployError
from ...infra import procs
from ..base import ProcessRow

CONF = "supervisord.conf"
SOCKET = "supervisor.sock"
# A process that dies this soon after starting counts as failing to start; after
# STARTRETRIES such failures in a row supervisord gives up on it (FATAL).
STARTRETRIES = 10
STATES_UP = ("STARTING", "RUNNING", "BACKOFF")


@dataclass(frozen=True)
class Program:
    """One ``[program:NAME]`` section."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)  # on top of supervisord's own
    directory: str | None = None
    stopwaitsecs: int = 10  # stopsignal, then this long before SIGKILL
    stopsignal: str = "TERM"
    priority: int = 500  # lower starts first and stops last
    startsecs: int = 1


def socket_path(folder: Path, name: str) -> Path:
    """``folder/name``, unless that is longer than a unix socket's path may be (108 bytes on Linux):
    then a name made from it in a private folder of this user under the temporary folder."""
    path = Path(folder) / name
    if len(os.fsencode(path)) < 100:
        return path
    private = Path(tempfile.gettempdir()) / f"labkit-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid() or private.is_symlink():
        raise DeployError(f"{private} belongs to another user: remove it, then run `labkit up` again.")
    os.chmod(private, 0o700)
    return private / f"{hashlib.sha256(os.fsencode(path)).hexdigest()[:20]}.sock"


def _escape(value: str | Path) -> str:
    """A value as supervisord reads it: ``%`` starts an expansion, so it is doubled."""
    return str(value).replace("%", "%%")


def _environment(env: dict[str, str]) -> str:
    for key, value in env.items():
        if '"' in value or "\n" in value:  # supervisord's KEY="value" syntax has no escape for these
            raise DeployError(f"The variable {key} holds a quote or a newline, which supervisord cannot pass on: "
                              "unset it and run `labkit up` again.")
    return ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(env.items()))


def render(folder: Path, programs: list[Program]) -> str:
    """The whole supervisord.conf for ``programs``."""
    logs = folder / "logs"
    sock = socket_path(folder, SOCKET)
    lines = [
        "; Written by labkit: the processes of one local deployment. Rewritten by `labkit scale`.",
        "[supervisord]",
        "nodaemon=true",
        # The log goes to stdout, which labkit sends to logs/supervisord.log.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={_escape(folder / 'supervisord.pid')}",
        f"childlogdir={_escape(logs)}",
        "umask=077",
        "",
        "[unix_http_server]",
        f"file={_escape(sock)}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory=supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_escape(sock)}",
    ]
    for program in programs:
        lines += [
            "",
            f"[program:{program.name}]",
            f"command={_escape(shlex.join(program.command))}",
            *([f"directory={_escape(program.directory)}"] if program.directory else []),
            *([f"environment={_environment(program.environment)}"] if program.environment else []),
            f"priority={program.priority}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={program.startsecs}",
            f"startretries={STARTRETRIES}",
            f"stopsignal={program.stopsignal}",
            f"stopwaitsecs={program.stopwaitsecs}",
            # The signals go to the program's process group: gunicorn's and Erlang's children too.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_escape(logs / (program.name + '.log'))}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=1",
        ]
    return "\n".join(lines) + "\n"


class Supervisor:
    """The supervisord of the deployment whose run directory is ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.conf = self.folder / CONF
        self.socket = socket_path(self.folder, SOCKET)
        self.log = self.folder / "logs" / "supervisord.log"

    def write(self, programs: list[Program]) -> None:
        tmp = self.folder / f".{CONF}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(render(self.folder, programs))
        os.replace(tmp, self.conf)

    def start(self, env: dict, timeout: float = 30.0) -> procs.Proc:
        """Start supervisord with ``env`` (which its programs inherit); return once it answers."""
        self.socket.unlink(missing_ok=True)  # left by a supervisord that was killed
        cmd = [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(self.conf)]
        proc = procs.spawn("supervisord", cmd, env, self.log, cwd=self.folder)
        def died() -> None:
            if not proc.alive():
                raise DeployError(f"supervisord stopped while starting; the end of {self.log}:\n"
                                  f"{procs.tail(self.log)}\nFix what it says, then run `labkit up` again.")

        if procs.wait_until(self.answers, timeout, 0.1, abort=died):
            return proc
        procs.stop(proc)
        raise DeployError(f"supervisord did not answer within {timeout:.0f} s; see {self.log}. "
                          "Run `labkit down`, then `labkit up` again.")

    def forget_socket(self) -> None:
        """Remove the control socket once supervisord is gone (it does not, when killed)."""
        self.socket.unlink(missing_ok=True)

    @contextmanager
    def _rpc(self):
        """supervisord's XML-RPC interface, over the unix socket; the connection is closed after the block."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        try:
            yield xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor
        finally:
            transport.close()

    def answers(self) -> bool:
        try:
            with self._rpc() as rpc:
                return rpc.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def info(self) -> list[dict] | None:
        """supervisord's view of every program (name, statename, pid, ...), or None if it does not answer."""
        try:
            with self._rpc() as rpc:
                return rpc.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return None

    def update(self) -> None:
        """Apply supervisord.conf as ``supervisorctl update`` does: only added, removed and changed programs move."""
        with self._rpc() as rpc:
            added, changed, removed = rpc.reloadConfig()[0]
            for name in removed + changed:
                self._stop(rpc, name, group=True)
                rpc.removeProcessGroup(name)
            for name in changed + added:
                rpc.addProcessGroup(name)

    def stop(self, name: str) -> None:
        """Stop a program and keep it stopped (it waits, as systemctl stop does)."""
        with self._rpc() as rpc:
            self._stop(rpc, name)

    @staticmethod
    def _stop(rpc, name: str, group: bool = False) -> None:
        try:
            rpc.stopProcessGroup(name) if group else rpc.stopProcess(name)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise

    def start_program(self, name: str) -> None:
        """Start a stopped program; returns once supervisord counts it as running."""
        try:
            with self._rpc() as rpc:
                rpc.startProcess(name)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise

    def stop_all_programs(self) -> None:
        """SIGTERM to every program at once, without waiting (supervisord's own shutdown goes one by one)."""
        try:
            with self._rpc() as rpc:
                for process in rpc.getAllProcessInfo():
                    if process["statename"] in STATES_UP:
                        self._stop_nowait(rpc, process["name"])
        except (OSError, xmlrpc.client.Error):
            pass  # not answering: the caller signals it directly

    @staticmethod
    def _stop_nowait(rpc, name: str) -> None:
        try:
            rpc.stopProcess(name, False)
        except xmlrpc.client.Fault:
            pass  # it stopped meanwhile


def rows(info: list[dict]) -> list[ProcessRow]:
    """``info()`` as labkit's process rows (the id is the pid)."""
    out: list[ProcessRow] = []
    for process in info:
        alive = process["statename"] == "RUNNING" and process["pid"] > 0
        rss = _rss_mb(process["pid"]) if alive else None
        out.append({"role": process["name"], "id": process["pid"] or None, "state": process["statename"].lower(),
                    "alive": alive and rss is not None, "rss_mb": round(rss, 1) if rss is not None else None})
    return out


def proc_of(process: dict) -> procs.Proc | None:
    """A supervised process as a ``procs.Proc`` record (pid and start time), if it has a pid."""
    import psutil

    if process["pid"] <= 0:
        return None
    try:
        return procs.Proc(process["name"], process["pid"], psutil.Process(process["pid"]).create_time())
    except psutil.Error:
        return None


def _rss_mb(pid: int) -> float | None:
    import psutil

    try:
        return procs.Proc("", pid, psutil.Process(pid).create_time()).rss_mb()
    except psutil.Error:
        return None
