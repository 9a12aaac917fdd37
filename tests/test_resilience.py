"""Failures under load: a worker killed mid-task, the broker going away and coming back.

Each test prints its request counts, so CI's log shows the zero."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from labkit import _load, _procs

pytestmark = pytest.mark.slow

ROW = [[6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.351, 31]]


def in_background(func, **kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", func(**kwargs)), daemon=True)
    thread.start()
    return thread, box


def test_killing_a_worker_mid_load_loses_no_request(deployment_factory, report):
    lab = deployment_factory(workers=2)
    thread, box = in_background(_load.run, url=lab.url, rows=ROW, concurrency=4, duration=8.0)
    time.sleep(2.5)
    victim = next(_procs.Proc.from_dict(p) for p in lab.state["processes"] if p["role"] == "worker-1")
    _procs.kill(victim)  # SIGKILL: no warm shutdown, no goodbye to the broker
    thread.join(timeout=60)
    result = box["result"]
    report(f"kill -9 of one of 2 workers under load: {result.requests} requests, {result.errors} failed")
    assert result.requests > 100
    assert result.errors == 0, result.error_samples
    assert httpx.get(f"{lab.url}/healthz").json()["workers"] == 1


def test_broker_outage_gives_quick_503_and_recovers(deployment_factory, report):
    lab = deployment_factory(workers=1)
    assert lab.post_predict(ROW)["predictions"]

    lab.backend.stop_broker(lab.run_dir, lab.state)
    timings = []
    for _ in range(5):
        started = time.monotonic()
        try:
            response = httpx.post(f"{lab.url}/api/predict", json={"instances": ROW}, timeout=30)
        except httpx.ReadTimeout:
            pytest.fail(f"no answer within 30 s while the broker is down:\n{lab.logs(30)}")
        timings.append(time.monotonic() - started)
        assert response.status_code == 503
        assert "broker" in response.json()["error"] or "worker" in response.json()["error"]
    health = httpx.get(f"{lab.url}/healthz", timeout=30)
    assert health.status_code == 503
    report(f"broker down: 503 after {max(timings):.2f} s at most")
    # Quick: well before the client's own patience, and no hang.
    assert max(timings) < 10

    lab.backend.start_broker(lab.run_dir, lab.state)
    # Nobody restarts the web server or the worker: they reconnect by themselves.
    recovered = _procs.wait_until(
        lambda: httpx.get(f"{lab.url}/healthz", timeout=10).status_code == 200, timeout=60, interval=0.5
    )
    assert recovered, httpx.get(f"{lab.url}/healthz").json()
    result = _load.run(lab.url, ROW, concurrency=4, requests=200)
    report(f"broker back: {result.requests} requests, {result.errors} failed")
    assert result.errors == 0, result.error_samples


def test_no_worker_answering_gives_503_within_the_timeout(deployment_factory, settings, report):
    """Workers frozen (SIGSTOP): the request gets a 503 after the predict timeout, not a hang,
    and the abandoned task expires instead of running later."""
    import signal

    lab = deployment_factory(workers=1)
    worker = next(_procs.Proc.from_dict(p) for p in lab.state["processes"] if p["role"] == "worker-1")
    worker.handle().send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = httpx.post(f"{lab.url}/api/predict", json={"instances": ROW}, timeout=30)
        waited = time.monotonic() - started
    finally:
        worker.handle().send_signal(signal.SIGCONT)
    report(f"no worker answering: {response.status_code} after {waited:.1f} s "
           f"(SERVER_PREDICT_TIMEOUT {settings.predict_timeout:g} s)")
    assert response.status_code == 503
    assert "no worker answered" in response.json()["error"]
    assert waited < settings.predict_timeout + 5
    # Once thawed, the worker discards the expired task and serves new ones.
    assert lab.post_predict(ROW)["predictions"]
    assert _procs.wait_until(lambda: "expired" in lab.logs(50).lower() or "revoked" in lab.logs(50).lower(), 10)
