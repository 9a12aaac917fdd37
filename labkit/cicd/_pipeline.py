"""The student's side of CI/CD: set the pipeline up, retrain and push, look, roll back.

Production's side (``production_server.cicd``) runs where the server runs;
this module drives both sides through their hosts (``labkit.infra.hosts``):

    local backend     <LABKIT_HOME>/cicd/<name>/production/  and  .../development/
    OpenStack         the production VM's /opt/labkit/cicd/  and  the development
                      VM's ~/cicd, which pushes to production over SSH

``init`` sets both up for a running deployment; ``Pipeline.push`` retrains,
commits and pushes; production's hooks do the rest.
"""

from __future__ import annotations

import getpass
import html
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from production_server.contract import (
    CONFIG_FILE,
    DEFAULT_MIN_ACCURACY,
    DEPLOY,
    GATE,
    HISTORY,
    HOOKS,
    MODEL_PATH,
    PipelineConfig,
    PipelineError,
)

from .._config import DEFAULT_NAME, Settings
from .._deploy import _when
from .._deploy import attach as attach_deployment
from .._errors import CICDError, PushRejected, TrainingError
from ..backends import CICD
from ..infra.hosts import Sides
from ._steps import must
from ..notebook.display import Table, cell
from ..notebook.progress import Progress, Step, tell
from ..notebook.show import SourceFile

RECORD = "pipeline.json"  # labkit's own note of a pipeline, on the student's machine
GATE_STEP = "push: production's gate checks the model"
COLUMNS = ["release", "action", "version", "accuracy", "time", "commit", "who", "seconds_to_serve"]


@dataclass(frozen=True)
class PushResult:
    """What a push did: the commit, the gate's verdict and, on the deploy branch, the release now live."""

    branch: str
    commit: str
    deployed: bool
    release: int | None
    version: str | None
    output: str  # what production's hooks printed
    gate: str | None = None  # the gate's sentence: what it checked, or why a branch is not deployed
    workers: int | None = None  # how many workers were seen serving the release
    seconds_to_serve: float | None = None  # from the switch until they all served it
    steps: tuple[Step, ...] = ()

    def __str__(self) -> str:
        if not self.deployed:
            return f"Commit {self.commit[:8]} is on branch {self.branch}: {self.gate or 'accepted, not deployed'}."
        return "\n".join([
            f"Release {self.release} (version {self.version}) is live: {self._served()}.",
            f"The gate accepted it: {self.gate}." if self.gate else "The gate accepted it.",
            f"Commit {self.commit[:8]} on {self.branch}.",
        ])

    def _served(self) -> str:
        if self.workers is None:
            return "every worker serves it"
        return f"{self.workers} worker(s) serve it, {self.seconds_to_serve:g} s after the switch"

    def _repr_html_(self) -> str:
        rows = [["result", f"live: release {self.release}" if self.deployed else "stored, not deployed"],
                ["version", cell(self.version)], ["commit", self.commit[:8]], ["branch", self.branch],
                ["gate", cell(self.gate)]]
        if self.deployed:
            rows.append(["rollout", self._served()])
        said = (f"<details><summary>What production's hooks said</summary><pre>{html.escape(self.output)}</pre>"
                "</details>")
        return Table(["the push", ""], rows).html() + said


