"""The model engines a worker can serve with: Keras (TensorFlow) or ONNX Runtime.

Both serve the same trained model (the same ``version``): ``model.onnx`` is
exported from ``model.keras`` at training time and checked to give the same
probabilities. The ONNX path never imports TensorFlow or Keras: importing
TensorFlow costs a worker 2-4 s at start and about 0.5 GB of memory, ONNX
Runtime about 0.2 s and under 60 MB. The Keras engine alone imports ``model`` (training's side), inside its loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from . import contract, inference
from .config import ConfigurationError
from .inference import OnnxModel

if TYPE_CHECKING:
    from .model import TrainedModel

ENGINES = contract.ENGINES
DEFAULT = contract.DEFAULT_ENGINE


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

    def __init__(self, trained: TrainedModel) -> None:
        super().__init__(trained.metadata)
        self.trained = trained

    @classmethod
    def load(cls, model_dir: Path) -> "KerasEngine":
        from . import model  # training's module, and Keras with it: for this engine only

        return cls(model.load(model_dir))

    def predict_proba(self, rows: Any) -> np.ndarray:
        return inference.predict_proba(self.trained.model, rows)


class OnnxEngine(_Served):
    name = "onnx"

    def __init__(self, onnx_model: OnnxModel, metadata: dict) -> None:
        super().__init__(metadata)
        self.onnx_model = onnx_model

    @classmethod
    def load(cls, model_dir: Path) -> "OnnxEngine":
        metadata = inference.read_metadata(model_dir)
        path = Path(model_dir) / inference.ONNX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"No {inference.ONNX_FILE} in {model_dir}: the model was trained before the ONNX engine existed. "
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


_LOADERS: dict[str, Callable[[Path], Engine]] = {"keras": KerasEngine.load, "onnx": OnnxEngine.load}


def load(model_dir: Path, engine: str = DEFAULT) -> Engine:
    """The model in ``model_dir``, ready to serve with ``engine`` (keras or onnx)."""
    return _LOADERS[check(engine)](Path(model_dir))
