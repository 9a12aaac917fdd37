"""Run a command line on a host, this machine or a VM over SSH, and get one kind of result.

    >>> here = LocalHost()
    >>> here.run(["git", "--version"]).stdout
    >>> vm = SSHHost(ssh, "the production VM", sudo=True)
    >>> vm.run(["systemctl", "restart", "labkit-web.service"], timeout=60, check=True)

Every command is an argv, quoted for the remote shell where there is one, so
a folder or a value with spaces or quotes arrives as it was. What a shell
would report stays a result, not an exception: a missing program is exit
code 127, and a missing folder a failure that names it, on both kinds of host. With
``check=True`` a non-zero exit raises ``CommandFailed``; a command that does
not finish within ``timeout`` raises it always.

The CI/CD pipeline, Compose over SSH and the single-server VM's systemd
units all run their commands through a ``Host``; ``Sides`` says which host
each side of CI/CD is.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from .._errors import CommandFailed, SSHError

if TYPE_CHECKING:
    from .ssh import SSH


@dataclass(frozen=True)
class Result:
    """What a command did: its exit code, its output, and how long it took."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def last_line(self) -> str:
        """What went wrong, in a line: the end of stderr, without git's generic advice after it."""
        lines = [line.strip() for line in (self.stderr.strip() or self.stdout.strip()).splitlines() if line.strip()]
        advice = next((i for i, line in enumerate(lines) if line.startswith("Please make sure you have")), None)
        return " ".join(lines[:advice][-3:]) or "no output"


class Host(Protocol):
    name: str

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600,
            check: bool = False) -> Result: ...


def _checked(host: Host, argv: Sequence[str], result: Result, check: bool) -> Result:
    if check and result.exit_code != 0:
        raise CommandFailed(f"`{_short(argv)}` failed on {host.name} (exit code {result.exit_code}): "
                            f"{result.last_line()}. Fix what it says, then retry.", result)
    return result


def _timed_out(host: Host, argv: Sequence[str], timeout: float) -> CommandFailed:
    return CommandFailed(f"`{_short(argv)}` did not finish within {timeout:g} s on {host.name}: "
                         "look there for what it waits on, or allow it longer.")


def _short(argv: Sequence[str]) -> str:
    line = shlex.join(argv)
    return line if len(line) <= 120 else line[:117] + "..."


@dataclass
class LocalHost:
    """Commands run on this machine as subprocesses, with ``env`` added to labkit's environment."""

    name: str = "this machine"
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600,
            check: bool = False) -> Result:
        start = time.monotonic()
        if cwd is not None and not os.path.isdir(cwd):
            return _checked(self, argv, Result(1, "", f"cd: {cwd}: No such file or directory"), check)
        try:
            done = subprocess.run(list(argv), cwd=cwd, env={**os.environ, **self.env}, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise _timed_out(self, argv, timeout) from None
        except FileNotFoundError:
            return _checked(self, argv, Result(127, "", f"{argv[0]}: command not found",
                                               time.monotonic() - start), check)
        return _checked(self, argv, Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start),
                        check)


@dataclass
class SSHHost:
    """Commands run on a VM over SSH (``infra.ssh.SSH``), each argument quoted for the remote shell.

    ``sudo`` runs them as root: a cloud image's default user is not in the
    docker group, and systemd's units are root's. ``as_user`` runs them as
    another user of the VM through sudo: the CI/CD files on the production VM
    belong to its ``deploy`` user, not to the image's default user labkit logs in as.
    """

    ssh: SSH
    name: str
    as_user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    sudo: bool = False

    def command_line(self, argv: Sequence[str], cwd: str | None = None) -> str:
        line = shlex.join(argv)
        if self.env:
            line = shlex.join(["env", *(f"{k}={v}" for k, v in self.env.items())]) + " " + line
        if self.sudo and not self.as_user:
            line = "sudo " + line
        # Another user may not enter the login user's home, where a command would start.
        cwd = cwd or ("/" if self.as_user else None)
        if cwd:
            line = f"cd {shlex.quote(cwd)} && {line}"
        if self.as_user:
            line = f"sudo -u {shlex.quote(self.as_user)} -H sh -c {shlex.quote(line)}"
        return line

    def run(self, argv: Sequence[str], *, cwd: str | None = None, timeout: float = 600,
            check: bool = False) -> Result:
        try:
            result = self.ssh.run(self.command_line(argv, cwd), timeout=timeout)
        except SSHError as exc:
            if exc.reason == "command-timeout":
                raise _timed_out(self, argv, timeout) from None
            raise
        return _checked(self, argv, result, check)


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
