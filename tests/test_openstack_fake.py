"""Layer 2: the OpenStack backend's whole path on a fake cloud whose servers are real local
deployments (at 127.0.0.N:5100, as a VM would answer on its floating IP)."""

from __future__ import annotations

import httpx
import pytest

import labkit
from labkit.backends.openstack.backend import CLIENT_STEPS, LAST_STEP, CloudSettings, OpenStackBackend
from labkit.infra import cloudinit, procs
from labkit.testing.fake_cloud import FakeCloud

pytestmark = pytest.mark.slow

OWNER = "student@lab-test"


@pytest.fixture
def public_key(tmp_path):
    path = tmp_path / "id_ed25519.pub"
    path.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFakeCloudOnly student@lab-test\n")
    return path


def backend_for(cloud, public_key) -> OpenStackBackend:
    return OpenStackBackend(connect=lambda: cloud,
                            cloud_settings=CloudSettings(public_key=public_key, network="private", poll=0.3,
                                                         owner=OWNER))


def test_launch_watch_predict_reattach_destroy(tmp_path, settings, public_key, capsys):
    cloud = FakeCloud(tmp_path / "cloud", settings)
    lab = labkit.deploy(backend_for(cloud, public_key), name="vm", workers=2, settings=settings)
    try:
        whats = [s.what for s in lab.steps]
        assert whats[:5] == CLIENT_STEPS and whats[-1] == LAST_STEP
        vm_steps = [w for w in whats if w.startswith("VM: ")]
        assert len(vm_steps) == len(whats) - 6 >= 1
        # The markers printed while deploying are numbered 1..N of one sequence.
        printed = labkit.parse_markers(capsys.readouterr().out)
        assert [s.index for s in printed] == list(range(1, len(whats) + 1))
        assert {s.total for s in printed[5:]} == {len(whats)}

        assert lab.url.startswith("http://127.0.0.") and lab.url.endswith(":5100")
        assert httpx.get(f"{lab.url}/healthz").json()["workers"] == 2
        assert lab.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])["prediction"].tolist() in ([0], [1])

        # Another process (a restarted kernel) finds the VM through the recorded state.
        again = labkit.attach("vm", settings=settings)
        status = again.status()
        assert status.healthy and status.backend == "openstack"
        assert status.processes[0]["state"] == "ACTIVE" and status.processes[0]["alive"]
        assert "[labkit] step" in again.logs()
        # Scaling goes through the VM's service manager (systemd over SSH on a real VM).
        for workers in (3, 1):
            again.scale(workers)
            assert httpx.get(f"{lab.url}/healthz").json()["workers"] == workers
            assert again.state["workers"] == workers
        assert "==> worker-1 <==" in again.logs()

        [server] = cloud.list_lab_resources(OWNER).servers
        assert server.metadata["labkit-owner"] == OWNER and server.metadata["labkit-task"] == "task-1"
        assert "labkit-expires" in server.metadata
        [group] = cloud.list_lab_resources(OWNER).security_groups
        rules = cloud._load()["security_groups"][group["name"]]
        assert sorted(r["port"] for r in rules) == [22, 5100]
    finally:
        lab.destroy()
    left = cloud.list_lab_resources(None)
    assert left.servers == [] and left.floating_ips == []
    assert not procs.port_in_use(5100, lab.url.split("//")[1].split(":")[0])


def test_a_failed_contextualization_stops_with_the_log_and_leaves_nothing(tmp_path, settings, public_key):
    # The "VM" has no model: its first step fails, as a broken install would on a real VM.
    broken = FakeCloud(tmp_path / "cloud", labkit.Settings(model_dir=tmp_path / "no-model", data_dir=settings.data_dir))
    with pytest.raises(labkit.DeployError, match=r"Contextualization failed: step \d+/\d+ .*No trained model"):
        labkit.deploy(backend_for(broken, public_key), name="broken", workers=1, settings=settings)
    left = broken.list_lab_resources(None)
    assert left.servers == [] and left.floating_ips == []
    assert labkit.deployments(settings) == []


def test_an_image_whose_python_is_too_old_is_named_before_the_launch(tmp_path, settings, public_key, capsys):
    from dataclasses import replace

    from labkit.backends.openstack.backend import old_python_note

    assert old_python_note("Ubuntu 24.04") is None and old_python_note("debian-12-genericcloud-amd64") is None
    assert "Ubuntu 22.04" in old_python_note("ubuntu-jammy-server")
    broken = FakeCloud(tmp_path / "cloud", labkit.Settings(model_dir=tmp_path / "no-model", data_dir=settings.data_dir))
    backend = backend_for(broken, public_key)
    backend.cloud_settings = replace(backend.cloud_settings, image="Ubuntu 22.04 LTS")
    with pytest.raises(labkit.DeployError):
        labkit.deploy(backend, name="old", workers=1, settings=settings)
    out = capsys.readouterr().out
    note = "[labkit] The image 'Ubuntu 22.04 LTS' looks like Ubuntu 22.04, whose Python is older than the 3.11"
    assert note in out and out.index(note) < out.index("launch the server")


