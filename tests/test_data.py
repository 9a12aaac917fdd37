"""production_server.data: finding, downloading, verifying and splitting the Pima data set.

Downloads are real HTTP requests to a server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from production_server import data as pima

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture
def raw(data_dir) -> bytes:
    return (data_dir / pima.FILENAME).read_bytes()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache of this test's own; returns the folder the data set goes in."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for variable in PROXY_VARIABLES:  # the test server is local: never go through a proxy
        monkeypatch.delenv(variable, raising=False)
    return tmp_path / "xdg-cache" / "labkit"


class _Server:
    def __init__(self, body: bytes, status: int = 200):
        self.body = body
        self.status = status
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{pima.FILENAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, status: int = 200) -> _Server:
        server = _Server(body, status)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- finding the file -------------------------------------------------------------


def test_locate_uses_labkit_data_dir(data_dir, cache, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    assert pima.locate(download=False) == data_dir / pima.FILENAME
    assert not cache.exists()


def test_labkit_data_dir_comes_before_the_cache(data_dir, cache, monkeypatch, tmp_path):
    cache.mkdir(parents=True)
    (cache / pima.FILENAME).write_text("not the data set\n")
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    assert pima.locate(download=False) == data_dir / pima.FILENAME


def test_locate_falls_back_to_the_user_cache(raw, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path / "empty"))  # set, but the file is not there
    cache.mkdir(parents=True)
    (cache / pima.FILENAME).write_bytes(raw)
    assert pima.locate(download=False) == cache / pima.FILENAME


def test_cache_dir_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pima.cache_dir() == tmp_path / ".cache" / "labkit"


def test_missing_file_without_download_names_the_places(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(pima.DataError) as caught:
        pima.locate(download=False)
    message = str(caught.value)
    assert pima.FILENAME in message
    assert str(tmp_path / "nowhere") in message
    assert str(cache) in message


@pytest.mark.parametrize(
    "content",
    [b"", b"1,2,3\n", b"not,a,csv\x00\xff"],
    ids=["empty", "short", "binary"],
)
def test_wrong_content_is_a_data_error_naming_the_file(content, cache, monkeypatch, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / pima.FILENAME).write_bytes(content)
    monkeypatch.setenv("LABKIT_DATA_DIR", str(folder))
    with pytest.raises(pima.DataError, match="sha256 mismatch") as caught:
        pima.locate(download=False)
    assert str(folder / pima.FILENAME) in str(caught.value)


def test_one_changed_value_is_caught(raw, cache, monkeypatch, tmp_path):
    # Same shape, same size, one digit different: only the checksum can tell.
    tampered = raw.replace(b"6,148,72,35,0,33.6,0.627,50,1", b"6,148,72,35,0,33.6,0.627,50,0", 1)
    assert tampered != raw
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / pima.FILENAME).write_bytes(tampered)
    monkeypatch.setenv("LABKIT_DATA_DIR", str(folder))
    with pytest.raises(pima.DataError, match="sha256 mismatch"):
        pima.locate(download=False)


def test_windows_line_endings_still_verify_and_load(raw, cache, monkeypatch, tmp_path):
    assert b"\r\n" not in raw
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / pima.FILENAME
    path.write_bytes(raw.replace(b"\n", b"\r\n"))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(folder))
    assert pima.checksum(path.read_bytes()) == pima.SHA256
    assert pima.locate(download=False) == path
    dataset = pima.load(path)
    assert dataset.features.shape == (768, 8)


def test_load_rejects_a_file_of_the_wrong_shape(tmp_path):
    path = tmp_path / pima.FILENAME
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(pima.DataError, match="shape"):
        pima.load(path)


# --- downloading ------------------------------------------------------------------


def test_download_into_the_cache_once(raw, cache, serve, monkeypatch):
    server = serve(raw)
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)

    path = pima.locate(timeout=10)

    assert path == cache / pima.FILENAME
    assert path.read_bytes() == raw
    assert server.requests == [f"/{pima.FILENAME}"]
    assert sorted(p.name for p in cache.iterdir()) == [pima.FILENAME]  # no temporary file left

    dataset = pima.load(path)
    assert len(dataset) == 768
    assert dataset.features.shape == (768, 8)
    assert dataset.features.dtype == np.float32
    assert set(np.unique(dataset.labels)) == {0, 1}
    assert int(dataset.labels.sum()) == 268  # the known class balance: 268 diabetic, 500 not

    assert pima.locate(timeout=10) == path
    assert len(server.requests) == 1, "the second locate() downloaded again"


def test_load_without_a_path_downloads(raw, cache, serve, monkeypatch):
    server = serve(raw)
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)
    assert len(pima.load()) == 768
    assert (cache / pima.FILENAME).is_file()
    assert len(server.requests) == 1


def test_download_with_windows_line_endings_is_kept(raw, cache, serve, monkeypatch):
    server = serve(raw.replace(b"\n", b"\r\n"))
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)
    path = pima.locate(timeout=10)
    assert len(pima.load(path)) == 768


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw.replace(b"1\n", b"0\n", 1),
        lambda raw: b"<html><body>rate limited</body></html>",
    ],
    ids=["truncated", "one-label-changed", "html"],
)
def test_corrupt_download_is_a_data_error_and_not_kept(corrupt, raw, cache, serve, monkeypatch):
    server = serve(corrupt(raw))
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)
    with pytest.raises(pima.DataError, match="sha256 mismatch") as caught:
        pima.locate(timeout=10)
    assert server.url in str(caught.value)
    assert len(server.requests) == 1
    assert not cache.exists() or list(cache.iterdir()) == []


def test_http_error_is_a_data_error(cache, serve, monkeypatch):
    server = serve(b"not found", status=404)
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)
    with pytest.raises(pima.DataError, match="could not be downloaded"):
        pima.locate(timeout=10)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_url_says_where_to_put_the_file(cache, monkeypatch, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/{pima.FILENAME}"
    monkeypatch.setenv("LABKIT_DATA_URL", url)
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path / "mine"))
    with pytest.raises(pima.DataError) as caught:
        pima.locate(timeout=5)
    message = str(caught.value)
    assert url in message
    assert f"put {pima.FILENAME} in" in message
    assert str(tmp_path / "mine") in message
    assert str(cache) in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_false_never_contacts_the_server(cache, serve, raw, monkeypatch):
    server = serve(raw)
    monkeypatch.setenv("LABKIT_DATA_URL", server.url)
    with pytest.raises(pima.DataError, match="was not found"):
        pima.locate(download=False)
    assert server.requests == []


# --- splitting --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(data_dir) -> pima.Dataset:
    return pima.load(data_dir / pima.FILENAME)


def rows_as_set(part: pima.Dataset) -> set[tuple]:
    return {tuple(f) + (int(l),) for f, l in zip(part.features.tolist(), part.labels)}


def test_split_is_stratified(dataset):
    train, test = pima.split(dataset, test_fraction=0.2, seed=7)
    assert len(train) + len(test) == 768
    assert len(test) == round(500 * 0.2) + round(268 * 0.2)  # per class, not overall
    assert int((test.labels == 1).sum()) == round(268 * 0.2)
    assert int((test.labels == 0).sum()) == round(500 * 0.2)
    assert abs(test.labels.mean() - dataset.labels.mean()) < 0.01
    assert abs(train.labels.mean() - dataset.labels.mean()) < 0.01


def test_split_parts_are_disjoint_and_cover_the_data(dataset):
    train, test = pima.split(dataset, test_fraction=0.25, seed=3)
    # Rows of the data set are distinct, so sets of rows compare the partition.
    assert len(rows_as_set(dataset)) == 768
    assert rows_as_set(train).isdisjoint(rows_as_set(test))
    assert rows_as_set(train) | rows_as_set(test) == rows_as_set(dataset)


def test_split_is_deterministic_with_a_seed(dataset):
    first_train, first_test = pima.split(dataset, 0.2, seed=11)
    again_train, again_test = pima.split(dataset, 0.2, seed=11)
    np.testing.assert_array_equal(first_test.features, again_test.features)
    np.testing.assert_array_equal(first_test.labels, again_test.labels)
    np.testing.assert_array_equal(first_train.features, again_train.features)

    _, other_test = pima.split(dataset, 0.2, seed=12)
    assert rows_as_set(other_test) != rows_as_set(first_test)
