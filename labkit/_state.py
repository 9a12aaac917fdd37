"""A deployment's run directory: its state file, logs and lock.

    <home>/deployments/<name>/state.json   what runs, where, with which pids
    <home>/deployments/<name>/logs/        one log per process
    <home>/deployments/<name>.lock         held while up/scale/down change it

The state file holds the broker password, so the directory is private (0700)
and the file 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ._errors import ConfigError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


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

    def read(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write(self, state: dict) -> None:
        tmp = self.path / ".state.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_file)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock_file.unlink(missing_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def names(deployments_dir: Path) -> list[str]:
    if not deployments_dir.is_dir():
        return []
    return sorted(p.name for p in deployments_dir.iterdir() if (p / "state.json").is_file())
