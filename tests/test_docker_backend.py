"""The docker backend without a Docker engine: the real docker CLI where it fails, a fake one elsewhere.

The fake ``docker`` is a small Python script put first on PATH: it records
its argv and replays recorded output of real Compose commands
(tests/recordings/docker/*.json; each file names its source). Building the
image and running containers are not tested here: no engine can run here.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import pytest

import labkit
from labkit import backends
from labkit._errors import DeployError, PrerequisiteMissing
from labkit._state import RunDir
from labkit.backends.base import ProcessRow
from labkit.backends.docker.backend import DockerBackend
from labkit.infra import compose as _compose
from labkit.infra.compose import Compose, parse_ps
from labkit.infra.hosts import Result, SSHHost
from labkit.notebook.progress import Progress

RECORDINGS = Path(__file__).parent / "recordings" / "docker"
HINT = "--backend local"


def recording(name: str) -> dict:
    return json.loads((RECORDINGS / name).read_text())


FAKE_DOCKER = textwrap.dedent('''\
    import json, os, sys
    argv = sys.argv[1:]
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\\n")
    # The command without Compose's global options: "compose ps --all --format json".
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--project-name", "--file", "--env-file", "--profile"):
            skip = True
        else:
            words.append(word)
    said = " ".join(words)
    for rule in json.load(open(os.environ["FAKE_DOCKER_RULES"])):
        wanted = rule["command"].replace(" --all", "")
        if said.replace(" --all", "").startswith(wanted):
            sys.stdout.write(rule["stdout"])
            sys.stderr.write(rule["stderr"])
            sys.exit(rule["exit"])
''')


class FakeDocker:
    """A ``docker`` executable first on PATH that replays recordings and remembers every call."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.bin = tmp_path / "fake-bin"
        self.bin.mkdir()
        script = self.bin / "docker"
        script.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self.log = tmp_path / "docker-calls.jsonl"
        self.rules_file = tmp_path / "docker-rules.json"
        self.rules: list[dict] = []
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_DOCKER_LOG", str(self.log))
        monkeypatch.setenv("FAKE_DOCKER_RULES", str(self.rules_file))
        self.replay()

    def replay(self, *rules: dict) -> None:
        self.rules = list(rules) + self.rules
        self.rules_file.write_text(json.dumps(self.rules))

    def calls(self) -> list[list[str]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def engine_ok() -> list[dict]:
    """Compose answers its version and the daemon answers: what a working machine says."""
    return [recording("compose-version.json"),
            {"command": "info --format {{.ServerVersion}}", "exit": 0, "stdout": "28.2.2\n", "stderr": ""}]


def as_project(project: str, containers: list[tuple[str, int, str, str]]) -> str:
    """The recorded Compose 2.38 lines, re-labelled with our project's services (the other fields as recorded)."""
    healthy, plain = recording("compose-ps-lines.json")["stdout"].splitlines()
    lines = []
    for service, number, state, health in containers:
        record = json.loads(healthy if health else plain)
        name = f"{project}-{service}-{number}"
        record.update(Name=name, Names=name, Project=project, Service=service, State=state, Health=health)
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


@pytest.fixture
def fake_docker(tmp_path, monkeypatch) -> FakeDocker:
    return FakeDocker(tmp_path, monkeypatch)


# -- the real docker CLI of this machine ----------------------------------

def test_the_real_docker_cli_says_what_is_missing_and_suggests_the_local_backend():
    compose = Compose("labkit-test", "/nonexistent/compose.yaml", "/nonexistent/.env")
    try:
        compose.check()
    except (PrerequisiteMissing, DeployError) as exc:
        message = str(exc)
    else:
        pytest.fail("docker compose and a Docker daemon answer here: this test is written for a machine without them")
    assert HINT in message
    real = shutil.which("docker")
    if real is None:
        assert "Docker is not installed" in message
    else:
        # This machine: docker CLI 28.2.2, no compose plugin, no daemon.
        assert "Compose v2 plugin" in message or "daemon does not answer" in message


def test_the_real_docker_cli_reports_no_daemon():
    compose = Compose("labkit-test", "/nonexistent/compose.yaml", "/nonexistent/.env")
    try:
        compose.check_daemon()
    except DeployError as exc:
        assert "does not answer" in str(exc) and HINT in str(exc)
        assert "Traceback" not in str(exc)
    else:
        pytest.fail("a Docker daemon answers here: this test is written for a machine without one")


# -- prerequisites against recorded failures ------------------------------

def test_no_compose_plugin_is_a_prerequisite_missing(fake_docker, settings):
    fake_docker.replay(recording("no-compose-plugin.json"))
    with pytest.raises(PrerequisiteMissing) as caught:
        labkit.deploy("docker", name="nocompose", settings=settings)
    assert "docker-compose-v2" in str(caught.value) and HINT in str(caught.value)
    assert "unknown command: docker compose" in str(caught.value)
    assert not RunDir(settings.deployments_dir, "nocompose").path.exists()


def test_no_daemon_is_a_deploy_error(fake_docker, settings):
    fake_docker.replay(recording("compose-version.json"), recording("no-daemon.json"))
    with pytest.raises(DeployError) as caught:
        labkit.deploy("docker", name="nodaemon", settings=settings)
    assert "Cannot connect to the Docker daemon" in str(caught.value)
    assert "systemctl start docker" in str(caught.value) and HINT in str(caught.value)
    assert [c[:2] for c in fake_docker.calls()] == [["compose", "version"], ["info", "--format"]]


def test_permission_denied_says_docker_group(fake_docker):
    fake_docker.replay(recording("compose-version.json"), recording("permission-denied.json"))
    with pytest.raises(DeployError, match="docker group"):
        Compose("p", "f", "e").check()


def test_no_docker_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteMissing, match="Docker is not installed"):
        Compose("p", "f", "e").check()


