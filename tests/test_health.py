"""/healthz and the welcome page answer from a background ping (production_server/health.py).

Through Flask's test client, with a stand-in ping that the tests make quick, slow, or fail:
/healthz answers at once whatever the ping does, says how old its news is, follows a
worker leaving and the broker going away within about one interval, and never says ok on
news too old to trust. The thread starts when first asked, in the process that asks (a
forked child starts its own), and stops.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from test_api import closed_port

from production_server import create_app
from production_server.health import Unreachable, WorkerWatch

INTERVAL = 0.2
NAMES = ["worker-1.lab@vm", "worker-2.lab@vm"]


class FakePing:
    """A ping that answers ``names``, raises ``problem``, or blocks while ``gate`` is closed."""

    def __init__(self):
        self.names = list(NAMES)
        self.problem: str | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def __call__(self) -> list[str]:
        self.calls += 1
        self.gate.wait()
        if self.problem:
            raise Unreachable(self.problem)
        return list(self.names)


@pytest.fixture
def ping():
    fake = FakePing()
    yield fake
    fake.gate.set()  # never leave the thread blocked


@pytest.fixture
def app(ping):
    app = create_app(test_config={"BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}//",
                                  "PREDICT_TIMEOUT": 1.0, "HEALTH_TIMEOUT": 0.1, "TESTING": True})
    watch = app.extensions["worker_watch"] = WorkerWatch(ping, interval=INTERVAL, timeout=0.1)
    yield app
    ping.gate.set()
    watch.stop()
    assert not watch.running()


def healthz(client) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = client.get("/healthz")
    return response.status_code, response.get_json(), time.monotonic() - started


def until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    return None


def test_healthz_answers_from_the_background_check_with_its_age(app, ping):
    client = app.test_client()
    status, body, _ = healthz(client)  # the first request waits for the first ping, only
    assert status == 200, body
    assert body == {"status": "ok", "workers": 2, "worker_names": NAMES, "checked_s_ago": body["checked_s_ago"]}
    assert 0 <= body["checked_s_ago"] < 1.0
    calls = ping.calls
    answers = [healthz(client) for _ in range(30)]
    assert all(status == 200 for status, _, _ in answers)
    # Thirty requests did not ping thirty times: the thread pings every INTERVAL seconds.
    assert ping.calls - calls < 10


def test_healthz_answers_at_once_while_the_ping_is_slow(app, ping):
    client = app.test_client()
    assert healthz(client)[0] == 200
    ping.gate.clear()  # the next ping hangs, as one to a broker that does not answer would
    until(lambda: ping.calls >= 2 and not ping.gate.is_set())
    time.sleep(2 * INTERVAL)
    status, body, took = healthz(client)
    assert took < 1.0, f"/healthz waited {took:.2f} s for a ping"  # that ping never ends
    assert status == 200 and body["checked_s_ago"] >= INTERVAL  # the last news, and how old it is
    # A ping waiting for the broker past its timeout is a 503 that says how long, never an ok.
    hung = time.monotonic()
    stale = until(lambda: (answer := healthz(client))[0] == 503 and answer, timeout=10)
    assert stale, "an old reading was still ok"
    status, body, took = stale
    assert took < 1.0
    assert time.monotonic() - hung < 2.0, "it trusted old news although the check had hung"
    assert body["status"] == "unavailable" and body["workers"] == 0
    assert "the last check ended" in body["error"] and "the one since has waited" in body["error"]
    assert body["checked_s_ago"] >= round(app.extensions["worker_watch"].hung_after, 2)
    ping.gate.set()
    assert until(lambda: healthz(client)[0] == 200), "it did not recover once the ping answered again"


def test_healthz_follows_a_worker_leaving_and_the_broker_going_away(app, ping):
    client = app.test_client()
    assert healthz(client)[1]["workers"] == 2

    ping.names = NAMES[:1]
    left = time.monotonic()
    assert until(lambda: healthz(client)[1]["workers"] == 1), "a worker left, /healthz still counts it"
    assert time.monotonic() - left < 2.0
    assert healthz(client)[1]["worker_names"] == NAMES[:1]

    ping.names = []
    assert until(lambda: healthz(client)[0] == 503)
    assert healthz(client)[1]["error"] == "the broker answers, but no worker replied to a ping"

    ping.names, ping.problem = list(NAMES), "the message broker is unreachable ([Errno 111] Connection refused)"
    gone = time.monotonic()
    status, body, _ = until(lambda: (answer := healthz(client))[0] == 503 and "unreachable" in answer[1]["error"] and answer)
    assert time.monotonic() - gone < 2.0
    assert body == {"error": ping.problem, "status": "unavailable", "workers": 0, "worker_names": [],
                    "checked_s_ago": body["checked_s_ago"]}
    assert client.get("/healthz").headers["Retry-After"] == "1"

    ping.problem = None
    assert until(lambda: healthz(client)[1]["workers"] == 2), "the broker came back, /healthz did not"


def test_the_welcome_page_lists_workers_from_the_same_check(app, ping, monkeypatch):
    from production_server import pages

    monkeypatch.setattr(pages, "call", lambda task, *a, **k: {"version": "v1", "accuracy": 0.75,
                                                              "trained_at": "2024-01-01T00:00:00Z", "params": {}})
    client = app.test_client()
    assert "worker-2 (deployment lab)" in client.get("/").get_data(as_text=True)
    ping.gate.clear()
    until(lambda: not ping.gate.is_set() and ping.calls >= 2)
    started = time.monotonic()
    page = client.get("/").get_data(as_text=True)
    assert time.monotonic() - started < 1.0  # the ping is blocked for good
    assert "worker-1 (deployment lab)" in page
    ping.gate.set()
    ping.problem = "the message broker is unreachable (test)"
    assert until(lambda: "Not ready: the message broker is unreachable (test)" in client.get("/").get_data(as_text=True))


def test_the_thread_starts_when_asked_and_stops(ping):
    watch = WorkerWatch(ping, interval=INTERVAL, timeout=0.1, idle_after=0.5)
    assert not watch.running() and ping.calls == 0  # creating the app pings nobody
    assert watch.reading().workers == tuple(NAMES)
    assert watch.running()
    watch.stop()
    assert not watch.running()
    calls = ping.calls
    time.sleep(2 * INTERVAL)
    assert ping.calls == calls  # stopped means no more pings
    assert watch.reading().problem is None and watch.running()  # asked again: it starts again
    # Nobody asking for idle_after seconds: it stops by itself, and starts again when asked.
    assert until(lambda: not watch.running(), timeout=3)
    assert watch.reading().workers == tuple(NAMES)
    watch.stop()


def test_a_forked_child_starts_its_own_thread():
    """gunicorn forks its workers: a child must not trust its parent's thread or readings."""
    script = textwrap.dedent("""
        import os, sys
        from production_server.health import WorkerWatch
        watch = WorkerWatch(lambda: [f"pinged-by-{os.getpid()}"], interval=0.1, timeout=0.1)
        assert watch.reading().workers == (f"pinged-by-{os.getpid()}",) and watch.running()
        pid = os.fork()
        if pid == 0:
            ok = not watch.running() and watch.reading().workers == (f"pinged-by-{os.getpid()}",)
            ok = ok and watch.running()
            watch.stop()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        watch.stop()
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_healthz_of_a_deployment_answers_at_once_and_follows_workers_and_broker(deployment_factory, report):
    """A real deployment: 16 clients polling /healthz get answers well within the ping's own
    0.5 s wait (it used to hold a gunicorn thread for all of it), and /healthz follows a worker
    that stops answering and comes back, and the broker killed with kill -9."""
    from test_resilience import kill_broker

    from labkit.experiments.load import recorded_load
    from labkit.infra import procs

    lab = deployment_factory(workers=2)

    def health() -> dict:
        return httpx.get(f"{lab.url}/healthz", timeout=10).json()

    with recorded_load(lab.url, clients=16, path="/healthz") as polls:
        time.sleep(4)
    answers = polls.answers()
    took = sorted(a.done - a.sent for a in answers)
    median = took[len(took) // 2]
    assert {a.status for a in answers} == {200}, polls.statuses()
    names = health()["worker_names"]
    report(f"/healthz with 16 pollers: {len(answers)} answers, median {median * 1000:.0f} ms "
           f"(the ping itself waits 500 ms)")
    assert median < 0.25, f"/healthz took {median:.2f} s: it waits for the ping"

    assert health()["workers"] == 2 and health()["checked_s_ago"] < 2

    def settles(predicate, timeout: float = 10) -> float:
        """Seconds until ``predicate`` holds for 6 answers in a row: each of gunicorn's 2 processes
        keeps its own reading, and the other one may be a ping behind."""
        started, run, first = time.monotonic(), 0, None
        while time.monotonic() - started < timeout:
            asked = time.monotonic()
            if predicate(health()):
                run, first = run + 1, first if run else asked
                if run == 6:
                    return first - started
            else:
                run = 0
            time.sleep(0.05)
        raise AssertionError(f"not settled within {timeout} s: {health()}")

    # A worker that stops answering (frozen with SIGSTOP: a supervisor would restart a killed one).
    victim = next(procs.Proc.from_dict(p) for p in lab.state["processes"] if p["role"] == "worker-2")
    victim.handle().send_signal(signal.SIGSTOP)
    try:
        worker_gone = settles(lambda h: h["worker_names"] == [n for n in names if n.startswith("worker-1.")])
    finally:
        victim.handle().send_signal(signal.SIGCONT)
    worker_back = settles(lambda h: h["worker_names"] == names)

    with recorded_load(lab.url, clients=1, path="/healthz", pause=0.05) as polls:
        killed = time.monotonic()
        kill_broker(lab, "kill -9")
        stopped = time.monotonic()  # surely down from here (a supervisor may have restarted it before)
        settles(lambda h: h["status"] == "unavailable")
    first_503 = min(a.done for a in polls.answers(killed) if a.status == 503) - killed
    # Until every answer, from either process, says unavailable: at most a check behind.
    last_ok = max((a.done for a in polls.answers(killed) if a.status == 200), default=killed)
    broker_gone = max(0.0, last_ok - stopped)
    answer = health()
    report(f"/healthz followed a worker frozen in {worker_gone:.1f} s, thawed in {worker_back:.1f} s; "
           f"the broker killed: a first 503 after {first_503:.1f} s, only 503s {broker_gone:.1f} s after it was "
           f"down for good ({answer['error']!r})")
    assert worker_gone < 3.5 and worker_back < 3.5 and broker_gone < 2.5, (worker_gone, worker_back, broker_gone)
    assert "broker" in answer["error"] and answer["workers"] == 0
