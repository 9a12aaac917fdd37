"""CI/CD over real SSH: what the OpenStack backend does between the VMs, on the loopback.

Production is a private sshd (Debian's, as in test_ssh.py) whose only authorised
key carries `restrict`, as the production VM's deploy user's does. labkit runs
production's set-up and reads its files over SSH (``SSHHost``, paramiko); the
development side clones and pushes with OpenSSH's client and the options the
OpenStack backend gives it (``git_over_ssh``: its own key only, a host key
recorded beforehand, never one trusted on first use). The hooks run in the
SSH session that git opens. Not here: the deploy user's git-shell and sudo.
"""

from __future__ import annotations

import getpass
import subprocess
import sys

import pytest
from test_ssh import Sshd
from test_ssh import pytestmark as needs_sshd

import labkit
from labkit.cicd._pipeline import INIT_STEPS, _set_up
from labkit.infra.hosts import LocalHost, Sides, SSHHost, git_over_ssh
from labkit.notebook.progress import Progress
from production_server.contract import PipelineConfig

pytestmark = needs_sshd


@pytest.fixture
def production_sshd(tmp_path):
    server = Sshd(tmp_path / "sshd")
    (server.folder / "authorized_keys").write_text("restrict " + (server.folder / "client_key.pub").read_text())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sides_for(server: Sshd, tmp_path, model_dir, data_dir, host_key: str) -> Sides:
    known_hosts = tmp_path / "development_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} ssh-ed25519 {host_key}\n")
    production = tmp_path / "production"
    return Sides(
        production=SSHHost(server.client(tmp_path), "the production server"),
        production_root=str(production), python=sys.executable, pythonpath=None, served_model=str(model_dir),
        url="http://127.0.0.1:9", data_dir=str(data_dir),
        development=LocalHost("the development server", {"LABKIT_DATA_DIR": str(data_dir)}),
        development_dir=str(tmp_path / "development"), dev_python=sys.executable,
        repo_url=f"{getpass.getuser()}@127.0.0.1:{production}/repo.git",
        clone_options=git_over_ssh(str(server.client_key), server.port, str(known_hosts)),
    )


def set_up(sides: Sides) -> labkit.cicd.Pipeline:
    config = PipelineConfig(name="ssh", deployment_id="test", url=sides.url, production=sides.production_root,
                            data_dir=sides.data_dir)
    steps = Progress(len(INIT_STEPS), "setting up CI/CD over SSH", "off")
    return labkit.cicd.Pipeline(_set_up(config, sides, "student", steps), sides, progress="off")


def branch_on_production(pipeline, branch: str) -> str:
    return pipeline.sides.production.run(["git", "rev-parse", "--verify", "--quiet", branch],
                                         cwd=str(pipeline.config.repo)).stdout.strip()


def test_ssh_host_passes_every_argument_through_the_remote_shell_unchanged(production_sshd, tmp_path):
    folder = tmp_path / "a folder; with 'quotes'"
    folder.mkdir()
    host = SSHHost(production_sshd.client(tmp_path), "vm", env={"GREETING": "hello $USER `id`"})
    done = host.run(["sh", "-c", 'printf "%s|" "$@" "$GREETING" "$(pwd)"', "sh", "a b", "it's", "$HOME", ";", "*"],
                    cwd=str(folder))
    assert (done.exit_code, done.stderr) == (0, "")
    assert done.stdout == f"a b|it's|$HOME|;|*|hello $USER `id`|{folder}|"
    assert host.run(["sh", "-c", "exit 4"]).exit_code == 4


def test_set_up_over_ssh_then_a_push_to_another_branch_is_stored_not_deployed(
        production_sshd, tmp_path, model_dir, data_dir):
    pipeline = set_up(sides_for(production_sshd, tmp_path, model_dir, data_dir, production_sshd.host_public_key))
    # Read over SSH: the hooks labkit installed, and no history before the first go-live.
    assert "-m production_server.cicd.hooks pre-receive --config" in pipeline.hooks()["pre-receive"].text
    assert pipeline.history() == []
    ssh_command = subprocess.run(["git", "config", "core.sshCommand"], cwd=pipeline.development,
                                 capture_output=True, text=True).stdout
    assert "StrictHostKeyChecking=yes" in ssh_command and "IdentitiesOnly=yes" in ssh_command

    (pipeline.development / "model" / "NOTES.md").write_text("an experiment\n")
    result = pipeline.publish("An experiment, not for production", branch="experiment")
    assert not result.deployed and result.release is None
    assert "[labkit gate] branch experiment: accepted, not deployed" in result.output
    assert branch_on_production(pipeline, "experiment") == result.commit


def test_a_broken_model_pushed_over_ssh_is_refused_with_the_gates_reason(
        production_sshd, tmp_path, model_dir, data_dir):
    pipeline = set_up(sides_for(production_sshd, tmp_path, model_dir, data_dir, production_sshd.host_public_key))
    master = branch_on_production(pipeline, "master")
    (pipeline.development / "model" / "model.keras").write_bytes(b"not a Keras file at all")
    with pytest.raises(labkit.PushRejected) as rejected:
        pipeline.publish("a broken model file")
    assert "model.keras does not load" in rejected.value.reason
    assert branch_on_production(pipeline, "master") == master


def test_a_production_host_key_other_than_the_recorded_one_is_refused(production_sshd, tmp_path, model_dir, data_dir):
    impostor = Sshd(tmp_path / "impostor")  # only for its host key: what a man in the middle would show
    with pytest.raises(labkit.CICDError, match="Cloning production's repository failed.*Host key verification failed"):
        set_up(sides_for(production_sshd, tmp_path, model_dir, data_dir, impostor.host_public_key))
