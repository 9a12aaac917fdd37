"""00-setup's parts: the saved settings file, the environment checks and the widgets."""

from __future__ import annotations

import json
import stat
from dataclasses import replace

import pytest

import labkit
from labkit import _userconfig
from labkit.backends.openstack.backend import CloudSettings
from labkit.notebook import widgets as ui


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config" / "settings.json"
    monkeypatch.setenv("LABKIT_CONFIG", str(path))
    return path


@pytest.fixture
def clouds_yaml(tmp_path, monkeypatch):
    """A clouds.yaml with two clouds, as a dashboard's download looks (no password in one of them)."""
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        "  uppmax:\n    auth:\n      auth_url: https://east-1.cloud.example:5000/v3\n"
        "      username: student\n      project_name: lab\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n    region_name: east-1\n"
        "  other:\n    auth:\n      auth_url: https://other.example:5000/v3\n      username: s\n"
        "      password: in-the-file\n      project_name: p\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


# -- the settings file ----------------------------------------------------------
def test_saved_choices_round_trip_in_a_private_file(config_file):
    _userconfig.save({"LABKIT_BACKEND": "openstack", "LABKIT_OS_IMAGE": "Ubuntu 22.04", "OS_CLOUD": "uppmax"})
    assert _userconfig.load() == {"LABKIT_BACKEND": "openstack", "LABKIT_OS_IMAGE": "Ubuntu 22.04",
                                  "OS_CLOUD": "uppmax"}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    _userconfig.save({"LABKIT_OS_IMAGE": ""})  # an empty value forgets the name
    assert "LABKIT_OS_IMAGE" not in _userconfig.load()


def test_secrets_are_never_saved_and_unknown_names_refused(config_file):
    with pytest.raises(labkit.ConfigError, match="secret"):
        _userconfig.save({"OS_PASSWORD": "hunter2"})
    with pytest.raises(labkit.ConfigError, match="not a setting"):
        _userconfig.save({"HOME": "/tmp"})
    assert not config_file.exists()
    # A hand-edited file with a password in it: the password is ignored, not used.
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({"LABKIT_OS_PASSWORD": "x", "LABKIT_BACKEND": "docker"}))
    assert _userconfig.load() == {"LABKIT_BACKEND": "docker"}


def test_the_environment_overrides_the_file_which_overrides_the_defaults(config_file, monkeypatch):
    _userconfig.save({"LABKIT_BACKEND": "openstack", "LABKIT_PORT": "5200", "LABKIT_OS_FLAVOR": "ssc.small"})
    settings = labkit.Settings.from_env()
    assert (settings.backend, settings.port) == ("openstack", 5200)
    assert CloudSettings.from_env().flavor == "ssc.small"
    monkeypatch.setenv("LABKIT_BACKEND", "local")
    assert labkit.Settings.from_env().backend == "local"
    # An explicit env (what tests pass) is taken as it is, without the file.
    assert labkit.Settings.from_env({}).backend == "local"


@pytest.mark.parametrize("text", ["{not json", '["LABKIT_BACKEND", "local"]'], ids=["not-json", "not-an-object"])
def test_a_corrupt_settings_file_says_how_to_fix_it(config_file, text):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(text)
    with pytest.raises(labkit.ConfigError) as caught:
        labkit.Settings.from_env()
    message = str(caught.value)
    assert str(config_file) in message and "LABKIT_CONFIG" in message and "delete it" in message


@pytest.mark.parametrize("name, value, wanted", [
    ("LABKIT_PORT", "eighty", "a number (e.g. 5100)"),
    ("LABKIT_PREDICT_TIMEOUT", "5s", "a number (e.g. 5)"),
    ("LABKIT_BACKEND", "aws", "one of local, docker, openstack, machine"),
    ("LABKIT_ENGINE", "torch", "one of keras, onnx"),
    ("LABKIT_PROGRESS", "bars", "one of auto, bar, lines, off"),
    ("LABKIT_OS_TEMPLATE", "single", "one of single-server, docker-server"),
    ("LABKIT_PORT", None, 'takes text (e.g. "LABKIT_PORT": "...")'),
    ("LABKIT_BACKEND", ["local"], "takes text"),
])
def test_a_bad_value_in_the_settings_file_names_the_file_and_the_variable(config_file, name, value, wanted):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({name: value}))
    readers = [labkit.Settings.from_env, _userconfig.load]
    if name.startswith("LABKIT_OS_"):
        readers.append(CloudSettings.from_env)
    for read in readers:
        with pytest.raises(labkit.ConfigError) as caught:
            read()
        message = str(caught.value)
        assert str(config_file) in message and name in message and wanted in message, message
        assert message.endswith("change it there, or remove it from the file (00-setup's form saves your "
                                "choices again).")


