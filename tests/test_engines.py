"""The two model engines: Keras and the ONNX export served by ONNX Runtime.

Real parts only: the session's model trained on the real data, the real
exporter and ONNX Runtime, real worker imports in subprocesses and real
local deployments.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import psutil
import pytest

import labkit
from labkit.infra import cloudinit
from production_server import ConfigurationError, create_app, engines, model, onnx_export
from production_server import data as pima
from production_server import train as train_cli

TOLERANCE = 1e-5
ROW = [6, 148, 72, 35, 0, 33.6, 0.627, 50]


@pytest.fixture(scope="module")
def dataset(data_dir) -> pima.Dataset:
    return pima.load(data_dir / pima.FILENAME)


@pytest.fixture(scope="module")
def keras_engine(model_dir):
    return engines.load(model_dir, "keras")


@pytest.fixture(scope="module")
def onnx_engine(model_dir):
    return engines.load(model_dir, "onnx")


def corrupted(onnx_bytes: bytes, initializer: str, delta: float) -> bytes:
    """The same ONNX model with one weight changed by ``delta``."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(onnx_bytes)
    (tensor,) = [t for t in proto.graph.initializer if t.name == initializer]
    values = numpy_helper.to_array(tensor).copy()
    values.flat[0] += delta
    tensor.CopyFrom(numpy_helper.from_array(values, name=initializer))
    return proto.SerializeToString()


# -- the export ------------------------------------------------------------
def test_engines_agree_on_all_768_rows(keras_engine, onnx_engine, dataset, report):
    assert len(dataset) == 768
    ours = onnx_engine.predict_proba(dataset.features)
    theirs = keras_engine.predict_proba(dataset.features)
    assert ours.shape == theirs.shape == (768,)
    assert ours.dtype == np.float64
    worst = float(np.max(np.abs(ours - theirs)))
    assert worst <= TOLERANCE
    # Not two copies of one constant: the rows get different probabilities.
    assert len(np.unique(np.round(ours, 4))) > 50
    report(f"engines: largest |onnx - keras| over the 768 rows: {worst:.2g}")


def test_both_engines_serve_the_same_model_version(keras_engine, onnx_engine, model_dir):
    metadata = model.read_metadata(model_dir)
    assert keras_engine.version == onnx_engine.version == metadata["version"]
    assert onnx_engine.onnx_model.properties["version"] == metadata["version"]
    assert (keras_engine.name, onnx_engine.name) == ("keras", "onnx")
    record = metadata["onnx_export"]
    assert record["file"] == model.ONNX_FILE
    assert record["checked_rows"] == metadata["n_test"]
    assert 0 <= record["max_abs_difference"] <= TOLERANCE


def test_single_rows_and_lists_work_as_with_keras(onnx_engine, keras_engine):
    one = onnx_engine.predict_proba([ROW])
    assert one.shape == (1,)
    np.testing.assert_array_equal(one, onnx_engine.predict_proba(ROW))
    np.testing.assert_allclose(one, keras_engine.predict_proba([ROW]), atol=TOLERANCE)


def test_export_refuses_a_corrupted_weight(keras_engine, dataset):
    keras_model = keras_engine.trained.model
    good = onnx_export.convert(keras_model, keras_engine.version)
    assert onnx_export.check(keras_model, good, dataset.features) <= TOLERANCE
    bad = corrupted(good, "hidden_1/kernel", 0.05)
    with pytest.raises(onnx_export.ExportError, match=r"differs from the Keras model .* nothing was saved"):
        onnx_export.check(keras_model, bad, dataset.features)
    # A change far below the tolerance is still the same model.
    assert onnx_export.check(keras_model, corrupted(good, "hidden_1/kernel", 1e-9), dataset.features) <= TOLERANCE


def test_training_saves_nothing_when_the_export_differs(monkeypatch, tmp_path, data_dir, capsys):
    """The real exporter, with one weight corrupted on its way out: train refuses to save."""
    real_convert = onnx_export.convert
    monkeypatch.setattr(onnx_export, "convert",
                        lambda keras_model, version: corrupted(real_convert(keras_model, version), "diabetes/bias", 0.5))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    out = tmp_path / "model"
    assert train_cli.main(["--out", str(out), "--epochs", "1", "--batch-size", "64"]) == 1
    assert not out.exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: The ONNX export differs from the Keras model by")
    assert last.endswith("or serve with the keras engine.")


