"""What labkit's results look like to a notebook: drawn charts, readable tables, one-sentence errors.

IPython's own DisplayFormatter decides here, as in a kernel: a fresh one
knows nothing of matplotlib (nothing imported pyplot or set up the inline
backend), which is exactly a student's fresh kernel.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter
from notebook_outputs import RICHEST_FIRST, shown_problems

import labkit
from labkit.experiments.compare import EngineComparison, EngineFigures
from labkit.experiments.load import LoadResult
from labkit.experiments.sweep import COLUMNS, SweepResult
from labkit.notebook import checks as _checks
from labkit.notebook import widgets as ui

PNG = b"\x89PNG\r\n\x1a\n"


def shown(obj) -> tuple[str, object]:
    """The representation JupyterLab would render, and its content."""
    data, _ = DisplayFormatter().format(obj)
    mime = next(m for m in RICHEST_FIRST if m in data)
    return mime, data[mime]


def steps():
    return labkit.step_times([labkit.Step(1, 2, "install packages", 31.0), labkit.Step(2, 2, "pip", 35.5)])


def prediction_times() -> labkit.PredictionTimes:
    return labkit.PredictionTimes(LoadResult(concurrency=1, requests=3, errors=0, seconds=0.1,
                                             latencies_ms=np.array([3.25, 4.0, 5.0])))


def sweep_result() -> SweepResult:
    rows = [dict(engine="keras", workers=w, concurrency=c, requests=100, errors=0, seconds=1.5,
                 throughput_rps=200.123456, p50_ms=4.123456, p95_ms=6.0, p99_ms=9.0,
                 worker_rss_mb=math.nan,  # a VM reports no memory per worker
                 scaled_from=1, scale_s=2.5, cores=2) for w in (1, 2) for c in (1, 4)]
    return SweepResult(pd.DataFrame(rows)[COLUMNS])


def test_charts_are_drawn_in_a_fresh_kernel_without_pyplot():
    timing = prediction_times()
    for figure in (steps().plot(), timing.plot(), sweep_result().plot()):
        mime, content = shown(figure)
        assert mime == "image/png", f"{type(figure).__name__} shows as {mime}"
        assert content[:8] == PNG


def test_a_chart_saves_itself_as_png(tmp_path):
    path = tmp_path / "plots" / "steps.png"
    steps().plot().save(path)
    assert path.read_bytes()[:8] == PNG


def test_the_environment_table_shows_marks_not_entities():
    mime, content = shown(labkit.Checks([_checks.Check("a", _checks.OK, "fine"),
                                         _checks.Check("b", _checks.PROBLEM, "<missing>", "install it"),
                                         _checks.Check("c", _checks.OPTIONAL, "only docker")]))
    assert mime == "text/html" and shown_problems(mime, content) == []
    assert "\u2713" in content and "\u2717" in content and "\u2013" in content
    assert "&lt;missing&gt;" in content  # what the checks say is still escaped


def test_step_and_prediction_tables_read_as_tables():
    timing = prediction_times()
    for result in (steps(), timing):
        mime, content = shown(result)
        assert mime == "text/html" and shown_problems(mime, content) == [], content
    assert "100.00" not in shown(timing)[1] and ">3</td>" in shown(timing)[1]  # a count is a whole number
    assert "No steps were recorded" in shown(labkit.step_times([]))[1]


def test_sweep_and_engine_tables_hold_no_nan_none_or_booleans():
    figures = {e: EngineFigures(e, 5.2 if e == "keras" else 1.3, 5.4, 591.87654, 4.7, 12.1, 300, 0)
               for e in ("keras", "onnx")}
    for result in (sweep_result(), EngineComparison(figures)):
        mime, content = shown(result)
        assert mime == "text/html"
        assert shown_problems(mime, content) == [], content
        assert "met_detail" not in content and "**" not in content
    engines = shown(EngineComparison(figures))[1]
    assert "<b>no</b>" in engines  # a target not met stands out (the scale-up limit of onnx, 3 s)
    # Failed requests are a count: "0", not "0.0".
    assert "<td style='text-align:left'>failed requests</td><td style='text-align:right'>0</td>" in engines


def test_the_model_card_is_a_table(model_dir):
    mime, content = shown(labkit.model_card(model_dir))
    assert mime == "text/html" and shown_problems(mime, content) == [], content
    assert "dtype" not in content


def test_the_setup_form_shows_sentences_and_tables(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CONFIG", str(tmp_path / "settings.json"))
    form = ui.setup_form()
    for value in (form.value, form.save()):
        mime, content = shown(value)
        assert shown_problems(mime, content) == [], (mime, content)
    assert "settings.json" in shown(form.save())[1]


@pytest.mark.parametrize("debug", ["", "1"])
def test_a_labkit_error_renders_as_its_sentence_in_ipython(monkeypatch, debug):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("LABKIT_DEBUG", debug)
    InteractiveShell.instance()
    try:
        labkit.deploy("dokcer")
    except labkit.ConfigError as exc:
        lines = exc._render_traceback_()
    if debug:
        assert len(lines) > 3 and any("_deploy.py" in line for line in lines)  # the whole traceback
    else:
        assert len(lines) == 1 and "ConfigError" in lines[0] and "Unknown backend 'dokcer'" in lines[0]
