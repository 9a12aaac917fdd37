"""Train the model in a separate process, so the caller never imports TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._config import Settings
from ._errors import TrainingError


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
