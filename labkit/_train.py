"""Train the model in a separate process, so the caller never imports TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from production_server.contract import METADATA_FILE, ONNX_FILE

from ._config import Settings
from ._errors import TrainingError
from .notebook.display import Table, cell


def train(
    epochs: int = 150,
    hidden: tuple[int, ...] = (12, 8),
    seed: int = 7,
    batch_size: int = 10,
    out: Path | None = None,
    settings: Settings | None = None,
) -> dict:
    """Train the network and save it to ``out`` (default: the model folder); returns its metadata.

    The folder gets model.keras and its ONNX export model.onnx (checked to give
    the same probabilities on the held-out rows) for either engine.
    """
    settings = settings or Settings.from_env()
    out = Path(out or settings.model_dir)
    cmd = [
        sys.executable, "-m", "production_server.train", "--out", str(out),
        "--epochs", str(epochs), "--batch-size", str(batch_size),
        "--hidden", ",".join(str(h) for h in hidden), "--seed", str(seed),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if settings.data_dir:
        env["LABKIT_DATA_DIR"] = str(settings.data_dir)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TrainingError(f"Training failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_card(model_dir: Path | None = None, settings: Settings | None = None):
    """The trained model at a glance, as a two-column table: version, accuracy, how it was trained."""
    model_dir = Path(model_dir or (settings or Settings.from_env()).model_dir)
    try:
        meta = json.loads((model_dir / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise TrainingError(f"No trained model in {model_dir}: run `labkit train` (or set LABKIT_MODEL_DIR), "
                            "then run this again.") from None
    params = meta.get("params", {})
    engines = ["keras"] + (["onnx"] if (model_dir / ONNX_FILE).is_file() else [])
    return ModelCard({
        "version": meta.get("version"),
        "held-out accuracy": meta.get("accuracy"),
        "epochs": params.get("epochs"),
        "hidden layers": ",".join(str(h) for h in params.get("hidden", [])),
        "seed": params.get("seed"),
        "training rows / held-out rows": f"{meta.get('n_train')} / {meta.get('n_test')}",
        "trained at": meta.get("trained_at"),
        "training seconds": meta.get("train_seconds"),
        "engines": ", ".join(engines),
        "folder": str(model_dir),
    })


class ModelCard(dict):
    """The model card's fields by name; a notebook shows them as a table."""

    def _repr_html_(self) -> str:
        # An accuracy is read to three places (0.771); seconds to one.
        rows = [[name, cell(value, 3 if "accuracy" in name else 1)] for name, value in self.items()]
        return Table(["the trained model", ""], rows).html()
