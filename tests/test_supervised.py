"""The local backend under its supervisor: what dies under load comes back by itself.

Each deployment runs under its own supervisord, as a VM's processes run under
systemd. Here a worker, the gunicorn master and the RabbitMQ node are killed
with ``kill -9`` while 4 clients send predictions; each test reports how many
requests failed and how long the deployment took to serve again.
"""

from __future__ import annotations

import os
import stat
import time

import psutil
import pytest

from labkit.backends.base import ProcessRow
from labkit.backends.local.supervisor import Supervisor
from labkit.experiments.load import recorded_load
from labkit.infra import procs

pytestmark = pytest.mark.slow

RECOVERY_S = 30  # the bound: serving again by itself within 30 s


def program(lab, name: str) -> dict:
    """The program's row as `status` shows it (supervisord's view: pid, state)."""
    return next(row for row in lab.status().processes if row["role"] == name)


def kill9(pid: int) -> float:
    psutil.Process(pid).kill()
    return time.monotonic()


def summaries_until(lab, wanted: str, timeout: float) -> list[tuple[float, str]]:
    """`status().summary` every 0.2 s until it reads ``wanted`` (or time runs out), with the times."""
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append((time.monotonic(), lab.status().summary))
        if seen[-1][1] == wanted:
            break
        time.sleep(0.2)
    return seen


def healthy(lab, summary: str) -> None:
    """Wait until status says ``summary``: each of gunicorn's processes pings the workers on its own,
    so the one a request reaches may be a second behind the one that told `deploy` all had answered."""
    seen = summaries_until(lab, summary, timeout=10)
    assert seen[-1][1] == summary, seen


def test_a_killed_worker_is_replaced_while_status_says_degraded(deployment_factory, report):
    lab = deployment_factory(workers=2)
    healthy(lab, "healthy: 2 of 2 workers")
    victim = program(lab, "worker-1")["id"]
    with recorded_load(lab.url, clients=4) as load:
        time.sleep(2)
        killed = kill9(victim)
        # /healthz's news is up to a second or two old: the missing worker shows within a few seconds.
        seen = summaries_until(lab, "degraded: 1 of 2 workers", timeout=10)
        # Each gunicorn process has news of its own: one may say 2 for a second more. The real
        # "healthy" comes once the replacement runs and answers.
        procs.wait_until(lambda: program(lab, "worker-1")["id"] not in (None, victim), timeout=10)
        seen += summaries_until(lab, "healthy: 2 of 2 workers", timeout=RECOVERY_S + 5)
        time.sleep(2)
    back = seen[-1][0] - killed
    counts = load.statuses()
    said = list(dict.fromkeys(summary for _, summary in seen))
    report(f"kill -9 of 1 of 2 workers under load (4 clients): {sum(counts.values())} requests, by status {counts}; "
           f"status said {said}; 2 of 2 again after {back:.1f} s")
    assert seen[-1][1] == "healthy: 2 of 2 workers", said
    assert back <= RECOVERY_S
    assert "degraded: 1 of 2 workers" in said  # not "healthy" while one is missing
    assert set(counts) == {200}, [a for a in load.answers() if a.status != 200][:3]
    assert counts[200] > 50
    replacement = program(lab, "worker-1")
    assert replacement["alive"] and replacement["id"] != victim


def test_a_killed_gunicorn_master_is_replaced(deployment_factory, report):
    lab = deployment_factory(workers=1)
    healthy(lab, "healthy: 1 of 1 worker")
    victim = program(lab, "web")["id"]
    with recorded_load(lab.url, clients=4, timeout=5) as load:
        time.sleep(2)
        killed = kill9(victim)
        procs.wait_until(lambda: load.first_run_of_successes(killed, 20) is not None, timeout=RECOVERY_S + 5,
                          interval=0.2)
        recovered = load.first_run_of_successes(killed, 20)
        time.sleep(3)
    counts, during = load.statuses(), load.statuses(sent_after=killed)
    failed = sum(n for status, n in during.items() if status != 200)
    report(f"kill -9 of the gunicorn master under load (4 clients): {sum(counts.values())} requests, "
           f"{failed} failed after the kill (by status {during}); "
           + (f"20 of 20 succeeded {recovered - killed:.1f} s after the kill" if recovered else "never recovered"))
    assert recovered is not None and recovered - killed <= RECOVERY_S, during
    assert set(load.statuses(sent_after=recovered)) == {200}
    # The master's orphaned workers served on until they noticed it gone; then the new master took over.
    row = program(lab, "web")
    assert row["id"] != victim
    web = procs.Proc("web", row["id"], psutil.Process(row["id"]).create_time())
    # gunicorn is behind nginx, on a unix socket: the new master took the socket's path over.
    sock = lab.state["web_socket"]
    assert procs.wait_until(lambda: any(str(c.laddr) == sock for c in psutil.Process(web.pid).net_connections("unix")),
                             timeout=RECOVERY_S)

    def orphans() -> list[int]:
        return [p.pid for p in psutil.process_iter(["cmdline", "ppid", "status"])
                if "gunicorn" in " ".join(p.info["cmdline"] or []) and sock in
                " ".join(p.info["cmdline"] or []) and web.pid not in (p.pid, p.info["ppid"])
                and p.info["status"] != psutil.STATUS_ZOMBIE]

    assert procs.wait_until(lambda: not orphans(), timeout=RECOVERY_S), orphans()
    healthy(lab, "healthy: 1 of 1 worker")


