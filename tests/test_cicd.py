"""CI/CD through git hooks: retrain, push, gate, rolling reload, rollback.

Real git, real hooks, a real local deployment with 2 workers and a steady
load running while releases change; the tests print their request counts.
One deployment and one pipeline serve the whole module: each test notes
production's state before it acts and checks what changed against that.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from steady_load import ROWS, Totals, steady_load
from test_shown_in_notebooks import assert_reads_well

import labkit
from labkit.cli import main as cli
from labkit.infra import procs
from production_server.releases import Releases

pytestmark = pytest.mark.slow

MIN_ACCURACY = 0.70


@dataclass
class CI:
    lab: labkit.Deployment
    pipeline: labkit.cicd.Pipeline
    settings: labkit.Settings
    init_load: Totals


@pytest.fixture(scope="module")
def ci(tmp_path_factory, data_dir, model_dir):
    settings = labkit.Settings(home=tmp_path_factory.mktemp("cicd-home"), model_dir=model_dir,
                               data_dir=data_dir, progress="lines")
    lab = labkit.deploy("local", name="cicd", workers=2, settings=settings)
    try:
        with steady_load(lab.url) as load:
            pipeline = labkit.cicd.init(name="cicd", min_accuracy=MIN_ACCURACY, settings=settings)
        yield CI(lab, pipeline, settings, load)
    finally:
        lab.destroy()


def production(ci: CI) -> dict:
    """What a student could observe of production: served version, answers, releases, history, branch."""
    answers = ci.lab.post_predict(ROWS)
    repo = ci.pipeline.config.repo
    return {
        "version": ci.lab.model_info()["version"],
        "answers": (answers["probabilities"], answers["model_version"]),
        "releases": [r.path.name for r in releases_of(ci).all()],
        "history": len(ci.pipeline.history()),
        "master": subprocess.run(["git", "rev-parse", "master"], cwd=repo, capture_output=True, text=True).stdout,
    }


def releases_of(ci: CI) -> Releases:
    """Production's releases, read directly: with the local backend production is a folder here."""
    return Releases(Path(ci.pipeline.config.production))


def worker_pids(lab) -> set[int]:
    return {p["pid"] for p in lab.state["processes"] if p["role"].startswith("worker-")}


def versions_served(url: str, times: int = 12) -> set[str]:
    return {httpx.post(f"{url}/api/predict", json={"instances": ROWS}).json()["model_version"] for _ in range(times)}


def test_init_serves_release_1_from_the_pointer_without_dropping_requests(ci, model_dir, report):
    report(f"cicd init (2 workers restarted one at a time) under load: {ci.init_load.requests} requests, "
           f"{ci.init_load.errors} failed")
    assert ci.init_load.requests > 0
    assert ci.init_load.errors == 0, ci.init_load.samples
    base = labkit.cicd.PipelineConfig.load(ci.pipeline.config.file)
    release = releases_of(ci).current()
    assert release.number == 1
    assert (release.path / "model.keras").read_bytes() == (model_dir / "model.keras").read_bytes()
    assert ci.lab.model_info()["version"] == release.version
    # Every worker was started with the pointer, not the folder the deployment began with.
    for pid in worker_pids(ci.lab):
        assert psutil.Process(pid).environ()["SERVER_MODEL_DIR"] == str(releases_of(ci).pointer)
    for name, script in ci.pipeline.hooks().items():
        path = base.repo / "hooks" / name
        assert path.stat().st_mode & stat.S_IXUSR
        assert f"-m production_server.cicd.hooks {name} --config" in script.text
    assert ci.pipeline.history()[0]["action"] == "init"
    # init again for the same deployment changes nothing.
    assert labkit.cicd.init(name="cicd", settings=ci.settings).config == ci.pipeline.config


