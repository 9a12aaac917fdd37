"""What nginx answers by itself, with no gunicorn behind it (quick: nginx starts in milliseconds).

The proxy's configuration is labkit's own (``labkit/infra/nginx.py``); the local
backend and the VM's template serve it. These are the answers that never
reach the application, so only nginx can make them JSON.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from labkit.infra import nginx as _nginx
from labkit.infra import procs


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nginx")
    port = procs.free_port()
    conf = _nginx.write(folder, "127.0.0.1", port, folder / "gunicorn-not-started.sock")
    process = subprocess.Popen(_nginx.command(conf), stderr=subprocess.DEVNULL)
    try:
        assert procs.wait_until(lambda: listening(port), timeout=10)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def answer(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


CASES = {
    # The request line nginx cannot take: no URI, so no location decides; JSON for any path.
    "uri-too-long": (b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
    "page-uri-too-long": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
    "header-too-long": (b"GET /api/model HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431, "header"),
    "headers-too-long": (b"GET /api/model HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(200)) + b"\r\n", 431, "header"),
    "garbage": (b"GARBAGE\r\n\r\n", 400, "could not be parsed"),
    # gunicorn is not there: what the API says when it restarts, a 503 to retry.
    "no-gunicorn": (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 503, "retry"),
}


@pytest.mark.parametrize("raw, status, words", CASES.values(), ids=CASES.keys())
def test_what_nginx_refuses_itself_is_json(proxy, raw, status, words):
    code, headers, body = answer(proxy, raw)
    assert code == status
    assert headers["content-type"] == "application/json"
    assert words in json.loads(body)["error"]
    if status == 503:
        assert headers["retry-after"] == "2"


def test_the_refusal_pages_cannot_be_asked_for(proxy):
    code, _, _ = answer(proxy, b"GET /.refused/bad-request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert code == 404

