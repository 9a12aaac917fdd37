"""production_server.archives: the refusals of filter="data", also on a Python without it (Debian 12's 3.11.2)."""

from __future__ import annotations

import io
import pathlib
import tarfile

import pytest

from production_server import archives


def tar_with(*members: tuple[str, bytes | None, bytes]) -> tarfile.TarFile:
    """(name, link target or None, content) -> an archive open for reading."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, link, content in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link.decode()
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    raw.seek(0)
    return tarfile.open(fileobj=raw)


@pytest.fixture(params=["with filter", "without filter"])
def python(request, monkeypatch):
    if request.param == "without filter":
        monkeypatch.delattr(tarfile, "data_filter")  # as on Python 3.11.0-3.11.3
    return request.param


def test_plain_files_are_unpacked(tmp_path, python):
    archives.extract(tar_with(("model/model.keras", None, b"weights")), tmp_path)
    assert (tmp_path / "model/model.keras").read_bytes() == b"weights"


@pytest.mark.parametrize("member", [("../escape", None, b"x"), ("/etc/owned", None, b"x"),
                                    ("model/link", b"/etc/passwd", b"")], ids=["dotdot", "absolute", "symlink out"])
def test_nothing_is_written_outside_the_folder(tmp_path, python, member):
    """Refused, or (filter="data" with an absolute name) written inside the folder: never outside it."""
    refusals = (archives.UnsafeArchive, *((tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()))
    try:
        archives.extract(tar_with(member), tmp_path / "into")
    except refusals:
        pass
    else:
        assert python == "with filter" and member[0] == "/etc/owned", "the fallback must refuse it"
        assert (tmp_path / "into/etc/owned").is_file()
    assert not (tmp_path / "escape").exists() and not pathlib.Path("/etc/owned").exists()
