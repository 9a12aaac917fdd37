"""Where the two sides of CI/CD live, and how labkit runs commands there.

A side is a ``Host`` (this machine, or a VM over SSH) and the paths it uses on
it. Every step of the pipeline is a command line run on one of them, the same
for every backend: with the local backend both sides are folders on this
machine; on OpenStack they are the production VM and a development VM.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from .._errors import CICDError, SSHError

if TYPE_CHECKING:
    from .ssh import SSH


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    def last_line(self) -> str:
        """What went wrong, in a line: the end of stderr, without git's generic advice after it."""
        lines = [line.strip() for line in (self.err.strip() or self.out.strip()).splitlines() if line.strip()]
        advice = next((i for i, line in enumerate(lines) if line.startswith("Please make sure you have")), None)
        return " ".join(lines[:advice][-3:]) or "no output"


class Host(Protocol):
    name: str

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600) -> Done: ...


def must(host: Host, argv: Sequence[str], what: str, *, cwd: str | None = None, timeout: float = 600) -> Done:
    """Run ``argv`` on ``host``; a non-zero exit is a CICDError that says what failed, and where."""
    done = host.run(argv, cwd=cwd, timeout=timeout)
    if done.code != 0:
        raise CICDError(f"{what} failed on {host.name} (exit code {done.code}): {done.last_line()}. "
                        "Fix what it says, then retry.")
    return done


@dataclass
class LocalHost:
    """Commands run on this machine as subprocesses, with ``env`` added to labkit's environment."""

    name: str = "this machine"
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600) -> Done:
        if cwd is not None and not os.path.isdir(cwd):
            raise CICDError(f"{cwd} does not exist on {self.name}: run `labkit cicd init` to set it up again.")
        try:
            done = subprocess.run(list(argv), cwd=cwd, env={**os.environ, **self.env}, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CICDError(f"`{shlex.join(argv)[:120]}` did not finish within {timeout:g} s on {self.name}.") from None
        except FileNotFoundError as exc:
            raise CICDError(f"{exc.filename} is not installed on {self.name}: install it, then retry.") from None
        return Done(done.returncode, done.stdout, done.stderr)


@dataclass
class SSHHost:
    """Commands run on a VM over SSH (``labkit.infra.ssh.SSH``), each argument quoted for the remote shell.

    ``as_user`` runs them as another user of the VM through sudo: the CI/CD
    files on the production VM belong to its ``deploy`` user, not to the
    image's default user labkit logs in as.
    """

    ssh: SSH
    name: str
    as_user: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def command_line(self, argv: Sequence[str], cwd: str | None = None) -> str:
        line = shlex.join(argv)
        if self.env:
            line = shlex.join(["env", *(f"{k}={v}" for k, v in self.env.items())]) + " " + line
        # Another user may not enter the login user's home, where a command would start.
        cwd = cwd or ("/" if self.as_user else None)
        if cwd:
            line = f"cd {shlex.quote(cwd)} && {line}"
        if self.as_user:
            line = f"sudo -u {shlex.quote(self.as_user)} -H sh -c {shlex.quote(line)}"
        return line

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600) -> Done:
        try:
            result = self.ssh.run(self.command_line(argv, cwd), timeout=timeout)
        except SSHError as exc:
            raise CICDError(f"{self.name}: {exc}") from exc
        return Done(result.exit_code, result.stdout, result.stderr)


def git_over_ssh(key: str, port: int = 22, known_hosts: str | None = None) -> tuple[str, ...]:
    """`git clone` options that make the clone push over SSH with ``key`` and nothing else.

    A host key that is not already in known_hosts is refused, not trusted on first use:
    labkit records production's key on the development side before the clone (the key
    it read over its own connection to production, which trusted it on first use).
    """
    command = f"ssh -i {shlex.quote(key)} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes"
    if port != 22:
        command += f" -p {port}"
    if known_hosts:
        command += f" -o UserKnownHostsFile={shlex.quote(known_hosts)}"
    return ("-c", f"core.sshCommand={command}")


@dataclass
class Sides:
    """Where production and development are for one deployment; its backend says (``cicd_sides``).

    Paths are the hosts' own: on a VM they name the VM's folders.
    """

    production: Host
    production_root: str  # cicd.json, repo.git/, releases/, current, history.jsonl
    python: str  # an interpreter on production that imports production_server (with ``pythonpath``)
    pythonpath: str | None
    served_model: str  # the model folder the server serves now: release 1
    url: str  # the server, as production's hooks reach it
    data_dir: str | None  # the data set on production, for the gate's held-out rows
    development: Host
    development_dir: str  # the student's working repository
    dev_python: str  # the development side's interpreter, which trains
    repo_url: str  # production's repository, as the development side reaches it
    clone_options: tuple[str, ...] = ()  # `git clone` options, e.g. the SSH key the development VM pushes with

    @property
    def pointer(self) -> str:
        return f"{self.production_root}/current"

    @property
    def config_file(self) -> str:
        return f"{self.production_root}/cicd.json"
