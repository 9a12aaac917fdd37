"""The command lines CI/CD sends to the VMs, run through real shells here.

No VM, no sudo and no systemd exist here. ``SSHHost``'s nesting (cd, env,
``sudo -u USER -H sh -c``) goes through real shells with a stand-in ``sudo``
that checks its options and runs the rest as this user. The root commands of
``SystemdOverSSH`` (the deploy user, the rolling restart) are recorded from a
stand-in SSH connection: their shell syntax is checked with ``bash -n``, their
order, and what they carry; what they do on Ubuntu is verified only on paper.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shlex
import subprocess
import tarfile

import pytest

import labkit
from labkit.backends.openstack.backend import SystemdOverSSH
from labkit.infra import cloudinit
from labkit.infra.hosts import Result, SSHHost


def test_a_command_as_another_user_survives_sudo_and_two_shells(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text(
        "#!/bin/sh\n"
        "# stands in for `sudo -u USER -H`: checks the options, notes the user, runs the rest\n"
        '[ "$1" = -u ] && [ "$3" = -H ] || { echo "unexpected sudo options: $*" >&2; exit 2; }\n'
        'echo "$2" > "$(dirname "$0")/user"\n'
        'shift 3; exec "$@"\n'
    )
    (bin_dir / "sudo").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    host = SSHHost(ssh=None, name="the production VM", as_user="deploy", env={"GREETING": "hello $USER `id`"})
    folder = tmp_path / "it's a folder; really"
    folder.mkdir()
    argv = ["sh", "-c", 'printf "%s|" "$@" "$GREETING" "$(pwd)"', "sh", "a b", "it's", "$HOME", ";", "*"]

    done = subprocess.run(["sh", "-c", host.command_line(argv, cwd=str(folder))], env=env,
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"a b|it's|$HOME|;|*|hello $USER `id`|{folder}|"
    assert (bin_dir / "user").read_text() == "deploy\n"
    # Without a folder, a command as another user starts in /, not in the login user's home.
    done = subprocess.run(["sh", "-c", host.command_line(["pwd"])], env=env, capture_output=True, text=True)
    assert done.stdout == "/\n"


class RecordedSSH:
    """Stands in for labkit.infra.ssh.SSH: records each command; the ones matching ``fail`` exit 1."""

    def __init__(self, fail: str | None = None) -> None:
        self.commands: list[str] = []
        self.fail = fail

    def run(self, command: str, timeout: float = 60, check: bool = False) -> Result:
        self.commands.append(command)
        code = 1 if self.fail and re.search(self.fail, command) else 0
        return Result(code, "ssh-ed25519 AAAAC3Nza host-key root@production\n", "", 0.0)

    def shell_lines(self) -> list[str]:
        """What the VM's shell runs: a command line, or the line inside ``sh -c '...'``."""
        argvs = [shlex.split(c) for c in self.commands]
        return [argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv) for argv in argvs]


def bash_syntax_errors(commands: list[str]) -> list[str]:
    return [c for c in commands if subprocess.run(["bash", "-n", "-c", c], capture_output=True).returncode]


def test_production_gets_the_hooks_code_and_a_deploy_user_only_the_development_key_reaches():
    ssh = RecordedSSH()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDev labkit-development-lab"
    SystemdOverSSH(ssh).install_cicd(cloudinit.cicd_code(), key)
    assert bash_syntax_errors(ssh.commands) == []
    unpack = next(c for c in ssh.shell_lines() if "base64 -d" in c)
    archive = base64.b64decode(re.match(r"echo (\S+) \| base64 -d \| sudo tar -xzf - -C /opt/labkit/app$",
                                        unpack).group(1))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m.mode for m in tar.getmembers()}
    assert members["production_server/cicd/hooks.py"] == 0o644  # readable by the deploy user
    assert set(members) == {f"production_server/cicd/{p.name}" for p in cloudinit.CICD_DIR.glob("*.py")}
    joined = "\n".join(ssh.shell_lines())
    assert "--shell /usr/bin/git-shell deploy" in joined
    assert f"echo 'restrict {key}' | sudo tee /var/lib/labkit-deploy/.ssh/authorized_keys" in joined


def test_the_workers_move_to_the_pointer_one_restart_at_a_time_beside_an_extra_one():
    ssh = RecordedSSH()
    SystemdOverSSH(ssh).serve_model_from("/opt/labkit/cicd/current", workers=2)
    assert bash_syntax_errors(ssh.commands) == []
    assert "SERVER_MODEL_DIR=/opt/labkit/cicd/current" in ssh.commands[0]
    units = [re.search(r"systemctl (\w+) (labkit-worker@\d)", c).groups() for c in ssh.commands[2:]]
    assert units == [("restart", "labkit-worker@3"), ("restart", "labkit-worker@1"),
                     ("restart", "labkit-worker@2"), ("stop", "labkit-worker@3")]


def test_a_worker_that_does_not_come_back_still_gets_the_extra_one_stopped():
    ssh = RecordedSSH(fail=r"restart labkit-worker@1\b")
    with pytest.raises(labkit.CommandFailed, match="exit code 1"):
        SystemdOverSSH(ssh).serve_model_from("/opt/labkit/cicd/current", workers=2)
    assert ssh.commands[-1] == "sudo systemctl stop labkit-worker@3.service"
    assert not any("labkit-worker@2" in c for c in ssh.commands)
