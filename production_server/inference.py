"""What serving the model needs, and nothing of training: TensorFlow and Keras are never imported here.

The files of a trained model, its metadata, the batch both engines take,
and the ONNX Runtime session. A worker that serves the ONNX export imports
this module and ``engines``, never ``model`` (training), so it starts in
0.2 s with under 60 MB instead of 2-4 s and 0.5 GB (tests/test_engines.py
checks that such a worker never imports TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import contract
from . import data as pima

MODEL_FILE = contract.MODEL_FILE
ONNX_FILE = contract.ONNX_FILE
METADATA_FILE = contract.METADATA_FILE
N_FEATURES = len(pima.FEATURES)


def read_metadata(model_dir: Path) -> dict:
    path = Path(model_dir) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No trained model in {model_dir}: run `labkit train` (or set SERVER_MODEL_DIR)."
        ) from None


def as_batch(rows) -> np.ndarray:
    """Rows of 8 values (or one flat row) as the float32 batch both engines take."""
    return np.asarray(rows, dtype=np.float32).reshape(-1, N_FEATURES)


def predict_proba(model, rows) -> np.ndarray:
    """A Keras model's probabilities for a batch of rows (the model object does the work: no import here).

    ``predict_on_batch`` runs the compiled graph once (about 0.4 ms here);
    ``model.predict`` builds a data pipeline on every call (about 45 ms).
    """
    return np.asarray(model.predict_on_batch(as_batch(rows)), dtype=np.float64).reshape(-1)


class OnnxModel:
    """An ONNX Runtime session for the exported network (also used to check the export)."""

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: the network is a few hundred multiply-adds, and ONNX
        # Runtime's default pool (one spinning thread per core) would compete
        # with the web server and RabbitMQ on a 2-core machine for nothing.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no optimizer chatter in the worker log
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.properties = dict(self.session.get_modelmeta().custom_metadata_map)

    def predict_proba(self, rows: Any) -> np.ndarray:
        (probabilities,) = self.session.run(None, {self.input_name: as_batch(rows)})
        return np.asarray(probabilities, dtype=np.float64).reshape(-1)
