"""production_server.model: seeded training, versions, metadata, save and load.

Trained in this process on the real data, with few epochs: the tests need a
real model, not a good one.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from production_server import data as pima
from production_server import inference, model

EPOCHS = 3


@pytest.fixture(scope="module")
def dataset(data_dir) -> pima.Dataset:
    return pima.load(data_dir / pima.FILENAME)


@pytest.fixture(scope="module")
def params() -> model.TrainParams:
    return model.TrainParams(epochs=EPOCHS, batch_size=32, seed=7)


@pytest.fixture(scope="module")
def trained(dataset, params) -> model.TrainedModel:
    return model.train(params, dataset)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return model.save(trained, tmp_path_factory.mktemp("saved"))


def test_same_seed_gives_identical_weights_and_version(trained, dataset, params):
    again = model.train(params, dataset)
    assert again.version == trained.version
    first, second = trained.model.get_weights(), again.model.get_weights()
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert again.metadata["accuracy"] == trained.metadata["accuracy"]


def test_different_seed_gives_a_different_version(trained, dataset, params):
    other = model.train(model.TrainParams(epochs=EPOCHS, batch_size=params.batch_size, seed=8), dataset)
    assert other.version != trained.version
    assert any(not np.array_equal(a, b) for a, b in zip(trained.model.get_weights(), other.model.get_weights()))


def test_metadata(trained, params):
    meta = trained.metadata
    assert trained.version == meta["version"]
    assert isinstance(meta["version"], str) and len(meta["version"]) == 12
    int(meta["version"], 16)  # a hex digest
    assert 0.0 <= meta["accuracy"] <= 1.0
    assert meta["params"] == {
        "epochs": EPOCHS,
        "batch_size": params.batch_size,
        "hidden": [12, 8],
        "seed": 7,
        "test_fraction": 0.2,
    }
    assert meta["n_train"] + meta["n_test"] == 768
    assert meta["n_test"] == round(500 * 0.2) + round(268 * 0.2)
    assert datetime.fromisoformat(meta["trained_at"]).tzinfo is not None
    json.dumps(meta)  # it goes into metadata.json as is


def test_version_is_the_content_version(trained):
    assert model.content_version(trained.model) == trained.version


def test_predict_proba_shape_and_range(trained, dataset):
    probabilities = inference.predict_proba(trained.model, dataset.features[:17])
    assert probabilities.shape == (17,)
    assert probabilities.dtype == np.float64
    assert np.all((probabilities >= 0.0) & (probabilities <= 1.0))
    assert np.all(np.isfinite(probabilities))


def test_predict_proba_accepts_lists_and_a_single_row(trained, dataset):
    row = [6, 148, 72, 35, 0, 33.6, 0.627, 50]
    one = inference.predict_proba(trained.model, [row])
    assert one.shape == (1,)
    flat = inference.predict_proba(trained.model, row)  # reshaped to one row of 8
    np.testing.assert_array_equal(one, flat)
    np.testing.assert_allclose(one, inference.predict_proba(trained.model, dataset.features[:1]), rtol=1e-6)


def test_saved_files(saved, trained):
    assert sorted(p.name for p in saved.iterdir()) == sorted([model.MODEL_FILE, model.ONNX_FILE, model.METADATA_FILE])
    assert (saved / model.ONNX_FILE).read_bytes() == trained.onnx
    assert json.loads((saved / model.METADATA_FILE).read_text()) == trained.metadata
    assert model.read_metadata(saved) == trained.metadata


def test_save_load_roundtrip_gives_identical_probabilities(saved, trained, dataset):
    loaded = model.load(saved)
    assert loaded.metadata == trained.metadata
    assert loaded.version == trained.version
    np.testing.assert_array_equal(
        inference.predict_proba(loaded.model, dataset.features),
        inference.predict_proba(trained.model, dataset.features),
    )


def test_content_version_does_not_change_when_re_saving(saved, trained, tmp_path):
    loaded = model.load(saved)
    assert model.content_version(loaded.model) == trained.version
    model.save(loaded, tmp_path / "again")
    reloaded = model.load(tmp_path / "again")
    assert model.content_version(reloaded.model) == trained.version
    assert reloaded.version == trained.version
    assert reloaded.onnx == trained.onnx  # the export travels with the model


def test_saving_a_model_without_an_export_removes_a_stale_one(saved, trained, tmp_path):
    """A model.onnx of an earlier training must not be served under a new model's metadata."""
    out = tmp_path / "model"
    model.save(trained, out)
    assert (out / model.ONNX_FILE).is_file()
    model.save(model.TrainedModel(trained.model, trained.metadata), out)
    assert not (out / model.ONNX_FILE).exists()


def test_read_metadata_without_a_model_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="labkit train"):
        model.read_metadata(tmp_path)
