"""Hostile input: what an attacker or a broken client sends, against the validation and a real server.

A chaos probe against a local deployment found 200s whose body was not JSON
(``"probabilities": [NaN]`` for values beyond float32), 500s for huge
integers, deep nesting and bad chunk sizes, chunked bodies cut at the limit
without a word, and "Connection: keep-alive" on connections the server then
closed. Here the same probes, each on its own, then a property-based fuzz
(hypothesis) of ``/api/predict``: no answer may be a 5xx, and every answer
must be JSON a strict parser takes (RFC 8259: no NaN, no Infinity).

The fast part fuzzes the validation functions with no server. The slow part
runs against a real deployment (RabbitMQ, a Celery worker, gunicorn) on
127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import hypothesis.configuration
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from production_server import validation

# No example database (each run explores afresh) and no .hypothesis/ caches in the working tree.
hypothesis.configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"labkit-hypothesis-{os.getuid()}")

ROW = [6, 148, 72, 35, 0, 33.6, 0.627, 50]
VALID = json.dumps({"instances": [ROW]}).encode()
FUZZ_REQUESTS = 2000


def strict_json(data: bytes | str):
    """Python's json, refusing what RFC 8259 refuses: NaN, Infinity, -Infinity."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(data, parse_constant=refuse)


# -- strategies -------------------------------------------------------------
# Numbers of every size: json.dumps writes NaN and Infinity for non-finite floats, which the
# server must refuse as it refuses any other invalid JSON.
HUGE_INTEGERS = st.integers(min_value=-(10**1000), max_value=10**1000)
NUMBERS = st.one_of(
    st.integers(), HUGE_INTEGERS, st.floats(),
    st.sampled_from([1e39, -1e39, 3.41e38, validation.FLOAT32_MAX, 1e300, -0.0, 5e-324, 2**53 + 1]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=9) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
PLAUSIBLE = st.tuples(*[st.floats(r.low, r.high) | st.integers(int(r.low), int(r.high))
                        for r in validation.RANGES.values()]).map(list)
MEASUREMENT = st.one_of(NUMBERS, st.floats(0, 10), SCALARS, JSON_VALUES)
ROWS = st.one_of(PLAUSIBLE, PLAUSIBLE, st.lists(MEASUREMENT, min_size=7, max_size=9), JSON_VALUES)
INSTANCES = st.one_of(
    st.lists(ROWS, max_size=12).map(lambda rows: {"instances": rows}),
    st.builds(lambda rows, extra: {**extra, "instances": rows}, st.lists(PLAUSIBLE, min_size=1, max_size=3),
              st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)),
    JSON_VALUES.map(lambda value: {"instances": value}),
)


def _text(value) -> str:
    return json.dumps(value, allow_nan=True)


def _nested(depth: int, kind: str) -> bytes:
    if kind == "lists":
        return b"[" * depth + b"]" * depth
    if kind == "objects":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "in-a-row":
        return b'{"instances": [[' + b"[" * depth + b"]" * depth + b", 0, 0, 0, 0, 0, 0, 0]]}"
    return b"[" * depth  # never closed


NESTED = st.builds(_nested, st.integers(1, 5000), st.sampled_from(["lists", "objects", "in-a-row", "open"]))
# Integers written as text, longer than Python's int() takes (4300 digits) too.
LONG_INTEGERS = st.builds(
    lambda digits, sign, where: ('{"instances": [[%s]]}' % ", ".join(
        (sign + "9" * digits) if i == where else "0" for i in range(8))).encode(),
    st.integers(1, 6000), st.sampled_from(["", "-"]), st.integers(0, 7),
)