def test_a_better_model_is_served_with_no_failed_request(ci, report, capsys):
    before = production(ci)
    pids = worker_pids(ci.lab)
    capsys.readouterr()
    with steady_load(ci.lab.url) as load:
        # Measured: 78.6% held out, against 77.9% for the fixture's (30 epochs, 12,8).
        result = ci.pipeline.push(epochs=30, hidden=(8, 4), seed=7)
    served_after = ci.pipeline.history()[-1]["seconds_to_serve"]
    # Its steps as they ran, the rollout's as production measured it.
    markers = labkit.parse_markers(capsys.readouterr().out)
    assert [s.what for s in markers] == ["train: 30 epochs, hidden layers 8,4, seed 7", "commit model/",
                                         "push: production's gate checks the model",
                                         f"roll out: every worker serves release {result.release}"]
    assert markers == [labkit.Step(s.index, s.total, s.what, round(s.seconds, 1)) for s in result.steps]
    assert result.seconds_to_serve == served_after and result.workers == 2
    assert str(result).startswith(f"Release {result.release} (version {result.version}) is live: 2 worker(s) "
                                  f"serve it, {served_after:g} s after the switch.\nThe gate accepted it: loads,")
    assert_reads_well(result)
    report(f"rollout of release {result.release} to 2 workers under load: {load.requests} requests, "
           f"{load.errors} failed; all workers served it {served_after} s after the pointer switched")
    trained = (ci.pipeline.development / "model" / "metadata.json").read_text()
    assert result.deployed and result.branch == "master"
    assert result.version != before["version"] and f'"{result.version}"' in trained
    assert "[labkit gate] accepted" in result.output
    assert load.requests > 0
    assert load.errors == 0, load.samples
    assert ci.lab.model_info()["version"] == result.version
    assert versions_served(ci.lab.url) == {result.version}
    # Zero downtime without restarts: the same worker processes now serve the new release.
    assert worker_pids(ci.lab) == pids
    assert releases_of(ci).current().version == result.version
    assert ci.pipeline.history()[-1]["accuracy"] > ci.pipeline.history()[0]["accuracy"]


def test_a_broken_model_file_is_rejected(ci):
    before = production(ci)
    (ci.pipeline.development / "model" / "model.keras").write_bytes(b"not a Keras file at all")
    with pytest.raises(labkit.PushRejected) as rejected:
        ci.pipeline.publish("a broken model file")
    assert "model.keras does not load" in rejected.value.reason
    # Publishing again sends the refused commit again, and hears the same reason.
    with pytest.raises(labkit.PushRejected, match="model.keras does not load"):
        ci.pipeline.publish("the same broken model file")
    assert production(ci) == before


def test_a_model_with_the_wrong_input_shape_is_rejected(ci):
    before = production(ci)
    folder = ci.pipeline.development / "model"
    script = (
        "import json, sys, keras\n"
        "m = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(1, activation='sigmoid')])\n"
        "m.save(sys.argv[1] + '/model.keras')\n"
        "meta = json.load(open(sys.argv[1] + '/metadata.json'))\n"
        "meta['version'] = 'fiveinputs01'\n"
        "json.dump(meta, open(sys.argv[1] + '/metadata.json', 'w'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    with pytest.raises(labkit.PushRejected) as rejected:
        ci.pipeline.publish("a model that takes 5 values")
    assert "inputs of shape (None, 5)" in rejected.value.reason
    assert production(ci) == before


def test_cli_init_again_shows_both_sides_and_the_hooks(ci, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(ci.settings.home))
    before = production(ci)
    assert cli(["cicd", "init", "--name", "cicd"]) == 0
    out = capsys.readouterr().out
    assert f"Production repository: {ci.pipeline.config.repo} on this machine" in out
    assert f"Development repository: {ci.pipeline.development} on this machine" in out
    for name in ("pre-receive", "post-receive"):
        assert f"--- {ci.pipeline.config.repo / 'hooks' / name} ---\n#!/bin/sh\n" in out
    assert production(ci) == before


def test_a_model_below_the_threshold_is_rejected_with_exit_code_1(ci, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(ci.settings.home))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(ci.settings.data_dir))
    before = production(ci)
    code = cli(["cicd", "push", "--epochs", "1", "--hidden", "2", "--name", "cicd"])
    err = capsys.readouterr().err
    assert code == 1
    assert "below the minimum 70.0%" in err and "Production refused the push" in err
    assert production(ci) == before


