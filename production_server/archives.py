"""Unpack a tar archive without letting it write outside its folder, on every Python 3.11.

``extractall(filter="data")`` refuses absolute paths, ``..``, links that
leave the folder and device files, but the ``filter`` argument came with
Python 3.11.4: Debian 12's Python is 3.11.2, and a hook on such a VM failed
with "unexpected keyword argument 'filter'" (found in a real CI/CD push).
Without it, the same refusals are made here before anything is written.
"""

from __future__ import annotations

import tarfile
from pathlib import Path


class UnsafeArchive(ValueError):
    """The archive has a member that would land outside the folder, or is not a plain file or folder."""


def extract(archive: tarfile.TarFile, into: Path | str) -> None:
    into = Path(into)
    if hasattr(tarfile, "data_filter"):
        archive.extractall(into, filter="data")
        return
    root = into.resolve()
    for member in archive.getmembers():
        target = (root / member.name).resolve()
        if member.name.startswith("/") or not target.is_relative_to(root):
            raise UnsafeArchive(f"{member.name!r} would be written outside {into}")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"{member.name!r} is not a plain file or folder")
    archive.extractall(into)
