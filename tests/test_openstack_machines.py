"""The OpenStack backend on a fake cloud whose VMs are real machines (labkit/testing/machine_cloud.py).

No OpenStack API is reached, but everything behind it is real: the user-data
the backend renders is executed by cloud-init on booted systemd machines,
the backend follows their consoles, logs in over SSH as the image's default
user with the key pair's key (host keys read from the console, never trusted
on first use), and scales the VM's systemd units; a worker VM joins the
server's broker over the lab network only once the remote-group rule admits it.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

import labkit
from labkit.backends import machine as machines
from labkit.backends.machine import cleanup as machine_cleanup
from labkit.backends.machine.backend import make_key
from labkit.backends.openstack.backend import CloudSettings, OpenStackBackend

pytestmark = pytest.mark.slow

OWNER = "student@machines"


@pytest.fixture
def cloud_and_backend(tmp_path, data_dir, model_dir, machine_images):
    from labkit.testing.machine_cloud import IMAGE_NAME, MachineCloud

    settings = labkit.Settings(home=tmp_path / "home", model_dir=model_dir, data_dir=data_dir, progress="lines",
                               machine_images=machine_images)
    cloud = MachineCloud(tmp_path / "cloud", settings)
    make_key(tmp_path / "key")
    backend = OpenStackBackend(connect=lambda: cloud, cloud_settings=CloudSettings(
        image=IMAGE_NAME, network="private", public_key=tmp_path / "key" / "id_ed25519.pub",
        private_key=tmp_path / "key" / "id_ed25519", poll=1.0, owner=OWNER))
    return cloud, backend, settings


def test_launch_scale_scale_out_bake_and_destroy_on_real_machines(cloud_and_backend, report):
    cloud, backend, settings = cloud_and_backend
    booted: list[str] = []
    fast = None
    lab = labkit.deploy(backend, name="os", workers=1, settings=settings)
    try:
        vm_steps = {s.what.removeprefix("VM: "): s.seconds for s in lab.steps if s.what.startswith("VM: ")}
        assert "install system packages" in vm_steps and vm_steps["install system packages"] > 5
        server = cloud.get_server(lab.state["server_id"])
        assert lab.url == f"http://{server.floating_ips[0]}:5100" and server.status == "ACTIVE"
        assert httpx.get(f"{lab.url}/healthz", timeout=5).json()["workers"] == 1
        # The host keys came from the console: labkit's SSH checks them, as `ssh` would.
        known = (lab.run_dir.path / "known_hosts").read_text()
        assert known.startswith(f"{server.floating_ips[0]} ") and "ssh-ed25519 AAAA" in known

        lab.scale(2)  # `systemctl enable --now labkit-worker@2` over SSH, as the image's user, with sudo
        assert lab.status().workers == 2
        assert "labkit-worker@2" in lab.logs(60)

        # A worker VM: the worker template under real cloud-init, joining the broker at the server's private address.
        lab.scale_out(1)
        status = lab.status()
        assert status.workers == 3 and len(status.workers_by_host()) == 2, status.worker_names
        report(f"machine cloud: server VM steps {sum(vm_steps.values()):.0f} s "
               f"(apt {vm_steps['install system packages']:.0f} s); scale-out to 1 worker VM joined its broker")
        booted = [lab.state["server_id"], *(vm["id"] for vm in lab.state["worker_vms"])]
        # Running machines of the cloud are not leftovers for `labkit cleanup --machines`.
        assert not [m for m in machine_cleanup.find() if m.name in {f"labkit-{vm}" for vm in booted}]
        lab.scale_out(0)
        assert lab.status().workers == 2

        # Bake: the sealed machine's disk becomes an image (no secret in it), and a VM from it skips the installs.
        password = lab.state["broker"]["password"].encode()
        image = lab.bake("labkit-os-image")
        inside = cloud.image_files(image["id"])
        assert (inside / "opt/labkit/venv/bin/celery").is_file()  # the installs are in the image ...
        for secret_file in ("etc/labkit/server.env", "opt/labkit/rabbitmq/configure", "var/lib/cloud/instance"):
            assert not (inside / secret_file).exists(), secret_file  # ... the deployment's secrets are not
        assert not [f for f in (inside / "etc").rglob("*") if f.is_file() and not f.is_symlink()
                    and password in f.read_bytes()]
        assert lab.status().workers == 2  # and the server serves again
        backend.cloud_settings = replace(backend.cloud_settings, image="labkit-os-image")
        fast = labkit.deploy(backend, name="fast", workers=1, settings=settings)
        booted.append(fast.state["server_id"])
        baked = [s.what.removeprefix("VM: ") for s in fast.steps if s.what.startswith("VM: ")]
        assert baked == ["configure RabbitMQ", "start the services", "wait for the server to answer"]
        assert fast.status().workers == 1 and fast.predict([[1, 85, 66, 29, 0, 26.6, 0.351, 31]]).shape[0] == 1
        table = labkit.compare_steps({"stock image": lab, "baked image": fast})
        report(f"machine cloud, boot to healthy from the stock image vs the baked one: "
               f"{table.loc['total', 'stock image']} s vs {table.loc['total', 'baked image']} s "
               f"({len(vm_steps)} vs {len(baked)} VM steps)")
    finally:
        if fast is not None:
            fast.destroy()
        lab.destroy()
    assert cloud.list_lab_resources(None).images == []
    assert cloud.list_lab_resources(None).servers == []
    names = {f"labkit-{vm}" for vm in booted}
    assert not [p for p in machines.machine.running_machines() if any(f"--machine={n}" in p.cmdline() for n in names)]
    assert not [m for m in machine_cleanup.find() if m.name in names]


def test_cicd_a_development_vm_pushes_to_production_over_real_ssh(cloud_and_backend, report):
    """The development template under real cloud-init; production's `deploy` user (git-shell) set up
    with sudo over SSH; git over SSH from one machine to the other; the hooks, the gate and the
    rolling restart of the systemd workers; a refused push; a rollback."""
    cloud, backend, settings = cloud_and_backend
    lab = labkit.deploy(backend, name="prod", workers=2, settings=settings)
    try:
        first = lab.model_info()["version"]
        ci = labkit.cicd.init(name="prod", min_accuracy=0.7, settings=settings)
        dev = lab.state["development_vm"]
        assert dev["home"] == "/home/debian" and cloud.get_server(dev["id"]).status == "ACTIVE"
        result = ci.push(epochs=30, hidden=(8, 4), seed=7)
        assert result.deployed and result.version != first
        assert lab.model_info()["version"] == result.version and lab.status().workers == 2
        with pytest.raises(labkit.PushRejected, match="below the minimum 70.0%"):
            ci.push(epochs=1, hidden=(2,))
        assert lab.model_info()["version"] == result.version
        entry = ci.rollback()
        assert entry["release"] == 1 and lab.model_info()["version"] == first
        report(f"machine cloud CI/CD: a development VM trained {result.version} and pushed it over SSH; "
               "a refused push, a rollback")
    finally:
        lab.destroy()
    assert cloud.list_lab_resources(None).servers == []
