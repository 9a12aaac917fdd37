"""environment.yml (conda) and pyproject.toml (pip) describe the same environment."""

from __future__ import annotations

import tomllib

import yaml
from packaging.specifiers import SpecifierSet

from conftest import REPO


def load():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return env, project


def test_conda_python_satisfies_requires_python():
    env, project = load()
    pins = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert len(pins) == 1
    version = pins[0].split("=", 1)[1]
    assert version in SpecifierSet(project["requires-python"])


def test_conda_installs_the_project_itself_with_its_test_extra():
    env, project = load()
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [['-e ".[test]"']] or pip_sections == [["-e .[test]"]]
    assert "test" in project["optional-dependencies"]


def test_conda_adds_only_what_pip_cannot_install():
    # Python packages come from pyproject.toml through pip; conda brings the
    # interpreter, pip and the broker, nothing that could disagree with it.
    env, _ = load()
    conda_packages = {d.split("=")[0] for d in env["dependencies"] if isinstance(d, str)}
    assert conda_packages == {"python", "pip", "rabbitmq-server"}
    assert env["channels"] == ["conda-forge"]