# -- ps output, both shapes -----------------------------------------------

def test_ps_as_a_json_array_before_compose_2_21():
    rows = parse_ps(recording("compose-ps-array.json")["stdout"], "example")
    assert [(c.role, c.service, c.state, c.alive, c.health) for c in rows] == [
        ("bar-1", "bar", "exited", False, ""), ("foo-1", "foo", "running", True, "")]
    assert rows[0].exit_code == 0


def test_ps_as_json_lines_from_compose_2_21_on():
    rows = parse_ps(recording("compose-ps-lines.json")["stdout"], "relay")
    assert [(c.role, c.state, c.health) for c in rows] == [("postgres-1", "running", "healthy"),
                                                           ("relay-1", "running", "")]
    assert (rows[0].name, rows[0].alive) == ("relay-postgres-1", True)


def test_ps_that_is_not_json_is_a_clear_error():
    with pytest.raises(DeployError, match="Compose v2"):
        parse_ps("NAME  IMAGE  COMMAND\nweb-1 x y\n", "p")
    assert parse_ps("", "p") == [] and parse_ps("[]\n", "p") == []


# -- a whole up, as far as it goes without an engine ----------------------

def test_up_stages_a_private_project_and_runs_the_compose_commands(fake_docker, settings, tmp_path):
    fake_docker.replay(*engine_ok())
    backend = DockerBackend()
    run = RunDir(settings.deployments_dir, "task-2")
    quick = labkit.Settings(**{**settings.__dict__, "start_timeout": 1.0})
    lines = tmp_path / "progress.txt"
    with open(lines, "w") as stream:
        progress = Progress(5, "test", "lines", stream)
        # No container answers /healthz here: up gets as far as the last step and says so.
        with pytest.raises(DeployError, match="did not report 2 worker"):
            backend.up(run, quick, 2, progress)
    try:
        state = run.read()
        project = state["compose"]
        directory = run.path / "compose"
        env = directory / ".env"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        values = dict(line.split("=", 1) for line in env.read_text().splitlines())
        assert values["BROKER_PASSWORD"] == project["password"] and len(values["BROKER_PASSWORD"]) >= 32
        assert values["BROKER_USER"].startswith("lab-") and "guest" not in env.read_text()
        assert values["WEB_BIND"] == "127.0.0.1" and state["url"] == f"http://127.0.0.1:{values['WEB_PORT']}"
        assert {"production_server/Dockerfile", "production_server/compose.yaml", "model/metadata.json",
                "production_server/requirements.txt"} <= {str(p.relative_to(directory)) for p in directory.rglob("*")}

        base = ["compose", "--project-name", "labkit-task-2", "--file", project["file"], "--env-file", str(env)]
        assert fake_docker.calls()[2:] == [base + ["build"],
                                          base + ["up", "--detach", "--no-build", "--wait", "--scale", "worker=2"]]
        assert [s.what for s in progress.done] == backend.plan_steps(2)[:4]

        backend.down(run, state)
        assert fake_docker.calls()[-1] == (base[:-2] + ["--env-file", str(env), "--profile", "monitoring", "down",
                                                        "--volumes", "--remove-orphans"])
    finally:
        run.remove()