def _spliced(data: bytes, at: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + junk + data[at + len(junk):]


SPLICED = st.builds(_spliced, INSTANCES.map(lambda v: _text(v).encode()), st.integers(0, 10**6),
                    st.binary(min_size=1, max_size=4))
BAD_UTF8 = st.builds(lambda value, junk: _text(value).encode().replace(b'"instances"', b'"instances' + junk + b'"', 1),
                     INSTANCES, st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80"]))
OTHER_ENCODINGS = st.builds(lambda value, codec: json.dumps(value, ensure_ascii=False).encode(codec, "replace"), INSTANCES,
                            st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"]))
BODIES = st.one_of(
    INSTANCES.map(lambda v: _text(v).encode()),
    INSTANCES.map(lambda v: _text(v).encode()),
    PLAUSIBLE.map(lambda row: json.dumps({"instances": [row]}).encode()),
    JSON_VALUES.map(lambda v: _text(v).encode()),
    NESTED, LONG_INTEGERS, SPLICED, BAD_UTF8, OTHER_ENCODINGS,
    st.binary(max_size=300),
    st.just(b""),
)
CONTENT_TYPES = st.one_of(
    st.just("application/json"), st.just("application/json"),
    st.sampled_from([None, "", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json; charset=latin-1",
                     "application/vnd.api+json", "text/plain", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x", "application/json;;;", "*/*", "application/"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)


# -- the validation, no server (fast) ---------------------------------------
UNIT_FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def assert_a_message(exc: validation.InvalidInput):
    message = str(exc)
    assert message and len(message) < 500, message


def assert_plausible_rows_or_a_message(payload):
    """``instances`` gives rows of 8 finite float32s within their ranges, or refuses with a message."""
    try:
        rows = validation.instances(payload, 1000)
    except validation.InvalidInput as exc:
        assert_a_message(exc)
        return
    assert rows and all(len(row) == validation.N_FEATURES for row in rows)
    for row in rows:
        for value, plausible in zip(row, validation.RANGES.values()):
            assert type(value) is float and math.isfinite(value) and abs(value) <= validation.FLOAT32_MAX
            assert value in plausible


@UNIT_FUZZ
@given(BODIES)
def test_parsing_any_body_gives_a_value_or_a_message(data):
    try:
        payload = validation.parse_json(data)
    except validation.InvalidInput as exc:
        assert_a_message(exc)
        return
    assert_plausible_rows_or_a_message(payload)


@UNIT_FUZZ
@given(INSTANCES)
def test_any_instances_are_rows_of_plausible_float32s_or_a_message(payload):
    # Built in Python, not parsed: integers of any length reach the validation as ints.
    assert_plausible_rows_or_a_message(payload)


def test_every_corner_of_the_plausible_ranges_gives_a_probability_with_both_engines(model_dir):
    # Values within the ranges cannot overflow the network's float32 arithmetic: the 256
    # rows of lowest and highest values give probabilities, never NaN, on keras and onnx.
    from production_server import engines

    corners = [list(c) for c in itertools.product(*[(r.low, r.high) for r in validation.RANGES.values()])]
    assert len(corners) == 256
    for engine in ("keras", "onnx"):
        probabilities = engines.load(model_dir, engine).predict_proba(corners)
        assert all(0.0 <= p <= 1.0 for p in probabilities), engine


# -- a real server: raw HTTP/1.1 ---------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        assert self.headers.get("content-type") == "application/json", (self.status, self.headers, self.body[:200])
        return strict_json(self.body)


def read_reply(sock: socket.socket) -> Reply:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"the server closed the connection after {len(data)} bytes of a reply")
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return Reply(int(status_line.split()[1]), headers, body[:length])


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture(scope="module")
def server(shared_lab):
    """The shared deployment's address; the load goes to the loopback only."""
    url = urlsplit(shared_lab.url)
    assert url.hostname == "127.0.0.1", shared_lab.url
    return url.hostname, url.port


def connect(server) -> socket.socket:
    sock = socket.create_connection(server, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send(sock: socket.socket, raw: bytes) -> Reply:
    """Send while reading the reply: a server that answers before the body ends must be heard."""
    def sender():
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the server answered and closed before taking all of it; the reply says why
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    reply = read_reply(sock)
    thread.join(10)
    return reply


def exchange(server, raw: bytes) -> Reply:
    with connect(server) as sock:
        return send(sock, raw)


def post(body: bytes, content_type: str = "application/json", chunks: int | None = None,
         path: str = "/api/predict") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n".encode()
    if chunks is None:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    pieces = [body[i:i + chunks] for i in range(0, len(body), chunks)]
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def padded(size: int) -> bytes:
    return VALID + b" " * (size - len(VALID))


HOSTILE = {
    # Each was a 200 with "probabilities": [NaN] (keras and onnx), or a 500.
    "beyond-float32": (json.dumps({"instances": [[0, 0, 0, 0, -1e39, 1e300, 0, 0]]}).encode(),
                       "instances[0][4] (insulin) is -1e+39, beyond ±3.4e+38"),
    "integer-of-309-digits": (b'{"instances": [[%s, 0, 0, 0, 0, 0, 0, 0]]}' % (b"9" * 309),
                              "instances[0][0] (pregnancies) is an integer of 309 digits"),
    "integer-of-5000-digits": (b'{"instances": [[0, %s, 0, 0, 0, 0, 0, 0]]}' % (b"9" * 5000),
                               "instances[0][1] (glucose) is an integer of 5000 digits"),
    "nested-985": (b"[" * 985 + b"]" * 985, "nested too deeply"),
    "nested-100000": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.slow
@pytest.mark.parametrize("data, words", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_are_400s_that_name_the_problem(server, data, words):
    reply = exchange(server, post(data))
    assert reply.status == 400, reply
    assert words in reply.json["error"]


@pytest.mark.slow
def test_a_bad_chunk_size_is_a_400_and_the_connection_closes(server):
    # gunicorn raised inside the view while reading the body: a 500. Now nginx, which reads the
    # whole body before gunicorn sees it, refuses it, in JSON under /api/ (labkit/infra/nginx.py).
    raw = post(b"", chunks=1).replace(b"0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n")
    with connect(server) as sock:
        reply = send(sock, raw)
        assert reply.status == 400, reply
        assert "malformed" in reply.json["error"]
        # Where the next request would start is unknown: the reply says close, and it is closed.
        assert reply.headers["connection"] == "close"
        assert closed_by_server(sock)


@pytest.mark.slow
@pytest.mark.parametrize("size", [1_000_000, 1_100_000])
@pytest.mark.parametrize("chunks", [None, 65536], ids=["content-length", "chunked"])
def test_a_body_past_the_limit_is_a_413_on_a_connection_that_closes(server, size, chunks):
    # Chunked, 1 MB of valid JSON and spaces got a 200 and 1.1 MB a 400 "column 262145"; with a
    # Content-Length, a 413 that said keep-alive on a connection the server then closed.
    with connect(server) as sock:
        reply = send(sock, post(padded(size), chunks=chunks))
        assert reply.status == 413, reply
        assert "262144 bytes" in reply.json["error"]
        assert reply.headers["connection"] == "close"
        assert closed_by_server(sock)


@pytest.mark.slow
def test_a_chunked_body_within_the_limit_is_answered(server):
    reply = exchange(server, post(padded(262144), chunks=4096))
    assert reply.status == 200, reply
    assert len(reply.json["probabilities"]) == 1
    # nginx has read it whole and passed it on with its length: the connection can stay open.
    assert reply.headers["connection"] == "keep-alive"


UNREAD_BODIES = {
    # The view answers without reading these bodies; 200 KB is more than gunicorn skips (64 KiB).
    "wrong-content-type": post(b"x" * 200_000, content_type="text/plain"),
    "unknown-api-path": post(VALID + b" " * 200_000, path="/api/nothing"),
    "method-not-allowed": post(VALID + b" " * 200_000, path="/api/model"),
    "a-page": post(b"x" * 200_000, path="/no-such-page"),
    "predictions-form": post(b"form=sample&rows=1000" + b"&x=1" * 50_000, content_type="application/x-www-form-urlencoded",
                             path="/predictions"),
    "too-large-413": post(padded(1_000_000)),
    "chunked-413": post(padded(1_000_000), chunks=65536),
}


@pytest.mark.slow
@pytest.mark.parametrize("raw", UNREAD_BODIES.values(), ids=UNREAD_BODIES.keys())
def test_keep_alive_is_said_only_when_it_holds(server, raw):
    # After a 413 the reply said keep-alive and the server closed: 8 of the next 20 requests failed.
    with connect(server) as sock:
        reply = send(sock, raw)
        assert 400 <= reply.status < 500, reply
        if reply.headers["connection"] == "close":
            assert closed_by_server(sock)
            return
        assert reply.headers["connection"] == "keep-alive"
        answered = 0
        for _ in range(20):
            sock.sendall(b"GET /api/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answered += read_reply(sock).status == 404
        assert answered == 20


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/api/predict", "/api/model", "/healthz"])
def test_options_is_a_204_with_allow(server, path):
    # It was an empty 200 text/html.
    reply = exchange(server, f"OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert reply.status == 204
    assert "OPTIONS" in reply.headers["allow"]
    assert "content-type" not in reply.headers and reply.body == b""


# What nginx refuses before the application sees the request: a request line or a header over
# 4 KiB, headers over 16 KiB in all, what it cannot parse. It was gunicorn's HTML page (a URI over
# 4094 bytes, over 100 header fields), even under /api/.
REFUSED_BEFORE_THE_APP = {
    "uri-too-long": (b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "request line"),
    "header-too-large": (b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
                         431, "header"),
    "headers-too-large-together": (b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(200)) + b"\r\n",
                                   431, "header"),
    "bad-request-line": (b"GARBAGE\r\n\r\n", 400, "could not be parsed"),
    "bad-header-name": (b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n", 400,
                        "could not be parsed"),
}
NEXT_REQUEST = b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.slow
@pytest.mark.parametrize("raw, status, words", REFUSED_BEFORE_THE_APP.values(), ids=REFUSED_BEFORE_THE_APP.keys())
def test_what_is_refused_before_the_app_is_json_with_an_honest_connection(server, raw, status, words):
    with connect(server) as sock:
        reply = send(sock, raw)
        assert reply.status == status
        assert words in reply.json["error"]
        if reply.headers["connection"] == "close":
            assert closed_by_server(sock)
        else:
            assert send(sock, NEXT_REQUEST).status == 200


@pytest.mark.slow
def test_what_gunicorn_alone_refused_is_answered(server):
    # 120 short header fields and a 4,000-byte path: gunicorn's 431 and 414 behind nginx, before.
    many = (b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n")
    assert exchange(server, many).status == 200
    long_path = b"GET /api/" + b"a" * 4000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    reply = exchange(server, long_path)
    assert reply.status == 404 and "error" in reply.json


@pytest.mark.slow
def test_an_onnx_deployment_refuses_what_gave_nan(deployment_factory):
    # ONNX answered NaN even for a single 1e39; the refusal happens before any engine.
    lab = deployment_factory(name="onnx-hostile", engine="onnx")
    url = urlsplit(lab.url)
    assert url.hostname == "127.0.0.1"
    server = (url.hostname, url.port)
    for row in ([0, 0, 0, 0, -1e39, 1e300, 0, 0], [0, 0, 0, 0, 1e39, 0, 0, 0]):
        reply = exchange(server, post(json.dumps({"instances": [row]}).encode()))
        assert reply.status == 400 and "instances[0][4] (insulin)" in reply.json["error"], reply
    corners = [list(c) for c in itertools.product(*[(r.low, r.high) for r in validation.RANGES.values()])]
    reply = exchange(server, post(json.dumps({"instances": corners}).encode()))
    assert reply.status == 200
    assert all(0.0 <= p <= 1.0 for p in reply.json["probabilities"])


# -- a real server: the fuzz --------------------------------------------------
class Client:
    """One persistent HTTP/1.1 connection (http.client), reopened only where the server said close,
    or after it sat idle past gunicorn's keep-alive timeout (2 s)."""

    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=30)
        self.last_reply = time.monotonic()
        self.requests = 0
        self.statuses: dict[int, int] = {}

    def post(self, body: bytes, content_type: str | None) -> tuple[int, str | None, bytes]:
        headers = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            return self._post(body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            idle = time.monotonic() - self.last_reply
            assert idle > 1.5, f"the server closed a connection it had called keep-alive {idle:.2f} s before"
            self.connection.close()
            return self._post(body, headers)

    def _post(self, body, headers):
        self.connection.request("POST", "/api/predict", body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        self.last_reply = time.monotonic()
        self.requests += 1
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        return response.status, response.getheader("Content-Type"), data


@pytest.mark.slow
def test_fuzz_the_api_no_5xx_and_always_strict_json(server, report):
    client = Client(*server)
    started = time.monotonic()

    @settings(max_examples=FUZZ_REQUESTS + 100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=BODIES, content_type=CONTENT_TYPES)
    def fuzz(body, content_type):
        status, mimetype, data = client.post(body, content_type)
        assert status < 500, (status, body[:200], data[:300])
        assert mimetype == "application/json", (status, mimetype, body[:200])
        answer = strict_json(data)
        if status == 200:
            assert set(answer) == {"predictions", "probabilities", "model_version"}
            assert len(answer["predictions"]) == len(answer["probabilities"]) >= 1
            assert all(type(p) is float and 0.0 <= p <= 1.0 for p in answer["probabilities"])
        else:
            assert status in (400, 413), (status, answer)
            assert set(answer) == {"error"} and answer["error"]

    try:
        fuzz()
    finally:
        client.connection.close()
    elapsed = time.monotonic() - started
    statuses = ", ".join(f"{count} x {status}" for status, count in sorted(client.statuses.items()))
    report(f"fuzz of /api/predict: {client.requests} requests in {elapsed:.1f} s ({statuses}), "
           "0 answers of 5xx, 0 bodies that are not strict JSON")
    assert client.requests >= FUZZ_REQUESTS
    assert client.statuses.get(200, 0) >= 100, "the fuzz must also reach the workers"