class Pipeline:
    """A deployment's CI/CD: the development repository, production's hooks and releases."""

    def __init__(self, config: PipelineConfig, sides: Sides, progress: str = "auto"):
        self.config = config
        self.sides = sides
        self.progress = progress  # how push() shows its steps: auto, bar, lines or off

    def __repr__(self) -> str:
        return f"<Pipeline {self.config.name!r} development={self.sides.development.name}:{self.development}>"

    def _repr_html_(self) -> str:
        config, sides = self.config, self.sides
        head = (f"<p>CI/CD of <b>{html.escape(config.name)}</b>: a push to <b>{html.escape(config.branch)}</b> "
                f"goes live once production's gate passes it (held-out accuracy at least {config.min_accuracy:.1%})."
                "</p>")
        rows = [["production", sides.production.name, f"{config.production} (repo.git, its hooks, releases/)"],
                ["development", sides.development.name, f"{self.development} (pushes to the remote 'production')"]]
        try:
            current = self.history()[-1:]
        except CICDError as exc:
            now = f"The release served now could not be read: {exc}"
        else:
            now = (f"Serving release {current[0]['release']} (version {current[0]['version']}, "
                   f"{current[0]['action']} at {_when(current[0].get('time'))})." if current else
                   "No release is recorded yet: run labkit.cicd.init() again to finish the set-up.")
        return head + Table(["side", "host", "folder"], rows).html() + f"<p>{html.escape(now)}</p>"

    @property
    def development(self) -> Path:
        """The working repository (a folder on the development side's host)."""
        return Path(self.sides.development_dir)

    def hooks(self) -> dict[str, SourceFile]:
        """The hook scripts production runs, by name, as they are there."""
        folder = self.config.repo / "hooks"
        return {name: SourceFile(folder / name, self._read(folder / name)) for name in HOOKS}

    def push(self, epochs: int = 150, hidden: tuple[int, ...] = (12, 8), seed: int = 7,
             message: str | None = None, branch: str | None = None) -> PushResult:
        """Retrain on the development side, commit the model and push it to production."""
        dev = self.sides.development
        display = self._display(branch, trains=True)
        layers = ",".join(str(h) for h in hidden)
        try:
            with display.step(f"train: {epochs} epochs, hidden layers {layers}, seed {seed}"):
                done = dev.run([self.sides.dev_python, "-m", "production_server.train", "--out",
                                str(self.development / MODEL_PATH), "--epochs", str(epochs),
                                "--hidden", layers, "--seed", str(seed)], timeout=1800)
            if done.exit_code != 0:
                raise TrainingError(f"Training failed on {dev.name}: {done.last_line()}")
            meta = json.loads(done.stdout.strip().splitlines()[-1])
            message = message or (f"Retrain: {epochs} epochs, hidden {layers}, seed {seed} "
                                  f"(held-out accuracy {meta['accuracy']:.1%})")
            return self._publish(message, branch, display)
        finally:
            display.close()

    def publish(self, message: str, branch: str | None = None) -> PushResult:
        """Commit whatever is in ``model/`` now and push it (a hand-made model, say)."""
        display = self._display(branch, trains=False)
        try:
            return self._publish(message, branch, display)
        finally:
            display.close()

    def _display(self, branch: str | None, trains: bool) -> Progress:
        # Training, commit, the gate, and on the deploy branch the rollout.
        deploys = (branch or self.config.branch) == self.config.branch
        return Progress(trains + 2 + deploys, f"pushing to {self.config.name!r}", self.progress)

    def _publish(self, message: str, branch: str | None, display: Progress) -> PushResult:
        branch = branch or self.config.branch
        dev, cwd = self.sides.development, self.sides.development_dir
        with display.step("commit model/"):
            must(dev, ["git", "add", "--all", MODEL_PATH], "git add", cwd=cwd)
            if dev.run(["git", "diff", "--cached", "--quiet"], cwd=cwd).exit_code != 0:
                must(dev, ["git", "commit", "--quiet", "-m", message], "git commit", cwd=cwd)
            elif dev.run(["git", "merge-base", "--is-ancestor", "HEAD", f"production/{branch}"], cwd=cwd).exit_code == 0:
                # Nothing new, and production has it all (a commit whose push failed is pushed again below).
                raise CICDError(f"{self.development / MODEL_PATH} is the same as in the last commit: retrain with "
                                "other parameters (or change the model), then push.")
            commit = must(dev, ["git", "rev-parse", "HEAD"], "git rev-parse", cwd=cwd).stdout.strip()
        display.running(GATE_STEP)
        started = time.perf_counter()
        done = dev.run(["git", "push", "--porcelain", "production", f"HEAD:refs/heads/{branch}"], cwd=cwd)
        pushed = time.perf_counter() - started
        said = "\n".join(line.removeprefix("remote: ").rstrip()
                         for line in done.stderr.splitlines() if line.startswith("remote: "))
        live = re.search(rf"^{re.escape(DEPLOY)} live: release (\d+), version (\w+), served by (\d+) worker\(s\) "
                         rf"([\d.]+) s after the switch", said, re.MULTILINE)
        # The hooks run inside the push: production measured the rollout, the gate had the rest.
        rollout = float(live.group(4)) if live else 0.0
        display.record(Step(display.next_index(), display.total, GATE_STEP, max(pushed - rollout, 0.0)))
        if done.exit_code != 0:
            rejected = re.search(rf"^{re.escape(GATE)} rejected: (.+)$", said, re.MULTILINE)
            if rejected:
                raise PushRejected(f"Production refused the push: {rejected.group(1)}. Nothing changed there; "
                                   "retrain with other parameters and push again.", reason=rejected.group(1))
            raise CICDError(f"git push failed: {done.last_line()}. Fix what git says, then push again.")
        failed = re.search(rf"^{re.escape(DEPLOY)} FAILED: (.+)$", said, re.MULTILINE)
        if failed:
            raise CICDError(f"Production accepted the push but did not go live: {failed.group(1)}")
        if live:
            display.record(Step(display.next_index(), display.total,
                                f"roll out: every worker serves release {live.group(1)}", rollout))
        gate = re.search(rf"^{re.escape(GATE)} (?:accepted \w+|branch \S+): (.+)$", said, re.MULTILINE)
        return PushResult(branch, commit, live is not None, int(live.group(1)) if live else None,
                          live.group(2) if live else None, said, gate.group(1) if gate else None,
                          int(live.group(3)) if live else None, rollout if live else None, tuple(display.done))

    def history(self) -> list[dict]:
        """Every deploy and rollback, oldest first: release, version, accuracy, time, commit, who."""
        text = self._read(Path(self.config.production) / HISTORY, missing_ok=True)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def history_frame(self):
        """The history as a table to read: times in your time zone, a dash where an entry has no value."""
        import pandas as pd

        return pd.DataFrame([[_shown(column, entry.get(column)) for column in COLUMNS] for entry in self.history()],
                            columns=COLUMNS)

    def rollback(self) -> dict:
        """Serve the release before the current one again; returns its history entry."""
        return self._production_command("rollback", "--who", identity(self.sides, cloned=True))

    def _production_command(self, command: str, *extra: str) -> dict:
        done = self.sides.production.run([self.sides.python, "-m", "production_server.cicd.hooks", command,
                                          "--config", str(self.config.file), *extra], timeout=600)
        failed = re.search(rf"^{re.escape(DEPLOY)} FAILED: (.+)$", done.stdout, re.MULTILINE)
        if failed:
            raise CICDError(failed.group(1))
        if done.exit_code != 0:
            raise CICDError(f"`{command}` failed on {self.sides.production.name}: {done.last_line()}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def _read(self, path: Path, missing_ok: bool = False) -> str:
        done = self.sides.production.run(["cat", str(path)], timeout=60)
        if done.exit_code != 0:
            if missing_ok and "No such file" in done.stderr:
                return ""
            raise CICDError(f"Cannot read {path} on {self.sides.production.name}: {done.last_line()}")
        return done.stdout


def _shown(column: str, value: object) -> str:
    """A history value as the table shows it."""
    if value is None:
        return cell(None)
    if column == "commit":
        return str(value)[:8]
    if column == "time":
        return _when(str(value))
    return cell(value, {"accuracy": 3, "seconds_to_serve": 2}.get(column, 1))


def identity(sides: Sides, cloned: bool) -> str:
    """Who the history names for init, deploys and rollbacks alike: the development side's git user.

    A push's entry names its commit's author, which is that user (``_clone``
    sets it where git has none: this machine's login name).
    """
    folder = sides.development_dir if cloned else "/"  # "/": git's global settings, before the clone exists
    done = sides.development.run(["git", "config", "--get", "user.name"], cwd=folder)
    return done.stdout.strip() if done.exit_code == 0 and done.stdout.strip() else getpass.getuser()


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
    return Pipeline(config, _cicd_backend(lab).cicd_sides(lab.run_dir, lab.state, settings, root), settings.progress)


def _cicd_backend(lab) -> CICD:
    if not isinstance(lab.backend, CICD):
        raise CICDError(f"CI/CD is built for the local and OpenStack backends, not {lab.backend.name!r}: deploy "
                        "with one of those (`labkit up`, or `labkit up --backend openstack`) for this exercise.")
    return lab.backend


def init(name: str = DEFAULT_NAME, min_accuracy: float | None = None,
         settings: Settings | None = None) -> Pipeline:
    """Set up production's bare repository with its hooks, and the development repository.

    Release 1 is the model the deployment serves now; its workers are
    restarted one at a time to serve from the release pointer. Running it
    again for the same deployment returns the pipeline already there, or
    finishes one that stopped half-way (each step is skipped when done); the
    pipeline of an earlier deployment of the same name is moved to
    ``cicd/NAME-ID`` and a new one set up.

    ``min_accuracy`` is the gate's threshold (default: 0.70 for a new
    pipeline; one set up already keeps its own). Given again with another
    value, it is applied to production's cicd.json and said so, from the
    next push on.
    """
    settings = settings or Settings.from_env()
    lab = attach_deployment(name, settings)
    backend = _cicd_backend(lab)
    if min_accuracy is not None and not 0 <= min_accuracy <= 1:
        raise CICDError(f"min_accuracy={min_accuracy!r}: give a fraction between 0 and 1, e.g. 0.7.")
    root = _root(settings, name)
    state = lab.state
    if (root / RECORD).is_file():
        existing = _load_record(root)
        if existing.deployment_id == state["id"]:
            pipeline = Pipeline(existing, backend.cicd_sides(lab.run_dir, state, settings, root), settings.progress)
            return _with_threshold(pipeline, min_accuracy, root, lab.backend.name, settings.progress)
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
    display = Progress(len(INIT_STEPS), f"setting up CI/CD for {name!r}", settings.progress)
    try:
        with display.step(INIT_STEPS[0]), lab.run_dir.locked("setting up CI/CD for"):
            sides = backend.prepare_cicd(lab.run_dir, lab.state, settings, root)
        who = identity(sides, cloned=False)
        config = PipelineConfig(name=name, deployment_id=state["id"], url=sides.url,
                                production=sides.production_root,
                                min_accuracy=float(DEFAULT_MIN_ACCURACY if min_accuracy is None else min_accuracy),
                                data_dir=sides.data_dir, engine=state.get("engine", "keras"))
        pipeline = Pipeline(_set_up(config, sides, who, display), sides, settings.progress)
        with display.step(INIT_STEPS[3]), lab.run_dir.locked("setting up CI/CD for"):
            # Read again under the lock (lab.state checks it is still this deployment): a scale may
            # have changed it meanwhile.
            backend.serve_model_from(lab.run_dir, lab.state, Path(sides.pointer))
        with display.step(INIT_STEPS[4]):
            pipeline._production_command("init", "--who", who)
    finally:
        display.close()
    # An init that stopped half-way had set production up with its own threshold: the one asked now wins.
    return _with_threshold(pipeline, min_accuracy, root, lab.backend.name, settings.progress)


def _with_threshold(pipeline: Pipeline, min_accuracy: float | None, root: Path, backend: str,
                    progress: str) -> Pipeline:
    """``pipeline`` with the gate's threshold asked for, if any, set in production's cicd.json; then recorded here.

    The command line is production's own (``production_server.cicd.config``),
    run where production is: a subprocess here, SSH on a VM.
    """
    if min_accuracy is not None:
        sides = pipeline.sides
        done = must(sides.production, [sides.python, "-m", "production_server.cicd.config", "--config",
                                        str(pipeline.config.file), "--min-accuracy", repr(float(min_accuracy))],
                    "Changing the gate's minimum accuracy")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        pipeline.config = PipelineConfig.from_dict(answer["config"])
        was, now = answer["was"]["min_accuracy"], pipeline.config.min_accuracy
        if was != now:
            tell(f"CI/CD of {pipeline.config.name!r}: the gate's minimum accuracy is now {now:.1%} (was {was:.1%}), "
                  f"for every push to {pipeline.config.branch} from now on.", progress)
    (root / RECORD).write_text(json.dumps({"backend": backend, "config": asdict(pipeline.config)}, indent=2) + "\n")
    return pipeline


INIT_STEPS = [
    "prepare production and the development side",
    "set up production's repository, release 1 and the hooks",
    "clone the repository on the development side",
    "restart the workers one at a time to serve the release pointer",
    "confirm that every worker serves release 1",
]


def _set_up(config: PipelineConfig, sides: Sides, who: str, display: Progress) -> PipelineConfig:
    """Production's repository, release 1 and hooks; then the development side's clone of it.

    Either step that an earlier, interrupted init finished is not done again.
    """
    with display.step(INIT_STEPS[1]):
        if sides.production.run(["test", "-f", sides.config_file]).exit_code == 0:
            config = PipelineConfig.from_dict(json.loads(must(sides.production, ["cat", sides.config_file],
                                                              "Reading production's cicd.json").stdout))
        else:
            must(sides.production, [sides.python, "-m", "production_server.cicd.setup", "--config-json",
                                    json.dumps(asdict(config)), "--model-dir", sides.served_model, "--python",
                                    sides.python, *(["--pythonpath", sides.pythonpath] if sides.pythonpath else []),
                                    "--who", who],
                 "Setting up production's repository")
    with display.step(INIT_STEPS[2]):
        if sides.development.run(["git", "-C", sides.development_dir, "rev-parse", "--git-dir"]).exit_code != 0:
            _clone(sides, who)
    return config


def _clone(sides: Sides, who: str) -> None:
    dev, folder = sides.development, sides.development_dir
    must(dev, ["git", "clone", "--quiet", "--origin", "production", *sides.clone_options, sides.repo_url, folder],
         "Cloning production's repository")
    # Commits need an author; a lab machine often has no global git identity.
    if dev.run(["git", "config", "user.name"], cwd=folder).exit_code != 0:
        must(dev, ["git", "config", "user.name", who], "git config", cwd=folder)
        must(dev, ["git", "config", "user.email", f"{who}@development"], "git config", cwd=folder)
