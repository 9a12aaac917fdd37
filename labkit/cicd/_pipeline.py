"""The student's side of CI/CD: set the pipeline up, retrain and push, look, roll back.

Production's side (``production_server.cicd``) runs where the server runs;
this module drives both sides through their hosts (``_hosts``):

    local backend     <LABKIT_HOME>/cicd/<name>/production/  and  .../development/
    OpenStack         the production VM's /opt/labkit/cicd/  and  the development
                      VM's ~/cicd, which pushes to production over SSH

``init`` sets both up for a running deployment; ``Pipeline.push`` retrains,
commits and pushes; production's hooks do the rest.
"""

from __future__ import annotations

import getpass
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from production_server.cicd import PipelineError
from production_server.cicd.config import CONFIG_FILE, DEFAULT_MIN_ACCURACY, MODEL_PATH, PipelineConfig
from production_server.cicd.hooks import DEPLOY, GATE
from production_server.cicd.setup import HOOK_TEXT
from production_server.releases import HISTORY, Releases

from .._config import DEFAULT_NAME, Settings
from .._deploy import attach as attach_deployment
from .._errors import CICDError, PushRejected, TrainingError
from .._show import SourceFile
from ._hosts import LocalHost, Sides, must

RECORD = "pipeline.json"  # labkit's own note of a pipeline, on the student's machine


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

    def __init__(self, config: PipelineConfig, sides: Sides):
        self.config = config
        self.sides = sides

    def __repr__(self) -> str:
        return f"<Pipeline {self.config.name!r} development={self.sides.development.name}:{self.development}>"

    @property
    def development(self) -> Path:
        """The working repository (a folder on the development side's host)."""
        return Path(self.sides.development_dir)

    @property
    def releases(self) -> Releases:
        """Production's releases, read directly: only where production is a folder on this machine."""
        if not isinstance(self.sides.production, LocalHost):
            raise CICDError(f"Production is {self.sides.production.name}: read its releases with history().")
        return Releases(Path(self.config.production))

    def hooks(self) -> dict[str, SourceFile]:
        """The hook scripts production runs, by name, as they are there."""
        folder = self.config.repo / "hooks"
        return {name: SourceFile(folder / name, self._read(folder / name)) for name in HOOK_TEXT}

    def push(self, epochs: int = 150, hidden: tuple[int, ...] = (12, 8), seed: int = 7,
             message: str | None = None, branch: str | None = None) -> PushResult:
        """Retrain on the development side, commit the model and push it to production."""
        dev = self.sides.development
        done = dev.run([self.sides.dev_python, "-m", "production_server.train", "--out",
                        str(self.development / MODEL_PATH), "--epochs", str(epochs),
                        "--hidden", ",".join(str(h) for h in hidden), "--seed", str(seed)], timeout=1800)
        if done.code != 0:
            raise TrainingError(f"Training failed on {dev.name}: {done.last_line()}")
        meta = json.loads(done.out.strip().splitlines()[-1])
        message = message or (f"Retrain: {epochs} epochs, hidden {','.join(map(str, hidden))}, seed {seed} "
                              f"(held-out accuracy {meta['accuracy']:.1%})")
        return self.publish(message, branch)

    def publish(self, message: str, branch: str | None = None) -> PushResult:
        """Commit whatever is in ``model/`` now and push it (a hand-made model, say)."""
        branch = branch or self.config.branch
        dev, cwd = self.sides.development, self.sides.development_dir
        must(dev, ["git", "add", "--all", MODEL_PATH], "git add", cwd=cwd)
        if dev.run(["git", "diff", "--cached", "--quiet"], cwd=cwd).code != 0:
            must(dev, ["git", "commit", "--quiet", "-m", message], "git commit", cwd=cwd)
        elif dev.run(["git", "merge-base", "--is-ancestor", "HEAD", f"production/{branch}"], cwd=cwd).code == 0:
            # Nothing new, and production has it all (a commit whose push failed is pushed again below).
            raise CICDError(f"{self.development / MODEL_PATH} is the same as in the last commit: retrain with "
                            "other parameters (or change the model), then push.")
        commit = must(dev, ["git", "rev-parse", "HEAD"], "git rev-parse", cwd=cwd).out.strip()
        done = dev.run(["git", "push", "--porcelain", "production", f"HEAD:refs/heads/{branch}"], cwd=cwd)
        said = "\n".join(line.removeprefix("remote: ").rstrip()
                         for line in done.err.splitlines() if line.startswith("remote: "))
        if done.code != 0:
            rejected = re.search(rf"^{re.escape(GATE)} rejected: (.+)$", said, re.MULTILINE)
            if rejected:
                raise PushRejected(f"Production refused the push: {rejected.group(1)}. Nothing changed there; "
                                   "retrain with other parameters and push again.", reason=rejected.group(1))
            raise CICDError(f"git push failed: {done.last_line()}. Fix what git says, then push again.")
        failed = re.search(rf"^{re.escape(DEPLOY)} FAILED: (.+)$", said, re.MULTILINE)
        if failed:
            raise CICDError(f"Production accepted the push but did not go live: {failed.group(1)}")
        live = re.search(rf"^{re.escape(DEPLOY)} live: release (\d+), version (\w+)", said, re.MULTILINE)
        return PushResult(branch, commit, live is not None, int(live.group(1)) if live else None,
                          live.group(2) if live else None, said)

    def history(self) -> list[dict]:
        """Every deploy and rollback, oldest first: release, version, accuracy, time, commit, who."""
        text = self._read(Path(self.config.production) / HISTORY, missing_ok=True)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def history_frame(self):
        import pandas as pd

        columns = ["release", "action", "version", "accuracy", "time", "commit", "who", "seconds_to_serve"]
        frame = pd.DataFrame(self.history(), columns=columns)
        frame["commit"] = frame["commit"].str[:8]
        return frame

    def rollback(self) -> dict:
        """Serve the release before the current one again; returns its history entry."""
        return self._production_command("rollback")

    def _production_command(self, command: str, *extra: str) -> dict:
        done = self.sides.production.run([self.sides.python, "-m", "production_server.cicd.hooks", command,
                                          "--config", str(self.config.file), *extra], timeout=600)
        failed = re.search(rf"^{re.escape(DEPLOY)} FAILED: (.+)$", done.out, re.MULTILINE)
        if failed:
            raise CICDError(failed.group(1))
        if done.code != 0:
            raise CICDError(f"`{command}` failed on {self.sides.production.name}: {done.last_line()}")
        return json.loads(done.out.strip().splitlines()[-1])

    def _read(self, path: Path, missing_ok: bool = False) -> str:
        done = self.sides.production.run(["cat", str(path)], timeout=60)
        if done.code != 0:
            if missing_ok and "No such file" in done.err:
                return ""
            raise CICDError(f"Cannot read {path} on {self.sides.production.name}: {done.last_line()}")
        return done.out


