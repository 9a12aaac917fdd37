"""One way to run a command: ``LocalHost`` and ``SSHHost`` answer alike (a real sshd on the loopback).

What a shell reports stays a result on both (a missing program is 127, a
missing folder a failure that names it); ``check=True`` turns a non-zero exit into CommandFailed
with the command's last words; a command that outlives its timeout is
CommandFailed on both, never a hang.
"""

from __future__ import annotations

import pytest
from test_ssh import pytestmark as needs_sshd
from test_ssh import sshd  # noqa: F401  (the fixture: one sshd for the session)

import labkit
from labkit.infra.hosts import Host, LocalHost, SSHHost


@pytest.fixture(params=["local", pytest.param("ssh", marks=needs_sshd)])
def host(request, tmp_path) -> Host:
    if request.param == "local":
        yield LocalHost()
        return
    with request.getfixturevalue("sshd").client(tmp_path) as ssh:
        yield SSHHost(ssh, "the loopback VM")


def test_output_exit_code_and_folder(host, tmp_path):
    done = host.run(["sh", "-c", 'pwd; echo "to stderr" >&2; exit 3'], cwd=str(tmp_path))
    assert (done.exit_code, done.stdout, done.stderr) == (3, f"{tmp_path}\n", "to stderr\n")
    assert done.seconds > 0


def test_a_missing_program_is_exit_code_127(host, tmp_path):
    done = host.run([str(tmp_path / "no-such-program")])
    assert done.exit_code == 127 and str(tmp_path / "no-such-program") in done.stderr


def test_a_missing_folder_is_a_failure_that_names_it(host, tmp_path):
    done = host.run(["true"], cwd=str(tmp_path / "gone"))
    assert done.exit_code != 0 and str(tmp_path / "gone") in done.stderr


def test_check_turns_a_failure_into_command_failed_with_its_last_words(host):
    with pytest.raises(labkit.CommandFailed, match=r"`sh -c .*` failed on .* \(exit code 4\): no disk\.") as caught:
        host.run(["sh", "-c", "echo 'no disk' >&2; exit 4"], check=True)
    assert caught.value.result.exit_code == 4
    assert host.run(["true"], check=True).exit_code == 0


def test_a_command_that_outlives_its_timeout_is_command_failed(host):
    with pytest.raises(labkit.CommandFailed, match="did not finish within 1 s"):
        host.run(["sleep", "30"], timeout=1)
