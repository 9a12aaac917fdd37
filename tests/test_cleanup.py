"""``labkit cleanup``: find everything the lab left on the cloud and delete it, on the fake cloud.

Most tests create servers without a floating IP: the fake boots a server (a
real local deployment) only when it gets one, so they run in well under a
second. The end-to-end test boots one and checks its processes are gone.
"""

from __future__ import annotations

import pytest

import labkit
from labkit._state import RunDir
from labkit.backends.openstack import cleanup as _cleanup
from labkit.backends.openstack.backend import CloudSettings, OpenStackBackend, default_owner
from labkit.backends.openstack.cloud import OpenStackCloud
from labkit.cli import main
from labkit.infra import cloudinit
from labkit.infra import procs as _procs
from labkit.testing.fake_cloud import FakeCloud

OWNER = default_owner()  # who `labkit cleanup` cleans up for, without --all-owners
CLASSMATE = "bob@other-laptop"


@pytest.fixture
def cloud(tmp_path, settings):
    return FakeCloud(tmp_path / "cloud", settings)


@pytest.fixture
def cli(monkeypatch, cloud, settings):
    """Run ``labkit ...`` against the fake cloud and the test's own home."""
    monkeypatch.setattr(OpenStackCloud, "connect", classmethod(lambda cls, name=None: cloud))
    monkeypatch.setenv("LABKIT_HOME", str(settings.home))

    def run(*args: str, input: str | None = None) -> int:
        if input is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(input))
        return main(["cleanup", *args])

    return run


def launch(cloud, settings, name="lab", owner=OWNER, group="labkit-server", boot=False):
    """What the OpenStack backend's ``up`` asks of the cloud; ``boot`` attaches the IP that starts the VM."""
    userdata = cloudinit.render("single-server", settings.model_dir)
    cloud.ensure_security_group(group, "0.0.0.0/0", "0.0.0.0/0")
    server = cloud.create_server(f"labkit-{name}", "image-1", "flavor-1", "network-1", "labkit", group, userdata,
                                 {"labkit-owner": owner, "labkit-task": "task-1", "labkit-deployment": name})
    cloud.wait_active(server.id)
    if boot:
        cloud.attach_floating_ip(server.id)
    return cloud.get_server(server.id)


def record_run(cloud, settings, name, server):
    """The run directory ``labkit.deploy`` keeps for an OpenStack deployment."""
    run = RunDir(settings.deployments_dir, name)
    run.create()
    run.write({"id": name, "name": name, "backend": "openstack", "server_id": server.id, "owner": OWNER,
               "floating_ip": server.public_ip, "url": None, "cloud": cloud.record()})
    return run


# -- the plan -----------------------------------------------------------------
def test_plan_lists_this_owners_servers_ips_groups_and_images_only(cloud, settings):
    mine = launch(cloud, settings)
    launch(cloud, settings, name="bobs", owner=CLASSMATE, group="labkit-bob")
    db = cloud._load()  # an IP whose server is long gone, as a crash would leave it
    db["floating_ips"]["127.0.0.77"] = {"id": "fip-leaked", "server_id": "gone", "owner": OWNER}
    cloud._save(db)
    image = cloud.add_image("labkit-snapshot")
    cloud.add_image("holiday photos")

    plan = _cleanup.find(cloud, OWNER)
    table = _cleanup.plan_table(plan)

    assert list(table.columns) == ["kind", "name", "id", "address/status", "owner"]
    assert table.values.tolist() == [
        ["server", "labkit-lab", mine.id, "ACTIVE", OWNER],
        ["floating IP", "127.0.0.77", "fip-leaked", "127.0.0.77 (DOWN)", OWNER],
        ["security group", "labkit-server", "sg-labkit-server", "in use by labkit-lab", "(shared)"],
        ["image", "labkit-snapshot", image, "active", "(shared)"],
    ]
    # The classmate's group is in use by their server: it is not in my plan.
    assert "labkit-bob" in {row[1] for row in _cleanup.plan_table(_cleanup.find(cloud, None)).values}


def test_delete_goes_servers_first_then_groups_and_images_and_forgets_ghosts(cloud, settings):
    server = launch(cloud, settings)
    image = cloud.add_image("base", tags=["labkit-base"])
    record_run(cloud, settings, "lab", server)
    said = []

    outcome = _cleanup.delete(cloud, _cleanup.find(cloud, OWNER), say=said.append, settings=settings, poll=0)

    assert [row[0] for row in outcome.deleted] == ["server", "security group", "image"]
    assert not cloud.list_lab_resources(None)
    assert outcome.forgotten == ["lab"] and labkit.deployments(settings) == []
    assert f"Deleted the image base ({image})." in said
    assert not outcome.failed and not outcome.left


