"""A deployment's run directory: its state file, logs and lock.

    <home>/deployments/<name>/state.json   what runs, where, with which pids
    <home>/deployments/<name>/logs/        one log per process
    <home>/deployments/<name>.lock         held while up/scale/down change it

The state file holds the broker password, so the directory is private (0700)
and the file 0600; so are the home, ``deployments/`` (0700) and the lock files
(0600): another user can neither read them nor take a lock and make labkit wait.

The lock file is never removed, also when its deployment is: a command waiting
for the lock holds the file open, and had it been unlinked, the next command
would lock a new file of that name and run beside the waiting one. A wait has
a limit (``LOCK_TIMEOUT``) and the error names who holds the lock: whoever
takes it writes its pid and what it is doing into the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from .backends.base import State

from ._errors import ConfigError, DeploymentBusy

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")

# How long a command waits for another one that changes the same deployment. Longer than a
# local deploy or scale takes (their own limits are 180 s); an OpenStack deploy may take longer.
LOCK_TIMEOUT = 600.0
# After this long waiting, the caller hears (once) who it waits for.
WAIT_NOTICE = 1.0


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may use (0700); missing folders above it are made the same way.

    A folder of ours that is wider (labkit made them 0755 before) is narrowed.
    """
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made meanwhile by another command
            pass
    info = path.stat()
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(
            f"{name!r} is not a valid deployment name: use up to 31 lower-case letters, digits "
            "and dashes, starting with a letter or digit (e.g. 'lab' or 'task-2')."
        )
    return name


class RunDir:
    def __init__(self, deployments_dir: Path, name: str):
        self.name = check_name(name)
        self.path = Path(deployments_dir) / name
        self.state_file = self.path / "state.json"
        self.logs = self.path / "logs"
        self.lock_file = Path(deployments_dir) / f"{name}.lock"

    def exists(self) -> bool:
        return self.state_file.is_file()

    def create(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)

    def read(self) -> State:
        """What ``write`` wrote: the deployment's state."""
        return json.loads(self.state_file.read_text())

    def write(self, state: Mapping[str, Any]) -> None:
        tmp = self.path / ".state.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_file)

    def remove(self) -> None:
        """Remove the run directory; the lock file stays (see the module's docstring)."""
        shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def locked(self, doing: str = "changing", timeout: float = LOCK_TIMEOUT,
               waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the deployment's lock: one command at a time changes it.

        ``doing`` is what the holder does, as others are told ("scaling" ->
        "Another labkit command is scaling 'lab' (pid 42, ...)"). If another
        command holds the lock, wait for it at most ``timeout`` seconds, then
        raise DeploymentBusy; ``waiting`` hears once, after a second, who it
        waits for. A caller that waited must check that the deployment is
        still the one it meant to change: the holder may have removed it, or
        replaced it.
        """
        private_dir(self.lock_file.parent)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)  # made world-readable by an older labkit
            self._acquire(fd, timeout, waiting)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "doing": doing, "since": time.time()}).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)  # before the unlock: the next holder writes its own
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, timeout: float, waiting: Callable[[str], None] | None) -> None:
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if waited >= timeout:
                holder = self._holder(fd)
                pid = holder.get("pid")
                stop = f"stop it (`kill {pid}`)" if pid else "stop it (find it with `ps -ef | grep labkit`)"
                held = f", for {time.time() - holder['since']:.0f} s" if holder.get("since") else ""
                raise DeploymentBusy(f"Another labkit command is {self.describe(holder, held)}: wait for it to "
                                     f"finish, or {stop}, then retry.")
            if waiting is not None and not told and waited >= WAIT_NOTICE:
                waiting(self.describe(self._holder(fd)))
                told = True
            time.sleep(min(0.1, max(timeout - waited, 0.0)))

    def holder(self) -> dict | None:
        """Who holds the lock now, as it wrote itself ({"pid", "doing", "since"}); None if nobody does."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _holder(fd: int) -> dict:
        """What the holder wrote into the lock file; {} if nothing (yet), or an older labkit holds it."""
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def describe(self, holder: dict, more: str = "") -> str:
        """"scaling 'lab' (pid 42)", from what the holder wrote (``more`` goes inside the brackets)."""
        pid = f"pid {holder['pid']}" if holder.get("pid") else "its pid unknown"
        return f"{holder.get('doing', 'changing')} {self.name!r} ({pid}{more})"


def names(deployments_dir: Path) -> list[str]:
    if not deployments_dir.is_dir():
        return []
    return sorted(p.name for p in deployments_dir.iterdir() if (p / "state.json").is_file())
