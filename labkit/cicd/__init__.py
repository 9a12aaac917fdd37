"""CI/CD for the model: retrain on the development side, push, and let production's git hooks
gate the model and roll it out without dropping a request.

    >>> import labkit
    >>> lab = labkit.deploy(workers=2)               # local or OpenStack (single-server)
    >>> ci = labkit.cicd.init(min_accuracy=0.7)     # bare repo + hooks, development repo, release 1
    >>> ci.push(epochs=60, hidden=(16, 8))          # retrain, commit, push: gate, then rollout
    >>> ci.history_frame()                          # every deploy and rollback
    >>> ci.rollback()                               # the previous release, served again

A model the gate refuses raises ``labkit.PushRejected`` with the gate's reason.
What runs on production (setup, hooks, gate, rollout) is ``production_server.cicd``;
this package is the student's side, which drives both sides through ``labkit.infra.hosts``.
"""

from production_server.contract import DEFAULT_MIN_ACCURACY, DEPLOY_BRANCH, PipelineConfig

from ._pipeline import Pipeline, PushResult, attach, init

__all__ = ["DEFAULT_MIN_ACCURACY", "DEPLOY_BRANCH", "Pipeline", "PipelineConfig", "PushResult", "attach", "init"]