def _root(settings: Settings, name: str) -> Path:
    return settings.home / "cicd" / name


def _load_record(root: Path, legacy: bool = False) -> PipelineConfig:
    """The pipeline labkit recorded in ``root`` (``legacy``: as labkit recorded it before pipeline.json)."""
    try:
        if legacy:
            return PipelineConfig.load(root / "production" / CONFIG_FILE)
        return PipelineConfig.from_dict(json.loads((root / RECORD).read_text())["config"])
    except (PipelineError, ValueError, KeyError, TypeError) as exc:
        raise CICDError(f"{root} holds a pipeline labkit cannot read ({exc}): move that folder away, then run "
                        "`labkit cicd init` again.") from None


def attach(name: str = DEFAULT_NAME, settings: Settings | None = None) -> Pipeline:
    """The CI/CD set up for deployment ``name`` by ``init``."""
    settings = settings or Settings.from_env()
    root = _root(settings, name)
    if not (root / RECORD).is_file():
        raise CICDError(f"No CI/CD set up for deployment {name!r}: run `labkit cicd init` first.")
    lab = attach_deployment(name, settings)
    config = _load_record(root)
    if config.deployment_id != lab.state["id"]:
        raise CICDError(f"The CI/CD of {name!r} belongs to an earlier deployment of that name: run "
                        "`labkit cicd init` again for the one running now.")
    return Pipeline(config, lab.backend.cicd_sides(lab.run_dir, lab.state, settings, root))


