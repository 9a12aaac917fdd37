"""The Pima Indians diabetes data set: find it, fetch it once, check it.

Where the file is looked for, in order:

1. ``$LABKIT_DATA_DIR/pima-indians-diabetes.csv``
2. the user cache, ``$XDG_CACHE_HOME/labkit`` (``~/.cache/labkit``)
3. a one-time download from a public mirror into that cache, kept only if
   it has 768 rows of 9 numbers and the known checksum.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contract

FILENAME = contract.DATA_FILE
SHA256 = contract.DATA_SHA256
MIRROR_URL = (
    "https://raw.githubusercontent.com/jbrownlee/Datasets/master/pima-indians-diabetes.data.csv"
)
SHAPE = (768, 9)
FEATURES = contract.FEATURES


class DataError(RuntimeError):
    """The data set is missing, unreachable or not the file we expect."""


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # (n, 8) float32
    labels: np.ndarray  # (n,) int

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labkit"


def candidate_paths(folder: Path | None = None) -> list[Path]:
    paths = [Path(folder) / FILENAME] if folder else []
    if data_dir := os.environ.get("LABKIT_DATA_DIR"):
        paths.append(Path(data_dir) / FILENAME)
    paths.append(cache_dir() / FILENAME)
    return paths


def checksum(raw: bytes) -> str:
    # A mirror served with Windows line endings is still the same data.
    return hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()


def _verify(raw: bytes, origin: str) -> None:
    if checksum(raw) != SHA256:
        raise DataError(
            f"{origin} is not the Pima data set this lab expects (sha256 mismatch): "
            f"delete it and put the original {FILENAME} (sha256 {SHA256[:12]}...) there."
        )


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        places = " or ".join(str(p.parent) for p in candidate_paths())
        raise DataError(
            f"The Pima data set is not on this machine and could not be downloaded from "
            f"{url} ({exc}): put {FILENAME} in {places}."
        ) from exc
    _verify(raw, f"The file downloaded from {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted download never leaves half a file behind.
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(raw)
    os.replace(tmp.name, dest)


def locate(download: bool = True, timeout: float = 30.0, folder: Path | None = None) -> Path:
    """Return the path of a verified copy of the data set, downloading it once if needed.

    ``folder`` (labkit's ``Settings.data_dir``) is looked in first."""
    for path in candidate_paths(folder):
        if path.is_file():
            _verify(path.read_bytes(), str(path))
            return path
    if not download:
        raise DataError(f"{FILENAME} was not found in " + " or ".join(str(p.parent) for p in candidate_paths()) + ".")
    dest = cache_dir() / FILENAME
    _download(os.environ.get("LABKIT_DATA_URL", MIRROR_URL), dest, timeout)
    return dest


def load(path: Path | None = None) -> Dataset:
    """Load the 768 rows as float32 features and integer labels."""
    path = path or locate()
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    if table.shape != SHAPE:
        raise DataError(f"{path} has shape {table.shape}, expected {SHAPE}: replace it with the original file.")
    return Dataset(features=table[:, :8].astype(np.float32), labels=table[:, 8].astype(int))


def split(data: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded, stratified train/held-out split, so accuracy is comparable between runs."""
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for label in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == label)
        rng.shuffle(idx)
        test_idx.extend(idx[: round(len(idx) * test_fraction)])
    test_mask = np.zeros(len(data), dtype=bool)
    test_mask[test_idx] = True
    train = Dataset(data.features[~test_mask], data.labels[~test_mask])
    test = Dataset(data.features[test_mask], data.labels[test_mask])
    return train, test
