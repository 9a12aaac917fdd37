"""Find and delete everything the lab left on an OpenStack cloud (``labkit cleanup``).

    >>> from labkit import _cleanup
    >>> from labkit.backends.openstack.cloud import OpenStackCloud
    >>> cloud = OpenStackCloud.connect()
    >>> plan = _cleanup.find(cloud, owner="alice@laptop")   # owner=None: every owner's
    >>> _cleanup.plan_table(plan)                           # a DataFrame, for a notebook
    >>> _cleanup.delete(cloud, plan)

``delete`` goes in the one order the cloud accepts: servers first (and waits
until Nova no longer knows them), then floating IPs, then the security groups
no server uses any more, then images. One item failing does not stop the
others; the failures are listed together at the end, in a ``CleanupIncomplete`` (a ``CloudError``)
whose ``outcome`` says what was deleted and what is left. Last, the local run
directories of OpenStack deployments whose server is gone are removed, so
``labkit status`` shows no ghosts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..._config import Settings
from ..._errors import CleanupIncomplete, LabkitError
from ..._state import RunDir, names
from .cloud import OWNER_KEY, LabResources

COLUMNS = ["kind", "name", "id", "address/status", "owner"]
SHARED = "(shared)"


@dataclass
class Outcome:
    """What ``delete`` did: ``deleted`` and ``failed`` hold (kind, name, id[, why]) rows."""

    deleted: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)
    left: LabResources = field(default_factory=LabResources)
    forgotten: list[str] = field(default_factory=list)  # local run directories removed


def find(cloud, owner: str | None) -> LabResources:
    """The lab's resources of ``owner`` (None: every owner's) that ``delete`` would remove.

    Security groups are shared by a lab's deployments: one still used by a
    server that is not in the plan (a classmate's) is left out of it.
    """
    found = cloud.list_lab_resources(owner)
    planned = {s.name for s in found.servers}
    groups = [g for g in found.security_groups if set(g.get("in_use_by") or []) <= planned]
    return replace(found, security_groups=groups)


def plan_table(resources: LabResources):
    """One row per resource: kind, name, id, address/status, owner."""
    import pandas as pd

    rows = []
    for s in resources.servers:
        where = f"{s.status} at {s.public_ip}" if s.public_ip else s.status
        rows.append(("server", s.name, s.id, where, s.owner or ""))
    owners = {ip: s.owner for s in resources.servers for ip in s.floating_ips}
    for f in resources.floating_ips:
        rows.append(("floating IP", f.address, f.id, f.address + (f" ({f.status})" if f.status else ""),
                     owners.get(f.address) or _described_owner(f.description)))
    for g in resources.security_groups:
        used = g.get("in_use_by") or []
        rows.append(("security group", g["name"], g["id"], f"in use by {', '.join(used)}" if used else "unused",
                     SHARED))
    for i in resources.images:
        rows.append(("image", i["name"], i["id"], i.get("status") or "", SHARED))
    return pd.DataFrame(rows, columns=COLUMNS)


def _described_owner(description: str) -> str:
    """The owner in a floating IP's description ('labkit-owner=X labkit-server=Y'), or ''."""
    for word in (description or "").split():
        if word.startswith(f"{OWNER_KEY}="):
            return word.split("=", 1)[1]
    return ""


def delete(
    cloud,
    resources: LabResources,
    say: Callable[[str], object] = print,
    *,
    settings: Settings | None = None,
    timeout: float = 300.0,
    poll: float = 2.0,
) -> Outcome:
    """Delete ``resources`` (from ``find``) in a safe order; raise ``CleanupIncomplete`` listing every failure."""
    settings = settings or Settings.from_env()
    outcome = Outcome()

    def done(kind: str, name: str, item_id: str, existed: bool) -> None:
        outcome.deleted.append((kind, name, item_id))
        say(f"Deleted the {kind} {name} ({item_id})." if existed
            else f"The {kind} {name} ({item_id}) was gone already.")

    def fail(kind: str, name: str, item_id: str, why: str) -> None:
        outcome.failed.append((kind, name, item_id, why))
        say(f"Could not delete the {kind} {name} ({item_id}): {why}")

    # 1. Servers: ask for every deletion first, then wait for all of them together.
    asked = []
    for server in resources.servers:
        try:
            existed = cloud.delete_server(server.id, wait=False)
        except LabkitError as exc:
            fail("server", server.name, server.id, str(exc))
            continue
        if existed:
            asked.append(server)
        else:
            done("server", server.name, server.id, False)
    deadline = time.monotonic() + timeout
    waiting = list(asked)
    while waiting:
        for server in list(waiting):
            try:
                still = cloud.get_server(server.id)
            except LabkitError as exc:
                fail("server", server.name, server.id, f"could not check that it is gone: {exc}")
                waiting.remove(server)
                continue
            if still is None:
                done("server", server.name, server.id, True)
                waiting.remove(server)
            elif time.monotonic() > deadline:
                fail("server", server.name, server.id,
                     f"still {still.status} after {timeout:g} s: run `labkit cleanup` again in a minute.")
                waiting.remove(server)
        if waiting:
            time.sleep(poll)
    gone = {item_id for kind, _, item_id in outcome.deleted if kind == "server"}
    still_there = [s for s in resources.servers if s.id not in gone]

    # 2. Floating IPs (Neutron keeps them when their server goes).
    for fip in resources.floating_ips:
        try:
            done("floating IP", fip.address, fip.id, cloud.release_floating_ip(fip.address))
        except LabkitError as exc:
            fail("floating IP", fip.address, fip.id, str(exc))

    # 3. Security groups no server uses any more.
    left_servers = {s.name for s in still_there}
    for group in resources.security_groups:
        users = sorted(set(group.get("in_use_by") or []) & left_servers)
        if users:
            fail("security group", group["name"], group["id"],
                 f"kept, because the server(s) {', '.join(users)} that use it could not be deleted.")
            continue
        try:
            done("security group", group["name"], group["id"], cloud.delete_security_group(group["id"]))
        except LabkitError as exc:
            fail("security group", group["name"], group["id"], str(exc))

    # 4. Images.
    for image in resources.images:
        try:
            done("image", image["name"], image["id"], cloud.delete_image(image["id"]))
        except LabkitError as exc:
            fail("image", image["name"], image["id"], str(exc))

    outcome.forgotten = forget_gone(cloud, settings, say)
    failed_ids = {row[2] for row in outcome.failed}
    outcome.left = LabResources(
        servers=[s for s in resources.servers if s.id in failed_ids],
        floating_ips=[f for f in resources.floating_ips if f.id in failed_ids],
        security_groups=[g for g in resources.security_groups if g["id"] in failed_ids],
        images=[i for i in resources.images if i["id"] in failed_ids],
    )
    if outcome.failed:
        lines = "\n".join(f"  - the {kind} {name} ({item_id}): {why}" for kind, name, item_id, why in outcome.failed)
        raise CleanupIncomplete(
            f"{len(outcome.failed)} of {len(outcome.failed) + len(outcome.deleted)} resources could not be "
            f"deleted and are still on the cloud:\n{lines}\nFix what the messages say, then run "
            "`labkit cleanup` again.", outcome)
    return outcome


def forget_gone(cloud, settings: Settings | None = None, say: Callable[[str], object] = print) -> list[str]:
    """Remove the local run directories of OpenStack deployments on ``cloud`` whose server is gone."""
    settings = settings or Settings.from_env()
    here = cloud.record()
    forgotten = []
    for name in names(settings.deployments_dir):
        run = RunDir(settings.deployments_dir, name)
        try:
            state = run.read()
        except (OSError, ValueError):
            continue  # being written or removed just now
        if state.get("backend") != "openstack" or not state.get("server_id"):
            continue  # another backend, or a launch still under way
        if (state.get("cloud") or {"kind": "openstack"}) != here:
            continue
        try:
            if cloud.get_server(state["server_id"]) is not None:
                continue
        except LabkitError as exc:
            say(f"Kept the deployment {name!r}: could not check its server ({exc})")
            continue
        run.remove()
        forgotten.append(name)
        say(f"Forgot the deployment {name!r}: its server no longer exists.")
    return forgotten