def test_a_bad_value_is_not_saved_and_a_good_one_mends_the_file(config_file):
    with pytest.raises(labkit.ConfigError, match=r"LABKIT_ENGINE='torch' should be one of keras, onnx.*nothing was "
                                                 r"saved"):
        _userconfig.save({"LABKIT_ENGINE": "torch"})
    assert not config_file.exists()
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({"LABKIT_PORT": "eighty", "LABKIT_BACKEND": "local"}))
    _userconfig.save({"LABKIT_PORT": "5200"})  # what the form does: save over the bad value
    assert _userconfig.load() == {"LABKIT_PORT": "5200", "LABKIT_BACKEND": "local"}


# -- the environment checks -----------------------------------------------------------
def _rows(checks) -> dict:
    return {check.what: check for check in checks}


def test_checks_pass_with_a_trained_model_and_the_data(settings):
    checks = labkit.check_environment(settings, docker=False)
    rows = _rows(checks)
    assert checks.ok, checks.problems
    assert rows["trained model"].state == "ok" and "accuracy" in rows["trained model"].detail
    assert rows["Pima data set"].state == "ok"
    assert rows["RabbitMQ (local backend)"].state == "ok"
    html = checks._repr_html_()
    assert "Ready." in html and "<table" in html


def test_checks_name_what_is_missing_and_what_to_do(tmp_path, data_dir):
    bad_data = tmp_path / "data"
    bad_data.mkdir()
    (bad_data / "pima-indians-diabetes.csv").write_text("1,2,3\n")
    settings = labkit.Settings(home=tmp_path / "home", model_dir=tmp_path / "no-model", data_dir=bad_data)
    rows = _rows(labkit.check_environment(settings, docker=False))
    assert rows["trained model"].state == "problem" and "labkit train" in rows["trained model"].todo
    assert rows["Pima data set"].state == "problem" and "sha256" in rows["Pima data set"].detail


def test_the_docker_check_is_optional_unless_docker_is_the_backend(settings):
    # This machine has a docker command but no engine: the real `docker info` fails here.
    row = _rows(labkit.check_environment(settings))["Docker engine (docker backend)"]
    assert row.state == "optional"
    row = _rows(labkit.check_environment(replace(settings, backend="docker")))["Docker engine (docker backend)"]
    assert row.state == "problem" and "local backend" in row.todo


def test_the_openstack_check_reads_clouds_yaml(settings, clouds_yaml, monkeypatch):
    row = _rows(labkit.check_environment(settings, docker=False))["OpenStack credentials"]
    assert row.state == "ok" and "uppmax" in row.detail and "other" in row.detail
    assert "in-the-file" not in row.detail
    monkeypatch.setenv("OS_CLOUD", "typo")
    row = _rows(labkit.check_environment(settings, docker=False))["OpenStack credentials"]
    assert row.state == "optional" and "typo" in row.detail  # the local backend does not need it
    row = _rows(labkit.check_environment(replace(settings, backend="openstack"), docker=False))["OpenStack credentials"]
    assert row.state == "problem" and "typo" in row.detail


# -- the widgets ----------------------------------------------------------------------
def test_the_setup_form_starts_from_the_saved_choices_and_saves_no_password(config_file, clouds_yaml):
    _userconfig.save({"LABKIT_BACKEND": "openstack", "OS_CLOUD": "uppmax", "LABKIT_OS_NETWORK": "lab-net"})
    form = ui.setup_form()
    assert form.backend.value == "openstack" and form.cloud.value == "uppmax"
    assert form.openstack_box.layout.display == ""
    assert form.fields["LABKIT_OS_NETWORK"].value == "lab-net"
    form.password.value = "typed-in-the-notebook"
    form.fields["LABKIT_OS_IMAGE"].value = "Ubuntu 22.04"
    form.save()
    saved = config_file.read_text()
    assert "typed-in-the-notebook" not in saved
    assert json.loads(saved)["LABKIT_OS_IMAGE"] == "Ubuntu 22.04"
    assert "Saved to" in form.message.value
    form.backend.value = "local"
    assert form.openstack_box.layout.display == "none"
    assert form.value == {"LABKIT_BACKEND": "local"}