def test_no_network_chosen_is_explained_before_anything_is_created(tmp_path, settings, public_key):
    cloud = FakeCloud(tmp_path / "cloud", settings)
    backend = OpenStackBackend(connect=lambda: cloud, cloud_settings=CloudSettings(public_key=public_key))
    with pytest.raises(labkit.ConfigError, match="LABKIT_OS_NETWORK"):
        labkit.deploy(backend, name="nonet", settings=settings)
    assert not cloud.list_lab_resources(None)


def test_scaling_before_the_server_has_an_address_says_so(tmp_path, settings, public_key):
    state = {"backend": "openstack", "server_id": "x", "floating_ip": None}
    with pytest.raises(labkit.ScaleError, match="no address yet"):
        backend_for(FakeCloud(tmp_path / "cloud", settings), public_key).scale(None, state, 3)


def test_cli_up_on_openstack_without_credentials_says_where_they_go(tmp_path, settings):
    import os
    import subprocess
    import sys

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "LABKIT_HOME": str(tmp_path / "home"), "LABKIT_MODEL_DIR": str(settings.model_dir)}
    done = subprocess.run([sys.executable, "-m", "labkit.cli", "up", "--backend", "openstack", "--network", "private"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("labkit: ") and "Traceback" not in done.stderr
    assert "clouds.yaml" in done.stderr and "OS_CLOUD" in done.stderr


def test_scale_out_bake_and_deploy_faster_from_the_image(tmp_path, settings, public_key, report):
    from labkit import compare_steps
    from labkit.backends.openstack import cleanup

    cloud = FakeCloud(tmp_path / "cloud", settings)
    lab = labkit.deploy(backend_for(cloud, public_key), name="vm", workers=1, settings=settings)
    fast = None
    try:
        row = [[6, 148, 72, 35, 0, 33.6, 0.627, 50]]
        # A VM outside the lab's group never reaches the broker: the fake network lets 5672
        # through only where a remote-group rule admits the VM's group, as Neutron does.
        state = lab.state
        cloud.ensure_security_group("labkit-other", "0.0.0.0/0", "0.0.0.0/0")
        stranger = cloud.create_server(
            "stranger", "image-1", "flavor-1", "network-1", "labkit", "labkit-other",
            cloudinit.render("worker", settings.model_dir, secrets=cloudinit.Secrets(
                state["broker"]["user"], state["broker"]["password"]),
                broker_host=cloud.private_address(state["server_id"])), {"labkit-owner": OWNER})
        assert procs.wait_until(lambda: "FAILED" in cloud.console_log(stranger.id), timeout=60)
        assert "no security group rule" in cloud.console_log(stranger.id)
        cloud.delete_server(stranger.id)

        lab.scale_out(1)
        health = httpx.get(f"{lab.url}/healthz").json()
        assert health["workers"] == 2
        by_host = lab.status().workers_by_host()
        assert by_host["labkit-vm-w1"] == ["worker-1@labkit-vm-w1"] and len(by_host) == 2
        rules = cloud._load()["security_groups"]["labkit-server"]
        assert {"protocol": "tcp", "port": 5672, "remote_group": "labkit-server"} in rules
        assert not any(r.get("port") == 5672 and r.get("cidr") for r in rules)  # never open to the world
        [worker_vm] = cloud.find_servers({"labkit-deployment": "vm", "labkit-role": "worker"})
        assert worker_vm.floating_ips == [] and worker_vm.owner == OWNER
        assert [p["role"] for p in lab.status().processes] == ["server", "worker VM labkit-vm-w1"]
        assert all(lab.predict(row * 3)["prediction"].isin([0, 1]))
        with pytest.raises(labkit.ScaleError, match="scale-out 0"):
            lab.scale(2)

        lab.scale_out(0)
        assert httpx.get(f"{lab.url}/healthz").json()["workers"] == 1
        assert cloud.get_server(worker_vm.id) is None and lab.state["worker_vms"] == []

        password = lab.state["broker"]["password"].encode()
        image = lab.bake("labkit-vm-image")
        assert image["status"] == "active" and "labkit-baked" in image["tags"]
        inside = [f for f in cloud.image_files(image["id"]).rglob("*") if f.is_file()]
        assert any(f.name == "worker.py" for f in inside)  # the release is in the image ...
        assert not [f for f in inside if password in f.read_bytes()]  # ... the deployment's password is not
        assert not any("var/lib/cloud" in str(f) for f in inside)
        assert lab.status().healthy and lab.predict(row)["prediction"].isin([0, 1]).all()  # it serves again

        backend = OpenStackBackend(connect=lambda: cloud, cloud_settings=CloudSettings(
            public_key=public_key, network="private", poll=0.3, owner=OWNER, image="labkit-vm-image"))
        fast = labkit.deploy(backend, name="fast", workers=1, settings=settings)
        assert fast.predict(row)["prediction"].isin([0, 1]).all()
        table = compare_steps({"stock image": lab, "baked image": fast})
        vm_steps = {label: [s.what for s in d.steps if s.what.startswith("VM: ")]
                    for label, d in (("stock", lab), ("baked", fast))}
        assert "VM: unpack the release" in vm_steps["stock"] and "VM: unpack the release" not in vm_steps["baked"]
        assert len(vm_steps["baked"]) < len(vm_steps["stock"])
        assert list(table.columns) == ["stock image", "baked image"] and table.index[-1] == "total"
        report("fake cloud, VM steps stock vs baked image: "
               f"{len(vm_steps['stock'])} vs {len(vm_steps['baked'])}; totals "
               f"{table.loc['total', 'stock image']} s vs {table.loc['total', 'baked image']} s")
        fast.scale_out(1)  # a worker VM from the baked image: the short worker template
        assert httpx.get(f"{fast.url}/healthz").json()["workers"] == 2
    finally:
        if fast is not None:
            fast.destroy()
        lab.destroy()
    assert cloud.list_lab_resources(OWNER).servers == [] and cloud.list_lab_resources(OWNER).images == []
    left = cleanup.find(cloud, OWNER)
    assert not left.servers and not left.floating_ips and not left.images
    assert not list((tmp_path / "cloud" / "vms" / "deployments").glob("vm-*/state.json"))


# -- Task 2 on a VM: the docker-server template ----------------------------------
def test_the_vm_template_is_a_setting_with_a_clear_error():
    assert CloudSettings.from_env({"LABKIT_OS_TEMPLATE": "docker-server"}).template == "docker-server"
    assert CloudSettings.from_env({}).template == "single-server"
    with pytest.raises(labkit.ConfigError, match="single-server, docker-server"):
        CloudSettings(template="kubernetes")
    with pytest.raises(labkit.ConfigError, match="environment variable LABKIT_OS_TEMPLATE='kubernetes' should be"):
        CloudSettings.from_env({"LABKIT_OS_TEMPLATE": "kubernetes"})


def test_cloud_settings_come_from_the_saved_file_under_the_environment(tmp_path, monkeypatch):
    """One source for every setting: what 00-setup saved, overridden by the environment."""
    from labkit import _userconfig

    monkeypatch.setenv(_userconfig.CONFIG, str(tmp_path / "settings.json"))
    _userconfig.save({"LABKIT_OS_IMAGE": "Debian 12", "LABKIT_OS_NETWORK": "saved-net", "LABKIT_PORT": "5200"})
    monkeypatch.setenv("LABKIT_OS_NETWORK", "env-net")
    monkeypatch.setenv("LABKIT_OS_PUBLIC_KEY", str(tmp_path / "me.pub"))
    cloud = CloudSettings.from_env()
    assert (cloud.image, cloud.network, cloud.login_user()) == ("Debian 12", "env-net", "debian")
    assert (cloud.public_key, cloud.private_key) == (tmp_path / "me.pub", tmp_path / "me")
    assert labkit.Settings.from_env().port == 5200


def test_a_task_2_deployment_is_driven_by_compose_and_has_no_worker_vms(tmp_path):
    from labkit._state import RunDir
    from labkit.backends.openstack.backend import ComposeOverSSH, SystemdOverSSH
    from labkit.notebook.progress import Progress

    key = tmp_path / "id_ed25519"
    key.write_text("not used: nothing connects in this test")
    class RealVMs:
        """As OpenStackCloud says of its VMs: no services of its own, so over SSH (not opened here)."""

        def services(self, server_id):
            return None

    backend = OpenStackBackend(connect=RealVMs, cloud_settings=CloudSettings(private_key=key))
    state = {"name": "lab", "template": "docker-server", "floating_ip": "203.0.113.5", "server_id": "s1",
             "broker": {"password": "pw"}, "worker_vms": [], "launch": {}}
    assert isinstance(backend.services(state), ComposeOverSSH)
    assert isinstance(backend.services({**state, "template": "single-server"}), SystemdOverSSH)
    with pytest.raises(labkit.ScaleError, match="scale the worker containers"):
        backend.scale_out(RunDir(tmp_path, "lab"), state, 1, Progress(0, "t", "off"))
