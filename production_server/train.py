"""Train the model and save it: ``python -m production_server.train --out DIR``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import model, onnx_export  # noqa: E402
from .config import default_model_dir  # noqa: E402


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes layer sizes like 12,8, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("every hidden layer needs at least one unit")
    return sizes


def main(argv: list[str] | None = None) -> int:
    defaults = model.TrainParams()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=default_model_dir(), help="folder for model.keras, model.onnx and metadata.json")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--hidden", type=parse_hidden, default=defaults.hidden, help="hidden layer sizes, e.g. 12,8")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    params = model.TrainParams(epochs=args.epochs, batch_size=args.batch_size, hidden=args.hidden, seed=args.seed)
    try:
        trained = model.train(params)
    except onnx_export.ExportError as exc:
        # One line on stderr: labkit shows the last one as the reason.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    model.save(trained, args.out)
    print(json.dumps({"out": str(args.out), **trained.metadata}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
