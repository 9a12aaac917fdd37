"""The quality gate: may this model folder go live?

``check(folder)`` runs ``python -m production_server.cicd.gate FOLDER --min-accuracy X``
in a process of its own, with a timeout: a broken file may crash or hang
whatever loads it, and the hook must survive to say so. That process loads
the model as a worker would (``production_server.model.load``) and checks, in
order, that

1. ``metadata.json`` is there and names a version;
2. the model loads;
3. it takes rows of 8 values;
4. it gives one probability (0 to 1) per row;
5. its accuracy on the held-out rows reaches the minimum. The held-out rows
   are the training's own split (``production_server.data.split`` with the
   seed and fraction in the metadata): rows the model never saw.

The first failed check is the verdict, one sentence a student can act on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# Below this the "held-out" rows are too few to judge, whatever the metadata claims.
MIN_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    version: str | None = None
    accuracy: float | None = None


def check(folder: Path, min_accuracy: float, timeout: float, data_dir: str | None = None,
          engine: str = "keras") -> Verdict:
    """Judge ``folder`` in a separate process; never raises for a bad model, only returns a verdict."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if data_dir:
        env["LABKIT_DATA_DIR"] = data_dir
    cmd = [sys.executable, "-m", "production_server.cicd.gate", str(folder), "--min-accuracy", str(min_accuracy),
           "--engine", engine]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"checking the model took more than {timeout:g} s (a file that hangs its loader?)")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Verdict(False, f"the model crashed the process that loads it (exit code {done.returncode}: {last})")
    return Verdict(**json.loads(lines[-1]))


def judge(folder: Path, min_accuracy: float, engine: str = "keras") -> Verdict:
    """The checks themselves; runs in the separate process."""
    import numpy as np

    from production_server import data as pima
    from production_server import engines, inference, model

    try:
        metadata = model.read_metadata(folder)
        version = str(metadata["version"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return Verdict(False, f"model/{model.METADATA_FILE} is missing or names no version")
    try:
        trained = model.load(folder)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the verdict, whatever raised it
        return Verdict(False, f"model/{model.MODEL_FILE} does not load ({type(exc).__name__}: {str(exc)[:160]})",
                       version)
    shape = tuple(getattr(trained.model, "input_shape", ()) or ())
    if shape != (None, model.N_FEATURES):
        return Verdict(False, f"the model takes inputs of shape {shape}, but the server sends rows of "
                              f"{model.N_FEATURES} values", version)
    params = metadata.get("params") or {}
    fraction = float(params.get("test_fraction", model.TrainParams.test_fraction))
    if fraction < MIN_TEST_FRACTION:
        return Verdict(False, f"the metadata's test_fraction {fraction:g} leaves too few held-out rows "
                              f"(at least {MIN_TEST_FRACTION:g})", version)
    _, held_out = pima.split(pima.load(), fraction, int(params.get("seed", model.TrainParams.seed)))
    try:
        probabilities = inference.predict_proba(trained.model, held_out.features)
    except Exception as exc:  # noqa: BLE001 - same: a model that cannot run is the verdict
        return Verdict(False, f"the model fails on the held-out rows ({type(exc).__name__}: {str(exc)[:160]})",
                       version)
    if probabilities.shape != (len(held_out),) or not np.all((probabilities >= 0) & (probabilities <= 1)):
        return Verdict(False, "the model's outputs are not one probability between 0 and 1 per row", version)
    if engine != "keras":
        # The workers serve with another engine: that one must load the release too.
        try:
            served = engines.load(folder, engine).predict_proba(held_out.features)
        except Exception as exc:  # noqa: BLE001 - as above
            return Verdict(False, f"the {engine} engine the workers use cannot serve it ({type(exc).__name__}: "
                                  f"{str(exc)[:160]})", version)
        if not np.allclose(served, probabilities, atol=1e-4):
            return Verdict(False, f"the {engine} engine's answers differ from model.keras'", version)
    accuracy = round(float(np.mean((probabilities >= 0.5).astype(int) == held_out.labels)), 4)
    if accuracy < min_accuracy:
        return Verdict(False, f"held-out accuracy {accuracy:.1%} is below the minimum {min_accuracy:.1%}",
                       version, accuracy)
    return Verdict(True, f"loads, takes {model.N_FEATURES} inputs, gives probabilities, held-out accuracy "
                         f"{accuracy:.1%} (minimum {min_accuracy:.1%})", version, accuracy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m production_server.cicd.gate", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--min-accuracy", type=float, required=True)
    parser.add_argument("--engine", default="keras", help="the engine the workers serve with (keras, onnx)")
    args = parser.parse_args(argv)
    print(json.dumps(asdict(judge(args.folder, args.min_accuracy, args.engine))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
