"""Run real git, turning its failures into PipelineError."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import PipelineError


def git(*args: str, cwd: Path, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        raise PipelineError("git is not installed: install it (`sudo apt-get install git`), then retry.")
    done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True)
    if check and done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"`git {' '.join(args)}` failed in {cwd}: {last}. Fix what git says, then retry.")
    return done


def text(*args: str, cwd: Path) -> str:
    return git(*args, cwd=cwd).stdout.decode().strip()
