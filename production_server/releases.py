"""Releases of the model on the production server, and the pointer the workers follow.

    <root>/releases/0001-3f2a9c1b7d4e/   model.keras, metadata.json (never changed once there)
    <root>/releases/0002-.../
    <root>/current -> releases/0002-...  the serving pointer (SERVER_MODEL_DIR)
    <root>/history.jsonl                 one line per deploy or rollback

The workers resolve the pointer on every task (``resolve``) and cache the
model by the resolved folder, so switching the pointer makes each worker
load the new release between two tasks: no worker restarts, no request
dropped. The switch is one ``rename``, which is atomic: a worker sees the
old release or the new one, never half of either.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .contract import HISTORY, POINTER, RELEASES

_NAME_RE = re.compile(r"^(\d{4,})-([0-9A-Za-z]+)$")


def resolve(model_dir: str | os.PathLike) -> str:
    """The folder a model path really names now (a few microseconds: one readlink per level)."""
    return os.path.realpath(model_dir)


@dataclass(frozen=True)
class Release:
    number: int
    version: str
    path: Path

    @classmethod
    def from_path(cls, path: Path) -> "Release | None":
        match = _NAME_RE.match(path.name)
        if match is None:
            return None
        return cls(int(match.group(1)), match.group(2), path)


class ReleaseError(RuntimeError):
    """The release folder is not in the state this operation needs; the message says what to do."""


class Releases:
    """The release folders, the pointer and the history under one root folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.pointer = self.root / POINTER
        self.history_file = self.root / HISTORY

    def all(self) -> list[Release]:
        folder = self.root / RELEASES
        found = (Release.from_path(p) for p in folder.iterdir()) if folder.is_dir() else ()
        return sorted((r for r in found if r is not None), key=lambda r: r.number)

    def current(self) -> Release | None:
        if not self.pointer.is_symlink():
            return None
        return Release.from_path(Path(resolve(self.pointer)))

    def previous(self) -> Release:
        """The newest release older than the one served: what a rollback returns to."""
        current = self.current()
        if current is None:
            raise ReleaseError(f"{self.pointer} points at no release: deploy one first.")
        older = [r for r in self.all() if r.number < current.number]
        if not older:
            raise ReleaseError(f"release {current.number} is the oldest one: there is nothing to roll back to.")
        return older[-1]

    def add(self, source: Path, version: str) -> Release:
        """Copy a model folder in as the next release (written aside, then renamed into place)."""
        folder = self.root / RELEASES
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.all()
        number = existing[-1].number + 1 if existing else 1
        path = folder / f"{number:04d}-{version}"
        staging = folder / f".{path.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        os.replace(staging, path)
        return Release(number, version, path)

    def switch(self, release: Release) -> None:
        """Point ``current`` at ``release`` atomically: a new link, renamed over the old one."""
        staging = self.root / f".{POINTER}.tmp"
        staging.unlink(missing_ok=True)
        # Relative, so the folder can move (or be bind-mounted) without breaking the link.
        os.symlink(os.path.relpath(release.path, self.root), staging)
        os.replace(staging, self.pointer)

    def record(self, entry: dict) -> None:
        with open(self.history_file, "a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")

    def history(self) -> list[dict]:
        if not self.history_file.is_file():
            return []
        return [json.loads(line) for line in self.history_file.read_text().splitlines() if line.strip()]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a deploy or a rollback changes the releases: two pushes never take one number."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