def test_a_killed_broker_is_restarted(deployment_factory, report):
    """kill -9 of the node's Erlang VM (the rabbitmq program: the script execs it): supervisord starts it
    again on the same ports, with the same data and user; the web tier and the worker reconnect."""
    lab = deployment_factory(workers=1)
    healthy(lab, "healthy: 1 of 1 worker")
    beam = psutil.Process(program(lab, "rabbitmq")["id"])
    assert beam.name().startswith("beam")
    with recorded_load(lab.url, clients=4) as load:
        time.sleep(2)
        killed = kill9(beam.pid)
        procs.wait_until(lambda: load.first_run_of_successes(killed, 20) is not None, timeout=RECOVERY_S + 5,
                          interval=0.2)
        recovered = load.first_run_of_successes(killed, 20)
        seen = summaries_until(lab, "healthy: 1 of 1 worker", timeout=RECOVERY_S)
        time.sleep(3)
    counts, during = load.statuses(), load.statuses(sent_after=killed)
    said = list(dict.fromkeys(summary for _, summary in seen))
    report(f"kill -9 of the RabbitMQ node under load (4 clients): {sum(counts.values())} requests, "
           f"after the kill by status {during}; "
           + (f"20 of 20 succeeded {recovered - killed:.1f} s after the kill" if recovered else "never recovered")
           + f"; status said {said}, healthy {seen[-1][0] - killed:.1f} s after the kill")
    assert recovered is not None and recovered - killed <= RECOVERY_S, during
    strange = [a for a in load.answers() if a.status not in (200, 503)]
    assert not strange, f"{len(strange)} answers neither 200 nor 503, e.g. {strange[:3]}"
    assert program(lab, "rabbitmq")["id"] != beam.pid
    assert seen[-1][1] == "healthy: 1 of 1 worker" and seen[-1][0] - killed <= RECOVERY_S, said


def ours(folder) -> list[psutil.Process]:
    """Processes that name the run directory in their command line or run in it."""
    inside = str(folder)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline, cwd = " ".join(process.info["cmdline"] or []), process.info["cwd"] or ""
        if process.pid != os.getpid() and (inside in cmdline or cwd.startswith(inside)):
            found.append(process)
    return found


def test_one_supervisor_per_deployment_and_scale_moves_only_the_workers_it_changes(deployment_factory):
    lab = deployment_factory(workers=1)
    folder = lab.run_dir.path
    conf, sock = folder / "supervisord.conf", Supervisor(folder).socket  # in the folder unless its path is long
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert "inet_http_server" not in conf.read_text()
    roles = [p["role"] for p in lab.state["processes"]]
    assert roles[0] == "supervisord" and sorted(roles[1:]) == ["epmd", "proxy", "rabbitmq", "web", "worker-1"]
    root = psutil.Process(lab.state["processes"][0]["pid"])
    assert {c.pid for c in root.children()} == {p["pid"] for p in lab.state["processes"][1:]}

    rows = lab.status().processes
    assert all(set(r) >= ProcessRow.__required_keys__ and isinstance(r["id"], int) for r in rows)  # every backend's
    before = {row["role"]: row["id"] for row in rows}
    lab.scale(2)
    after = {row["role"]: row["id"] for row in lab.status().processes}
    assert {k: after[k] for k in before} == before  # the update started worker-2 and touched nothing else
    lab.scale(1)
    assert {row["role"]: row["id"] for row in lab.status().processes} == before

    # Every socket of the deployment is on the loopback (or a unix socket in its folder).
    listening = [(p.pid, c.laddr) for p in ours(folder) + [root, *root.children(recursive=True)]
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening


def test_down_leaves_no_process_even_after_its_supervisor_was_killed(deployment_factory):
    lab = deployment_factory(workers=1)
    folder = lab.run_dir.path
    members = [psutil.Process(p["pid"]) for p in lab.state["processes"]]
    assert ours(folder)
    # supervisord dies (kill -9): its programs run on, unsupervised; `down` still finds them all.
    kill9(members[0].pid)
    lab.destroy()
    assert ours(folder) == []
    assert [m.pid for m in members if m.is_running() and m.status() != psutil.STATUS_ZOMBIE] == []
