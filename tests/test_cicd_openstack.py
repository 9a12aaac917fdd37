"""CI/CD with the OpenStack backend, on the fake cloud (layer 2): a development VM delivers to the
production VM.

Both VMs are the fake cloud's: the production VM a real local deployment, the
development VM a folder with the release unpacked and a real SSH key made at
its boot. What runs on them is what runs on real VMs: the same command lines
(set-up, clone, training, git push, the hooks, rollback) and production's
code unpacked from the archive `cicd init` sends. What the fake cannot have:
SSH between the VMs (the development VM reaches production's repository as a
folder), systemd (the workers move to the release pointer through the local
backend) and sudo. Those parts are written for Ubuntu and checked only on paper.
"""

from __future__ import annotations

import pytest

import labkit
from labkit.testing.fake_cloud import FakeCloud
from steady_load import steady_load
from test_openstack_fake import backend_for, public_key  # noqa: F401 - public_key is a fixture

pytestmark = pytest.mark.slow


def test_a_development_vm_delivers_to_the_production_vm_and_rolls_back(tmp_path, settings, public_key, report):
    cloud = FakeCloud(tmp_path / "cloud", settings)
    lab = labkit.deploy(backend_for(cloud, public_key), name="vm", workers=2, settings=settings)
    try:
        first = lab.model_info()["version"]
        with steady_load(lab.url) as init_load:
            ci = labkit.cicd.init(name="vm", min_accuracy=0.7, settings=settings)
        state = lab.state
        dev_vm = state["development_vm"]
        production, development = cloud.disk(state["server_id"]), cloud.disk(dev_vm["id"])
        assert {s.metadata["labkit-role"] for s in cloud.list_lab_resources(None).servers} == {"server", "development"}
        # git reaches production's SSH from the lab's own VMs, whatever CIDR port 22 is open to.
        group = state["launch"]["security_group"]
        assert {"protocol": "tcp", "port": 22, "remote_group": group} in cloud._load()["security_groups"][group]
        assert "development VM" in [row["role"] for row in lab.status().processes]

        # Only the development VM's own key may log in as production's deploy user, and it knows
        # production's host key before its first push.
        public = (development / "home/ubuntu/.ssh/labkit_deploy.pub").read_text().strip()
        assert (production / "var/lib/labkit-deploy/.ssh/authorized_keys").read_text() == f"restrict {public}\n"
        known = (development / "home/ubuntu/.ssh/known_hosts").read_text().split()
        assert known[:2] == [cloud.private_address(state["server_id"]), "ssh-ed25519"]
        # The hooks run production's own production_server, with the code init unpacked there.
        assert (production / "opt/labkit/app/production_server/cicd/hooks.py").is_file()
        assert f"export PYTHONPATH={production}/opt/labkit/app\n" in ci.hooks()["pre-receive"].text
        assert ci.development == development / "home/ubuntu/cicd"
        assert [e["action"] for e in ci.history()] == ["init"] and ci.history()[0]["version"] == first
        with pytest.raises(labkit.ScaleError, match="worker VMs would keep serving the old one"):
            lab.scale_out(1)

        with steady_load(lab.url) as rollout_load:
            result = ci.push(epochs=30, hidden=(8, 4), seed=7)
        assert result.deployed and result.version != first
        assert lab.model_info()["version"] == result.version

        with pytest.raises(labkit.PushRejected, match="below the minimum 70.0%"):
            ci.push(epochs=1, hidden=(2,))
        assert lab.model_info()["version"] == result.version

        with steady_load(lab.url) as rollback_load:
            entry = ci.rollback()
        assert entry["release"] == 1 and lab.model_info()["version"] == first
        # Another process (a restarted kernel) finds the pipeline again.
        again = labkit.cicd.attach("vm", settings=settings)
        assert again.history_frame()["action"].tolist() == ["init", "deploy", "rollback"]

        loads = {"init": init_load, "rollout": rollout_load, "rollback": rollback_load}
        report("fake cloud CI/CD under load: " + ", ".join(
            f"{what} {load.requests} requests, {load.errors} failed" for what, load in loads.items()))
        for what, load in loads.items():
            assert load.requests > 0 and load.errors == 0, (what, load.samples)
    finally:
        lab.destroy()
    left = cloud.list_lab_resources(None)
    assert left.servers == [] and left.floating_ips == []
