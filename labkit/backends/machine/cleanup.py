"""What a crash left of the lab's machines on this host, found and removed (``labkit cleanup --machines``).

A machine belongs to a deployment when that deployment's state records its
nspawn process; the copy's folder tells which deployment that is
(``<home>/deployments/<name>/machine/rootfs``), or the machine cloud's server
(``<cloud>/machines/<id>/rootfs``, recorded in ``<cloud>/cloud.json``). Left over are machines no
state records (the labkit process that booted them was killed before it
could write or clean up), and lab namespaces no machine uses.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..._errors import LabkitError
from ...infra import procs
from . import network
from .machine import running_machines


@dataclass(frozen=True)
class Leftover:
    kind: str  # "machine" or "namespace"
    name: str
    detail: str
    process: psutil.Process | None = None
    link: network.Link | None = None
    folder: Path | None = None


def find() -> list[Leftover]:
    """What a crash left: machines no state records, and lab namespaces no machine uses."""
    return survey()[0]


def survey() -> tuple[list[Leftover], list[Leftover]]:
    """What a crash left (as ``find``), and the machines a deployment records: not left over
    (``labkit down`` stops them), but worth naming. One look at the host's processes for both."""
    found: list[Leftover] = []
    recorded: list[Leftover] = []
    used_netns: set[str] = set()
    for process in running_machines():
        args = process.info.get("cmdline") or process.cmdline()
        option = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}
        netns = option.get("--network-namespace-path", "").rsplit("/", 1)[-1]
        used_netns.add(netns)
        folder = Path(option.get("--directory", "")).parent
        name = option.get("--machine", "?")
        if (record := _record_of(folder, process)) is not None:
            recorded.append(Leftover("machine", name, str(record), folder=folder))
            continue
        link = next((link for link in network.links() if link.netns == netns), None)
        found.append(Leftover("machine", name, f"{folder} (no deployment records it)",
                              process=process, link=link, folder=folder))
    for link in network.links():
        if link.netns not in used_netns:
            found.append(Leftover("namespace", link.netns, f"{link.address}, no machine in it", link=link))
    return found, recorded


def remove(leftover: Leftover) -> None:
    if leftover.process is not None:
        try:
            leftover.process.terminate()  # nspawn powers the machine off
            _, alive = psutil.wait_procs([leftover.process], timeout=60)
            for process in alive:
                for child in process.children():
                    child.kill()  # the machine's PID 1: its whole namespace goes with it
                process.kill()
            psutil.wait_procs(alive, timeout=10)
        except psutil.NoSuchProcess:
            pass
        procs.reap(leftover.process)
    if leftover.link is not None:
        network.detach(leftover.link)
    if leftover.folder is not None:  # only the copy of the image: the folder may hold more (its console)
        shutil.rmtree(leftover.folder / "rootfs", ignore_errors=True)


def _record_of(folder: Path, process: psutil.Process) -> Path | None:
    """The file that records ``process`` as the machine in ``folder``: the machine backend's
    deployment state (``<run>/machine``), or the machine cloud's ``cloud.json`` (``<cloud>/machines/<id>``)."""
    from ..._state import RunDir

    try:
        started = process.create_time()
    except psutil.Error:
        return None

    def names_it(record: dict | None) -> bool:
        proc = (record or {}).get("proc") or {}
        return proc.get("pid") == process.pid and abs(proc.get("started", 0) - started) < 0.01

    run = RunDir(folder.parent.parent, folder.parent.name)
    try:
        if names_it(run.read().get("machine")):
            return run.state_file
    except (OSError, ValueError, LabkitError):
        pass
    cloud = folder.parent.parent / "cloud.json"
    try:
        servers = json.loads(cloud.read_text())["servers"]
    except (OSError, ValueError, KeyError):
        return None
    return cloud if any(names_it(server.get("machine")) for server in servers.values()) else None
