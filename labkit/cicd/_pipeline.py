"""The two sides of the CI/CD exercise, and what a student does with them.

    <LABKIT_HOME>/cicd/<name>/production/    the production server's side
        repo.git/  (hooks/pre-receive, hooks/post-receive)   a bare repository
        cicd.json  releases/  current -> releases/...  history.jsonl
    <LABKIT_HOME>/cicd/<name>/development/   the development server's side
        model/ (model.keras, metadata.json)  a working repository, remote "production"

``init`` sets both up for a running deployment; ``Pipeline.push`` retrains,
commits and pushes; production's hooks do the rest.
"""

from __future__ import annotations

import getpass
import re
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from production_server.model import read_metadata
from production_server.releases import Releases

from .. import _train
from .._config import DEFAULT_NAME, Settings
from .._deploy import Deployment, attach as attach_deployment
from .._errors import CICDError, PushRejected
from . import _git, _rollout
from ._config import CONFIG_FILE, DEFAULT_MIN_ACCURACY, MODEL_PATH, PipelineConfig
from .hooks import DEPLOY, GATE

HOOK_TEXT = {
    "pre-receive": "the quality gate. For a push to {branch} it loads the pushed model in a\n"
                   "# separate process and refuses the push unless the model loads, takes 8\n"
                   "# inputs, gives probabilities and reaches the minimum accuracy in cicd.json.\n"
                   "# Pushes to other branches are accepted and not deployed.",
    "post-receive": "the deploy. For a push to {branch} it copies model/ into a new folder\n"
                    "# under releases/, switches the 'current' link the workers read, and waits\n"
                    "# until every worker serves the new version (GET /api/model).",
}


@dataclass(frozen=True)
class PushResult:
    branch: str
    commit: str
    deployed: bool
    release: int | None
    version: str | None
    output: str  # what production's hooks printed

    def __str__(self) -> str:
        return self.output


class Pipeline:
    """A deployment's CI/CD: the development repository, production's hooks and releases."""

    def __init__(self, config: PipelineConfig, settings: Settings):
        self.config = config
        self._settings = settings
        self.releases = Releases(Path(config.production))

    def __repr__(self) -> str:
        return f"<Pipeline {self.config.name!r} development={self.development}>"

    @property
    def development(self) -> Path:
        return Path(self.config.development)

    def hooks(self) -> dict[str, str]:
        """The hook scripts production runs, by name, as they are on disk."""
        return {name: (self.config.repo / "hooks" / name).read_text() for name in HOOK_TEXT}

    def push(self, epochs: int = 150, hidden: tuple[int, ...] = (12, 8), seed: int = 7,
             message: str | None = None, branch: str | None = None) -> PushResult:
        """Retrain in the development repository, commit the model and push it to production."""
        settings = replace(self._settings, data_dir=self._settings.data_dir or self.config.data_dir)
        meta = _train.train(epochs=epochs, hidden=hidden, seed=seed, out=self.development / MODEL_PATH,
                            settings=settings)
        message = message or (f"Retrain: {epochs} epochs, hidden {','.join(map(str, hidden))}, seed {seed} "
                              f"(held-out accuracy {meta['accuracy']:.1%})")
        return self.publish(message, branch)

    def publish(self, message: str, branch: str | None = None) -> PushResult:
        """Commit whatever is in ``model/`` now and push it (a hand-made model, say)."""
        branch = branch or self.config.branch
        dev = self.development
        _git.git("add", "--all", MODEL_PATH, cwd=dev)
        if _git.git("diff", "--cached", "--quiet", cwd=dev, check=False).returncode == 0:
            raise CICDError(f"{dev / MODEL_PATH} is the same as in the last commit: retrain with other "
                            "parameters (or change the model), then push.")
        _git.git("commit", "--quiet", "-m", message, cwd=dev)
        commit = _git.text("rev-parse", "HEAD", cwd=dev)
        done = _git.git("push", "--porcelain", "production", f"HEAD:refs/heads/{branch}", cwd=dev, check=False)
        said = "\n".join(line.removeprefix("remote: ").rstrip()
                         for line in done.stderr.decode(errors="replace").splitlines()
                         if line.startswith("remote: "))
        if done.returncode != 0:
            rejected = re.search(rf"^{re.escape(GATE)} rejected: (.+)$", said, re.MULTILINE)
            if rejected:
                raise PushRejected(f"Production refused the push: {rejected.group(1)}. Nothing changed there; "
                                   "retrain with other parameters and push again.", reason=rejected.group(1))
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise CICDError(f"git push failed: {last}. Fix what git says, then push again.")
        failed = re.search(rf"^{re.escape(DEPLOY)} FAILED: (.+)$", said, re.MULTILINE)
        if failed:
            raise CICDError(f"Production accepted the push but did not go live: {failed.group(1)}")
        live = re.search(rf"^{re.escape(DEPLOY)} live: release (\d+), version (\w+)", said, re.MULTILINE)
        return PushResult(branch, commit, live is not None, int(live.group(1)) if live else None,
                          live.group(2) if live else None, said)

    def history(self) -> list[dict]:
        """Every deploy and rollback, oldest first: release, version, accuracy, time, commit, who."""
        return self.releases.history()

    def history_frame(self):
        import pandas as pd

        columns = ["release", "action", "version", "accuracy", "time", "commit", "who", "seconds_to_serve"]
        frame = pd.DataFrame(self.history(), columns=columns)
        frame["commit"] = frame["commit"].str[:8]
        return frame

    def rollback(self) -> dict:
        """Serve the release before the current one again; returns its history entry."""
        from .hooks import rollback

        return rollback(self.config)


