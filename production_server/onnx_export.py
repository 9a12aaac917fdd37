"""Export the trained Keras network to ONNX, and check that it computes the same.

The network is small and fixed in kind (Normalization, Dense layers with
relu, a Dense with sigmoid), so it is written out layer by layer with the
``onnx`` package's helper API: the exact operations Keras runs, in float32,
without a general converter (tf2onnx follows TensorFlow releases with a
delay). Used at training time only; serving needs ``onnxruntime`` alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import inference

OPSET = 17
# ONNX Runtime refuses models whose IR version is newer than it knows; the
# onnx package writes its newest by default. 8 is the one that came with
# opset 17, which every ONNX Runtime since 1.12 reads.
IR_VERSION = 8
TOLERANCE = 1e-5
INPUT, OUTPUT = "features", "probability"
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "linear": None}


class ExportError(RuntimeError):
    """The network cannot be exported, or the export does not compute what the network does."""


def convert(keras_model: Any, version: str) -> bytes:
    """The network as a serialized ONNX model; ``version`` is stored in its properties."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    weights: list = []
    current = INPUT

    def constant(name: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name=name))
        return name

    def apply(op: str, inputs: list[str], name: str) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name))
        return name

    for layer in keras_model.layers:
        kind = type(layer).__name__
        if kind == "Normalization" and not layer.invert:
            mean, variance = (np.asarray(w, dtype=np.float32) for w in _normalization_stats(layer))
            # Keras computes (x - mean) / max(sqrt(variance), epsilon); the same, in float32.
            std = np.maximum(np.sqrt(variance), np.float32(_epsilon()))
            centered = apply("Sub", [current, constant(f"{layer.name}/mean", mean)], f"{layer.name}/centered")
            current = apply("Div", [centered, constant(f"{layer.name}/std", std)], layer.name)
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            product = apply("MatMul", [current, constant(f"{layer.name}/kernel", kernel)], f"{layer.name}/matmul")
            current = apply("Add", [product, constant(f"{layer.name}/bias", bias)], f"{layer.name}/linear")
            activation = getattr(layer.activation, "__name__", str(layer.activation))
            if activation not in _ACTIVATIONS:
                raise ExportError(f"Cannot export the activation {activation!r} of layer {layer.name!r}: "
                                  f"use one of {', '.join(_ACTIVATIONS)}, or serve with the keras engine.")
            if (op := _ACTIVATIONS[activation]) is not None:
                current = apply(op, [current], layer.name)
        else:
            raise ExportError(f"Cannot export a {kind} layer ({layer.name!r}) to ONNX: the exporter knows "
                              "Normalization and Dense only; serve this model with the keras engine.")
    nodes.append(helper.make_node("Identity", [current], [OUTPUT], name=OUTPUT))

    graph = helper.make_graph(
        nodes, keras_model.name,
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, inference.N_FEATURES])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1])],
        initializer=weights,
    )
    exported = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 producer_name="labkit", ir_version=IR_VERSION)
    helper.set_model_props(exported, {"version": version})
    onnx.checker.check_model(exported, full_check=True)
    return exported.SerializeToString()


def _normalization_stats(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    import keras

    return keras.ops.convert_to_numpy(layer.mean), keras.ops.convert_to_numpy(layer.variance)


def _epsilon() -> float:
    import keras

    return keras.config.epsilon()


def difference(keras_model: Any, onnx_bytes: bytes, rows: np.ndarray) -> float:
    """The largest absolute difference between the two engines' probabilities on ``rows``."""
    ours = inference.OnnxModel(onnx_bytes).predict_proba(rows)
    theirs = inference.predict_proba(keras_model, rows)
    return float(np.max(np.abs(ours - theirs)))


def check(keras_model: Any, onnx_bytes: bytes, rows: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """The difference on ``rows``; an ExportError if it is larger than ``tolerance``."""
    worst = difference(keras_model, onnx_bytes, rows)
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(
            f"The ONNX export differs from the Keras model by {worst:.3g} on {len(rows)} held-out rows "
            f"(allowed: {tolerance:g}); nothing was saved. Report this with the model's layers, "
            "or serve with the keras engine."
        )
    return worst


def export(keras_model: Any, version: str, rows: np.ndarray) -> tuple[bytes, dict]:
    """The checked ONNX model and what to record about it in the metadata."""
    import onnx
    import onnxruntime

    onnx_bytes = convert(keras_model, version)
    worst = check(keras_model, onnx_bytes, rows)
    return onnx_bytes, {
        "file": inference.ONNX_FILE,
        "opset": OPSET,
        "max_abs_difference": worst,
        "checked_rows": int(len(rows)),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