def test_a_second_deployment_has_its_own_project_and_password(fake_docker, settings):
    fake_docker.replay(*engine_ok())
    quick = labkit.Settings(**{**settings.__dict__, "start_timeout": 0.5})
    seen = []
    for name in ("one", "two"):
        run = RunDir(quick.deployments_dir, name)
        with pytest.raises(DeployError):
            DockerBackend().up(run, quick, 1, Progress(5, "t", "off"))
        seen.append(run.read()["compose"])
        run.remove()
    assert seen[0]["name"] != seen[1]["name"] and seen[0]["password"] != seen[1]["password"]


def test_deploy_cleans_up_after_a_failed_up(fake_docker, settings):
    fake_docker.replay(*engine_ok(), recording("port-allocated.json"))
    with pytest.raises(DeployError, match="port is already allocated"):
        labkit.deploy("docker", name="clash", settings=settings)
    assert fake_docker.calls()[-1][-3:] == ["down", "--volumes", "--remove-orphans"]
    assert not RunDir(settings.deployments_dir, "clash").exists()


# -- a running deployment: status, logs, scale, down ----------------------

@pytest.fixture
def recorded_state(settings, tmp_path) -> tuple[RunDir, dict]:
    run = RunDir(settings.deployments_dir, "lab")
    run.create()
    env = tmp_path / "project.env"
    env.write_text("BROKER_PASSWORD=s3cr3t-Pa55word-of-this-deployment\n")
    state = {"id": "x", "name": "lab", "backend": "docker", "url": "http://127.0.0.1:9",
             "compose": {"name": "labkit-lab", "file": str(tmp_path / "compose.yaml"), "env_file": str(env),
                         "password": "s3cr3t-Pa55word-of-this-deployment"}}
    run.write(state)
    yield run, state
    run.remove()


def test_processes_show_containers_with_state_and_health(fake_docker, recorded_state):
    run, state = recorded_state
    fake_docker.replay({"command": "compose ps --format json", "exit": 0, "stderr": "", "stdout": as_project(
        "labkit-lab", [("worker", 2, "running", "starting"), ("web", 1, "running", "healthy"),
                       ("rabbit", 1, "running", "healthy"), ("worker", 1, "exited", "")])})
    backend = DockerBackend()
    rows = backend.processes(state)
    assert [(r["role"], r["state"], r["health"], r["alive"]) for r in rows] == [
        ("rabbit-1", "running", "healthy", True), ("web-1", "running", "healthy", True),
        ("worker-1", "exited", "-", False), ("worker-2", "running", "starting", True)]
    assert all(set(r) >= ProcessRow.__required_keys__ for r in rows)  # the keys every backend gives
    assert backend.running(state)
    assert fake_docker.calls()[-1][-4:] == ["ps", "--all", "--format", "json"]


def test_not_running_when_the_web_container_is_gone_or_docker_fails(fake_docker, recorded_state):
    _, state = recorded_state
    fake_docker.replay({"command": "compose ps", "exit": 0, "stderr": "",
                        "stdout": as_project("labkit-lab", [("web", 1, "exited", "")])})
    assert not DockerBackend().running(state)
    fake_docker.replay(recording("no-daemon.json") | {"command": "compose ps"})
    assert not DockerBackend().running(state)


def test_the_password_never_shows_in_status_or_logs(fake_docker, recorded_state):
    run, state = recorded_state
    password = state["compose"]["password"]
    # A log line that carries the URL unmasked, as a misconfigured client might print it.
    fake_docker.replay(
        {"command": "compose logs --no-color --tail 5 worker", "exit": 0, "stderr": "",
         "stdout": f"worker-1  | consumer: Cannot connect to amqp://lab-1234:{password}@rabbit:5672//\n"},
        {"command": "compose ps", "exit": 0, "stderr": "", "stdout": as_project("labkit-lab", [("web", 1, "running",
                                                                                                  "healthy")])})
    backend = DockerBackend()
    logs = backend.logs(run, state, 5)
    assert set(logs) == {"rabbit", "web", "proxy", "worker"}
    assert "Cannot connect to amqp://lab-1234:********@rabbit" in logs["worker"]
    assert password not in json.dumps(logs) and password not in json.dumps(backend.processes(state))
    assert ["logs", "--no-color", "--tail", "5", "rabbit"] == fake_docker.calls()[0][-5:]


