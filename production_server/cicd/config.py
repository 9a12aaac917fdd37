"""What the hooks need to know, kept in ``cicd.json`` beside the bare repository.

The hooks run as git's children, not the student's: everything they need
(where the releases live, the deploy branch, the minimum accuracy, the URL
to confirm the rollout at) is in this file, which a student can read. Each
hook reads it as it starts, so a change applies from the next push on:

    python -m production_server.cicd.config --config FILE --min-accuracy 0.5

(what ``labkit cicd init --min-accuracy`` runs on production, over SSH on a VM)
writes the new threshold and prints, as one JSON line, the configuration now and
the threshold before: ``{"config": {...}, "was": {"min_accuracy": 0.99}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ..contract import PipelineConfig, PipelineError  # the file's format: labkit writes it too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m production_server.cicd.config",
                                     description="Change a setting of cicd.json; prints the new configuration.")
    parser.add_argument("--config", type=Path, required=True, help="the pipeline's cicd.json")
    parser.add_argument("--min-accuracy", type=float, required=True,
                        help="the held-out accuracy the gate asks of a pushed model, a fraction from 0 to 1")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.min_accuracy <= 1:
            raise PipelineError(f"--min-accuracy {args.min_accuracy:g}: give a fraction between 0 and 1, e.g. 0.7.")
        before = PipelineConfig.load(args.config)
        config = replace(before, min_accuracy=args.min_accuracy)
        config.save(args.config)
    except PipelineError as exc:
        print(f"[labkit config] FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"config": asdict(config), "was": {"min_accuracy": before.min_accuracy}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
