"""One step of the pipeline on one side: a command that must succeed, or a CICDError that says which."""

from __future__ import annotations

from typing import Sequence

from .._errors import CICDError, CommandFailed, SSHError
from ..infra.hosts import Host, Result


def must(host: Host, argv: Sequence[str], what: str, *, cwd: str | None = None, timeout: float = 600) -> Result:
    """Run ``argv`` on ``host``; a non-zero exit is a CICDError that says what failed, and where."""
    try:
        done = host.run(argv, cwd=cwd, timeout=timeout)
    except (CommandFailed, SSHError) as exc:
        raise CICDError(f"{what}: {exc}") from exc
    if done.exit_code != 0:
        raise CICDError(f"{what} failed on {host.name} (exit code {done.exit_code}): {done.last_line()}. "
                        "Fix what it says, then retry.")
    return done
