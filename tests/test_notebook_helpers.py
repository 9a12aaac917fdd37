"""What the notebooks show: step timings, prediction latencies, the files a VM or container gets."""

from __future__ import annotations

import json

import pytest

import labkit
from labkit.notebook import show as _show


def test_step_times_table_and_plot():
    steps = [labkit.Step(1, 3, "install packages", 90.0), labkit.Step(2, 3, "pip install", 240.0),
             labkit.Step(3, 3, "start services", 30.0)]
    times = labkit.step_times(steps)
    frame = times.frame()
    assert list(frame["what"]) == ["install packages", "pip install", "start services"]
    assert list(frame["share"]) == ["25%", "67%", "8%"]
    assert times.total == 360.0
    fig = times.plot()
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == [90.0, 240.0, 30.0]
    assert "360 s" in ax.get_title()


@pytest.mark.slow
def test_time_predictions_against_a_real_deployment(shared_lab):
    times = labkit.time_predictions(shared_lab, n=20)
    summary = times.summary()
    assert summary["requests"] == 20 and summary["errors"] == 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert len(times.frame()) == 20
    assert labkit.step_times(shared_lab).total > 0
    assert "p50" in [line.get_label() for line in times.plot().axes[0].lines]


def test_cloud_init_preview_is_the_rendered_user_data_with_its_checks(settings):
    shown = labkit.cloud_init("single-server", settings=settings)
    assert shown.ok, shown.problems
    assert shown.schema is not None and shown.schema.name == _show.SCHEMA_FILE
    assert shown.text.startswith("#cloud-config\n") and shown.size <= 65_535
    html = shown._repr_html_()
    assert "valid" in html and "characters)" in html  # the release's base64 line is shortened for reading
    assert len(html) < len(shown.text) / 2


def test_a_fresh_clone_checks_against_cloud_init_s_schema_without_the_shared_folder(settings, monkeypatch, tmp_path):
    # What a student's clone has: the copy scripts/setup.sh took from Debian's cloud-init package.
    monkeypatch.setattr(_show, "CHECKOUT", tmp_path)  # no ../shared beside it
    monkeypatch.setattr(_show, "SYSTEM_SCHEMA", tmp_path / "none.json")  # no cloud-init installed
    assert _show.VENV_SCHEMA.is_file(), "scripts/setup.sh did not put cloud-init's schema into the venv"
    assert (_show.VENV_SCHEMA.parent / "copyright").is_file()  # its licence travels with it
    shown = labkit.cloud_init("single-server", settings=settings)
    assert shown.schema == _show.VENV_SCHEMA and shown.ok, shown.problems
    # The same schema refuses what cloud-init would refuse.
    broken = shown.text.replace("#cloud-config\n", "#cloud-config\npackage_upgrade: maybe\n", 1)
    assert any("package_upgrade" in p for p in labkit.infra.cloudinit.check(broken, json.loads(shown.schema.read_text())))


def test_cloud_init_preview_says_when_the_schema_is_missing(settings, monkeypatch, tmp_path):
    monkeypatch.setattr(_show, "CHECKOUT", tmp_path)  # no ../shared beside it
    monkeypatch.setattr(_show, "SYSTEM_SCHEMA", tmp_path / "none.json")
    monkeypatch.setattr(_show, "VENV_SCHEMA", tmp_path / "none.json")
    shown = labkit.cloud_init("single-server", settings=settings)
    assert shown.schema is None
    assert "scripts/setup.sh" in shown._repr_html_() and "LABKIT_CLOUDINIT_SCHEMA" in shown._repr_html_()


def test_show_file_escapes_what_it_shows(tmp_path):
    path = tmp_path / "hook"
    path.write_text("#!/bin/sh\necho '<b>deployed</b>'\n")
    html = labkit.show_file(path)._repr_html_()
    assert "&lt;b&gt;deployed&lt;/b&gt;" in html and "<b>deployed" not in html


def test_model_card_describes_the_trained_model(model_dir, tmp_path):
    card = labkit.model_card(model_dir)
    assert card["engines"] == "keras, onnx"
    assert card["hidden layers"] == "12,8" and card["epochs"] == 30
    assert 0.5 < card["held-out accuracy"] <= 1
    with pytest.raises(labkit.TrainingError, match="labkit train"):
        labkit.model_card(tmp_path / "nothing-here")