def test_export_refuses_layers_it_does_not_know():
    import keras

    other = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(4, activation="tanh", name="odd")])
    with pytest.raises(onnx_export.ExportError, match="activation 'tanh' of layer 'odd'.*keras engine"):
        onnx_export.convert(other, "0" * 12)
    dropout = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dropout(0.5, name="drop")])
    with pytest.raises(onnx_export.ExportError, match="Dropout layer .*'drop'.*keras engine"):
        onnx_export.convert(dropout, "0" * 12)


# -- loading ---------------------------------------------------------------
def copy_model(model_dir, to, files=(model.MODEL_FILE, model.METADATA_FILE)):
    to.mkdir()
    for name in files:
        shutil.copy(model_dir / name, to / name)
    return to


def test_a_model_without_an_export_says_what_to_do(model_dir, tmp_path, settings):
    old = copy_model(model_dir, tmp_path / "old")
    with pytest.raises(FileNotFoundError, match=r"No model.onnx .*labkit train.*SERVER_MODEL_ENGINE=keras"):
        engines.load(old, "onnx")
    assert engines.load(old, "keras").version == model.read_metadata(model_dir)["version"]
    from dataclasses import replace

    with pytest.raises(labkit.PrerequisiteMissing, match=r"No model.onnx .*labkit train.*engine='keras'"):
        labkit.deploy("local", name="oldmodel", engine="onnx", settings=replace(settings, model_dir=old))
    assert labkit.deployments(settings) == []


def test_a_stale_export_is_refused(model_dir, tmp_path):
    stale = copy_model(model_dir, tmp_path / "stale", (model.MODEL_FILE, model.ONNX_FILE, model.METADATA_FILE))
    metadata = model.read_metadata(stale)
    (stale / model.METADATA_FILE).write_text(json.dumps({**metadata, "version": "0123456789ab"}))
    with pytest.raises(ValueError, match=r"holds model .* but metadata.json describes 0123456789ab.*labkit train"):
        engines.load(stale, "onnx")


def test_an_unknown_engine_is_a_clear_error(model_dir, settings):
    with pytest.raises(labkit.ConfigError, match=r"'torch' is not a model engine: choose one of keras, onnx"):
        labkit.Settings(engine="torch")
    with pytest.raises(labkit.ConfigError, match="LABKIT_ENGINE"):
        labkit.Settings.from_env({"LABKIT_ENGINE": "tensorflow"})
    assert labkit.Settings.from_env({"LABKIT_ENGINE": "onnx"}).engine == "onnx"
    assert labkit.Settings.from_env({}).engine == "keras"
    with pytest.raises(labkit.ConfigError, match="not a model engine"):
        labkit.deploy("local", name="torch", engine="torch", settings=settings)
    assert labkit.deployments(settings) == []
    # The cloud's templates do not pass an engine yet: refused before anything starts.
    with pytest.raises(labkit.ConfigError, match=r"openstack backend serves the model with Keras only.*engine='keras'"):
        labkit.deploy("openstack", name="cloudy", engine="onnx", settings=settings)
    # The server itself refuses it at start, naming its variable.
    with pytest.raises(ConfigurationError, match=r"SERVER_MODEL_ENGINE='torch' .* keras, onnx"):
        create_app({"BROKER_URL": "amqp://u:p@127.0.0.1:1//", "MODEL_ENGINE": "torch"})
    with pytest.raises(ConfigurationError, match="SERVER_MODEL_ENGINE"):
        engines.load(model_dir, "torch")


def test_the_cli_refuses_an_unknown_engine(tmp_path):
    done = subprocess.run([sys.executable, "-m", "labkit.cli", "up", "--engine", "torch"], capture_output=True,
                          text=True, env={**os.environ, "LABKIT_HOME": str(tmp_path)}, timeout=60)
    assert done.returncode == 2
    assert "Invalid value for '--engine'" in done.stderr and "'keras', 'onnx'" in done.stderr
    assert not (tmp_path / "deployments").exists()


