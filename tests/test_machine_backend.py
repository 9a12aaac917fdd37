"""The machine backend: a real systemd machine, contextualized by real cloud-init from the real user-data.

One single-server deployment (2 workers) is shared by the tests in this
module, in order: it is built from a Debian image made here with
debootstrap, booted with systemd-nspawn, and its cloud-init runs the
template's apt, pip, npm and RabbitMQ steps for real. The last test takes
it down and checks that nothing of it is left on the host.
"""

from __future__ import annotations

import gzip
import re
import socket
import subprocess
import time

import httpx
import pytest
from machine_deployments import assert_down_leaves_nothing, deployed, machine_of

import labkit
from labkit import DeployError
from labkit.backends import machine as machines
from labkit.backends.machine import cleanup, network
from labkit.backends.machine.machine import Machine, Seed
from labkit.experiments.load import recorded_load
from labkit.infra import procs

pytestmark = pytest.mark.slow

# What the template's own steps are called, as the VM prints them.
VM_STEPS = ["check the image's Python (3.11 or newer)", "install system packages", "unpack the release",
            "create the virtualenv and install Python packages", "install the chart library", "configure RabbitMQ",
            "fetch the data set", "start the services", "wait for the server to answer"]


@pytest.fixture(scope="module")
def machine_settings(tmp_path_factory, data_dir, model_dir, machine_images):
    return labkit.Settings(home=tmp_path_factory.mktemp("home"), model_dir=model_dir, data_dir=data_dir,
                           progress="lines", machine_images=machine_images)


@pytest.fixture(scope="module")
def lab(machine_settings):
    with deployed(machine_settings, name="mtest", workers=2) as lab:
        yield lab


def test_cloud_init_runs_the_templates_steps_and_labkit_shows_them(lab, report):
    vm = [step for step in lab.steps if step.what.startswith("VM: ")]
    assert [step.what.removeprefix("VM: ") for step in vm] == VM_STEPS
    by_name = {step.what.removeprefix("VM: "): step.seconds for step in vm}
    # Real installs take real time: apt and pip download and unpack hundreds of MB.
    assert by_name["install system packages"] > 5 and by_name["create the virtualenv and install Python packages"] > 5
    status = machine_of(lab).run(["cloud-init", "status", "--long"])
    assert "status: done" in status.stdout, status.stdout
    console = lab.logs(400)
    assert "[labkit] step 9/9: wait for the server to answer" in console
    report(f"machine single-server, 2 workers: boot to healthy {lab.boot_to_healthy:.0f} s; VM steps "
           + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in by_name.items()))


def test_it_serves_predictions_at_the_machines_address(lab):
    status = lab.status()
    machine = machine_of(lab)
    assert status.healthy and status.workers == 2, status.summary
    assert status.address == machine.address and lab.url == f"http://{machine.address}:5100"
    assert all(name.endswith("@labkit-mtest") for name in status.worker_names), status.worker_names
    answer = lab.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.351, 31]])
    assert list(answer["prediction"]) in ([0, 0], [0, 1], [1, 0], [1, 1]) and len(answer) == 2
    assert answer.attrs["model_version"] == lab.model_info()["version"]


def test_only_ssh_and_the_web_port_answer_and_nothing_else_listens_beyond_the_loopback(lab):
    machine = machine_of(lab)
    listening = machine.run(["ss", "-Hltn"]).stdout.split("\n")
    addresses = sorted({line.split()[3] for line in listening if line.strip()})
    public = [a for a in addresses if not a.startswith(("127.", "[::1]"))]
    # The broker on the private address (worker VMs join there), the rest on every interface: 22 and 5100.
    assert sorted(public) == sorted(["0.0.0.0:22", "[::]:22", "0.0.0.0:5100", f"{machine.address}:5672"]), addresses
    assert "127.0.0.1:4369" in addresses  # epmd, found on *:4369 before the template's fix
    answering = []
    for port in (22, 4369, 5100, 5672, 15672, 25672):
        with socket.socket() as probe:
            probe.settimeout(1.0)
            if probe.connect_ex((machine.address, port)) == 0:
                answering.append(port)
    # From the host, outside the lab's group: the broker's port is closed by the security group.
    assert answering == [22, 5100]


