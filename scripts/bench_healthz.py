"""What polling /healthz costs predictions: predict's p50/p95 with 0 and with 16 pollers, in one run.

    .venv/bin/python scripts/bench_healthz.py [--seconds 10] [--clients 4] [--pollers 16] [--url URL]

Without ``--url`` it deploys a local deployment of its own (``bench-healthz``, 1 worker,
the settings of ``labkit up``) and takes it down at the end. Each row measures
``POST /api/predict`` from ``--clients`` clients for ``--seconds`` seconds while the pollers
GET /healthz: none; each every 0.5 s, start to start (what a ping inside the request allowed
at most, so the same polling for the old and the new /healthz); back to back (a flood: with
answers in milliseconds it is CPU, not threads, that it takes from predictions). Figures are
comparable within one run only: this machine is shared.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

import numpy as np

ROWS = [[6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.351, 31]]


def poll(url: str, pollers: int, period: float, stop: threading.Event, latencies: list[float], failures: list[int]):
    """``pollers`` threads, each a GET /healthz every ``period`` seconds (start to start; 0: back to back)."""
    parts = urlsplit(url)

    def loop() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures.append(response.status)
            except (OSError, http.client.HTTPException):
                failures.append(0)
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            if period:
                stop.wait(max(0.0, period - (time.perf_counter() - started)))
        conn.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    return threads


def measure(url: str, clients: int, seconds: float, pollers: int, period: float) -> list[str]:
    from labkit.experiments import load

    stop, latencies, failures = threading.Event(), [], []
    threads = poll(url, pollers, period, stop, latencies, failures)
    try:
        time.sleep(0.5 if pollers else 0)  # the pollers under way before the first prediction
        result = load.run(url, ROWS, concurrency=clients, duration=seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
    if pollers == 0:
        how = "no /healthz pollers"
    else:
        how = f"{pollers} pollers, " + (f"each a GET every {period:g} s" if period else "back to back")
    health = f"{len(latencies) + len(failures)} ({np.percentile(latencies, 50):.1f} ms)" if latencies else "0"
    return [how, str(result.requests), str(result.errors), f"{result.percentile(50):.1f}",
            f"{result.percentile(95):.1f}", health, str(len(failures))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of predictions per row (10)")
    parser.add_argument("--clients", type=int, default=4, help="clients sending predictions (4)")
    parser.add_argument("--pollers", type=int, default=16, help="clients polling /healthz (16)")
    parser.add_argument("--url", help="a running server to measure (default: deploy one, then take it down)")
    args = parser.parse_args(argv)

    import labkit
    from labkit.experiments import load

    lab = None
    url = args.url
    if url is None:
        lab = labkit.deploy("local", name="bench-healthz", workers=1, settings=labkit.Settings.from_env())
        url = lab.url
    try:
        load.run(url, ROWS, concurrency=2, requests=50)  # warm up: connections, the model's first call
        header = ["/healthz during the run", "predictions", "failed", "predict p50 ms", "predict p95 ms",
                  "/healthz answers (p50)", "/healthz failed"]
        rows = [measure(url, args.clients, args.seconds, pollers, period)
                for pollers, period in [(0, 0.0), (args.pollers, 0.5), (args.pollers, 0.0)]]
    finally:
        if lab is not None:
            lab.destroy()
    from labkit.notebook.display import Table

    print(f"{args.clients} clients sending POST /api/predict (one row) for {args.seconds:g} s per row, {url}")
    print(Table(header, rows, right=(1, 2, 3, 4, 5, 6)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
