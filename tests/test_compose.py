"""The Compose stack and its image, read as files: valid, private by default, the same server as labkit's.

No Docker engine runs here, so nothing is built or started; what can be
checked without one is: the Compose Specification's own JSON schema
(../shared/schemas/compose-spec.json), what is published and where, the
credentials, the Dockerfile's user, health check and commands, the build
context labkit stages, and the Task 2 VM template's commands.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import re
import shlex
import subprocess
import tarfile

import pytest
import yaml
from conftest import REPO

from labkit.backends.local.backend import LocalBackend
from labkit.infra import cloudinit
from labkit.infra import compose as _compose
from labkit.infra.hosts import LocalHost

SERVER = REPO / "production_server"
SCHEMA_FILE = REPO.parent / "shared" / "schemas" / "compose-spec.json"
BROKER_PORTS = {5672, 15672, 25672, 4369}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((SERVER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    # Instructions, with continuation lines joined and comments left out.
    text = re.sub(r"\\\n\s*", " ", (SERVER / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def interpolate(value: str) -> str:
    """What Compose makes of ${VAR:-default} with VAR unset; ${VAR:?...} stays a marker of a required value."""
    value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"<\1>", value)


def published(service: dict) -> list[tuple[str, int]]:
    """(host address, container port) of each published port, short syntax."""
    out = []
    for entry in service.get("ports", []):
        host_ip, _, target = interpolate(entry).rsplit(":", 2)
        out.append((host_ip, int(target)))
    return out


def test_compose_file_follows_the_compose_specification(compose):
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert errors == []
    assert "version" not in compose  # obsolete in the Compose Specification
    assert set(compose["services"]) == {"rabbit", "web", "proxy", "worker", "flower"}
    assert tuple(s for s in compose["services"] if s != "flower") == _compose.SERVICES


def test_the_schema_check_catches_mistakes(compose):
    import jsonschema

    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["deploy_typo"] = 1
    assert list(jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text())).iter_errors(broken))


def test_only_the_proxys_port_is_published_and_on_the_loopback_by_default(compose):
    services = compose["services"]
    for name in ("rabbit", "web", "worker"):
        assert "ports" not in services[name], name  # gunicorn, too, only behind nginx
    assert published(services["proxy"]) == [("127.0.0.1", 5100)]
    assert services["proxy"]["ports"] == ["${WEB_BIND:-127.0.0.1}:${WEB_PORT:-5100}:5100"]
    for name, service in services.items():
        for host_ip, target in published(service):
            assert target not in BROKER_PORTS, name
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip}"
        assert "network_mode" not in service, name
    assert services["flower"]["profiles"] == list(_compose.PROFILES)


def test_the_proxy_serves_labkits_nginx_site_in_front_of_the_web_service(compose):
    from labkit.infra import nginx as _nginx

    proxy = compose["services"]["proxy"]
    assert proxy["volumes"] == ["./nginx.conf:/etc/nginx/conf.d/default.conf:ro"]
    assert (SERVER / "nginx.conf").read_text() == _nginx.compose_conf(), (
        "production_server/nginx.conf is not labkit/infra/nginx.py's site: rewrite it with "
        "python -c 'from labkit.infra import nginx; nginx.COMPOSE_CONF.write_text(nginx.compose_conf())'")
    assert "server web:5100;" in _nginx.compose_conf() and "listen 0.0.0.0:5100 " in _nginx.compose_conf()
    assert proxy["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert proxy["cap_drop"] == ["ALL"] and set(proxy["cap_add"]) == {"CHOWN", "SETGID", "SETUID"}


def test_workers_scale_and_wait_for_a_healthy_broker(compose):
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    for name in ("web", "worker", "flower"):
        assert services[name]["depends_on"] == {"rabbit": {"condition": "service_healthy"}}, name
    assert services["rabbit"]["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    assert "inspect ping" in worker["healthcheck"]["test"][1]
    # The web container uses the image's own HEALTHCHECK.
    assert services["web"]["image"] == worker["image"] and services["web"]["build"] == worker["build"]


def test_no_default_credentials_and_no_secret_in_the_file(compose):
    text = (SERVER / "compose.yaml").read_text()
    assert "guest" not in json.dumps(compose).lower()  # the comments may name it, the settings may not
    rabbit = compose["services"]["rabbit"]["environment"]
    # Required (":?"), never defaulted: without labkit's .env, Compose refuses to start.
    assert rabbit["RABBITMQ_DEFAULT_USER"].startswith("${BROKER_USER:?")
    assert rabbit["RABBITMQ_DEFAULT_PASS"].startswith("${BROKER_PASSWORD:?")
    for name in ("web", "worker"):
        url = compose["services"][name]["environment"]["SERVER_BROKER_URL"]
        assert re.fullmatch(r"amqp://\$\{BROKER_USER:\?[^}]*\}:\$\{BROKER_PASSWORD:\?[^}]*\}@rabbit:5672//", url)
    assert "$$SERVER_BROKER_URL" in compose["services"]["worker"]["healthcheck"]["test"][1]
    assert not re.search(r"debug|FLASK_|--reload", text, re.I)


def test_web_and_worker_get_the_model_engine_with_keras_by_default(compose):
    for name in ("web", "worker"):
        assert interpolate(compose["services"][name]["environment"]["SERVER_MODEL_ENGINE"]) == "keras"


def test_dockerfile_runs_as_a_user_with_a_health_check(dockerfile):
    final = dockerfile[max(i for i, line in enumerate(dockerfile) if line.startswith("FROM ")):]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") for line in final)
    assert not any(re.search(r"debug|FLASK_|--reload", line, re.I) for line in dockerfile)
    assert final[0].startswith("FROM ${PYTHON_IMAGE}") and "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile


def test_dependencies_install_in_their_own_layer_from_the_pinned_file(dockerfile):
    steps = [line for line in dockerfile if line.split()[0] in ("COPY", "RUN")]
    install = next(i for i, line in enumerate(steps) if "pip install" in line)
    assert steps[install - 1] == "COPY production_server/requirements.txt /app/requirements.txt"
    assert steps[install] == "RUN pip install -r /app/requirements.txt"
    assert steps[install + 1].startswith("COPY production_server/ ")
    assert steps[-1] == "COPY model/ /app/model/"  # code in the image, no bind mount; model last


def exec_form(line: str) -> list[str]:
    return json.loads(line.split(None, 1)[1])


def test_the_containers_run_the_local_backends_commands(dockerfile, compose):
    local = LocalBackend()
    web = exec_form(next(line for line in dockerfile if line.startswith("CMD ")))
    expected = local._web_command("0.0.0.0:5100")
    assert web == ["gunicorn", *expected[3:]]
    worker = compose["services"]["worker"]["command"]
    expected = local._worker_command({"name": "lab"}, 1)
    assert worker[0] == "celery" and worker[1:] == [
        "worker@%h" if arg == "worker-1.lab@%h" else arg for arg in expected[3:]]


def test_the_staged_context_holds_what_the_dockerfile_copies_and_nothing_else(model_dir, data_dir, tmp_path,
                                                                                   dockerfile):
    from labkit.backends.docker.backend import stage

    release = cloudinit.release(model_dir)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(release.b64)), mode="r:gz") as tar:
        names = tar.getnames()
    # What labkit stages beside the release: data/, with the data set when this host has it.
    stage(tmp_path / "staged", release, {"BROKER_USER": "u"}, data_dir=data_dir)
    assert sorted(p.name for p in (tmp_path / "staged" / "data").iterdir()) == ["pima-indians-diabetes.csv"]
    names += ["data", "data/pima-indians-diabetes.csv"]
    rules = [l.strip() for l in (SERVER / "Dockerfile.dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]

    def sent(path: str) -> bool:
        keep = True
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            pattern = pattern.replace("**/", "*")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
                keep = negate
        return keep

    context = {n for n in names if sent(n)}
    for line in dockerfile:
        if line.startswith("COPY ") and "--from" not in line:
            source = line.split()[1].rstrip("/")
            assert any(n == source or n.startswith(source + "/") for n in context), line
    assert "model/model.keras" in context and "production_server/Dockerfile" in context
    assert "data/pima-indians-diabetes.csv" in context
    assert "requirements.txt" not in context  # the root copy: the image installs production_server's


# -- the Task 2 VM -------------------------------------------------------------

@pytest.fixture(scope="module")
def vm(model_dir):
    secrets = cloudinit.Secrets.generate()
    text = cloudinit.render("docker-server", model_dir, deployment="task-2", workers=3, secrets=secrets)
    return secrets, yaml.safe_load(text), text


def test_vm_writes_the_env_labkit_would_write(vm, model_dir):
    import hashlib

    secrets, document, _ = vm
    [env] = [f for f in document["write_files"] if f["path"] == _compose.VM_ENV_FILE]
    assert env["permissions"] == "0600"
    written = dict(line.split("=", 1) for line in env["content"].splitlines())
    assert written == _compose.env_values(
        deployment="task-2", broker_user=secrets.broker_user, broker_password=secrets.broker_password,
        model_version=cloudinit.release(model_dir).model_version, web_bind="0.0.0.0", web_port=5100,
        predict_timeout=5, chart_version=cloudinit.CHART_VERSION,
        chart_sha256=hashlib.sha256(cloudinit.CHART_FILE.read_bytes()).hexdigest())


def test_vm_runs_the_compose_commands_labkit_runs(vm):
    secrets, document, text = vm
    compose = _compose.Compose.for_vm("task-2", LocalHost())
    commands = " ".join(document["runcmd"])
    assert shlex.join(compose.build_argv()) + " ||" in commands
    assert shlex.join(compose.up_argv(3)) + " ||" in commands
    assert secrets.broker_password not in commands
    holders = [f["path"] for f in document["write_files"] if secrets.broker_password in f["content"]]
    assert holders == [_compose.VM_ENV_FILE]


def test_vm_installs_docker_and_compose_v2_from_ubuntus_or_debians_packages(vm, tmp_path):
    _, document, text = vm
    apt = document["runcmd"][0]
    assert "apt-get install" in apt and "docker.io $compose" in apt and apt.rstrip().endswith("|| exit 1")
    assert not re.search(r"curl\s+(-\S+\s+)*\S*(docker|compose)|get\.docker\.com|github\.com/docker", text)
    # The choice, run by a real shell against an apt-cache that knows Ubuntu's package, and one that does not.
    command = shlex.split(apt.split('"install system packages"', 1)[1].rsplit("||", 1)[0])[2]
    for distribution, known, wanted in (("ubuntu", 0, "docker-compose-v2"), ("debian", 100, "docker-compose docker-cli")):
        bin_dir = tmp_path / distribution
        bin_dir.mkdir()
        (bin_dir / "apt-cache").write_text(f"#!/bin/sh\nexit {known}\n")
        (bin_dir / "apt-get").write_text('#!/bin/sh\n[ "$1" = update ] || echo "$@" > "$(dirname "$0")/installed"\n')
        (bin_dir / "docker").write_text("#!/bin/sh\necho 'Docker Compose version v2.26.1'\n")
        for tool in bin_dir.iterdir():
            tool.chmod(0o755)
        done = subprocess.run(["sh", "-c", command], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        installed = (bin_dir / "installed").read_text().split()
        assert installed[-len(wanted.split()) - 2:] == ["docker.io", *wanted.split(), "curl"], installed
