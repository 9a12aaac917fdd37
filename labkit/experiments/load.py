"""A small HTTP load generator for ``POST /api/predict``.

``run`` measures (the benchmarks); ``recorded_load`` keeps every answer with its time (the fault drills);
``Crowd`` is the slow or idle clients a buffering proxy must hold off.

Threads with one persistent ``http.client`` connection each: lighter than a
full HTTP client library, because on a 2-core machine the client shares the
CPU with the server it measures.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence
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


def address(url: str) -> tuple[str, int]:
    """The host and port an ``http://`` URL names (port 80 if it names none)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: give the server's URL, e.g. http://127.0.0.1:5100")
    return parts.hostname, parts.port or 80


class _Client:
    def __init__(self, url: str, timeout: float):
        self.host, self.port = address(url)
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
                    problem = "" if ok else f"HTTP {status}: {body[:120]!r}"
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


DRILL_ROWS = ([6, 148, 72, 35, 0, 33.6, 0.627, 50], [1, 85, 66, 29, 0, 26.6, 0.351, 31],
              [8, 183, 64, 0, 0, 23.3, 0.672, 32])


# -- every answer, with its status and time: for drills where the status matters ----------------
@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the request went out
    done: float  # ... and when its answer (or its failure) came
    status: int  # the HTTP status; 0 when there was no HTTP answer at all
    detail: str = ""  # the start of the body, or the exception, when status is not 200


class Recorder:
    """The answers a ``recorded_load`` has had so far, in the order they came."""

    def __init__(self) -> None:
        self._answers: list[Answer] = []
        self._lock = threading.Lock()

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    def answers(self, sent_after: float = float("-inf")) -> list[Answer]:
        with self._lock:
            return sorted((a for a in self._answers if a.sent >= sent_after), key=lambda a: a.sent)

    def statuses(self, sent_after: float = float("-inf")) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers(sent_after):
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return dict(sorted(counts.items()))

    def first_run_of_successes(self, after: float, length: int) -> float | None:
        """When the first ``length`` requests in a row (by the time they were sent, from ``after``)
        all came back 200: the time the last of them came back, or None if that has not happened."""
        run: list[Answer] = []
        for answer in self.answers(after):
            run = run + [answer] if answer.status == 200 else []
            if len(run) == length:
                return max(a.done for a in run)
        return None


@contextmanager
def recorded_load(url: str, clients: int = 4, path: str = "/api/predict", timeout: float = 15.0,
                  pause: float = 0.0, rows: Sequence[Sequence[float]] = DRILL_ROWS):
    """Requests from ``clients`` threads for as long as the block runs, each ``pause`` seconds
    after the last answer (back to back by default); yields the ``Recorder`` of every answer.
    ``path`` is /api/predict (a POST of one row) or a page to GET. Each thread keeps one
    connection, and opens a new one after a failure. A request that gets no answer within
    ``timeout`` seconds is recorded with status 0."""
    host, port = address(url)
    recorder, done = Recorder(), threading.Event()
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows]

    def client(number: int) -> None:
        conn = None
        sent = 0
        while not done.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            started = time.monotonic()
            try:
                if path == "/api/predict":
                    conn.request("POST", path, bodies[(number + sent) % len(bodies)],
                                 {"Content-Type": "application/json"})
                else:
                    conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                status, detail = response.status, "" if response.status == 200 else body[:160].decode(errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            recorder.add(Answer(started, time.monotonic(), status, detail))
            sent += 1
            if pause or status == 0:
                done.wait(pause or 0.05)  # with no server at all, do not spin
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield recorder
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=timeout + 5)


class Crowd:
    """``count`` connections to the server, each sending its request a byte a second: the headers
    ("slow headers"), or the headers at once and then the body ("slow bodies"); "idle" sends nothing.

    A context manager: the connections open as it is entered and are all closed as it is left,
    also when the server refuses one of them halfway.
    """

    def __init__(self, port: int, count: int, kind: str, seconds: float = 12.0, host: str = "127.0.0.1"):
        if kind == "slow bodies":
            body = b'{"instances": [' + b" " * 180 + b"]}"
            head = (f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            self.request, self.start = head + body, len(head)
        else:
            self.request = b"GET /predictions HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
            self.start = 0
        self.address, self.count = (host, port), count
        self.sockets: list[socket.socket] = []
        self.trickle, self.seconds = kind != "idle", seconds
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sent = self.start
        deadline = time.monotonic() + self.seconds
        while not self.done.is_set() and time.monotonic() < deadline:
            if self.trickle:
                for sock in list(self.sockets):
                    try:
                        sock.send(self.request[sent:sent + 1])
                    except OSError:  # the server gave up on it: as it should
                        self.sockets.remove(sock)
                sent = min(sent + 1, len(self.request) - 5)  # never the final CRLF: a request never complete
            self.done.wait(1.0)

    def __enter__(self) -> "Crowd":
        try:
            for _ in range(self.count):
                self.sockets.append(socket.create_connection(self.address, timeout=5))
                self.sockets[-1].sendall(self.request[:self.start])
        except BaseException:
            self._close()
            raise
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self._close()

    def _close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
