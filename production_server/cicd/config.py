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
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from . import PipelineError

CONFIG_FILE = "cicd.json"
REPO_DIR = "repo.git"
DEPLOY_BRANCH = "master"
MODEL_PATH = "model"  # the folder inside the repository that holds the model
DEFAULT_MIN_ACCURACY = 0.70


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    deployment_id: str
    url: str  # the production server as the production side reaches it
    production: str  # this side's folder: repo.git, releases/, current, history.jsonl, cicd.json
    min_accuracy: float = DEFAULT_MIN_ACCURACY
    branch: str = DEPLOY_BRANCH
    data_dir: str | None = None
    engine: str = "keras"  # what the workers serve with: the gate checks that one loads the model
    gate_timeout: float = 120.0
    # How long the post-receive hook waits for every worker to serve the new release.
    confirm_timeout: float = 120.0

    @property
    def repo(self) -> Path:
        return Path(self.production) / REPO_DIR

    @property
    def file(self) -> Path:
        return Path(self.production) / CONFIG_FILE

    def save(self, path: Path | None = None) -> None:
        """Write it, atomically, to ``path`` (default: ``file``, where setup put it)."""
        path = Path(path or self.file)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, values: dict) -> "PipelineConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def load(cls, path: Path) -> "PipelineConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise PipelineError(f"No CI/CD set up at {Path(path).parent}: run `labkit cicd init` first.") from None
        except (ValueError, TypeError) as exc:
            raise PipelineError(f"{path} is not a CI/CD configuration labkit wrote ({exc}): "
                                "remove its folder and run `labkit cicd init` again.") from None


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