def test_rollback_serves_the_previous_release_with_no_failed_request(ci, report):
    # Few epochs, so the test is quick; both still pass the gate (about 76% held out).
    first = ci.pipeline.push(epochs=5, hidden=(12, 8), seed=7)
    second = ci.pipeline.push(epochs=6, hidden=(12, 8), seed=7)
    assert first.version != second.version and ci.lab.model_info()["version"] == second.version
    pids = worker_pids(ci.lab)
    with steady_load(ci.lab.url) as load:
        entry = ci.pipeline.rollback()
    report(f"rollback to release {entry['release']} under load: {load.requests} requests, {load.errors} failed")
    assert load.requests > 0
    assert load.errors == 0, load.samples
    assert entry["action"] == "rollback" and entry["release"] == first.release
    assert ci.lab.model_info()["version"] == first.version
    assert versions_served(ci.lab.url) == {first.version}
    assert worker_pids(ci.lab) == pids


def test_init_again_with_another_threshold_applies_it(ci, monkeypatch, capsys):
    """Before, a second init kept production's threshold and said nothing: a good push was then refused."""
    monkeypatch.setenv("LABKIT_HOME", str(ci.settings.home))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(ci.settings.data_dir))
    record = ci.settings.home / "cicd" / "cicd" / "pipeline.json"

    def thresholds() -> tuple[float, float, float]:
        """production's cicd.json, labkit's record of it, and what attach() reads."""
        return (labkit.cicd.PipelineConfig.load(ci.pipeline.config.file).min_accuracy,
                json.loads(record.read_text())["config"]["min_accuracy"],
                labkit.cicd.attach("cicd", settings=ci.settings).config.min_accuracy)

    assert thresholds() == (MIN_ACCURACY,) * 3
    capsys.readouterr()
    try:
        assert cli(["cicd", "init", "--min-accuracy", "0.99", "--name", "cicd"]) == 0
        assert "the gate's minimum accuracy is now 99.0% (was 70.0%)" in capsys.readouterr().out
        assert thresholds() == (0.99,) * 3
        before = production(ci)
        with pytest.raises(labkit.PushRejected, match=r"below the minimum 99\.0%"):
            ci.pipeline.push(epochs=5, hidden=(12, 8), seed=11)
        assert production(ci) == before
        # Lowered again, the same commit goes through: the gate reads the threshold at every push.
        assert cli(["cicd", "init", "--min-accuracy", "0.5", "--name", "cicd"]) == 0
        assert "the gate's minimum accuracy is now 50.0% (was 99.0%)" in capsys.readouterr().out
        assert thresholds() == (0.5,) * 3
        result = labkit.cicd.attach("cicd", settings=ci.settings).publish("the commit refused at 99%")
        assert result.deployed and "minimum accuracy 50.0%" in result.output
        # Without --min-accuracy, init keeps the threshold there and says nothing of it.
        assert cli(["cicd", "init", "--name", "cicd"]) == 0
        assert "the gate's minimum accuracy is now" not in capsys.readouterr().out
        assert thresholds() == (0.5,) * 3
    finally:
        labkit.cicd.init(name="cicd", min_accuracy=MIN_ACCURACY, settings=ci.settings)
    assert thresholds() == (MIN_ACCURACY,) * 3


def test_a_push_to_another_branch_is_accepted_and_not_deployed(ci):
    before = production(ci)
    # Far below the threshold: the gate only guards the deploy branch.
    result = ci.pipeline.push(epochs=1, hidden=(2,), seed=7, branch="experiment")
    assert not result.deployed
    assert "branch experiment: accepted, not deployed" in result.output
    branch = subprocess.run(["git", "rev-parse", "experiment"], cwd=ci.pipeline.config.repo,
                            capture_output=True, text=True).stdout.strip()
    assert branch == result.commit
    assert production(ci) == before


def test_history_lists_every_deploy(ci, monkeypatch, capsys):
    """Run after the pushes above, it sees their deploys and the rollback; alone, release 1."""
    history = ci.pipeline.history()
    assert history[0]["action"] == "init" and history[0]["release"] == 1
    assert {r.number for r in releases_of(ci).all()} == {e["release"] for e in history}
    repo = ci.pipeline.config.repo
    for entry in history:
        assert {"release", "version", "accuracy", "time", "commit", "who", "action"} <= set(entry)
        kind = subprocess.run(["git", "cat-file", "-t", entry["commit"]], cwd=repo, capture_output=True, text=True)
        assert kind.stdout.strip() == "commit"
    assert history[-1]["version"] == ci.lab.model_info()["version"]
    # One notion of who: the development repository's git user, for init, deploys and rollbacks.
    author = subprocess.run(["git", "config", "user.name"], cwd=ci.pipeline.development, capture_output=True,
                            text=True).stdout.strip()
    assert {entry["who"] for entry in history} == {author}
    frame = ci.pipeline.history_frame()
    assert not frame.isna().any().any()
    assert_reads_well(frame)
    monkeypatch.setenv("LABKIT_HOME", str(ci.settings.home))
    assert cli(["cicd", "history", "--name", "cicd"]) == 0
    printed = capsys.readouterr().out
    assert all(entry["version"] in printed for entry in history)


