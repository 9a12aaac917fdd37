"""labkit.notebook.progress (step markers) and labkit._config (settings from LABKIT_* variables)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import labkit
from labkit._config import Settings
from labkit.notebook.progress import Progress, Step, parse

# --- markers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        Step(1, 5, "start RabbitMQ", 2.5),
        Step(3, 5, "start 2 workers (prefork)", 0.0),
        Step(12, 12, "apt-get install: python3-venv, rabbitmq-server", 1234.5),
    ],
    ids=["plain", "parentheses-in-what", "long"],
)
def test_marker_parses_back(step):
    marker = step.marker()
    assert marker.startswith(f"[labkit] step {step.index}/{step.total}: ")
    assert parse(marker) == [step]
    assert parse(marker + "\n") == [step]
    assert labkit.parse_markers(marker) == [step]


def test_marker_rounds_seconds_to_a_tenth():
    (step,) = parse(Step(2, 4, "load the model", 1.26).marker())
    assert step == Step(2, 4, "load the model", 1.3)


# A console log as `openstack console log show` returns it: kernel messages,
# systemd status lines, cloud-init's output forwarded by journald with a
# "[ uptime] cloud-init[pid]: " prefix, lines written to the console as they
# are, and CR LF line ends from the serial console.
CONSOLE_LOG = "\r\n".join(
    [
        "[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075) (gcc 13.2.0) #45-Ubuntu SMP",
        "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs console=tty1 console=ttyS0",
        "[  OK  ] Started cloud-init.service - Cloud-init: Network Stage.",
        "[   12.104521] cloud-init[812]: Cloud-init v. 24.1.3 running 'modules:final' at Thu, 28 Nov 2024 17:29:01 +0000.",
        "[   12.130077] cloud-init[812]: ci-info: ++++++++++++++++++++++Net device info+++++++++++++++++++++++",
        "[   12.551023] cloud-init[812]: [labkit] step 1/4: install packages (48.2s)",
        "[labkit] step 2/4: start RabbitMQ (3.1s)",
        "[   64.000001] cloud-init[812]: + echo '[labkit] step 9/9: not a marker, a shell trace'",
        "         Starting systemd-hostnamed.service - Hostname Service...",
        "[   66.912345] cloud-init[812]: [labkit] step 3/4: start workers (celery) (5.0s)",
        "[labkit] step 4/4: start gunicorn (0.8s)",
        "[   70.000000] cloud-init[812]: Cloud-init v. 24.1.3 finished at Thu, 28 Nov 2024 17:30:10 +0000. Up 70.00 seconds",
        "",
    ]
)


def test_parse_finds_markers_in_a_noisy_console_log():
    assert parse(CONSOLE_LOG) == [
        Step(1, 4, "install packages", 48.2),
        Step(2, 4, "start RabbitMQ", 3.1),
        Step(3, 4, "start workers (celery)", 5.0),
        Step(4, 4, "start gunicorn", 0.8),
    ]


def test_parse_of_a_log_without_markers_is_empty():
    assert parse("") == []
    assert parse("[labkit] starting\n[labkit] step one of four (1s)\nstep 1/4: no prefix (1.0s)\n") == []


def test_progress_lines_prints_one_marker_per_step():
    stream = io.StringIO()
    progress = Progress(total=3, title="deploy", mode="lines", stream=stream)
    for what in ("start RabbitMQ", "start 1 worker", "start gunicorn"):
        with progress.step(what):
            pass
    progress.close()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    steps = parse(stream.getvalue())
    assert [(s.index, s.total, s.what) for s in steps] == [
        (1, 3, "start RabbitMQ"),
        (2, 3, "start 1 worker"),
        (3, 3, "start gunicorn"),
    ]
    assert all(0 <= s.seconds < 1 for s in steps)
    assert [s.marker() for s in progress.done] == lines


def test_progress_records_the_steps_it_was_given():
    stream = io.StringIO()
    progress = Progress(total=2, title="deploy", mode="lines", stream=stream)
    progress.record(Step(1, 2, "boot the VM", 42.0))
    assert stream.getvalue() == "[labkit] step 1/2: boot the VM (42.0s)\n"
    assert progress.done == [Step(1, 2, "boot the VM", 42.0)]


def test_progress_off_prints_nothing():
    stream = io.StringIO()
    progress = Progress(total=1, title="deploy", mode="off", stream=stream)
    with progress.step("quiet"):
        pass
    assert stream.getvalue() == ""
    assert [s.what for s in progress.done] == ["quiet"]


def test_progress_bar_counts_steps_once(monkeypatch):
    # It read "step 7/12: ... 6/12": the step running beside tqdm's own count of the steps done.
    import tqdm.auto

    shown = io.StringIO()
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda **kw: __import__("tqdm").tqdm(file=shown, mininterval=0, **kw))
    progress = Progress(3, "deploying 'lab'", mode="bar")
    with progress.step("start RabbitMQ"):
        pass
    with progress.step("start 1 Celery worker"):
        assert "deploying 'lab', step 2/3: start 1 Celery worker" in shown.getvalue().split("\r")[-1]
    progress.close()
    last = shown.getvalue().split("\r")[-1]
    assert last.startswith("deploying 'lab': stopped, 2 of 3 steps")
    assert "/3" not in last.replace("2 of 3", "") and "2/3" not in last  # no second count
    assert [s.what for s in progress.done] == ["start RabbitMQ", "start 1 Celery worker"]


def test_progress_auto_outside_a_notebook_is_lines(capsys):
    progress = Progress(total=1, title="deploy")
    assert progress.mode == "lines"
    with progress.step("only step"):
        pass
    assert [s.what for s in parse(capsys.readouterr().out)] == ["only step"]


# --- settings ---------------------------------------------------------------------


def test_settings_defaults_without_labkit_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    settings = Settings.from_env()
    assert settings.home == tmp_path / "state" / "labkit"
    assert settings.model_dir == tmp_path / "share" / "labkit" / "model"
    assert settings.port == 5100
    assert settings.predict_timeout == 5.0
    assert settings.data_dir is None
    assert settings.deployments_dir == settings.home / "deployments"


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABKIT_PORT", "5200")
    monkeypatch.setenv("LABKIT_PREDICT_TIMEOUT", "2.5")
    settings = Settings.from_env()
    assert settings.home == tmp_path / "home"
    assert settings.port == 5200
    assert isinstance(settings.port, int)
    assert settings.predict_timeout == 2.5


def test_relative_paths_are_made_absolute_where_they_were_given(monkeypatch, tmp_path):
    # The deployment's programs run in folders of their own: a relative home would point elsewhere there.
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"LABKIT_HOME": "home", "LABKIT_MODEL_DIR": "./model"})
    assert settings.home == tmp_path / "home" and settings.model_dir == tmp_path / "model"


def test_settings_from_a_given_mapping_ignore_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_PORT", "not read")
    settings = Settings.from_env({"LABKIT_HOME": "~/lab", "LABKIT_PORT": "6000", "LABKIT_DATA_DIR": str(tmp_path)})
    assert settings.home == Path("~/lab").expanduser()
    assert settings.port == 6000
    assert settings.data_dir == tmp_path


def test_empty_number_variables_mean_the_default():
    settings = Settings.from_env({"LABKIT_PORT": "", "LABKIT_PREDICT_TIMEOUT": ""})
    assert settings.port == 5100
    assert settings.predict_timeout == 5.0


@pytest.mark.parametrize(
    "variable, value",
    [("LABKIT_PORT", "eighty"), ("LABKIT_PORT", "51OO"), ("LABKIT_PREDICT_TIMEOUT", "5s")],
)
def test_a_non_number_is_a_config_error_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(labkit.ConfigError) as caught:
        Settings.from_env()
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, labkit.LabkitError)


@pytest.mark.parametrize("variable, value", [("LABKIT_BACKEND", "aws"), ("LABKIT_PROGRESS", "bars"),
                                             ("LABKIT_ENGINE", "torch")])
def test_a_bad_choice_in_the_environment_names_the_variable_and_the_choices(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(labkit.ConfigError) as caught:
        Settings.from_env()
    message = str(caught.value)
    assert f"The environment variable {variable}={value!r} should be one of " in message
    assert message.endswith("change it, or unset it.")


def test_a_progress_display_that_does_not_exist_is_refused():
    with pytest.raises(labkit.ConfigError, match="'bars' is not a progress display: choose one of auto, bar, lines"):
        Settings(progress="bars")