def test_nginx_in_front_keeps_slow_clients_from_starving_the_server(lab, report):
    from test_proxy import answered_in_a_crowd

    machine = machine_of(lab)
    assert httpx.get(f"{lab.url}/healthz", timeout=5).headers.get("server") == "nginx"
    too_large = httpx.post(f"{lab.url}/api/predict", content=b"{" + b" " * 300_000 + b"}",
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert too_large.status_code == 413 and "larger than 262144 bytes" in too_large.json()["error"]
    answered_in_a_crowd(lab.url, machine.address, 5100, 100, "slow headers", report, where="machine, ")


def test_cleanup_names_the_deployments_machine_and_leaves_it(lab):
    machine = machine_of(lab)
    found, owned = cleanup.survey()
    assert machine.name not in [leftover.name for leftover in found]
    assert [(m.name, m.detail) for m in owned if m.name == machine.name] == \
        [(machine.name, str(machine.folder.parent / "state.json"))]


def test_scale_goes_through_the_machines_systemd_over_ssh(lab):
    lab.scale(3)
    assert lab.status().workers == 3
    units = machine_of(lab).run(["systemctl", "list-units", "--state=active", "--no-legend", "labkit-worker@*"])
    assert units.stdout.count("labkit-worker@") == 3, units.stdout
    lab.scale(2)
    assert lab.status().workers == 2


def test_systemd_restarts_a_killed_broker_under_load(lab, report):
    # On a VM it is systemd, not labkit, that heals: Debian's unit restarts RabbitMQ 10 s after a crash,
    # and the web tier and workers reconnect by themselves.
    with recorded_load(lab.url, clients=4, timeout=10) as load:
        time.sleep(2)
        killed = time.monotonic()
        done = machine_of(lab).run(["systemctl", "kill", "--signal=KILL", "rabbitmq-server.service"])
        assert done.returncode == 0, done.stderr
        procs.wait_until(lambda: load.first_run_of_successes(killed, 20) is not None, timeout=60, interval=0.5)
        recovered = load.first_run_of_successes(killed, 20)
        time.sleep(2)
    during = load.statuses(sent_after=killed)
    report(f"machine: kill -9 of RabbitMQ under load (4 clients): {sum(load.statuses().values())} requests, after "
           f"the kill by status {during}; " + (f"20 of 20 succeeded {recovered - killed:.1f} s after the kill"
                                               if recovered else "never recovered"))
    assert recovered is not None and recovered - killed <= 30, during
    assert set(during) <= {200, 503}, [a for a in load.answers(killed) if a.status not in (200, 503)][:3]
    assert procs.wait_until(lambda: lab.status().summary == "healthy: 2 of 2 workers", timeout=30)


def test_a_machine_that_dies_is_reported_stopped_and_not_revived(lab):
    # A VM that crashes stays down until someone acts (here as on a cloud without auto-recovery).
    machine = machine_of(lab)
    machine.leader().kill()  # its PID 1: the whole machine
    assert procs.wait_until(lambda: not machine.running(), timeout=30)
    status = lab.status()
    assert not status.healthy and status.processes == [{"role": "machine", "id": machine.name, "state": "stopped",
                                                         "alive": False, "address": machine.address}]


def test_down_powers_the_machine_off_and_leaves_nothing(lab):
    # After the machine died: down still removes its copy, namespace and rules.
    assert_down_leaves_nothing(lab)


def test_a_failed_step_fails_the_deploy_with_its_output_and_leaves_nothing(machine_settings, monkeypatch):
    import yaml

    from labkit.backends.machine import backend

    failing = "#cloud-config\n" + yaml.safe_dump({"runcmd": [
        ["echo", "[labkit] step 1/2: look (0.1s)"],
        ["sh", "-c", 'echo "no such mirror: the apt sources are wrong" >&2; '
                     'echo "[labkit] step 2/2: install system packages FAILED (exit 100 after 0.2s)"; exit 100'],
    ]})
    monkeypatch.setattr(backend, "render_checked", lambda *args, **kwargs: failing)
    with pytest.raises(DeployError) as raised:
        labkit.deploy("machine", name="mfail", workers=1, settings=machine_settings)
    message = str(raised.value)
    assert "step 2/2 (install system packages) failed: exit 100" in message
    assert "no such mirror: the apt sources are wrong" in message  # the step's own output, not cloud-init's tables
    assert "ci-info" not in message
    assert not [p for p in machines.machine.running_machines() if "--machine=labkit-mfail" in p.cmdline()]
    assert not labkit.deployments(machine_settings)


def test_cleanup_finds_a_machine_no_deployment_records_and_removes_it(machine_settings, tmp_path):
    """As after `kill -9` of the labkit that booted it: a machine, a namespace, and no state."""
    image = machines.ensure_image(machine_settings.machine_images)
    folder = tmp_path / "deployments" / "crashed" / "machine"
    from labkit.backends.machine.backend import make_key

    seed = Seed("crashed-1", "labkit-crashed", make_key(tmp_path / "ssh"), gzip.compress(b"#cloud-config\n{}\n"))
    crashed = Machine.boot("labkit-crashed", folder, image, seed)
    try:
        found = [leftover for leftover in cleanup.find() if leftover.name == "labkit-crashed"]
        assert len(found) == 1 and found[0].kind == "machine" and found[0].link == crashed.link
        cleanup.remove(found[0])
        assert not crashed.running() and not crashed.root.exists()
        assert crashed.link.netns not in [link.netns for link in network.links()]
        assert not [leftover for leftover in cleanup.find() if leftover.name in ("labkit-crashed", crashed.link.netns)]
    finally:
        if crashed.running():  # the test failed before cleanup removed it
            crashed.destroy()


def test_a_machine_leaves_the_lab_group_with_its_slot(machine_images):
    """The next machine on a freed slot gets its address: it must not find the broker rule open to it."""
    def group() -> set[str]:
        listed = subprocess.run(["nft", "list", "set", "ip", network.TABLE, "lab_group"],
                                capture_output=True, text=True).stdout
        return set(re.findall(r"\d+\.\d+\.\d+\.\d+", listed))

    first, second = network.attach(), network.attach()
    attached = [first, second]
    try:
        network.allow_broker(first.address)
        network.allow_broker(second.address)
        network.detach(attached.pop(0))
        assert first.address not in group() and second.address in group()
    finally:
        for link in attached:  # never a slot twice: another machine may have it by now
            network.detach(link)
