"""labkit installed from a wheel, far from any checkout: its templates render and it deploys.

The wheel is built from this repository and installed into a folder of its
own, which comes first on the path of a process that runs in a temporary
folder: nothing it reads may come from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
from pathlib import Path
import labkit, production_server
from labkit import _files
from labkit.infra import cloudinit as _cloudinit

settings = labkit.Settings(home=Path("home"), model_dir=Path(sys.argv[1]), data_dir=Path(sys.argv[2]),
                           progress="off")
rendered = {name: labkit.cloud_init(name, settings=settings) for name in _cloudinit.templates()}
lab = labkit.deploy("local", name="wheel", workers=1, settings=settings)
try:
    answer = lab.predict([[1, 85, 66, 29, 0, 26.6, 0.351, 31]])
    served = lab.model_info()["version"]
finally:
    lab.destroy()
print(json.dumps({
    "labkit": labkit.__file__, "production_server": production_server.__file__,
    "templates": {name: [len(data.text), list(data.problems)] for name, data in rendered.items()},
    "dockerfile": labkit.show_file("production_server/Dockerfile").text.splitlines()[0],
    "answers": sorted(p.name for p in _files.ANSWERS_DIR.glob("*.yaml")),
    "probability": float(answer["probability"].iloc[0]), "served": served,
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = out / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("*.whl")
    site = out / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return wheel


def test_the_wheel_carries_the_templates_answers_notebooks_and_build_files(installed):
    names = set(zipfile.ZipFile(installed).namelist())
    for template in (REPO / "cloud-init").glob("*.j2"):
        assert f"labkit/_lab/cloud-init/{template.name}" in names
    assert {"labkit/_lab/answers/01-single-server.yaml", "labkit/_lab/notebooks/01-single-server.ipynb",
            "production_server/Dockerfile", "production_server/compose.yaml", "production_server/nginx.conf",
            "production_server/requirements.txt", "production_server/templates/predictions.html"} <= names


def test_installed_outside_the_checkout_it_renders_every_template_and_deploys(installed, tmp_path, model_dir,
                                                                             data_dir):
    site = installed.parent / "site"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(model_dir), str(data_dir)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["labkit"].startswith(str(site)) and seen["production_server"].startswith(str(site))
    assert sorted(seen["templates"]) == sorted(p.name.removesuffix(".yaml.j2") for p in
                                               (REPO / "cloud-init").glob("[!_]*.yaml.j2"))
    assert all(size > 0 for size, _ in seen["templates"].values())
    assert seen["dockerfile"].startswith("#") or seen["dockerfile"].startswith("FROM")
    assert "01-single-server.yaml" in seen["answers"]
    assert 0.0 <= seen["probability"] <= 1.0 and seen["served"]