def init(name: str = DEFAULT_NAME, min_accuracy: float = DEFAULT_MIN_ACCURACY,
         settings: Settings | None = None) -> Pipeline:
    """Set up production's bare repository with its hooks, and the development repository.

    Release 1 is the model the deployment serves now; its workers are
    restarted one at a time to serve from the release pointer. Running it
    again for the same deployment returns the pipeline already there, or
    finishes one that stopped half-way (each step is skipped when done); the
    pipeline of an earlier deployment of the same name is moved to
    ``cicd/NAME-ID`` and a new one set up.
    """
    settings = settings or Settings.from_env()
    lab = attach_deployment(name, settings)
    if not hasattr(lab.backend, "prepare_cicd"):
        raise CICDError(f"CI/CD is built for the local and OpenStack backends, not {lab.backend.name!r}: deploy "
                        "with one of those (`labkit up`, or `labkit up --backend openstack`) for this exercise.")
    if not 0 <= min_accuracy <= 1:
        raise CICDError(f"min_accuracy={min_accuracy!r}: give a fraction between 0 and 1, e.g. 0.7.")
    root = _root(settings, name)
    state = lab.state
    if (root / RECORD).is_file():
        existing = _load_record(root)
        if existing.deployment_id == state["id"]:
            return Pipeline(existing, lab.backend.cicd_sides(lab.run_dir, state, settings, root))
        # Left by an earlier deployment of this name (a notebook run again): set it aside, never
        # delete it, since its development repository may hold a student's work.
        root.rename(root.with_name(f"{name}-{existing.deployment_id}"))
    elif (root / "production" / CONFIG_FILE).is_file():
        # Production's side without labkit's record: an init that stopped half-way (finished
        # below), or one of an earlier deployment (set aside, as above).
        earlier = _load_record(root, legacy=True).deployment_id
        if earlier != state["id"]:
            root.rename(root.with_name(f"{name}-{earlier}"))
    root.mkdir(parents=True, exist_ok=True)
    with lab.run_dir.locked():
        sides = lab.backend.prepare_cicd(lab.run_dir, state, settings, root)
    who = getpass.getuser()
    config = PipelineConfig(name=name, deployment_id=state["id"], url=sides.url, production=sides.production_root,
                            min_accuracy=float(min_accuracy), data_dir=sides.data_dir,
                            engine=state.get("engine", "keras"))
    pipeline = _set_up(config, sides, who)
    with lab.run_dir.locked():
        lab.backend.serve_model_from(lab.run_dir, state, Path(sides.pointer))
    pipeline._production_command("init", "--who", who)
    (root / RECORD).write_text(json.dumps({"backend": lab.backend.name, "config": asdict(config)}, indent=2) + "\n")
    return pipeline


def _set_up(config: PipelineConfig, sides: Sides, who: str) -> Pipeline:
    """Production's repository, release 1 and hooks; then the development side's clone of it.

    Either step that an earlier, interrupted init finished is not done again.
    """
    if sides.production.run(["test", "-f", sides.config_file]).code == 0:
        config = PipelineConfig.from_dict(json.loads(must(sides.production, ["cat", sides.config_file],
                                                          "Reading production's cicd.json").out))
    else:
        must(sides.production, [sides.python, "-m", "production_server.cicd.setup", "--config-json",
                                json.dumps(asdict(config)), "--model-dir", sides.served_model, "--python",
                                sides.python, *(["--pythonpath", sides.pythonpath] if sides.pythonpath else []),
                                "--who", who],
             "Setting up production's repository")
    if sides.development.run(["git", "-C", sides.development_dir, "rev-parse", "--git-dir"]).code != 0:
        _clone(sides, who)
    return Pipeline(config, sides)


def _clone(sides: Sides, who: str) -> None:
    dev, folder = sides.development, sides.development_dir
    must(dev, ["git", "clone", "--quiet", "--origin", "production", *sides.clone_options, sides.repo_url, folder],
         "Cloning production's repository")
    # Commits need an author; a lab machine often has no global git identity.
    if dev.run(["git", "config", "user.name"], cwd=folder).code != 0:
        must(dev, ["git", "config", "user.name", who], "git config", cwd=folder)
        must(dev, ["git", "config", "user.email", f"{who}@development"], "git config", cwd=folder)
