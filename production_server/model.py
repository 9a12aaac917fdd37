"""The diabetes classifier: train it, save it with its metadata, load it into Keras.

Training's side only; what serving needs (the files, the batch, the ONNX
session) is in ``inference``, which never imports TensorFlow. Keras is
still imported inside the functions that use it, so that importing this
module (the CI/CD gate, labkit) stays quick.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import data as pima
from .inference import METADATA_FILE, MODEL_FILE, N_FEATURES, ONNX_FILE, read_metadata



@dataclass(frozen=True)
class TrainParams:
    epochs: int = 150
    batch_size: int = 10
    hidden: tuple[int, ...] = (12, 8)
    seed: int = 7
    test_fraction: float = 0.2


@dataclass
class TrainedModel:
    model: Any  # keras.Model
    metadata: dict = field(default_factory=dict)
    onnx: bytes | None = None  # the same network for ONNX Runtime, checked against this one

    @property
    def version(self) -> str:
        return self.metadata["version"]


def build(hidden: tuple[int, ...], train_features: np.ndarray):
    """The classic 8 -> 12 -> 8 -> 1 network.

    A Normalization layer, adapted on the training rows, comes first: the raw
    features span 0-846, and without it the network's accuracy depends
    mostly on luck. Callers still send the 8 raw values.
    """
    import keras

    norm = keras.layers.Normalization(name="normalize")
    norm.adapt(train_features)
    layers = [keras.Input(shape=(N_FEATURES,), name="features"), norm]
    # Explicit names: Keras' automatic ones count up per process and would
    # change the model's config, and so its version, between identical trainings.
    layers += [
        keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")
        for i, units in enumerate(hidden, start=1)
    ]
    layers.append(keras.layers.Dense(1, activation="sigmoid", name="diabetes"))
    model = keras.Sequential(layers, name="pima")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def content_version(model) -> str:
    """A hash of what the model computes (architecture and weights), not of the file.

    The .keras zip carries a save date, so two identical trainings would
    otherwise get different versions.
    """
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:12]


def train(params: TrainParams = TrainParams(), dataset: pima.Dataset | None = None) -> TrainedModel:
    import keras
    import tensorflow as tf

    from . import onnx_export

    dataset = dataset or pima.load()
    train_set, test_set = pima.split(dataset, params.test_fraction, params.seed)
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    model = build(tuple(params.hidden), train_set.features)
    model.fit(
        train_set.features,
        train_set.labels,
        epochs=params.epochs,
        batch_size=params.batch_size,
        verbose=0,
    )
    accuracy = accuracy_of(model, test_set)
    version = content_version(model)
    # Refuses (ExportError) unless ONNX Runtime gives the same probabilities
    # on the held-out rows: the version then means the same model in both engines.
    onnx_bytes, onnx_record = onnx_export.export(model, version, test_set.features)
    metadata = {
        "version": version,
        "accuracy": round(accuracy, 4),
        "params": {**asdict(params), "hidden": list(params.hidden)},
        "n_train": len(train_set),
        "n_test": len(test_set),
        "train_seconds": round(time.perf_counter() - started, 2),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "onnx_export": onnx_record,
    }
    return TrainedModel(model, metadata, onnx_bytes)


def accuracy_of(model, dataset: pima.Dataset) -> float:
    probabilities = np.asarray(model.predict_on_batch(dataset.features)).reshape(-1)
    return float(np.mean((probabilities >= 0.5).astype(int) == dataset.labels))


def save(trained: TrainedModel, out_dir: Path) -> Path:
    """Write model.keras, model.onnx and metadata.json; the metadata goes last, so a
    reader that sees it also sees the model it describes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained.model.save(out_dir / MODEL_FILE)
    if trained.onnx is not None:
        _write_whole(out_dir / ONNX_FILE, trained.onnx)
    else:
        # An export of an earlier model must not be served under this one's metadata.
        (out_dir / ONNX_FILE).unlink(missing_ok=True)
    _write_whole(out_dir / METADATA_FILE, (json.dumps(trained.metadata, indent=2) + "\n").encode())
    return out_dir


def _write_whole(path: Path, content: bytes) -> None:
    # Through a temporary file: a worker starting meanwhile never reads half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def load(model_dir: Path) -> TrainedModel:
    import keras

    metadata = read_metadata(model_dir)
    model = keras.models.load_model(Path(model_dir) / MODEL_FILE, compile=False)
    onnx_path = Path(model_dir) / ONNX_FILE
    return TrainedModel(model, metadata, onnx_path.read_bytes() if onnx_path.is_file() else None)


