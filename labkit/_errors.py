"""Every error labkit raises on purpose; each message ends with what to do next.

    LabkitError
    ├── ConfigError            a setting is missing or wrong
    ├── DeployError            a deployment could not be started
    │   ├── PrerequisiteMissing    a program or the trained model is not there
    │   └── CloudError             the OpenStack cloud refused or failed a request
    │       └── QuotaError             the project's quota (servers, cores, floating IPs...) is used up
    ├── NotDeployed            no deployment by that name is running
    ├── ServerNotReady         the server does not answer, or has no worker
    ├── ScaleError             workers could not be added or removed
    ├── PredictionError        the server refused the rows sent to it
    ├── TrainingError          training the model failed
    └── BenchmarkError         a benchmark could not run
"""

from __future__ import annotations


class LabkitError(Exception):
    """Base class: catch this to handle anything labkit raises on purpose."""


class ConfigError(LabkitError):
    pass


class DeployError(LabkitError):
    pass


class PrerequisiteMissing(DeployError):
    pass


class CloudError(DeployError):
    pass


class QuotaError(CloudError):
    pass


class NotDeployed(LabkitError):
    pass


class ServerNotReady(LabkitError):
    pass


class ScaleError(LabkitError):
    pass


class PredictionError(LabkitError):
    pass


class TrainingError(LabkitError):
    pass


class BenchmarkError(LabkitError):
    pass
