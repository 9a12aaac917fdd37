"""Start processes we can find and stop again, from any Python process.

A process is recorded by pid *and* start time: after a crash or a reboot a
pid may belong to somebody else, and we must never signal that process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

# Children started by this Python process, kept so they are not garbage
# collected while running (Popen warns) and are reaped when they end.
_children: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Proc:
    role: str
    pid: int
    started: float  # psutil's create_time

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Proc":
        return cls(**data)

    def handle(self) -> psutil.Process | None:
        """The live process, or None if it is gone (or its pid was reused)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > 0.01:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                reap(process)
                return None
            return process
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.handle() is not None

    def rss_mb(self) -> float | None:
        """Resident memory of the process and all it started (gunicorn's workers, RabbitMQ's VM)."""
        process = self.handle()
        if process is None:
            return None
        total = 0
        for member in _members(process):
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20


def spawn(role: str, cmd: list[str], env: dict, log_path: Path, cwd: Path | None = None,
          pass_fds: tuple[int, ...] = ()) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A session of its own: the process and all it starts form one group
        # we can signal together, and a Ctrl-C in the student's shell or a
        # kernel interrupt does not reach it.
        popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=pass_fds,
        )
    _children[popen.pid] = popen
    return Proc(role, popen.pid, psutil.Process(popen.pid).create_time())


def reap(process: psutil.Process) -> None:
    """Collect an ended child's exit status, so it leaves no zombie (a no-op for others' processes)."""
    popen = _children.pop(process.pid, None)
    if popen is not None:
        popen.poll()
        return
    try:
        process.wait(timeout=0)
    except (psutil.Error, ChildProcessError):
        pass


def stop(proc: Proc, timeout: float = 15.0) -> None:
    """SIGTERM to the process group, wait, then SIGKILL whatever is left."""
    stop_all([proc], timeout)


def stop_all(procs: list[Proc], timeout: float = 20.0) -> None:
    """Stop several processes at once: SIGTERM to every group, one shared wait, then SIGKILL.

    One after the other, a whole deployment took 4-10 s to stop; a notebook
    kernel being shut down gives its clean-up less than that.
    """
    handles = [(proc, h) for proc in procs if (h := proc.handle()) is not None]
    members = [m for _, h in handles for m in _members(h)]
    for proc, _ in handles:
        _signal_group(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    if alive:
        for proc, _ in handles:
            _signal_group(proc.pid, signal.SIGKILL)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    for _, h in handles:
        reap(h)


def kill(proc: Proc) -> None:
    """kill -9 the process alone, as a crash would."""
    process = proc.handle()
    if process is not None:
        process.kill()
        try:
            process.wait(timeout=5)
        except (psutil.Error, ChildProcessError):
            pass
        reap(process)


def _members(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def of_folder(folder: Path) -> list[Proc]:
    """Every process of this user that runs in ``folder`` or names it in its command line.

    What is left of a deployment whose records are stale (its supervisor was
    killed, say): programs run with the run directory as their working folder.
    """
    inside = str(Path(folder).resolve())
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "uids", "create_time"]):
        info = process.info
        if info["pid"] == os.getpid() or (info["uids"] and info["uids"].real != os.getuid()):
            continue
        cwd, cmdline = info["cwd"] or "", " ".join(info["cmdline"] or [])
        if cwd == inside or cwd.startswith(inside + os.sep) or inside + os.sep in cmdline or cmdline.endswith(inside):
            found.append(Proc("stray", info["pid"], info["create_time"]))
    return found


def listens(proc: Proc, host: str, port: int) -> bool:
    """Whether ``proc`` (or a process it started) listens on ``host:port``."""
    process = proc.handle()
    if process is None:
        return False
    for member in _members(process):
        try:
            for conn in member.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and tuple(conn.laddr[:2]) == (host, port):
                    return True
        except psutil.Error:
            pass
    return False


def unix_socket_answers(path: Path) -> bool:
    """Whether a server accepts connections on the unix socket at ``path``."""
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def wait_until(predicate, timeout: float, interval: float = 0.2, abort=None) -> bool:
    """True once ``predicate()`` holds, False after ``timeout`` seconds. ``abort()``, called before each
    try, raises to stop the wait early: a process that died will not come up by waiting longer."""
    deadline = time.monotonic() + timeout
    while True:
        if abort is not None:
            abort()
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def listening_socket(preferred: int, host: str = "127.0.0.1", tries: int = 100):
    """A socket bound and listening on ``preferred`` or the next free port.

    Handing the bound socket to the server (gunicorn's ``fd://``) leaves no
    moment in which another program could take the port.
    """
    import socket

    for port in range(preferred, preferred + tries):
        sock = socket.socket()
        # As every server does: the connections a stopped server closed linger in TIME_WAIT for a
        # minute, and without this they keep its port from a new one (the fake cloud's VMs then
        # answered on 5101, not 5100). A port someone listens on is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            continue
        sock.listen(2048)
        return sock
    raise OSError(f"no free port between {preferred} and {preferred + tries - 1}")


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` if nobody listens there, else the next free port after it (or any)."""
    import socket

    candidates = range(preferred, preferred + 100) if preferred else [0]
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError(f"no free port between {preferred} and {(preferred or 0) + 99}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
