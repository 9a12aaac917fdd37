"""labkit: deploy, watch, scale and time the lab's production server.

    >>> import labkit
    >>> lab = labkit.deploy(workers=1)      # local backend by default
    >>> lab.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])
    >>> lab.scale(3)
    >>> lab.destroy()
"""

from . import cicd as cicd  # labkit.cicd.init(), .attach(): a module, so not in __all__
from . import grading as grading  # labkit.grading.grade(), .question_cells(): a module, so not in __all__
from ._config import Settings
from ._deploy import Deployment, Status, attach, deploy, deployments
from ._errors import (
    BenchmarkError,
    CICDError,
    CleanupIncomplete,
    CloudError,
    CommandFailed,
    ConfigError,
    DeployError,
    DeploymentBusy,
    GradingError,
    LabkitError,
    MachineError,
    NotDeployed,
    PredictionError,
    PrerequisiteMissing,
    PushRejected,
    QuotaError,
    ScaleError,
    ServerNotReady,
    SSHError,
    TrainingError,
)
from ._train import model_card, train
from .experiments.compare import EngineComparison, compare_engines
from .experiments.sweep import SweepResult, sweep
from .experiments.timing import PredictionTimes, StepTimes, compare_steps, step_times, time_predictions
from .notebook.checks import Checks, check_environment
from .notebook.progress import Step
from .notebook.progress import parse as parse_markers
from .notebook.show import SourceFile, UserData, cloud_init, show_file

__all__ = [
    "BenchmarkError",
    "Checks",
    "CICDError",
    "CleanupIncomplete",
    "CloudError",
    "CommandFailed",
    "ConfigError",
    "DeployError",
    "Deployment",
    "DeploymentBusy",
    "EngineComparison",
    "GradingError",
    "LabkitError",
    "MachineError",
    "NotDeployed",
    "PredictionError",
    "PredictionTimes",
    "PrerequisiteMissing",
    "PushRejected",
    "QuotaError",
    "ScaleError",
    "ServerNotReady",
    "Settings",
    "SourceFile",
    "SSHError",
    "Status",
    "Step",
    "StepTimes",
    "SweepResult",
    "TrainingError",
    "UserData",
    "attach",
    "check_environment",
    "cloud_init",
    "compare_engines",
    "compare_steps",
    "deploy",
    "deployments",
    "model_card",
    "parse_markers",
    "show_file",
    "step_times",
    "sweep",
    "time_predictions",
    "train",
]
