"""Nothing of a local deployment listens beyond the loopback.

The README promises it, and the Erlang distribution port matters most: whoever
reaches it with the node's cookie runs code as the lab's user. Every process
of a real deployment is checked (RabbitMQ's beam and what it starts, epmd,
gunicorn and its workers, the Celery workers), found both from the pids the
state records and from the deployment's folder in command lines.
"""

from __future__ import annotations

import ipaddress

import psutil
import pytest

from labkit.infra import procs

pytestmark = pytest.mark.slow


def deployment_processes(lab) -> list[psutil.Process]:
    """The recorded processes, everything they started, and anything naming the run directory."""
    found: dict[int, psutil.Process] = {}
    for proc in (procs.Proc.from_dict(p) for p in lab.state["processes"]):
        handle = proc.handle()
        assert handle is not None, f"{proc.role} is not running"
        for member in [handle, *handle.children(recursive=True)]:
            found[member.pid] = member
    folder = str(lab.run_dir.path)
    for process in psutil.process_iter(["cmdline"]):
        if folder in " ".join(process.info["cmdline"] or []):
            found.setdefault(process.pid, process)
    return list(found.values())


def listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket in LISTEN state the processes hold."""
    sockets = []
    for process in processes:
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue  # a short-lived helper (inet_gethost, say) that ended meanwhile
        sockets += [(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return sorted(sockets)


def test_every_listening_socket_is_on_the_loopback(deployment_factory, report):
    lab = deployment_factory(workers=1, name="sockets")
    processes = deployment_processes(lab)
    names = {p.name() for p in processes}
    assert {"beam.smp", "epmd"} <= names and any("gunicorn" in " ".join(p.cmdline()) for p in processes)
    sockets = listening(processes)
    node = lab.state["broker"]["node"]
    ports = {port for _, _, port in sockets}
    # All four servers are there: web, AMQP, Erlang distribution, epmd.
    assert {lab.state["port"], node["amqp_port"], node["dist_port"], node["epmd_port"]} <= ports, sockets
    report("listening sockets of a local deployment: " + ", ".join(f"{n} {a}:{p}" for n, a, p in sockets))
    beyond = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
    assert beyond == [], f"listening beyond the loopback: {beyond}"
