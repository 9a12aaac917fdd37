"""The model engines a worker can serve with: Keras (TensorFlow) or ONNX Runtime.

Both serve the same trained model (the same ``version``): ``model.onnx`` is
exported from ``model.keras`` at training time and checked to give the same
probabilities. The ONNX path never imports TensorFlow or Keras: importing
TensorFlow costs a worker 2-4 s at start and about 0.5 GB of memory, ONNX
Runtime about 0.2 s and under 60 MB. Heavy imports stay inside the loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import ConfigurationError, model

ENGINES = ("keras", "onnx")
DEFAULT = "keras"


class Engine(Protocol):
    name: str
    metadata: dict

    @property
    def version(self) -> str: ...

    def predict_proba(self, rows: Any) -> np.ndarray: ...


def check(name: str) -> str:
    """``name`` if it is an engine; a ConfigurationError that says which ones exist otherwise."""
    if name not in ENGINES:
        raise ConfigurationError(
            f"SERVER_MODEL_ENGINE={name!r} is not a model engine: set it to one of {', '.join(ENGINES)} "
            f"(default {DEFAULT})."
        )
    return name


class _Served:
    name = ""

    def __init__(self, metadata: dict) -> None:
        self.metadata = metadata

    @property
    def version(self) -> str:
        return self.metadata["version"]


class KerasEngine(_Served):
    name = "keras"

    def __init__(self, trained: model.TrainedModel) -> None:
        super().__init__(trained.metadata)
        self.trained = trained

    @classmethod
    def load(cls, model_dir: Path) -> "KerasEngine":
        return cls(model.load(model_dir))

    def predict_proba(self, rows: Any) -> np.ndarray:
        return model.predict_proba(self.trained.model, rows)


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
        (probabilities,) = self.session.run(None, {self.input_name: model.as_batch(rows)})
        return np.asarray(probabilities, dtype=np.float64).reshape(-1)


class OnnxEngine(_Served):
    name = "onnx"

    def __init__(self, onnx_model: OnnxModel, metadata: dict) -> None:
        super().__init__(metadata)
        self.onnx_model = onnx_model

    @classmethod
    def load(cls, model_dir: Path) -> "OnnxEngine":
        metadata = model.read_metadata(model_dir)
        path = Path(model_dir) / model.ONNX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"No {model.ONNX_FILE} in {model_dir}: the model was trained before the ONNX engine existed. "
                "Run `labkit train` again, or serve it with SERVER_MODEL_ENGINE=keras."
            )
        onnx_model = OnnxModel(path.read_bytes())
        exported = onnx_model.properties.get("version")
        # A model.onnx left from an earlier training would answer with the
        # wrong weights under the new model's version: refuse it.
        if exported != metadata["version"]:
            raise ValueError(
                f"{path} holds model {exported}, but metadata.json describes {metadata['version']}: "
                "run `labkit train` again to write both together."
            )
        return cls(onnx_model, metadata)

    def predict_proba(self, rows: Any) -> np.ndarray:
        return self.onnx_model.predict_proba(rows)


_LOADERS = {"keras": KerasEngine.load, "onnx": OnnxEngine.load}


def load(model_dir: Path, engine: str = DEFAULT) -> Engine:
    """The model in ``model_dir``, ready to serve with ``engine`` (keras or onnx)."""
    return _LOADERS[check(engine)](Path(model_dir))
