"""labkit: deploy, watch, scale and time the lab's production server.

    >>> import labkit
    >>> lab = labkit.deploy(workers=1)      # local backend by default
    >>> lab.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])
    >>> lab.scale(3)
    >>> lab.destroy()
"""

from ._config import Settings
from ._deploy import Deployment, Status, attach, deploy, deployments
from ._errors import (
    BenchmarkError,
    CloudError,
    ConfigError,
    DeployError,
    LabkitError,
    NotDeployed,
    PredictionError,
    PrerequisiteMissing,
    QuotaError,
    ScaleError,
    ServerNotReady,
    SSHError,
    TrainingError,
)
from ._progress import Step, parse as parse_markers
from ._train import train

__all__ = [
    "BenchmarkError",
    "CloudError",
    "ConfigError",
    "DeployError",
    "Deployment",
    "LabkitError",
    "NotDeployed",
    "PredictionError",
    "PrerequisiteMissing",
    "QuotaError",
    "ScaleError",
    "SSHError",
    "ServerNotReady",
    "Settings",
    "Status",
    "Step",
    "TrainingError",
    "attach",
    "deploy",
    "deployments",
    "parse_markers",
    "train",
]
