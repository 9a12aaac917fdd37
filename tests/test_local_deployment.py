"""The local backend end to end: real RabbitMQ, Celery workers, gunicorn and model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

import labkit
from labkit._deploy import _when
from labkit.infra import procs as _procs
from production_server import data as pima
from production_server import inference, model

pytestmark = pytest.mark.slow


def recorded(lab) -> tuple[list[_procs.Proc], list[int]]:
    state = lab.state
    procs = [_procs.Proc.from_dict(p) for p in state["processes"]]
    node = state["broker"]["node"]
    ports = [state["port"], node["amqp_port"], node["dist_port"], node["epmd_port"]]
    return procs, ports


def assert_nothing_left(procs, ports):
    assert [p.role for p in procs if p.alive()] == []
    assert [port for port in ports if _procs.port_in_use(port)] == []


def worker_count(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=5).json()["workers"]


def test_up_predict_scale_down(deployment_factory, model_dir, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    lab = deployment_factory(workers=1)

    markers = labkit.parse_markers(capsys.readouterr().out)
    assert [s.index for s in markers] == [1, 2, 3, 4, 5]
    assert [s.what for s in markers] == [s.what for s in lab.steps]
    assert worker_count(lab.url) == 1

    # Over HTTP, through RabbitMQ and a worker, the answers are the model's own.
    rows = pima.load().features[:25].tolist()
    answer = lab.predict(rows)
    trained = model.load(model_dir)
    expected = inference.predict_proba(trained.model, rows)
    # The table shows three places (what a reader compares); the raw answer has them all.
    np.testing.assert_allclose(answer["probability"], expected, atol=5e-4 + 1e-6)
    np.testing.assert_allclose(lab.post_predict(rows)["probabilities"], expected, atol=1e-6)
    assert answer.attrs["model_version"] == trained.version
    assert list(answer["prediction"]) == [int(p >= 0.5) for p in expected]

    for workers in (3, 1):
        seconds = lab.scale(workers)
        assert seconds > 0
        assert worker_count(lab.url) == workers
        assert labkit.attach(lab.name, settings=lab.settings).workers == workers  # what a reuse will say
        alive = [p for p in lab.status().processes if p["role"].startswith("worker-") and p["alive"]]
        assert len(alive) == workers

    procs, ports = recorded(lab)
    run_path = lab.run_dir.path
    lab.destroy()
    assert_nothing_left(procs, ports)
    assert not run_path.exists()


def test_deploy_twice_reattaches(deployment_factory, settings, capsys):
    first = deployment_factory(workers=1, name="twice")
    capsys.readouterr()
    pids = sorted(p["pid"] for p in first.state["processes"])
    second = labkit.deploy("local", name="twice", workers=2, settings=settings)
    assert second.url == first.url
    assert sorted(p["pid"] for p in second.state["processes"]) == pids
    # Told, not silent: what runs, since when, and how to get the workers asked for.
    assert capsys.readouterr().out == (f"[labkit] 'twice' is already running (local backend, since "
                                       f"{_when(first.since)}, 1 worker): reusing it; use lab.scale(2) for 2 "
                                       "workers.\n")
    assert second.reused and not first.reused
    assert "close() leaves it running; destroy() stops it for everyone" in second._repr_html_()
    # The steps of the deploy that started it: step_times() of a reused deployment is not empty.
    assert len(first.steps) == 5 and second.steps == first.steps
    # A restarted kernel: nothing in memory, only the run directory.
    again = labkit.attach("twice", settings=labkit.Settings(home=settings.home))
    assert again.status().healthy
    assert again.steps == first.steps and again.reused
    info = again.model_info()
    assert isinstance(info, dict) and f">{info['version']}<" in info._repr_html_()
    assert labkit.deployments(settings) == ["twice"]
    # An object left from an earlier deployment of the same name (an old
    # kernel's atexit hook) must not take this one down.
    stale = labkit.Deployment(first.run_dir, {**first.state, "id": "an-older-one"}, settings)
    stale.destroy()
    assert first.status().healthy


def test_deployments_started_together_get_their_own_ports(settings):
    import threading

    labs: dict = {}

    def start(name: str) -> None:
        labs[name] = labkit.deploy("local", name=name, workers=1, settings=settings)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("alpha", "beta")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert sorted(labs) == ["alpha", "beta"]
        assert labs["alpha"].url != labs["beta"].url
        for name, lab in labs.items():
            names = httpx.get(f"{lab.url}/healthz").json()["worker_names"]
            assert [n.split("@")[0] for n in names] == [f"worker-1.{name}"]
    finally:
        for lab in labs.values():
            lab.destroy()


def test_errors_say_what_to_do(settings, tmp_path):
    empty = labkit.Settings(home=settings.home, model_dir=tmp_path / "no-model", progress="off")
    with pytest.raises(labkit.PrerequisiteMissing, match="labkit train"):
        labkit.deploy("local", name="nomodel", settings=empty)
    assert labkit.deployments(empty) == []
    with pytest.raises(labkit.NotDeployed, match="labkit up"):
        labkit.attach("nothing", settings=settings)
    with pytest.raises(labkit.ConfigError, match="not a valid deployment name"):
        labkit.deploy("local", name="Bad Name!", settings=settings)


def test_missing_rabbitmq_server_is_explained(settings, monkeypatch, tmp_path):
    # A machine without RabbitMQ: nothing in the system folders, nothing on PATH.
    monkeypatch.setattr("labkit.infra.rabbitmq.SYSTEM_DIRS", (str(tmp_path),))
    monkeypatch.setattr("labkit.infra.rabbitmq.ERTS_GLOB", str(tmp_path / "erts-*"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(labkit.PrerequisiteMissing, match="apt-get install -y rabbitmq-server"):
        labkit.deploy("local", name="norabbit", settings=settings)
    assert labkit.deployments(settings) == []

    # Found on PATH (conda-forge's, say), the same search succeeds.
    fake = tmp_path / "rabbitmq-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    from labkit.infra import rabbitmq as _rabbitmq

    assert _rabbitmq._find("rabbitmq-server") == str(fake)


def _cli(args, env, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "labkit.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli_env(settings):
    env = dict(os.environ)
    env.update(
        LABKIT_HOME=str(settings.home),
        LABKIT_MODEL_DIR=str(settings.model_dir),
        LABKIT_DATA_DIR=str(settings.data_dir),
    )
    yield env
    _cli(["down", "--name", "cli"], env)


def test_cli_up_status_down(cli_env, settings):
    up = _cli(["up", "--workers", "1", "--name", "cli"], cli_env)
    assert up.returncode == 0, up.stderr
    assert [s.index for s in labkit.parse_markers(up.stdout)] == [1, 2, 3, 4, 5]
    url = up.stdout.strip().splitlines()[-1].split(" at ")[1].split(" ")[0]
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"

    # Up again with other options: it says what it did not do, and starts nothing.
    again = _cli(["up", "--workers", "3", "--name", "cli"], cli_env)
    assert again.returncode == 0, again.stderr
    assert "is already running (local backend, since " in again.stdout
    assert ", 1 worker): --workers 3 was not applied: run `labkit scale 3`." in again.stdout
    assert labkit.parse_markers(again.stdout) == []

    status = _cli(["status", "--json", "--name", "cli"], cli_env)
    shown = json.loads(status.stdout)
    assert {k: shown[k] for k in ("name", "backend", "url", "workers")} == {
        "name": "cli", "backend": "local", "url": url, "workers": 1,
    }
    assert "password" not in status.stdout and "amqp://" not in status.stdout

    lab = labkit.attach("cli", settings=settings)
    procs, ports = recorded(lab)
    down = _cli(["down", "--name", "cli"], cli_env)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(procs, ports)

    missing = _cli(["status", "--name", "cli"], cli_env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("labkit: No deployment called 'cli'")
    assert "Traceback" not in missing.stderr


def test_cli_up_with_the_onnx_engine(cli_env):
    up = _cli(["up", "--engine", "onnx", "--name", "cli"], cli_env)
    assert up.returncode == 0, up.stderr
    last = up.stdout.strip().splitlines()[-1]
    assert last.endswith("with 1 worker(s), onnx engine.")
    url = last.split(" at ")[1].split(" ")[0]
    assert httpx.get(f"{url}/api/model").json()["engine"] == "onnx"
    assert json.loads(_cli(["status", "--json", "--name", "cli"], cli_env).stdout)["engine"] == "onnx"
    assert "1 worker(s) answering, onnx engine" in _cli(["status", "--name", "cli"], cli_env).stdout


def up_until_rabbitmq_is_recorded(env, settings, **streams) -> tuple[subprocess.Popen, Path]:
    """`labkit up --name cli` in a process of its own, returned mid-start: once RabbitMQ is in its state file."""
    up = subprocess.Popen([sys.executable, "-m", "labkit.cli", "up", "--name", "cli"], env=env, **streams)
    state_file = settings.home / "deployments" / "cli" / "state.json"

    def rabbit_recorded() -> bool:
        try:
            return any(p["role"] == "rabbitmq" for p in json.loads(state_file.read_text())["processes"])
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    try:
        assert _procs.wait_until(rabbit_recorded, timeout=90, interval=0.05)
    except BaseException:
        up.kill()
        up.communicate()
        raise
    return up, state_file


def test_down_after_labkit_itself_crashed(cli_env, settings):
    """`labkit up` killed mid-way leaves processes; `labkit down` still finds and stops them all."""
    up, state_file = up_until_rabbitmq_is_recorded(cli_env, settings, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    up.send_signal(signal.SIGKILL)
    up.wait()
    state = json.loads(state_file.read_text())
    procs = [_procs.Proc.from_dict(p) for p in state["processes"]]
    assert any(p.alive() for p in procs)

    down = _cli(["down", "--name", "cli"], cli_env)
    assert down.returncode == 0, down.stderr
    assert [p.role for p in procs if p.alive()] == []
    assert not _procs.port_in_use(state["broker"]["node"]["amqp_port"])
    # Nothing of ours is left anywhere, recorded or not.
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"])
                 if "labkit-cli@localhost" in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def processes_of(home) -> list[dict]:
    """Every process that runs for this LABKIT_HOME: named in its command line or environment, or working in it."""
    home = str(home)
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        if process.pid == os.getpid():
            continue
        try:
            environ = process.environ()
        except psutil.Error:
            environ = {}
        if (home in " ".join(process.info["cmdline"] or []) or (process.info["cwd"] or "").startswith(home)
                or environ.get("LABKIT_HOME") == home):
            found.append(process.info)
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_labkit_up_stopped_by_a_signal_mid_start_leaves_nothing(cli_env, settings, signum):
    """SIGTERM (`kill`, a session ending) or SIGHUP (its terminal closed) in the middle of a start:
    before, `labkit up` died at once and the half-started stack ran on."""
    up, state_file = up_until_rabbitmq_is_recorded(cli_env, settings, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, text=True)
    try:
        procs = [_procs.Proc.from_dict(p) for p in json.loads(state_file.read_text())["processes"]]
        up.send_signal(signum)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 128 + signum, err
    assert f"labkit: stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err, err
    assert "is up at" not in out
    assert procs and [p.role for p in procs if p.alive()] == []
    assert not state_file.exists()
    assert processes_of(settings.home) == []


def test_an_existing_broker_instead_of_a_private_node(tmp_path, data_dir, model_dir):
    """LABKIT_BROKER_URL: no RabbitMQ node of our own, the workers use the one given."""
    url = os.environ.get("LABKIT_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    if not _procs.port_in_use(5672) and "LABKIT_TEST_BROKER_URL" not in os.environ:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 (.ci/run starts one); set LABKIT_TEST_BROKER_URL to use another")
    settings = labkit.Settings(home=tmp_path / "home", model_dir=model_dir, data_dir=data_dir,
                               broker_url=url, progress="off")
    lab = labkit.deploy("local", name="external", workers=1, settings=settings)
    try:
        roles = [p["role"] for p in lab.state["processes"]]
        assert "rabbitmq" not in roles and "epmd" not in roles
        assert lab.post_predict([[1, 85, 66, 29, 0, 26.6, 0.351, 31]])["predictions"] in ([0], [1])
    finally:
        lab.destroy()


def test_a_prefork_worker_serves_with_the_model_loaded_in_each_child(settings):
    """The prefork pool (what a student may pick in Compose) works too: the parent never
    imports TensorFlow, each child loads the model once. (Children started within Celery's
    default 4 s limit on this machine, so this does not show the raised limit is needed.)

    A prefork worker answers pings before its children have loaded the model, so the
    first tasks can wait for them: this deployment gives requests 30 s, not 3."""
    from dataclasses import replace

    lab = labkit.deploy("local", name="prefork", workers=1, settings=replace(settings, predict_timeout=30.0))
    env = {**os.environ, "SERVER_BROKER_URL": lab.state["broker"]["url"],
           "SERVER_MODEL_DIR": lab.state["model_dir"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = lab.run_dir.logs / "prefork.log"
    proc = _procs.spawn("prefork", [sys.executable, "-m", "celery", "-A", "production_server.worker", "worker",
                                    "--pool", "prefork", "--concurrency", "2", "--hostname", "prefork@%h",
                                    "--without-gossip", "--without-mingle", "--loglevel", "INFO"], env, log)
    try:
        assert _procs.wait_until(lambda: worker_count(lab.url) == 2, timeout=120), _procs.tail(log, 40)
        # RabbitMQ hands tasks to its consumers in turn: some reach the prefork children.
        for _ in range(12):
            assert lab.post_predict([[1, 85, 66, 29, 0, 26.6, 0.351, 31]])["predictions"] in ([0], [1])
        assert _procs.wait_until(lambda: "lab.predict" in log.read_text() and "succeeded" in log.read_text(), 10)
        text = log.read_text()
        assert "Timed out waiting for UP message" not in text and "exited with 'signal" not in text, text[-2000:]
    finally:
        _procs.stop(proc)
        lab.destroy()


def test_deploy_takes_its_progress_display_from_the_argument(deployment_factory, capsys):
    # The settings say "lines"; the argument wins, so this deployment prints no step lines.
    lab = deployment_factory(workers=1, name="quiet", progress="off")
    assert "[labkit] step" not in capsys.readouterr().out
    assert [step.what for step in lab.steps][:1] == ["check prerequisites"]


def test_a_port_whose_last_server_stopped_a_moment_ago_is_taken_again():
    """Connections the old server closed stay in TIME_WAIT for a minute; the port is free all the same."""
    import socket

    host, port = "127.0.0.3", _procs.free_port(5300, "127.0.0.3")
    with _procs.listening_socket(port, host) as server:
        assert server.getsockname()[1] == port
        client = socket.create_connection((host, port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side of the connection waits in TIME_WAIT
        client.close()
    with socket.socket() as plain:  # what the old code did, which failed here
        with pytest.raises(OSError):
            plain.bind((host, port))
    with _procs.listening_socket(port, host) as again:
        assert again.getsockname()[1] == port
    # Someone listening there still moves a new server to the next port.
    with _procs.listening_socket(port, host) as first, _procs.listening_socket(port, host) as second:
        assert (first.getsockname()[1], second.getsockname()[1]) == (port, port + 1)
