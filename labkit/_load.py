"""A small HTTP load generator for ``POST /api/predict``.

Threads with one persistent ``http.client`` connection each: lighter than a
full HTTP client library, because on a 2-core machine the client shares the
CPU with the server it measures.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray  # of the successful requests
    error_samples: tuple[str, ...] = ()

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


class _Client:
    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run(
    url: str,
    rows: list[list[float]],
    concurrency: int = 16,
    requests: int | None = None,
    duration: float | None = None,
    timeout: float = 30.0,
    on_response=None,
) -> LoadResult:
    """Send ``requests`` requests (or for ``duration`` seconds) from ``concurrency`` threads.

    Each request carries one row, taken in turn from ``rows``. A request
    counts as an error unless the answer is 200 with predictions.
    """
    if requests is None and duration is None:
        raise ValueError("give requests or duration")
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows]
    lock = threading.Lock()
    counter = iter(range(requests if requests is not None else 10**12))
    deadline = time.perf_counter() + duration if duration is not None else float("inf")
    latencies: list[float] = []
    errors: list[str] = []

    def next_index() -> int | None:
        with lock:
            if time.perf_counter() >= deadline:
                return None
            return next(counter, None)

    def worker() -> None:
        client = _Client(url, timeout)
        try:
            while (i := next_index()) is not None:
                started = time.perf_counter()
                try:
                    status, body = client.post("/api/predict", bodies[i % len(bodies)])
                    ok = status == 200
                    problem = None if ok else f"HTTP {status}: {body[:120]!r}"
                except OSError as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc}"
                    client.close()
                    client.conn = None
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(problem)
                if on_response is not None:
                    on_response(ok)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies) + len(errors),
        errors=len(errors),
        seconds=seconds,
        latencies_ms=np.asarray(latencies),
        error_samples=tuple(errors[:5]),
    )