def test_one_failing_delete_still_deletes_the_others_and_is_reported(cloud, settings, monkeypatch):
    launch(cloud, settings)
    keep = cloud.add_image("labkit-protected")
    cloud.add_image("labkit-snapshot")
    really_delete = cloud.delete_image

    def refuse_one(image_id):
        if image_id == keep:
            raise labkit.CloudError("Deleting the image failed: the cloud does not allow it (image is protected).")
        return really_delete(image_id)

    monkeypatch.setattr(cloud, "delete_image", refuse_one)
    with pytest.raises(labkit.CleanupIncomplete, match=r"1 of 4 resources could not be deleted") as caught:
        _cleanup.delete(cloud, _cleanup.find(cloud, OWNER), say=lambda _: None, settings=settings, poll=0)

    assert f"the image labkit-protected ({keep}): Deleting the image failed" in str(caught.value)
    assert "`labkit cleanup` again" in str(caught.value)
    left = cloud.list_lab_resources(None)
    assert not left.servers and not left.security_groups and [i["id"] for i in left.images] == [keep]
    assert [i["id"] for i in caught.value.outcome.left.images] == [keep]


def test_a_group_whose_server_could_not_be_deleted_is_kept_and_reported(cloud, settings, monkeypatch):
    server = launch(cloud, settings)
    monkeypatch.setattr(cloud, "delete_server", lambda *a, **k: (_ for _ in ()).throw(
        labkit.CloudError("Deleting the server failed: the cloud answered HTTP 500.")))
    with pytest.raises(labkit.CloudError, match="2 of 2") as caught:
        _cleanup.delete(cloud, _cleanup.find(cloud, OWNER), say=lambda _: None, settings=settings, poll=0)
    assert "kept, because the server(s) labkit-lab that use it could not be deleted" in str(caught.value)
    assert [s.id for s in cloud.list_lab_resources(None).servers] == [server.id]
    assert cloud.list_lab_resources(None).security_groups


# -- the command ------------------------------------------------------------------
def test_declining_the_prompt_deletes_nothing(cli, cloud, settings, capsys):
    launch(cloud, settings)
    assert cli(input="n\n") == 0
    out = capsys.readouterr().out
    assert "labkit-lab" in out and "labkit-server" in out and "Delete these 2 resource(s)?" in out
    assert "Nothing was deleted." in out
    assert len(cloud.list_lab_resources(None).servers) == 1 and cloud.list_lab_resources(None).security_groups


def test_answering_yes_deletes(cli, cloud, settings, capsys):
    launch(cloud, settings)
    assert cli(input="y\n") == 0
    assert "Deleted 2 resource(s)" in capsys.readouterr().out
    assert not cloud.list_lab_resources(None)


def test_all_owners_includes_a_classmates_lab(cli, cloud, settings, capsys):
    launch(cloud, settings, owner=CLASSMATE)
    assert cli("--yes") == 0
    assert "Nothing of the lab's is left on the cloud." in capsys.readouterr().out
    assert cli("--yes", "--all-owners") == 0
    assert CLASSMATE in capsys.readouterr().out and not cloud.list_lab_resources(None)


def test_a_failure_is_one_line_and_exit_code_1(cli, cloud, settings, monkeypatch, capsys):
    launch(cloud, settings)
    cloud.add_image("labkit-snapshot")
    monkeypatch.setattr(cloud, "delete_image", lambda image_id: (_ for _ in ()).throw(
        labkit.CloudError("Deleting the image failed (HTTP 500): retry.")))
    assert cli("--yes") == 1
    captured = capsys.readouterr()
    assert "Deleted the server labkit-lab" in captured.out
    assert captured.err.startswith("labkit: 1 of 3 resources could not be deleted")
    assert cloud.list_lab_resources(None).images and not cloud.list_lab_resources(None).servers


# -- end to end: a forgotten VM that really runs ------------------------------------
@pytest.mark.slow
def test_a_forgotten_vm_is_found_and_removed_with_one_command(cli, cloud, settings, tmp_path, capsys):
    public_key = tmp_path / "id_ed25519.pub"
    public_key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFakeCloudOnly student@lab-test\n")
    backend = OpenStackBackend(connect=lambda: cloud, cloud_settings=CloudSettings(
        public_key=public_key, network="private", poll=0.3, owner=OWNER))
    # labkit.deploy makes the same calls as launch(boot=True), and keeps the run directory `status` reads.
    lab = labkit.deploy(backend, name="forgotten", workers=1, settings=settings)
    try:
        [server] = cloud.list_lab_resources(OWNER).servers
        vm = RunDir(cloud.settings.deployments_dir, f"vm-{server.id}")
        procs = [_procs.Proc.from_dict(p) for p in vm.read()["processes"]]
        assert procs and all(p.alive() for p in procs)
        capsys.readouterr()

        assert cli("--yes") == 0  # no prompt: stdin is not even read

        out = capsys.readouterr().out
        assert "Delete these" not in out and server.public_ip in out
        assert "Deleted 3 resource(s)" in out and "Forgot the deployment 'forgotten'" in out
        assert not cloud.list_lab_resources(None)
        assert not any(p.alive() for p in procs)
        assert not _procs.port_in_use(5100, server.public_ip)
        assert labkit.deployments(settings) == []  # `labkit status` shows no ghost
        assert cli("--yes") == 0
        assert "Nothing of the lab's is left on the cloud." in capsys.readouterr().out
    finally:
        lab.destroy()