# -- the release folder alone: no deployment needed ------------------------------------

def test_an_init_that_stopped_half_way_is_finished_by_the_next(ci):
    # As if the first init had stopped after both sides were set up, before labkit recorded it.
    record = ci.settings.home / "cicd" / "cicd" / "pipeline.json"
    record.unlink()
    before = production(ci)
    again = labkit.cicd.init(name="cicd", settings=ci.settings)
    assert again.config == ci.pipeline.config  # production's own settings, not set up a second time
    assert record.is_file()
    after = production(ci)
    assert (after["releases"], after["master"], after["version"]) == (
        before["releases"], before["master"], before["version"])
    assert after["history"] == before["history"] + 1 and again.history()[-1]["action"] == "init"


def test_set_up_clears_an_interrupted_set_up_and_never_a_finished_one(tmp_path, model_dir):
    from production_server.cicd import setup
    from production_server.contract import PipelineConfig, PipelineError

    config = PipelineConfig(name="x", deployment_id="d", url="http://127.0.0.1:9", production=str(tmp_path / "p"))
    (tmp_path / "p" / "repo.git").mkdir(parents=True)
    (tmp_path / "p" / "half-written").write_text("")
    setup.create(config, model_dir)
    assert not (tmp_path / "p" / "half-written").exists() and config.file.is_file()
    assert [r.number for r in Releases(tmp_path / "p").all()] == [1]
    with pytest.raises(PipelineError, match="set up already"):
        setup.create(config, model_dir)


def test_releases_switch_atomically_and_roll_back_to_the_one_before(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text('{"version": "aaa"}')
    releases = Releases(tmp_path / "prod")
    first = releases.add(model, "aaa")
    releases.switch(first)
    second = releases.add(model, "bbb")
    releases.switch(second)
    assert [r.number for r in releases.all()] == [1, 2]
    assert releases.current() == second
    assert os.readlink(releases.pointer) == "releases/0002-bbb"  # relative: the folder may move
    assert releases.previous() == first
    assert not list((tmp_path / "prod").glob(".*tmp"))
    releases.switch(first)
    with pytest.raises(Exception, match="nothing to roll back to"):
        releases.previous()


def test_a_dead_pointer_cannot_be_confirmed(tmp_path):
    """The confirmation fails instead of passing when nothing answers."""
    from production_server.cicd.rollout import confirm

    port = procs.free_port()
    with pytest.raises(TimeoutError):
        confirm(f"http://127.0.0.1:{port}", "abc", timeout=1)


def test_a_new_deployment_of_the_same_name_sets_the_old_pipeline_aside(settings, capsys):
    # A student runs the notebook twice: the second init must work and lose nothing of the first.
    first = labkit.deploy("local", name="again", workers=1, settings=settings)
    try:
        capsys.readouterr()
        old = labkit.cicd.init(name="again", settings=settings)
        # init shows its steps as deploy() does.
        assert [(s.index, s.total) for s in labkit.parse_markers(capsys.readouterr().out)] == [
            (k, 5) for k in range(1, 6)]
        content = assert_reads_well(old)
        assert "Serving release 1 (version " in content and "at least 70.0%" in content
        (old.development / "notes.txt").write_text("my work")
    finally:
        first.destroy()
    second = labkit.deploy("local", name="again", workers=1, settings=settings)
    try:
        new = labkit.cicd.init(name="again", settings=settings)
        assert new.config.deployment_id == second.state["id"] != old.config.deployment_id
        aside = settings.home / "cicd" / f"again-{old.config.deployment_id}"
        assert (aside / "development" / "notes.txt").read_text() == "my work"
        assert new.history_frame()["action"].tolist() == ["init"]
    finally:
        second.destroy()