def _root(settings: Settings, name: str) -> Path:
    return settings.home / "cicd" / name


def attach(name: str = DEFAULT_NAME, settings: Settings | None = None) -> Pipeline:
    """The CI/CD set up for deployment ``name`` by ``init``."""
    settings = settings or Settings.from_env()
    return Pipeline(PipelineConfig.load(_root(settings, name) / "production" / CONFIG_FILE), settings)


def init(name: str = DEFAULT_NAME, min_accuracy: float = DEFAULT_MIN_ACCURACY,
         settings: Settings | None = None) -> Pipeline:
    """Set up production's bare repository with its hooks and the development repository.

    Release 1 is the model the deployment serves now; its workers are
    restarted one at a time to serve from the release pointer. Running it
    again for the same deployment returns the pipeline already there; the
    pipeline of an earlier deployment of the same name is moved to
    ``cicd/NAME-ID`` and a new one set up.
    """
    settings = settings or Settings.from_env()
    lab = attach_deployment(name, settings)
    if lab.backend.name != "local":
        raise CICDError(f"CI/CD is built for the local backend only so far, not {lab.backend.name!r}: "
                        "deploy with the local backend (`labkit up`) to do this exercise.")
    if not 0 <= min_accuracy <= 1:
        raise CICDError(f"min_accuracy={min_accuracy!r}: give a fraction between 0 and 1, e.g. 0.7.")
    root = _root(settings, name)
    state = lab.state
    config_file = root / "production" / CONFIG_FILE
    if config_file.is_file():
        existing = PipelineConfig.load(config_file)
        if existing.deployment_id == state["id"]:
            return Pipeline(existing, settings)
        # Left by an earlier deployment of this name (a notebook run again): set it aside, never
        # delete it, since its development repository may hold a student's work.
        root.rename(root.with_name(f"{name}-{existing.deployment_id}"))
    # No configuration means an earlier init stopped half-way: nothing in it is a student's work yet.
    shutil.rmtree(root, ignore_errors=True)
    config = PipelineConfig(
        name=name, deployment_id=state["id"], url=lab.url, production=str(root / "production"),
        development=str(root / "development"), min_accuracy=float(min_accuracy),
        data_dir=state.get("data_dir") or (str(settings.data_dir) if settings.data_dir else None),
        engine=state.get("engine", "keras"),
    )
    _setup_production(config, Path(state["model_dir"]))
    _setup_development(config, Path(state["model_dir"]))
    _install_hooks(config)
    _serve_from_pointer(lab, config)
    config.save()  # last: its presence says init finished
    return Pipeline(config, settings)


def _setup_production(config: PipelineConfig, model_dir: Path) -> None:
    Path(config.production).mkdir(parents=True)
    _git.git("init", "--quiet", "--bare", f"--initial-branch={config.branch}", str(config.repo),
             cwd=Path(config.production))
    releases = Releases(Path(config.production))
    release = releases.add(model_dir, str(read_metadata(model_dir)["version"]))
    releases.switch(release)


def _setup_development(config: PipelineConfig, model_dir: Path) -> None:
    dev = Path(config.development)
    dev.mkdir(parents=True)
    _git.git("init", "--quiet", f"--initial-branch={config.branch}", cwd=dev)
    # Commits need an author; a lab machine often has no global git identity.
    if _git.git("config", "user.name", cwd=dev, check=False).returncode != 0:
        _git.git("config", "user.name", getpass.getuser(), cwd=dev)
        _git.git("config", "user.email", f"{getpass.getuser()}@{socket.gethostname()}", cwd=dev)
    _git.git("remote", "add", "production", str(config.repo), cwd=dev)
    shutil.copytree(model_dir, dev / MODEL_PATH)
    _git.git("add", MODEL_PATH, cwd=dev)
    _git.git("commit", "--quiet", "-m", "Release 1: the model production served when CI/CD was set up", cwd=dev)
    # Pushed before the hooks exist: this model is live already, there is nothing to gate.
    _git.git("push", "--quiet", "production", f"HEAD:refs/heads/{config.branch}", cwd=dev)


def _install_hooks(config: PipelineConfig) -> None:
    for name, what in HOOK_TEXT.items():
        hook = config.repo / "hooks" / name
        hook.write_text(
            "#!/bin/sh\n"
            f"# {name}, installed by `labkit cicd init`: {what.format(branch=config.branch)}\n"
            "# Its settings: " + str(config.file) + "\n"
            f"exec {shlex.quote(sys.executable)} -m labkit.cicd.hooks {name} --config {shlex.quote(str(config.file))}\n"
        )
        hook.chmod(0o755)


def _serve_from_pointer(lab: Deployment, config: PipelineConfig) -> None:
    releases = Releases(Path(config.production))
    release = releases.current()
    with lab.run_dir.locked():
        lab.backend.serve_model_from(lab.run_dir, lab.state, releases.pointer)
    commit = _git.text("rev-parse", f"refs/heads/{config.branch}", cwd=config.repo)
    _rollout.go_live(releases, release, url=config.url, timeout=config.confirm_timeout,
                     entry={"action": "init", "commit": commit, "who": getpass.getuser(),
                            "accuracy": read_metadata(release.path).get("accuracy")})

