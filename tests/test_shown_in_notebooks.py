"""What deploy(), attach(), deployments(), model_info() and CI/CD show a student, without a real stack.

A deployment "runs" here because its backend says so (``running`` patched);
the reuse path, the cards and the tables are the ones a real one gets
(tests/test_local_deployment.py and tests/test_cicd.py check them end to end).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest
from click.testing import CliRunner
from IPython.core.formatters import DisplayFormatter
from notebook_outputs import RICHEST_FIRST, shown_problems

import labkit
from labkit import _deploy
from labkit._deploy import _when
from labkit._state import RunDir
from labkit.backends.local.backend import LocalBackend
from labkit.cicd import Pipeline, PipelineConfig, PushResult
from labkit.cicd._pipeline import identity
from labkit.cli import labkit as cli
from labkit.infra.hosts import LocalHost, Sides
from labkit.notebook import progress as _progress

STEPS = [{"index": 1, "total": 2, "what": "start RabbitMQ", "seconds": 2.5},
         {"index": 2, "total": 2, "what": "start 1 Celery worker", "seconds": 4.0}]
CREATED = "2026-12-01T08:31:00+00:00"
# What /api/model answers (production_server.tasks.model_info): metadata.json, engine, served_by.
MODEL = {"version": "42d1fbc9cf1e", "accuracy": 0.7597, "params": {"epochs": 150, "batch_size": 10,
         "hidden": [12, 8], "seed": 7, "test_fraction": 0.2}, "n_train": 614, "n_test": 154,
         "train_seconds": 14.4, "trained_at": "2026-12-01T08:34:51+00:00", "keras": "3.15.1",
         "onnx_export": {"file": "model.onnx", "opset": 17}, "engine": "keras", "served_by": "lab-vm:4242"}


def shown(obj) -> tuple[str, str]:
    """What JupyterLab renders of ``obj``: its richest representation."""
    data, _ = DisplayFormatter().format(obj)
    mime = next(m for m in RICHEST_FIRST if m in data)
    return mime, data[mime]


def assert_reads_well(obj) -> str:
    mime, content = shown(obj)
    assert mime == "text/html", (mime, content)
    assert shown_problems(mime, content) == [], content
    return content


@pytest.fixture
def running(settings, monkeypatch):
    """A recorded deployment 'lab' (1 worker, deployed at 08:31 UTC) that its backend says is running."""
    run = RunDir(settings.deployments_dir, "lab")
    run.create()
    run.write({"id": "abc", "name": "lab", "backend": "local", "url": "http://127.0.0.1:5999", "created": CREATED,
               "workers": 1, "engine": "keras", "processes": [], "steps": STEPS})
    monkeypatch.setattr(LocalBackend, "running", lambda self, state: True)
    return run


# -- deploy() over a deployment that runs already -------------------------------------------
def test_deploy_over_a_running_deployment_says_so_and_keeps_its_steps(running, settings, capsys):
    lab = labkit.deploy("local", name="lab", workers=3, settings=settings)
    out = capsys.readouterr().out
    assert out == (f"[labkit] 'lab' is already running (local backend, since {_when(CREATED)}, 1 worker): "
                   "reusing it; use lab.scale(3) for 3 workers.\n")
    assert lab.reused
    assert [(s.index, s.what, s.seconds) for s in lab.steps] == [(1, "start RabbitMQ", 2.5),
                                                                  (2, "start 1 Celery worker", 4.0)]
    assert labkit.step_times(lab).total == 6.5
    # The same number of workers: no hint.
    labkit.deploy("local", name="lab", workers=1, settings=settings)
    assert capsys.readouterr().out.endswith("1 worker): reusing it.\n")
    # attach() (a restarted kernel) finds the same steps.
    assert labkit.attach("lab", settings=settings).steps == lab.steps


def test_in_a_notebook_the_reuse_is_a_paragraph_and_off_says_nothing(running, settings, monkeypatch, capsys):
    from IPython import display as ipython_display

    shown_there = []
    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)  # where tell() asks
    monkeypatch.setattr(ipython_display, "display", shown_there.append)
    labkit.deploy("local", name="lab", workers=2, settings=settings, progress="auto")
    (paragraph,) = shown_there
    content = assert_reads_well(paragraph)
    assert "already running" in content and "lab.scale(2)" in content
    labkit.deploy("local", name="lab", settings=settings, progress="off")
    assert len(shown_there) == 1 and capsys.readouterr().out == ""


def test_labkit_up_over_a_running_deployment_says_what_it_did_not_apply(running, settings, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(settings.home))
    runner = CliRunner()
    up = runner.invoke(cli, ["up", "--workers", "3", "--name", "lab"])
    assert up.exit_code == 0, up.output
    assert (f"'lab' is already running (local backend, since {_when(CREATED)}, 1 worker): --workers 3 was not "
            "applied: run `labkit scale 3`." in up.output)
    assert "[labkit] step" not in up.output  # nothing was started
    # Without --workers, there is nothing it did not do.
    assert "1 worker): reusing it." in runner.invoke(cli, ["up", "--name", "lab"]).output
    engine = runner.invoke(cli, ["up", "--engine", "onnx", "--name", "lab"]).output
    assert "--engine onnx was not applied (it serves with keras): run `labkit down`" in engine


# -- the notebook's end: close() takes down only what this kernel started -------------------
@pytest.fixture
def downs(monkeypatch):
    taken_down = []
    monkeypatch.setattr(LocalBackend, "down", lambda self, run, state: taken_down.append(state["name"]))
    return taken_down


def test_close_leaves_a_deployment_of_labkit_up_running_and_says_so(running, settings, downs, capsys):
    # It took the shell's deployment down at the notebook's end.
    running.write({**running.read(), "started_by": {"command": "labkit up"}})
    lab = labkit.deploy("local", name="lab", settings=settings)
    capsys.readouterr()
    lab.close()
    assert downs == [] and running.exists()
    assert capsys.readouterr().out == ("[labkit] 'lab' keeps running: it was running before this deploy found it "
                                       "(lab.destroy() or `labkit down --name lab` takes it down).\n")
    with labkit.deploy("local", name="lab", settings=settings):
        pass
    assert downs == [] and running.exists()
    lab.destroy()
    assert downs == ["lab"] and not running.exists()


def test_close_leaves_one_another_live_kernel_started(running, settings, downs):
    running.write({**running.read(), "started_by": _deploy._this_process()})  # alive: this very process
    lab = labkit.deploy("local", name="lab", settings=settings)
    assert lab.reused
    lab.close()
    assert downs == []


def test_a_dead_kernels_deployment_is_taken_over_and_closed(running, settings, downs):
    # A kernel killed before its atexit ran: the next kernel that finds the deployment owns it.
    gone = subprocess.run(["python3", "-c", "import os, time; print(os.getpid(), time.time())"],
                          capture_output=True, text=True, check=True).stdout.split()
    running.write({**running.read(), "started_by": {"pid": int(gone[0]), "started": float(gone[1])}})
    lab = labkit.deploy("local", name="lab", settings=settings)
    assert not lab.reused
    assert assert_reads_well(lab).count("Reused") == 0
    lab.close()
    assert downs == ["lab"] and not running.exists()


def test_what_deploy_starts_records_who_started_it(settings, monkeypatch):
    state = {"id": "x", "name": "lab", "backend": "local", "url": "http://127.0.0.1:5999", "processes": []}
    def up(self, run, settings, workers, display):
        run.create()
        return dict(state)

    monkeypatch.setattr(LocalBackend, "up", up)
    lab = _deploy.start_or_reuse("local", name="lab", settings=settings)
    assert lab.state["started_by"]["pid"] == os.getpid()
    assert not _deploy._orphaned(lab.state)
    up = _deploy.start_or_reuse("local", name="up", settings=settings, started_by={"command": "labkit up"})
    assert up.state["started_by"] == {"command": "labkit up"} and not _deploy._orphaned(up.state)


def test_task_2_means_the_docker_server_vm_where_the_backend_boots_vms(settings, monkeypatch):
    asked = []

    def start_or_reuse(backend, **kwargs):
        asked.append((backend, kwargs["template"]))
        raise labkit.LabkitError("stop here")

    monkeypatch.setattr(_deploy, "start_or_reuse", start_or_reuse)
    for backend, template in (("machine", "docker-server"), ("openstack", "docker-server"), ("docker", None),
                              ("local", None)):
        with pytest.raises(labkit.LabkitError):
            labkit.deploy(backend, task=2, settings=settings)
        assert asked[-1] == (backend, template)
    with pytest.raises(labkit.LabkitError):  # the saved backend, when none is given
        labkit.deploy(task=2, settings=dataclasses.replace(settings, backend="machine"))
    assert asked[-1] == (None, "docker-server")
    with pytest.raises(labkit.ConfigError, match="Task 1 .* and Task 2"):
        labkit.deploy("local", task=3, settings=settings)


# -- the cards ------------------------------------------------------------------------------
def test_a_deployment_shows_a_card(running, settings):
    lab = labkit.attach("lab", settings=settings)
    content = assert_reads_well(lab)
    for part in ("<b>lab</b>", "<a href='http://127.0.0.1:5999' target='_blank'>http://127.0.0.1:5999</a>",
                 ">local<", ">1<", ">keras<", f">{_when(CREATED)}<", ">6.5 s<"):
        assert part in content
    assert "Reused: started elsewhere, so close() leaves it running; destroy() stops it for everyone." in content
    started_here = labkit.Deployment(running, running.read(), settings, lab.steps)
    assert "Reused" not in assert_reads_well(started_here)
    running.remove()
    assert "was taken down" in assert_reads_well(lab)


def test_deployments_is_a_list_that_reads_as_a_sentence_or_a_table(running, settings):
    names = labkit.deployments(settings)
    assert names == ["lab"] and isinstance(names, list)
    content = assert_reads_well(names)
    assert ">http://127.0.0.1:5999<" in content and ">local<" in content
    running.remove()
    empty = labkit.deployments(settings)
    assert empty == []
    assert assert_reads_well(empty) == "<p>No deployment of this lab is running.</p>"


def test_model_info_is_a_dict_and_a_table(running, settings, monkeypatch):
    import httpx

    monkeypatch.setattr(httpx, "get", lambda url, timeout: httpx.Response(200, json=MODEL))
    info = labkit.attach("lab", settings=settings).model_info()
    assert info == MODEL and info["version"] == "42d1fbc9cf1e"
    content = assert_reads_well(info)
    for part in (">42d1fbc9cf1e<", ">keras<", ">0.760<", "150 epochs, hidden layers 12,8, seed 7",
                 "the worker lab-vm:4242", f">{_when(MODEL['trained_at'])}<"):
        assert part in content, content
    assert "batch_size" not in content and "{" not in content
    # A hand-made model's metadata may hold only a version: no empty rows.
    assert "accuracy" not in assert_reads_well(_deploy.ModelInfo({"version": "v1"}))


# -- CI/CD ------------------------------------------------------------------------------------
def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pipeline(tmp_path):
    """A pipeline's folders with a history written by hand, as production writes it."""
    production, development = tmp_path / "production", tmp_path / "development"
    production.mkdir()
    development.mkdir()
    _git("init", "--quiet", cwd=development)
    _git("config", "user.name", "Ada Student", cwd=development)
    history = [
        {"action": "init", "commit": "a" * 40, "who": "Ada Student", "accuracy": 0.7597, "release": 1,
         "version": "v1", "time": "2026-12-01T08:40:00+00:00", "workers_confirmed": 2, "seconds_to_serve": 0.31},
        {"action": "rollback", "who": None, "commit": None, "accuracy": None, "release": 1, "version": "v1",
         "time": "2026-12-01T08:50:00+00:00", "workers_confirmed": 2, "seconds_to_serve": 1.2},
    ]
    (production / "history.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
    config = PipelineConfig(name="lab", deployment_id="abc", url="http://127.0.0.1:9", production=str(production),
                            min_accuracy=0.7)
    here = LocalHost()
    sides = Sides(production=here, production_root=str(production), python="python", pythonpath=None,
                  served_model=str(tmp_path / "model"), url=config.url, data_dir=None, development=here,
                  development_dir=str(development), dev_python="python", repo_url=str(production / "repo.git"))
    return Pipeline(config, sides)


def test_a_pipeline_shows_both_sides_the_gate_and_the_release_served(pipeline):
    content = assert_reads_well(pipeline)
    for part in ("<b>lab</b>", "<b>master</b>", "at least 70.0%", ">production<", ">development<",
                 str(pipeline.development), "Serving release 1 (version v1, rollback at"):
        assert part in content, content


def test_the_history_table_has_no_nan_or_none(pipeline):
    frame = pipeline.history_frame()
    assert frame["action"].tolist() == ["init", "rollback"]
    assert frame["commit"].tolist() == ["a" * 8, "–"]
    assert frame["accuracy"].tolist() == ["0.760", "–"]
    assert frame["who"].tolist() == ["Ada Student", "–"]
    assert not frame.isna().any().any()
    assert_reads_well(frame)


def test_the_history_names_the_development_sides_git_user(pipeline, tmp_path, monkeypatch):
    assert identity(pipeline.sides, cloned=True) == "Ada Student"
    # No git identity anywhere: this machine's login name, which _clone then gives the clone.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    import getpass

    assert identity(pipeline.sides, cloned=False) == getpass.getuser()


def test_a_push_result_reads_as_sentences_and_as_a_table():
    output = ("[labkit gate] checking model/ of 1a2b3c4d (minimum accuracy 70.0%) ...\n"
              "[labkit gate] accepted 5f3a: loads, takes 8 inputs, gives probabilities, held-out accuracy 78.6% "
              "(minimum 70.0%)\n[labkit deploy] live: release 2, version 5f3a, served by 2 worker(s) 2.2 s after "
              "the switch")
    result = PushResult("master", "1a2b3c4d" * 5, True, 2, "5f3a", output, "loads, takes 8 inputs, gives "
                        "probabilities, held-out accuracy 78.6% (minimum 70.0%)", 2, 2.2)
    assert str(result).splitlines() == [
        "Release 2 (version 5f3a) is live: 2 worker(s) serve it, 2.2 s after the switch.",
        "The gate accepted it: loads, takes 8 inputs, gives probabilities, held-out accuracy 78.6% (minimum 70.0%).",
        "Commit 1a2b3c4d on master.",
    ]
    content = assert_reads_well(result)
    assert ">live: release 2<" in content and "What production's hooks said" in content
    stored = PushResult("experiment", "9" * 40, False, None, None, "", "accepted, not deployed (only master goes live)")
    assert str(stored) == "Commit 99999999 is on branch experiment: accepted, not deployed (only master goes live)."
    assert ">stored, not deployed<" in assert_reads_well(stored)
