"""The load generator, the scaling sweep and its command, against a real local deployment.

Durations are tiny: these tests check what the experiments report and leave
behind, not how fast this machine is. The sweeps scale the module's shared
deployment and check that it ends with the one worker it started with.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path

import pandas as pd
import pytest

import labkit
from labkit.cli import main
from labkit.experiments import load as _load
from labkit.experiments.bench import ROW
from labkit.infra import procs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_dimensions(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_readable_png(path: Path) -> None:
    from matplotlib.image import imread

    width, height = png_dimensions(path)
    assert width >= 800 and height >= 400
    assert 10_000 < path.stat().st_size < 2_000_000
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05, "the image is (nearly) one colour"


def test_load_counts_every_request_as_an_error_when_nothing_listens():
    port = procs.free_port()
    result = _load.run(f"http://127.0.0.1:{port}", [ROW], concurrency=4, requests=40, timeout=2)
    assert (result.requests, result.errors, result.throughput) == (40, 40, 0.0)
    assert "ConnectionRefusedError" in result.error_samples[0]
    assert math.isnan(result.percentile(50))


def test_sweep_refuses_a_grid_it_cannot_run():
    # Checked before the deployment is touched: none is needed here.
    for kwargs in ({"workers": (0, 1)}, {"concurrency": ()}, {"duration": None}, {"duration": -1.0}):
        with pytest.raises(labkit.BenchmarkError, match=r"give"):
            labkit.sweep(None, **kwargs)


def test_cli_rejects_a_list_that_is_not_numbers(capsys):
    assert main(["bench", "--sweep", "--workers", "1,two"]) == 2
    assert "whole numbers separated by commas" in capsys.readouterr().err


@pytest.mark.slow
def test_load_stops_at_the_count_or_at_the_duration(shared_lab):
    counted = _load.run(shared_lab.url, [ROW], concurrency=3, requests=25, duration=600)
    assert (counted.requests, counted.errors) == (25, 0)
    # A count it could never reach: the duration ends the run.
    timed = _load.run(shared_lab.url, [ROW], concurrency=2, requests=10**9, duration=0.5)
    assert 0 < timed.requests < 10**9 and timed.errors == 0


@pytest.mark.slow
def test_sweep_measures_every_point_and_leaves_the_workers_as_they_were(shared_lab, tmp_path, capsys, report):
    result = labkit.sweep(shared_lab, workers=(1, 2), concurrency=(1, 4), duration=0.5, warmup=5)
    frame = result.frame

    assert list(zip(frame["workers"], frame["concurrency"])) == [(1, 1), (1, 4), (2, 1), (2, 4)]
    assert (frame["errors"] == 0).all()
    assert (frame["throughput_rps"] > 0).all()
    assert (frame["p50_ms"] <= frame["p95_ms"]).all() and (frame["p95_ms"] <= frame["p99_ms"]).all()
    assert (frame["worker_rss_mb"] > 20).all()
    scaled = frame[frame["workers"] == 2]
    assert (scaled["scaled_from"] == 1).all() and (scaled["scale_s"] > 0).all()
    assert shared_lab.status().workers == 1

    # One progress marker per step: a scaling and two loads per worker count.
    steps = labkit.parse_markers(capsys.readouterr().out)
    assert [s.what for s in steps][-3:] == ["scale 1 -> 2 workers, warm up", "2 workers, concurrency 1",
                                            "2 workers, concurrency 4"]
    assert [s.index for s in steps] == [1, 2, 3, 4, 5, 6]

    files = result.save(tmp_path / "out")
    assert_readable_png(files["png"])
    again = labkit.SweepResult.read_csv(files["csv"])
    pd.testing.assert_frame_equal(again.frame, frame, check_dtype=False)

    fig = result.plot()
    throughput, latency = fig.axes
    for axes in (throughput, latency):
        assert axes.get_title() and axes.get_xlabel() and axes.get_ylabel() and axes.get_legend()
    assert "/ s" in throughput.get_ylabel() and "(ms)" in latency.get_ylabel()
    assert any("CPU cores" in t.get_text() for t in throughput.get_legend().get_texts())

    table = result.markdown()
    assert "| 2 | 4 |" in table and "throughput, 2 workers / 1 worker, concurrency 4" in table
    report(f"sweep (0.5 s a point): {frame['requests'].sum()} requests, {frame['errors'].sum()} failed, "
           f"scale 1 -> 2 in {scaled['scale_s'].iloc[0]:.1f} s")


@pytest.mark.slow
def test_cli_sweep_writes_the_csv_and_the_plot(shared_lab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(shared_lab.settings.home))
    monkeypatch.setenv("LABKIT_MODEL_DIR", str(shared_lab.settings.model_dir))
    out = tmp_path / "results"

    # Without --concurrency: the sweep's own list, 1,4,16.
    code = main(["bench", "--sweep", "--name", shared_lab.name, "--out", str(out), "--workers", "1",
                 "--duration", "0.3"])

    printed = capsys.readouterr()
    assert code == 0, printed.err
    # Tables on stdout, progress on stderr: stdout can go straight into a README.
    assert "| workers | concurrency |" in printed.out and "[labkit]" not in printed.out
    assert "[labkit] step 4/4: 1 worker, concurrency 16" in printed.err
    frame = pd.read_csv(out / "sweep.csv")
    assert list(zip(frame["workers"], frame["concurrency"])) == [(1, 1), (1, 4), (1, 16)]
    assert frame["errors"].sum() == 0
    assert_readable_png(out / "sweep.png")


@pytest.mark.slow
def test_compare_engines_measures_both_and_takes_its_deployments_down(settings, tmp_path, capsys, report):
    comparison = labkit.compare_engines(settings, requests=20)
    frame = comparison.frame

    assert list(frame["engine"]) == ["keras", "onnx"]
    measured = frame[["startup_s", "scale_up_s", "worker_rss_mb", "p50_ms", "p99_ms"]]
    assert (measured > 0).all().all()
    assert (frame["p50_ms"] <= frame["p99_ms"]).all()
    assert (frame["errors"] == 0).all() and (frame["requests"] > 20).all()
    assert labkit.deployments(settings) == []
    steps = labkit.parse_markers(capsys.readouterr().out)
    assert [s.what for s in steps][:2] == ["keras: deploy with 1 worker", "keras: start a second worker"]
    assert len(steps) == 8

    table = comparison.markdown()
    for check in comparison.checks():
        assert f"| {check.what} |" in table
    targets = {c.what: c.met for c in comparison.checks() if c.target}
    assert set(targets.values()) <= {True, False} and len(targets) == 3
    path = comparison.to_csv(tmp_path / "engines.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame, check_dtype=False)
    k, o = (comparison.figures[e] for e in ("keras", "onnx"))
    report(f"engines (20 requests): worker RSS keras {k.worker_rss_mb:.0f} MB, onnx {o.worker_rss_mb:.0f} MB; "
           f"scale 1 -> 3 keras {k.scale_up_s:.1f} s, onnx {o.scale_up_s:.1f} s")


@pytest.mark.parametrize("backend, compared_on", [("local", "local"), ("docker", "docker"), ("machine", "local")])
def test_engines_are_compared_where_both_are_served(settings, monkeypatch, capsys, backend, compared_on):
    # On the machine backend, notebook 02's comparison raised "serves the model with Keras only".
    from labkit.experiments import compare

    measured = []

    def measure(settings, engine, *args):
        measured.append((settings.backend, engine))
        raise labkit.BenchmarkError("measured enough")

    monkeypatch.setattr(compare, "_measure", measure)
    with pytest.raises(labkit.BenchmarkError, match="measured enough"):
        labkit.compare_engines(dataclasses.replace(settings, backend=backend), progress="off")
    assert measured == [(compared_on, "keras")]
    said = capsys.readouterr().out
    assert ("compared on the local backend" in said) == (backend != compared_on)
