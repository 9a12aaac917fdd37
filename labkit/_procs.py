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
                _reap(process)
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


def spawn(role: str, cmd: list[str], env: dict, log_path: Path, cwd: Path | None = None) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A session of its own: the process and all it starts form one group
        # we can signal together, and a Ctrl-C in the student's shell or a
        # kernel interrupt does not reach it.
        popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[popen.pid] = popen
    return Proc(role, popen.pid, psutil.Process(popen.pid).create_time())


def _reap(process: psutil.Process) -> None:
    popen = _children.pop(process.pid, None)
    if popen is not None:
        popen.poll()
        return
    try:
        process.wait(timeout=0)
    except (psutil.Error, ChildProcessError):
        pass


def stop(proc: Proc, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group, wait, then kill whatever is left."""
    process = proc.handle()
    if process is None:
        return
    group = _members(process)
    _signal_group(proc.pid, sig)
    gone, alive = psutil.wait_procs(group, timeout=timeout)
    if alive:
        _signal_group(proc.pid, signal.SIGKILL)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
    _reap(process)


def kill(proc: Proc) -> None:
    """kill -9 the process alone, as a crash would."""
    process = proc.handle()
    if process is not None:
        process.kill()
        try:
            process.wait(timeout=5)
        except (psutil.Error, ChildProcessError):
            pass
        _reap(process)


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


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


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
    raise OSError(f"no free port between {preferred} and {preferred + 99}")


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