class _Cloud:
    """What the form asks of a cloud connection; the adapter's own methods are tested elsewhere."""

    def __init__(self, calls):
        self.calls = calls

    def choices(self):
        return {"images": ["Ubuntu 22.04", "Ubuntu 24.04"], "flavors": ["ssc.small", "ssc.medium"],
                "networks": ["lab-net"], "keypairs": []}

    def check_credentials(self):
        return {"auth_url": "https://east-1.cloud.example:5000/v3", "username": "student", "project_name": "lab"}


def test_the_form_fills_its_lists_from_the_cloud_with_the_typed_password(config_file, clouds_yaml):
    calls = []

    def connect(cloud, password):
        calls.append((cloud, password))
        return _Cloud(calls)

    form = ui.SetupForm(connect=connect)
    form.backend.value = "openstack"
    form.cloud.value = "uppmax"
    form.password.value = "pw"
    form.buttons[0].click()
    assert calls == [("uppmax", "pw")]
    assert form.fields["LABKIT_OS_FLAVOR"].options == ("ssc.small", "ssc.medium")
    assert form.fields["LABKIT_OS_FLAVOR"].value == "ssc.small"  # m1.medium does not exist there
    assert form.fields["LABKIT_OS_IMAGE"].value == "Ubuntu 24.04"  # the default exists: kept
    assert "2 images" in form.message.value
    form.buttons[1].click()
    assert "Logged in to https://east-1.cloud.example:5000/v3 as student, project lab." in form.message.value


def test_a_failing_button_shows_the_error_in_the_form(config_file, clouds_yaml):
    def connect(cloud, password):
        raise labkit.CloudError("Keystone refused the credentials <b>: check them, then retry.")

    form = ui.SetupForm(connect=connect)
    form.backend.value = "openstack"
    form.buttons[0].click()
    assert "Keystone refused" in form.message.value and "&lt;b&gt;" in form.message.value
    assert "#b00020" in form.message.value


def test_params_take_defaults_and_environment_overrides(monkeypatch):
    monkeypatch.setenv("LABKIT_TRAIN_EPOCHS", "5")
    form = ui.params("train", epochs=150, hidden="12,8", seed=7, shuffle=True)
    assert form.value == {"epochs": 5, "hidden": "12,8", "seed": 7, "shuffle": True}
    form.inputs["seed"].value = 11
    assert form["seed"] == 11


def test_params_read_the_settings_file_too_and_the_environment_wins(config_file, monkeypatch):
    _userconfig.save({"LABKIT_TRAIN_EPOCHS": "20", "LABKIT_TRAIN_SEED": "3"})
    monkeypatch.setenv("LABKIT_TRAIN_SEED", "9")
    assert ui.params("train", epochs=150, seed=7).value == {"epochs": 20, "seed": 9}


def test_the_forms_cloud_defaults_are_the_openstack_backends_own(config_file, monkeypatch):
    monkeypatch.delenv("OS_CLOUD", raising=False)
    form = ui.setup_form()
    defaults = CloudSettings()
    assert form.fields["LABKIT_OS_IMAGE"].value == defaults.image
    assert form.fields["LABKIT_OS_FLAVOR"].value == defaults.flavor
    assert form.fields["LABKIT_OS_KEYPAIR"].value == defaults.keypair


def test_the_test_button_names_what_the_chosen_backend_lacks(config_file, settings, monkeypatch):
    monkeypatch.setenv("LABKIT_MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(settings.data_dir))
    form = ui.setup_form()
    assert form.test() == "Everything the local backend needs is here."
    form.backend.value = "docker"  # this machine's docker command finds no engine
    form.buttons[1].click()
    assert "Docker engine" in form.message.value and "#b00020" in form.message.value
