"""What production's git hooks run: ``python -m production_server.cicd.hooks pre-receive|post-receive``.

git hands a hook one line per pushed branch on stdin (``old new ref``) and
shows everything the hook prints on the pusher's terminal as ``remote: ...``.

* ``pre-receive`` (the gate) runs before any branch moves. For the deploy
  branch it takes the pushed commit's ``model/`` folder and judges it
  (``gate.py``); exit status 1 refuses the whole push, and production stays
  exactly as it was. Other branches are accepted, and not deployed.
* ``post-receive`` runs once the branches moved. For the deploy branch it
  copies ``model/`` into a new release folder, switches the serving pointer
  and waits until every worker serves the new version (``rollout.py``).
* ``init`` and ``rollback`` are not git hooks: ``labkit cicd init`` runs the
  first to confirm that every worker serves release 1 through the pointer
  (and record it), ``labkit cicd rollback`` the second to put the previous
  release back the same way a deploy goes forward.

Lines the student's side reads start with ``[labkit gate]`` or ``[labkit deploy]``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import archives
from ..model import read_metadata
from ..releases import ReleaseError, Releases
from . import PipelineError, gate, git, rollout
from ..contract import DEPLOY, GATE, MODEL_PATH, PipelineConfig

ZERO = "0" * 40


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/")

    @property
    def deleted(self) -> bool:
        return self.new == ZERO


def read_updates(stream) -> list[Update]:
    return [Update(*line.split()) for line in stream.read().splitlines() if line.strip()]


def say(line: str) -> None:
    print(line, flush=True)


def extract_model(repo: Path, commit: str, into: Path) -> Path:
    """The commit's ``model/`` folder, written out under ``into``."""
    done = git.git("archive", "--format=tar", commit, MODEL_PATH, cwd=repo, check=False)
    if done.returncode != 0:
        raise PipelineError(f"commit {commit[:8]} has no {MODEL_PATH}/ folder")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archives.extract(archive, into)
    return into / MODEL_PATH


def pre_receive(config: PipelineConfig, updates: list[Update]) -> int:
    refused = 0
    for update in updates:
        if update.ref != f"refs/heads/{config.branch}":
            say(f"{GATE} branch {update.branch}: accepted, not deployed (only {config.branch} goes live)")
            continue
        if update.deleted:
            say(f"{GATE} rejected: deleting {config.branch} would leave production without a source")
            refused = 1
            continue
        say(f"{GATE} checking {MODEL_PATH}/ of {update.new[:8]} (minimum accuracy {config.min_accuracy:.1%}) ...")
        with tempfile.TemporaryDirectory(prefix="labkit-gate-") as tmp:
            try:
                verdict = gate.check(extract_model(Path.cwd(), update.new, Path(tmp)), config.min_accuracy,
                                     config.gate_timeout, config.data_dir, config.engine)
            except PipelineError as exc:
                verdict = gate.Verdict(False, str(exc))
        if verdict.accepted:
            say(f"{GATE} accepted {verdict.version}: {verdict.reason}")
        else:
            say(f"{GATE} rejected: {verdict.reason}")
            say(f"{GATE} nothing changed on production; fix the model and push again")
            refused = 1
    return refused


def post_receive(config: PipelineConfig, updates: list[Update]) -> int:
    releases = Releases(Path(config.production))
    for update in updates:
        if update.ref != f"refs/heads/{config.branch}" or update.deleted:
            say(f"{DEPLOY} branch {update.branch} stored at {update.new[:8]}, not deployed")
            continue
        author = git.text("log", "-1", "--format=%an", update.new, cwd=Path.cwd())
        with tempfile.TemporaryDirectory(prefix="labkit-deploy-") as tmp, releases.locked():
            folder = extract_model(Path.cwd(), update.new, Path(tmp))
            metadata = read_metadata(folder)
            release = releases.add(folder, str(metadata["version"]))
            say(f"{DEPLOY} release {release.number} ({release.version}) written to {release.path}")
            try:
                record = rollout.go_live(
                    releases, release, url=config.url, timeout=config.confirm_timeout,
                    entry={"action": "deploy", "commit": update.new, "who": author,
                           "accuracy": metadata.get("accuracy")},
                )
            except PipelineError as exc:
                say(f"{DEPLOY} FAILED: {exc}")
                return 1
        say(f"{DEPLOY} live: release {record['release']}, version {record['version']}, served by "
            f"{record['workers_confirmed']} worker(s) {record['seconds_to_serve']} s after the switch")
    return 0


def go_live_first(config: PipelineConfig, who: str) -> dict:
    """Confirm that every worker serves release 1 through the pointer, and record it."""
    releases = Releases(Path(config.production))
    with releases.locked():
        release = releases.current()
        if release is None:
            raise PipelineError(f"{releases.pointer} points at no release: run `labkit cicd init` again.")
        commit = git.text("rev-parse", f"refs/heads/{config.branch}", cwd=config.repo)
        return rollout.go_live(releases, release, url=config.url, timeout=config.confirm_timeout,
                               entry={"action": "init", "commit": commit, "who": who,
                                      "accuracy": read_metadata(release.path).get("accuracy")})


def rollback(config: PipelineConfig, who: str) -> dict:
    """Put the release before the current one back live; returns its history entry (``who`` rolled back)."""
    releases = Releases(Path(config.production))
    with releases.locked():
        try:
            target = releases.previous()
        except ReleaseError as exc:
            raise PipelineError(f"Cannot roll back: {exc}") from None
        earlier = [e for e in releases.history() if e.get("release") == target.number]
        entry = {"action": "rollback", "who": who, "commit": earlier[-1].get("commit") if earlier else None,
                 "accuracy": earlier[-1].get("accuracy") if earlier else None}
        return rollout.go_live(releases, target, url=config.url, timeout=config.confirm_timeout, entry=entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m production_server.cicd.hooks")
    parser.add_argument("hook", choices=["pre-receive", "post-receive", "init", "rollback"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--who", default="labkit", help="init, rollback: who did it, for the history")
    args = parser.parse_args(argv)
    try:
        config = PipelineConfig.load(args.config)
        if args.hook in ("init", "rollback"):
            record = go_live_first(config, args.who) if args.hook == "init" else rollback(config, args.who)
            # One JSON line for labkit to read, after the line a person reads.
            say(f"{DEPLOY} live: release {record['release']}, version {record['version']} ({record['action']})")
            say(json.dumps(record))
            return 0
    except PipelineError as exc:
        say(f"{DEPLOY} FAILED: {exc}")
        return 1
    updates = read_updates(sys.stdin)
    return (pre_receive if args.hook == "pre-receive" else post_receive)(config, updates)


if __name__ == "__main__":
    raise SystemExit(main())