# -- a worker's imports ----------------------------------------------------
WORKER_PROBE = """
import json, sys
import production_server.worker as worker
worker._preload()  # what the worker does before it takes its first task
with worker.flask_app.app_context():
    from production_server import tasks
    served = tasks.serving_model()
    p = float(served.predict_proba([%r])[0])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "tf_keras", "onnx"})
print(json.dumps({"engine": served.name, "heavy": heavy, "p": p}))
""" % (ROW,)


@pytest.mark.parametrize("engine, heavy", [("onnx", []), ("keras", ["keras", "tensorflow"])])
def test_an_onnx_worker_never_imports_tensorflow(model_dir, keras_engine, engine, heavy):
    """The worker module as Celery imports it, with the model loaded: TensorFlow only for keras."""
    env = {**os.environ, "SERVER_MODEL_ENGINE": engine, "SERVER_MODEL_DIR": str(model_dir),
           # Nothing connects to it: importing the worker and loading the model need no broker.
           "SERVER_BROKER_URL": "amqp://probe:probe@127.0.0.1:1//", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", WORKER_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["engine"] == engine
    assert seen["heavy"] == heavy
    assert abs(seen["p"] - keras_engine.predict_proba([ROW])[0]) <= TOLERANCE


def test_the_release_carries_the_export_and_serves_it_without_tensorflow(model_dir, tmp_path):
    archive = base64.b64decode(cloudinit.release(model_dir).b64)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert "model/model.onnx" in tar.getnames()
        tar.extractall(tmp_path, filter="data")
    assert (tmp_path / "model" / "model.onnx").read_bytes() == (model_dir / "model.onnx").read_bytes()
    code = ("import sys; from production_server import engines; e = engines.load('model', 'onnx'); "
            f"print(e.version, e.predict_proba({ROW!r})[0], 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    version, probability, tensorflow = done.stdout.split()
    assert version == model.read_metadata(model_dir)["version"]
    assert 0.0 <= float(probability) <= 1.0 and tensorflow == "False"


# -- real deployments ------------------------------------------------------
def maps_tensorflow(pid: int) -> bool:
    """Whether the process has TensorFlow's shared libraries mapped: imported, whatever it says."""
    return any("tensorflow" in m.path for m in psutil.Process(pid).memory_maps())


def worker_pids(lab) -> list[int]:
    return [p["pid"] for p in lab.state["processes"] if p["role"].startswith("worker-")]


@pytest.mark.slow
def test_an_onnx_deployment_answers_as_the_keras_one(deployment_factory, settings, dataset, report):
    keras_lab = deployment_factory(name="keras")
    onnx_lab = deployment_factory(name="onnx", engine="onnx", workers=2)
    rows = dataset.features.tolist()  # all 768 rows in one request

    ours, theirs = onnx_lab.post_predict(rows), keras_lab.post_predict(rows)
    assert ours["model_version"] == theirs["model_version"]
    difference = np.abs(np.asarray(ours["probabilities"]) - np.asarray(theirs["probabilities"]))
    assert len(difference) == 768 and difference.max() <= TOLERANCE
    clear = np.abs(np.asarray(theirs["probabilities"]) - 0.5) > TOLERANCE  # no coin flips at the boundary
    assert np.array_equal(np.asarray(ours["predictions"])[clear], np.asarray(theirs["predictions"])[clear])

    assert onnx_lab.model_info()["engine"] == "onnx"
    assert keras_lab.model_info()["engine"] == "keras"
    assert onnx_lab.model_info()["version"] == keras_lab.model_info()["version"]
    status = onnx_lab.status()
    assert (status.engine, status.workers, status.to_dict()["engine"]) == ("onnx", 2, "onnx")
    assert keras_lab.status().engine == "keras"
    assert labkit.attach("onnx", settings=settings).status().engine == "onnx"

    # The point of the engine: its workers never load TensorFlow (the keras ones do).
    assert [maps_tensorflow(pid) for pid in worker_pids(onnx_lab)] == [False, False]
    assert [maps_tensorflow(pid) for pid in worker_pids(keras_lab)] == [True]
    # A worker started by scaling gets the same engine.
    onnx_lab.scale(3)
    assert [maps_tensorflow(pid) for pid in worker_pids(onnx_lab)] == [False, False, False]
    report(f"engines: 768 rows over HTTP, largest |onnx - keras| {difference.max():.2g}")

