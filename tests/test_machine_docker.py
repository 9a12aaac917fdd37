"""Task 2 on a real machine: the docker-server user-data run by real cloud-init, Docker and Compose inside.

One deployment (1 worker), shared by the tests in this module in order: a
Debian 13 machine booted with the settings Docker needs inside
systemd-nspawn; its cloud-init installs Docker and Compose v2 from Debian's
packages, builds the server's image with the real Dockerfile and starts the
real compose.yaml. No registry answers here, so the base images are labkit's
stand-ins (``labkit.backends.machine.standins``, made from Debian packages). Scaling
goes 1 -> 3 -> 1 with Compose over SSH, as on a VM. The last test takes it
down and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
import yaml
from conftest import REPO
from machine_deployments import assert_down_leaves_nothing, deployed, machine_of

import labkit
from labkit.backends.machine import standins

pytestmark = pytest.mark.slow

VM_STEPS = ["install system packages", "unpack the release", "start Docker", "build the server's image",
            "start the containers", "wait for the server to answer"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_dir, model_dir, machine_images):
    settings = labkit.Settings(home=tmp_path_factory.mktemp("home"), model_dir=model_dir, data_dir=data_dir,
                               progress="lines", machine_images=machine_images)
    with deployed(settings, template="docker-server", name="mdock", workers=1) as lab:
        yield lab


def containers(lab) -> list[dict]:
    out = machine_of(lab).run(["docker", "ps", "--format", "{{json .}}"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_cloud_init_builds_and_starts_the_compose_stack(lab, report):
    vm = [step for step in lab.steps if step.what.startswith("VM: ")]
    assert [step.what.removeprefix("VM: ") for step in vm] == VM_STEPS
    report(f"machine docker-server, 1 worker: boot to healthy {lab.boot_to_healthy:.0f} s; "
           + ", ".join(f"{s.what.removeprefix('VM: ')} {s.seconds:.0f} s" for s in vm))
    running = {c["Names"].rsplit("-", 1)[0].removeprefix("labkit-mdock-") for c in containers(lab)}
    assert running == {"rabbit", "web", "proxy", "worker"}, containers(lab)
    assert lab.status().summary == "healthy: 1 of 1 worker"


def test_the_base_images_are_labkits_stand_ins_where_no_registry_answers(lab):
    if standins.registry_reachable():
        pytest.skip("a registry answers here: the machine pulled the real images")
    compose = yaml.safe_load((REPO / "production_server" / "compose.yaml").read_text())
    dockerfile = (REPO / "production_server" / "Dockerfile").read_text()
    used = {compose["services"]["rabbit"]["image"], compose["services"]["proxy"]["image"],
            dockerfile.split("ARG PYTHON_IMAGE=", 1)[1].split()[0]}
    assert used == set(standins.IMAGES)  # every base image the files name has its stand-in
    images = machine_of(lab).run(["docker", "image", "inspect", *standins.IMAGES, "--format", "{{.Id}}"])
    assert images.returncode == 0, images.stderr


def test_predictions_pass_nginx_and_the_broker_to_a_worker_container(lab):
    response = httpx.post(f"{lab.url}/api/predict", json={"instances": [[6, 148, 72, 35, 0, 33.6, 0.627, 50]]},
                          timeout=30)
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()["probabilities"][0] <= 1.0
    assert httpx.get(f"{lab.url}/healthz", timeout=10).headers.get("server") == "nginx"
    page = httpx.get(f"{lab.url}/predictions", timeout=30)
    assert page.status_code == 200 and "<table" in page.text  # the data set reached the image's build


def test_only_ssh_and_the_web_port_answer_from_the_host(lab):
    machine = machine_of(lab)
    answering = []
    for port in (22, 4369, 5100, 5672, 15672, 25672, 5555):
        with socket.socket() as probe:
            probe.settimeout(1.0)
            if probe.connect_ex((machine.address, port)) == 0:
                answering.append(port)
    assert answering == [22, 5100]


def test_scale_1_3_1_with_compose_inside_over_ssh(lab):
    lab.scale(3)
    assert lab.status().workers == 3
    assert sum(1 for c in containers(lab) if "-worker-" in c["Names"]) == 3
    lab.scale(1)
    assert lab.status().workers == 1
    assert sum(1 for c in containers(lab) if "-worker-" in c["Names"]) == 1
    assert "worker" in lab.logs(5)


def test_down_powers_the_machine_off_and_leaves_nothing(lab):
    assert_down_leaves_nothing(lab)
