"""Every error labkit raises on purpose; each message ends with what to do next.

    LabkitError
    ├── ConfigError            a setting is missing or wrong
    ├── DeployError            a deployment could not be started
    │   ├── DeploymentBusy         another labkit command held the deployment for longer than we waited
    │   ├── PrerequisiteMissing    a program or the trained model is not there
    │   ├── CloudError             the OpenStack cloud refused or failed a request
    │   │   ├── QuotaError             the project's quota (servers, cores, floating IPs...) is used up
    │   │   └── CleanupIncomplete      `labkit cleanup` could not delete everything (``outcome`` says what)
    │   └── MachineError           a local machine (the machine backend) could not be built, booted or reached
    ├── NotDeployed            no deployment by that name is running
    ├── ServerNotReady         the server does not answer, or has no worker
    ├── ScaleError             workers could not be added or removed
    ├── PredictionError        the server refused the rows sent to it
    ├── SSHError               an SSH connection failed, or a command could not be run over it
    ├── CommandFailed          a command labkit ran (here or on a VM) exited non-zero or did not finish
    ├── TrainingError          training the model failed
    ├── CICDError              the CI/CD pipeline (git, hooks, releases) could not do its job
    │   └── PushRejected           production's quality gate refused a pushed model
    ├── BenchmarkError         a benchmark could not run
    └── GradingError           the answer key or the lab's question cells are wrong
"""

from __future__ import annotations

import os

DEBUG = "LABKIT_DEBUG"


class LabkitError(Exception):
    """Base class: catch this to handle anything labkit raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the one sentence (``LABKIT_DEBUG=1``: the traceback).

        The message already says what went wrong and what to do; twenty lines of
        labkit's internals above it only hide it from a student.
        """
        if os.environ.get(DEBUG):
            from IPython import get_ipython

            return get_ipython().InteractiveTB.structured_traceback(type(self), self, self.__traceback__)
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m: {self}"]


class ConfigError(LabkitError):
    pass


class DeployError(LabkitError):
    pass


class DeploymentBusy(DeployError):
    """Another labkit command held the deployment's lock for longer than we waited."""


class PrerequisiteMissing(DeployError):
    pass


class CloudError(DeployError):
    pass


class QuotaError(CloudError):
    pass


class CleanupIncomplete(CloudError):
    """Some deletes failed; ``outcome`` (a ``labkit.backends.openstack.cleanup.Outcome``) lists what was deleted and what is left."""

    def __init__(self, message: str, outcome: object):
        super().__init__(message)
        self.outcome = outcome


class MachineError(DeployError):
    """A local machine (the machine backend) could not be built, booted or reached."""


class NotDeployed(LabkitError):
    pass


class ServerNotReady(LabkitError):
    pass


class ScaleError(LabkitError):
    pass


class PredictionError(LabkitError):
    pass


class SSHError(LabkitError):
    """``exit_code`` is the remote command's exit code when it ran and failed, else None."""

    def __init__(self, message: str, *, exit_code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # Why it failed: "refused", "timeout", "unreachable", "protocol", "auth", "host-key",
        # "command-timeout" or "exit"; wait_until_reachable() retries the first four.
        self.reason = reason


class CommandFailed(LabkitError):
    """``result`` is what the command did (None when it did not finish)."""

    def __init__(self, message: str, result=None) -> None:
        super().__init__(message)
        self.result = result


class TrainingError(LabkitError):
    pass


class BenchmarkError(LabkitError):
    pass


class CICDError(LabkitError):
    pass


class PushRejected(CICDError):
    """``reason`` is the gate's own sentence, as the hook printed it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class GradingError(LabkitError):
    pass
