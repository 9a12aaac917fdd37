"""What the hooks need to know, kept in ``cicd.json`` beside the bare repository.

The hooks run as git's children, not the student's: everything they need
(where the releases live, the deploy branch, the minimum accuracy, the URL
to confirm the rollout at) is in this file, which a student can read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
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

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, self.file)

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
