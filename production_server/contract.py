"""What labkit and the server must spell the same: the one module of the server labkit imports.

labkit drives the server through command lines (``python -m
production_server.cicd.setup``, the hooks git runs) and HTTP; what both
sides read or write (file names, the engines, the features, the lines the
hooks print and the format of ``cicd.json``) is declared here once.

Standard library only: ``import labkit`` must not cost Flask, numpy or TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

# The model and how a worker serves it.
ENGINES = ("keras", "onnx")
DEFAULT_ENGINE = "keras"
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"  # version, accuracy, how it was trained

# The data set: one row is a patient, these eight numbers and the label.
DATA_FILE = "pima-indians-diabetes.csv"
DATA_SHA256 = "06f5b7c2cd7bca686fda4f92eab5f61e7ff6426a9acefa2e3dda04fc54293cf5"
FEATURES = (
    "pregnancies",
    "glucose",
    "blood_pressure",
    "skin_thickness",
    "insulin",
    "bmi",
    "diabetes_pedigree",
    "age",
)

# CI/CD, on the production side: <production>/cicd.json, repo.git/, releases/, current, history.jsonl.
CONFIG_FILE = "cicd.json"
REPO_DIR = "repo.git"
RELEASES = "releases"
POINTER = "current"  # the link the workers follow (SERVER_MODEL_DIR)
HISTORY = "history.jsonl"  # one JSON line per deploy or rollback
HOOKS = ("pre-receive", "post-receive")
DEPLOY_BRANCH = "master"
MODEL_PATH = "model"  # the folder inside the repository that holds the model
DEFAULT_MIN_ACCURACY = 0.70
# Lines the hooks print for the pusher (git shows them as "remote: ..."); labkit reads them.
GATE = "[labkit gate]"
DEPLOY = "[labkit deploy]"


class PipelineError(RuntimeError):
    """A CI/CD step on the production side failed; the message says what to do."""


@dataclass(frozen=True)
class PipelineConfig:
    """``cicd.json``: everything the hooks need, written by ``labkit cicd init``, read by each hook as it starts."""

    name: str
    deployment_id: str
    url: str  # the production server as the production side reaches it
    production: str  # this side's folder: repo.git, releases/, current, history.jsonl, cicd.json
    min_accuracy: float = DEFAULT_MIN_ACCURACY
    branch: str = DEPLOY_BRANCH
    data_dir: str | None = None
    engine: str = DEFAULT_ENGINE  # what the workers serve with: the gate checks that one loads the model
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
