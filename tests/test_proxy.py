"""Slow and idle clients do not deny service: nginx buffers in front of gunicorn (local backend).

gunicorn's threaded workers give a connection a thread for as long as it lasts:
18 clients sending their headers a byte a second used to make every normal
request time out. Every client here connects to 127.0.0.1 only, and each test
is over within seconds.
"""

from __future__ import annotations

import time

import httpx
import pytest

from labkit.experiments.load import Crowd

pytestmark = pytest.mark.slow

ROW = [[6, 148, 72, 35, 0, 33.6, 0.627, 50]]


def normal_requests(url: str, count: int = 10, patience: float = 3.0) -> list[tuple[int, float]]:
    """``count`` predictions, one after the other, each on a new connection: (status or 0, seconds)."""
    answers = []
    for _ in range(count):
        started = time.monotonic()
        try:
            status = httpx.post(f"{url}/api/predict", json={"instances": ROW}, timeout=patience).status_code
        except httpx.HTTPError:
            status = 0
        answers.append((status, time.monotonic() - started))
    return answers


def answered_in_a_crowd(url: str, host: str, port: int, clients: int, kind: str, report, where: str = "") -> None:
    """10 normal predictions while ``clients`` slow or idle connections hold on: each answered within 3 s."""
    assert normal_requests(url, 2)[-1][0] == 200  # warm
    with Crowd(port, clients, kind, host=host):
        time.sleep(2)  # the crowd holds its connections (and the threads they would take) by now
        answers = normal_requests(url)
    ok = [seconds for status, seconds in answers if status == 200 and seconds <= 3.0]
    report(f"{where}{clients} clients ({kind}): {len(ok)} of 10 normal predictions "
           f"answered within 3 s (slowest {max(s for _, s in answers):.2f} s)")
    assert len(ok) == 10, answers


# 18 slow headers, 16 slow bodies or 200 idle connections took every gunicorn thread before nginx stood in front.
@pytest.mark.parametrize("clients, kind", [(100, "slow headers"), (200, "idle"), (16, "slow bodies")],
                         ids=["100 slow headers", "200 idle", "16 slow bodies"])
def test_slow_or_idle_clients_leave_normal_requests_answered(shared_lab, report, clients, kind):
    answered_in_a_crowd(shared_lab.url, "127.0.0.1", shared_lab.state["port"], clients, kind, report)


def test_a_body_too_large_is_a_json_413_from_the_proxy(shared_lab):
    response = httpx.post(f"{shared_lab.url}/api/predict", content=b"{" + b" " * 300_000 + b"}",
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert "larger than 262144 bytes" in response.json()["error"]


def test_the_proxy_listens_on_the_loopback_and_gunicorn_on_a_unix_socket(shared_lab):
    import psutil

    rows = {row["role"]: row for row in shared_lab.status().processes}
    assert rows["proxy"]["alive"] and rows["web"]["alive"]
    nginx = psutil.Process(rows["proxy"]["id"])
    assert nginx.name() == "nginx"
    gunicorn = psutil.Process(rows["web"]["id"])
    assert [c for c in gunicorn.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
    assert any(str(c.laddr).endswith(".sock") for c in gunicorn.net_connections(kind="unix"))


def test_missing_nginx_is_explained(settings, monkeypatch, tmp_path):
    import labkit

    monkeypatch.setattr("labkit.infra.nginx.SYSTEM_PATHS", (str(tmp_path / "nginx"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(labkit.PrerequisiteMissing, match=r"sudo apt-get install nginx"):
        labkit.deploy("local", name="nonginx", settings=settings)
    assert labkit.deployments(settings) == []
