"""The cloud-init templates: valid for cloud-init, small enough for Nova, and what they run works.

No VM boots here. What can be checked without one is checked for real: the
schema (cloud-init's own, from ../shared/schemas), the size with the real
server and model inside, the step runner script (run with bash), the release
archive (unpacked, imported, its model loaded) and where the secrets go.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets as secrets_module  # the `secrets` fixture is the deployment's generated ones
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement

import labkit
from labkit.infra import cloudinit

SCHEMA_FILE = REPO.parent / "shared" / "schemas" / "cloud-config-v1.schema.json"
TEMPLATES = list(cloudinit.templates())
# (template, baked): every template as for a stock image; those labkit can bake an image for, also baked.
VARIANTS = [pytest.param(n, False, id=n) for n in TEMPLATES] + [
    pytest.param(n, True, id=f"{n}-baked") for n in ("single-server", "worker")]


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA_FILE.is_file():
        pytest.fail(f"cloud-init's schema is not at {SCHEMA_FILE}: the tests read it from ../shared/schemas.")
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def secrets() -> cloudinit.Secrets:
    return cloudinit.Secrets.generate()


def rendered(name, model_dir, **kwargs) -> tuple[str, dict]:
    text = cloudinit.render(name, model_dir, **kwargs)
    return text, yaml.safe_load(text)


def files_of(document: dict) -> dict[str, dict]:
    return {f["path"]: f for f in document["write_files"]}


@pytest.mark.parametrize("name, baked", VARIANTS)
@pytest.mark.parametrize("workers", [1, 3])
def test_template_validates_and_fits(name, workers, baked, model_dir, schema, secrets, report):
    text = cloudinit.render(name, model_dir, workers=workers, secrets=secrets, broker_host="10.0.0.5", baked=baked)
    assert cloudinit.check(text, schema) == []
    assert cloudinit.encoded_size(text) <= cloudinit.USERDATA_LIMIT
    report(f"cloud-init {name}{' (baked image)' if baked else ''}, {workers} worker(s): "
           f"{cloudinit.encoded_size(text)} of 65535 bytes after gzip and base64")


def test_the_schema_check_catches_mistakes(model_dir, schema):
    text = cloudinit.render("single-server", model_dir)
    broken = re.sub(r"^final_message: .*$", "final_message: 42\nruncmd_typo: [1]", text, flags=re.M)
    assert cloudinit.check(broken, schema) == [
        "(top): Additional properties are not allowed ('runcmd_typo' was unexpected)",
        "final_message: 42 is not of type 'string'",
    ]
    too_big = text + "# " + secrets_module.token_urlsafe(30_000) + "\n"  # gzip cannot shrink random text
    assert any("more than Nova's 65535" in p for p in cloudinit.check(too_big))


def test_user_data_travels_gzip_compressed_as_cloud_init_reads_it(model_dir):
    text = cloudinit.render("single-server", model_dir)
    sent = cloudinit.encode(text)
    assert base64.b64decode(sent)[:2] == b"\x1f\x8b"  # gzip's magic, which cloud-init looks for
    assert cloudinit.decode(sent) == text and cloudinit.encode(text) == sent  # reproducible
    # Without gzip the release archive would be base64-encoded twice, past Nova's limit.
    assert len(base64.b64encode(text.encode())) > len(sent)


@pytest.mark.parametrize("name, baked", VARIANTS)
def test_steps_are_numbered_one_to_n(name, baked, model_dir):
    _, document = rendered(name, model_dir, baked=baked)
    steps = [re.match(r"/opt/labkit/step (\d+) (\d+) \"([^\"]+)\"", cmd) for cmd in document["runcmd"]]
    assert all(steps), document["runcmd"]
    numbers = [(int(m[1]), int(m[2])) for m in steps]
    assert numbers == [(k, len(steps)) for k in range(1, len(steps) + 1)]
    # A failed step stops the rest: each command ends with "|| exit 1".
    assert all(cmd.endswith("|| exit 1") for cmd in document["runcmd"])
    # cloud-init prints it after a FAILED step too: it must not say that all went well.
    assert "[labkit]" in document["final_message"] and "finished" not in document["final_message"]
    assert "markers" in document["final_message"]


def test_step_runner_prints_markers_that_labkit_parses(model_dir, tmp_path):
    _, document = rendered("single-server", model_dir)
    runner = tmp_path / "step"
    runner.write_text(files_of(document)["/opt/labkit/step"]["content"])
    ok = subprocess.run(["bash", str(runner), "2", "5", "say hello", "echo", "hello"], capture_output=True, text=True)
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[0] == "hello"
    [step] = labkit.parse_markers(ok.stdout)
    assert (step.index, step.total, step.what) == (2, 5, "say hello")

    failed = subprocess.run(["bash", str(runner), "3", "5", "break", "sh", "-c", "exit 7"], capture_output=True, text=True)
    assert failed.returncode == 7
    assert labkit.parse_markers(failed.stdout) == []
    from labkit.notebook.progress import failure

    # As it would look on the console, prefixed by journald.
    assert failure(f"[  41.2] cloud-init[901]: {failed.stdout}") == "step 3/5 (break) failed: exit 7 after 0.0s"


def test_the_release_is_the_server_and_the_model_and_runs(model_dir, tmp_path):
    _, document = rendered("single-server", model_dir)
    archive = base64.b64decode(files_of(document)["/opt/labkit/release.tar.gz"]["content"])
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path, filter="data")
    assert {"requirements.txt", "model/model.keras", "model/metadata.json",
            "production_server/__init__.py", "production_server/worker.py"} <= set(names)
    assert not any("__pycache__" in n or "vendor" in n for n in names)
    # The unpacked code imports and loads the unpacked model, as the VM's services will.
    code = ("from production_server import engines; e = engines.load('model', 'keras'); "
            "print(e.version, e.predict_proba([[1, 85, 66, 29, 0, 26.6, 0.351, 31]])[0])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    version_seen, probability = done.stdout.split()
    assert version_seen == json.loads((model_dir / "metadata.json").read_text())["version"]
    assert 0.0 <= float(probability) <= 1.0


def test_only_a_task_2_vm_gets_what_builds_the_containers(model_dir):
    def names(template: str) -> set[str]:
        _, document = rendered(template, model_dir)
        archive = base64.b64decode(files_of(document)["/opt/labkit/release.tar.gz"]["content"])
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            return {Path(n).name for n in tar.getnames()}

    assert cloudinit.CONTAINER_FILES <= names("docker-server")
    assert not cloudinit.CONTAINER_FILES & names("single-server")
    assert not cloudinit.CONTAINER_FILES & names("worker")


def test_the_release_is_reproducible(model_dir):
    assert cloudinit.release(model_dir).b64 == cloudinit.release(model_dir).b64


def test_secrets_only_where_they_belong(model_dir, secrets):
    text, document = rendered("single-server", model_dir, secrets=secrets)
    holders = {path for path, f in files_of(document).items() if secrets.broker_password in f.get("content", "")}
    assert holders == {"/etc/labkit/server.env", "/opt/labkit/rabbitmq/configure"}
    for path in holders:
        assert files_of(document)[path]["permissions"] in ("0600", "0700")
    assert secrets.broker_password not in " ".join(document["runcmd"])
    assert "guest" not in files_of(document)["/etc/labkit/server.env"]["content"]
    assert "rabbitmqctl delete_user guest" in files_of(document)["/opt/labkit/rabbitmq/configure"]["content"]

    placeholder, _ = rendered("single-server", model_dir)
    assert secrets.broker_password not in placeholder and "BROKER_PASSWORD" in placeholder


def test_single_server_listens_on_5100_and_keeps_the_broker_off_the_public_side(model_dir, tmp_path):
    _, document = rendered("single-server", model_dir, workers=3)
    files = files_of(document)
    # nginx on 5100 in front of gunicorn's unix socket, with the local backend's own site; no default site on 80.
    web = files["/etc/systemd/system/labkit-web.service"]["content"]
    assert "--bind unix:/run/labkit-web/gunicorn.sock" in web and "RuntimeDirectory=labkit-web" in web
    site = files["/etc/nginx/conf.d/labkit.conf"]["content"]
    assert "listen 0.0.0.0:5100 " in site and "server unix:/run/labkit-web/gunicorn.sock;" in site
    assert "return 413 '{" in site and "client_header_timeout 5s;" in site
    start = next(cmd for cmd in document["runcmd"] if '"start the services"' in cmd)
    assert "rm -f /etc/nginx/sites-enabled/default" in start and "nginx.service" in start
    assert files["/opt/labkit/rabbitmq/rabbitmq.conf"]["content"] == "listeners.tcp.1 = 127.0.0.1:5672\n"
    env = files["/etc/rabbitmq/rabbitmq-env.conf"]["content"]
    # NODE_IP_ADDRESS would override the listeners; epmd and Erlang's distribution stay on the loopback,
    # where rabbitmqctl finds the node by its name (found in a real boot: under the host name it failed).
    assert "NODE_IP_ADDRESS" not in env and "ERL_EPMD_ADDRESS=127.0.0.1" in env and "{127,0,0,1}" in env
    assert "NODENAME=rabbit@localhost" in env
    # Debian's epmd.socket would listen on every interface (found in a real boot: *:4369).
    socket = files["/etc/systemd/system/epmd.socket.d/labkit-loopback.conf"]["content"]
    assert socket.splitlines() == ["[Socket]", "ListenStream=", "ListenStream=127.0.0.1:4369"]
    # configure adds the private address (worker VMs join there), found as this machine would find it.
    configure = files["/opt/labkit/rabbitmq/configure"]["content"]
    lookup = next(line.strip() for line in configure.splitlines() if line.strip().startswith("private="))
    found = subprocess.run(["sh", "-c", f"{lookup} && echo $private"], capture_output=True, text=True)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+\n", found.stdout), found.stderr
    assert 'echo "listeners.tcp.2 = $private:5672" >> /etc/rabbitmq/rabbitmq.conf' in configure
    start = next(cmd for cmd in document["runcmd"] if '"start the services"' in cmd)
    assert [int(i) for i in re.findall(r"labkit-worker@(\d+)\.service", start)] == [1, 2, 3]
    for unit in ("/etc/systemd/system/labkit-web.service", "/etc/systemd/system/labkit-worker@.service"):
        content = files[unit]["content"]
        assert "User=labkit" in content and "Restart=" in content and "WantedBy=multi-user.target" in content
    assert "--debug" not in yaml.safe_dump(document) and "FLASK_DEBUG" not in yaml.safe_dump(document)


def test_worker_vm_joins_the_given_broker(model_dir, secrets):
    _, document = rendered("worker", model_dir, secrets=secrets, broker_host="10.1.2.3", workers=2)
    env = files_of(document)["/etc/labkit/server.env"]["content"]
    assert f"SERVER_BROKER_URL=amqp://{secrets.broker_user}:{secrets.broker_password}@10.1.2.3:5672//" in env
    assert "rabbitmq-server" not in " ".join(document["runcmd"])


def test_a_baked_image_skips_the_installs_and_only_brings_this_deployments_secrets(model_dir, secrets):
    text, document = rendered("single-server", model_dir, secrets=secrets, workers=2, baked=True)
    fresh, full = rendered("single-server", model_dir, secrets=secrets, workers=2)
    steps = [re.search(r'"([^"]+)"', cmd)[1] for cmd in document["runcmd"]]
    assert steps == ["configure RabbitMQ", "start the services", "wait for the server to answer"]
    assert not any(word in text for word in ("apt-get", "pip install", "npm pack", "release.tar.gz"))
    assert secrets.broker_password in files_of(document)["/etc/labkit/server.env"]["content"]
    assert cloudinit.encoded_size(text) * 4 < cloudinit.encoded_size(fresh)
    # The same services and broker set-up as a fresh server.
    for path in ("/etc/systemd/system/labkit-web.service", "/opt/labkit/rabbitmq/configure"):
        assert files_of(document)[path] == files_of(full)[path]

    _, worker = rendered("worker", model_dir, secrets=secrets, broker_host="10.1.2.3", baked=True)
    assert [re.search(r'"([^"]+)"', cmd)[1] for cmd in worker["runcmd"]] == [
        "start the workers", "wait for the workers to reach the broker"]
    assert "systemctl disable --now rabbitmq-server.service" in worker["runcmd"][0]


def test_chart_library_fetched_on_the_vm_is_checked_against_ours(model_dir):
    import hashlib

    _, document = rendered("single-server", model_dir)
    chart = next(cmd for cmd in document["runcmd"] if '"install the chart library"' in cmd)
    assert f"chart.js@{cloudinit.CHART_VERSION}" in chart
    assert hashlib.sha256(cloudinit.CHART_FILE.read_bytes()).hexdigest() in chart
    assert "sha256sum -c" in chart
    assert f"v{cloudinit.CHART_VERSION}" in cloudinit.CHART_FILE.read_text()[:200]


def test_requirements_are_pinned_to_what_the_tests_ran_with():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {Requirement(d).name.lower(): Requirement(d) for d in project["dependencies"]}
    lines = [l for l in (REPO / "production_server" / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines
    for line in lines:
        pinned = Requirement(line)
        [spec] = pinned.specifier
        assert spec.operator == "==", line
        assert pinned.name.lower() in declared, f"{pinned.name} is not a dependency in pyproject.toml"
        assert declared[pinned.name.lower()].specifier.contains(spec.version), line
        assert version(pinned.name) == spec.version, f"{line}, but the tests ran with {version(pinned.name)}"


def test_cli_lists_and_renders(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_MODEL_DIR", str(model_dir))
    from labkit.cli import main

    assert main(["cloud-init", "list"]) == 0
    out = tmp_path / "user-data.yaml"
    assert main(["cloud-init", "render", "single-server", "--out", str(out), "--schema", str(SCHEMA_FILE)]) == 0
    assert out.read_text().startswith("#cloud-config\n")
    baked = tmp_path / "baked.yaml"
    assert main(["cloud-init", "render", "single-server", "--baked", "--out", str(baked),
                 "--schema", str(SCHEMA_FILE)]) == 0
    assert baked.stat().st_size < out.stat().st_size / 4  # no release, no installs
    assert main(["cloud-init", "render", "no-such-template"]) == 1


def test_broker_accounts_are_hex_so_no_password_reads_as_an_option():
    # A urlsafe token began with "-" in a real run: rabbitmqctl add_user took it for an option,
    # failed the VM's step 6 and printed the password to the console. One in 64 did.
    from labkit.infra.rabbitmq import new_account

    accounts = [new_account() for _ in range(2000)]
    assert all(re.fullmatch(r"lab-[0-9a-f]{8}", user) and re.fullmatch(r"[0-9a-f]{48}", password)
               for user, password in accounts)
    assert len({password for _, password in accounts}) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{48}", cloudinit.Secrets.generate().broker_password) for _ in range(200))
