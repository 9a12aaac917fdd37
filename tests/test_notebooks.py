"""The lab's notebooks: committed clean, and each one runs from top to bottom.

Each notebook runs with nbval in a pytest of its own (a fresh kernel, as a
student's "Restart and run all"), configured only through LABKIT_* variables
(the short settings CI uses), and must leave no deployment behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
LAB = ["00-setup.ipynb", "01-single-server.ipynb", "02-docker-scaling.ipynb", "03-ci-cd.ipynb"]
# Shorter than a student's defaults, same code paths: the widgets' defaults are overridden by name.
CI_SETTINGS = {
    "LABKIT_SWEEP_WORKERS": "1,2",
    "LABKIT_SWEEP_CONCURRENCY": "1,4",
    "LABKIT_SWEEP_SECONDS": "1.5",
    "LABKIT_ENGINES_REQUESTS": "60",
    "LABKIT_CICD_EPOCHS": "20",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for number, cell in enumerate(notebook["cells"], start=1):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {number} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {number} has execution count {cell['execution_count']}")
    if "widgets" in notebook.get("metadata", {}):
        problems.append("the notebook metadata holds widget state")
    assert not problems, (
        f"{path.relative_to(REPO)} is not clean: {'; '.join(problems)}. "
        f"Run `nbstripout {path.relative_to(REPO)}` before committing."
    )


def test_the_lab_has_its_notebooks():
    assert [p.name for p in NOTEBOOKS] == LAB


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_leaves_nothing_running(path, tmp_path, model_dir, data_dir):
    import labkit

    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABKIT_")}
    env.update(CI_SETTINGS, LABKIT_HOME=str(home), LABKIT_MODEL_DIR=str(model_dir),
               LABKIT_DATA_DIR=str(data_dir), LABKIT_CONFIG=str(tmp_path / "settings.json"))
    settings = labkit.Settings(home=home)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider",
             str(path.relative_to(REPO))],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=840,
        )
        left = labkit.deployments(settings)
        if done.returncode != 0:
            output = ANSI.sub("", done.stdout + done.stderr)  # nbval and IPython colour their tracebacks
            pytest.fail(
                f"nbval failed on {path.name} (exit code {done.returncode}; "
                f"deployments left running: {left or 'none'}):\n{output[-6000:]}",
                pytrace=False,
            )
        assert not left, f"The notebook left deployments running in {home}: {left}"
    finally:
        # Whatever happened, nothing outlives the test.
        for name in labkit.deployments(settings):
            labkit.attach(name, settings).destroy()