def test_a_failing_command_shows_its_error_without_the_password(fake_docker, recorded_state):
    run, state = recorded_state
    password = state["compose"]["password"]
    fake_docker.replay({"command": "compose up", "exit": 1, "stdout": "",
                        "stderr": f"service worker: amqp://u:{password}@rabbit refused\n"})
    with pytest.raises(labkit.LabkitError) as caught:
        DockerBackend().scale(run, state, 3)
    assert type(caught.value).__name__ == "ScaleError"
    assert password not in str(caught.value) and "refused" in str(caught.value)
    assert fake_docker.calls()[-1][-6:] == ["up", "--detach", "--no-build", "--no-recreate", "--scale", "worker=3"]


def test_down_without_a_staged_project_runs_nothing(fake_docker, settings):
    DockerBackend().down(RunDir(settings.deployments_dir, "never"), {"name": "never"})
    assert fake_docker.calls() == []


# -- the same commands over SSH -------------------------------------------

class RecordingSSH:
    """Stands in for ``infra.ssh.SSH``: keeps the command lines it is asked to run (SSH itself: test_ssh.py)."""

    def __init__(self, answers: dict[str, Result]):
        self.answers = answers
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60, check: bool = False) -> Result:
        self.commands.append(command)
        return next((r for k, r in self.answers.items() if k in command), Result(0, "", "", 0.0))


def test_the_vm_project_runs_over_ssh_with_shell_quoting():
    lines = recording("compose-ps-lines.json")
    ssh = RecordingSSH({"ps --all": Result(0, as_project("labkit-lab", [("web", 1, "running", "healthy")]), "", 0.1)})
    compose = Compose.for_vm("lab", SSHHost(ssh, "the server VM"))
    compose.scale(3, timeout=60)
    assert [c.role for c in compose.ps()] == ["web-1"]
    assert ssh.commands[0] == ("docker compose --project-name labkit-lab --file "
                               "/opt/labkit/app/production_server/compose.yaml --env-file /etc/labkit/compose.env "
                               "up --detach --no-build --no-recreate --scale worker=3")
    assert lines["exit"] == 0


def test_the_backend_is_registered_and_offered_by_the_cli():
    assert "docker" in backends.NAMES and isinstance(backends.get("docker"), DockerBackend)
    from click.testing import CliRunner

    from labkit.cli import labkit as root

    help_text = CliRunner().invoke(root, ["up", "--help"]).output
    assert "docker" in help_text
    assert _compose.project_name("task-2") == "labkit-task-2"


def test_a_task_2_vm_scales_its_worker_containers_over_ssh_with_sudo():
    from labkit.backends.openstack.backend import ComposeOverSSH

    logs = Result(0, "worker-1  | connected to amqp://lab-x:s3cret-pw@rabbit:5672//\n", "", 0.1)
    ssh = RecordingSSH({"logs": logs})
    services = ComposeOverSSH(ssh, "lab", secrets=("s3cret-pw",))
    services.scale_workers(1, 3)
    assert ssh.commands[0] == ("sudo docker compose --project-name labkit-lab --file "
                               "/opt/labkit/app/production_server/compose.yaml --env-file /etc/labkit/compose.env "
                               "up --detach --no-build --no-recreate --scale worker=3")
    shown = "\n".join(services.logs(20).values())
    assert "connected to" in shown and "s3cret-pw" not in shown
    with pytest.raises(labkit.ScaleError, match="single-server"):
        services.seal()


def test_the_onnx_engine_reaches_the_containers_through_the_env_file(fake_docker, settings):
    fake_docker.replay(*engine_ok())
    quick = labkit.Settings(**{**settings.__dict__, "start_timeout": 0.5, "engine": "onnx"})
    run = RunDir(quick.deployments_dir, "onnx")
    try:
        with pytest.raises(DeployError, match="did not report"):
            DockerBackend().up(run, quick, 1, Progress(5, "t", "off"))
        env = (run.path / "compose" / ".env").read_text()
        assert "MODEL_ENGINE=onnx" in env.splitlines()
        assert "onnxruntime" in (run.path / "compose" / "production_server" / "requirements.txt").read_text()
    finally:
        run.remove()
