"""What the machine backend's test modules share: one deployment per module, and what down must leave."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager

import labkit
from labkit.backends import machine as machines
from labkit.backends.machine import network
from labkit.backends.machine.machine import Machine


@contextmanager
def deployed(settings, **kwargs):
    """``labkit.deploy("machine", ...)``, timed (``lab.boot_to_healthy``), destroyed at the end whatever happens."""
    started = time.monotonic()
    lab = labkit.deploy("machine", settings=settings, **kwargs)
    lab.boot_to_healthy = time.monotonic() - started
    try:
        yield lab
    finally:
        lab.destroy()


def machine_of(lab) -> Machine:
    return Machine.from_dict(lab.state["machine"])


def assert_down_leaves_nothing(lab) -> None:
    """``destroy()`` powers the machine off and removes its copy, namespace, veth and (the last one) the rules."""
    machine = machine_of(lab)
    lab.destroy()
    assert not machine.running() and not machine.root.exists()
    assert machine.link.netns not in [link.netns for link in network.links()]
    assert subprocess.run(["ip", "link", "show", machine.link.host_interface], capture_output=True).returncode != 0
    assert not [p for p in machines.machine.running_machines() if f"--machine={machine.name}" in p.cmdline()]
    if not network.links():  # no other machine of the lab on this host: the table and forwarding are gone too
        assert subprocess.run(["nft", "list", "table", "ip", network.TABLE], capture_output=True).returncode != 0
    assert not labkit.deployments(lab.settings)
