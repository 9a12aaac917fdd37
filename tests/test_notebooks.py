"""The lab's notebooks: committed clean, and each one runs from top to bottom.

Each notebook runs with nbclient in a fresh kernel, exactly as a student's
"Restart and run all" (no pyplot imported by the test, no widget manager),
configured only through LABKIT_* variables (the short settings CI uses). Its
outputs are then read as JupyterLab would render them (notebook_outputs.py):
every chart drawn, no Python repr, no escaped entity, no NaN or None in a
table, no error; and it must leave no deployment behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import pytest

import notebook_outputs

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


def test_question_3_has_evidence_on_the_local_backend():
    # Task 1's Question 3 asks which steps take the time; the local backend has no apt or pip step,
    # so notebook 01 shows a real contextualization's steps, measured on a machine, before it asks.
    cells = json.loads((REPO / "notebooks" / "01-single-server.ipynb").read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    question = next(i for i, text in enumerate(sources) if "Question: Cutting the contextualization time" in text)
    evidence = next(i for i, text in enumerate(sources) if "| VM step | seconds |" in text)
    assert evidence < question
    rows = [line for line in sources[evidence].splitlines() if line.startswith("| ") and "---" not in line][1:]
    steps = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows}
    assert any("apt-get" in step for step in steps) and any("pip install" in step for step in steps)
    assert all(re.search(r"\d", seconds) for seconds in steps.values()), steps


def execute(path: Path, env: dict[str, str], timeout: int = 600):
    """Run a notebook as "Restart and run all" does: a fresh kernel, every cell in order, errors kept."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    # The kernel inherits this process's environment: only what the test sets, no pyplot imported.
    with _environ(env):
        client.execute()
    return notebook


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def texts(notebook, source: str) -> str:
    """Everything the cells whose code contains ``source`` show, as one text."""
    found = [o.text for o in notebook_outputs.shown(notebook) if source in o.source]
    assert found, f"no cell containing {source!r} showed anything"
    return "\n".join(found)


# What each notebook must show, beyond showing nothing wrong: (a cell's code, a text in what it shows).
EXPECTED = {
    "00-setup.ipynb": [("check_environment()", "Ready."), ("labkit.model_card()", "held-out accuracy"),
                       ("form.value", "LABKIT_BACKEND"), ("form.save()", "settings.json")],
    "01-single-server.ipynb": [('labkit.cloud_init("single-server")', "checked: cloud-init's schema"),
                               ("times = labkit.step_times(lab)", "RabbitMQ"),
                               ("lab.predict(rows)", "probability"), ("labkit.deployments()", "No deployment")],
    "02-docker-scaling.ipynb": [("result = labkit.sweep(", "req/s"), ("engines = labkit.compare_engines(", "onnx"),
                                ("labkit.deployments()", "No deployment")],
    "03-ci-cd.ipynb": [("ci.push(epochs=1", "Refused:"), ("ci.history_frame()", "deploy"),
                       ("labkit.deployments()", "No deployment")],
}


def run_and_check(path: Path, home: Path, env: dict[str, str], expected: list[tuple[str, str]], report,
                  where: str = "") -> None:
    """Run ``path`` as a student would, check what it shows, and leave nothing of it running."""
    import labkit

    settings = labkit.Settings(home=home)
    try:
        started = time.perf_counter()
        notebook = execute(path, env)
        report(f"notebook {path.name}{where}: ran in a fresh kernel in {time.perf_counter() - started:.0f} s")
        left = labkit.deployments(settings)
        problems = notebook_outputs.problems(notebook) + [
            f"a chart was not drawn: {m}" for m in notebook_outputs.plots_not_drawn(notebook)]
        assert not problems, f"{path.name} shows what a student should not see:\n" + "\n".join(problems)
        for source, text in expected:
            assert text in texts(notebook, source), f"{path.name}: the cell {source!r} does not show {text!r}"
        assert not left, f"The notebook left deployments running in {home}: {left}"
    finally:
        # Whatever happened, nothing outlives the test.
        for name in labkit.deployments(settings):
            labkit.attach(name, settings).destroy()


def notebook_env(tmp_path: Path, model_dir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABKIT_")}
    env.update(CI_SETTINGS, LABKIT_HOME=str(tmp_path / "home"), LABKIT_MODEL_DIR=str(model_dir),
               LABKIT_DATA_DIR=str(data_dir), LABKIT_CONFIG=str(tmp_path / "settings.json"), **extra)
    return env


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shows_what_a_student_should_see_and_leaves_nothing_running(path, tmp_path, model_dir, data_dir,
                                                                              report):
    run_and_check(path, tmp_path / "home", notebook_env(tmp_path, model_dir, data_dir), EXPECTED[path.name], report)


@pytest.mark.notebook
@pytest.mark.timeout(300)
@pytest.mark.parametrize("debug", ["", "1"])
def test_a_labkit_error_in_a_notebook_is_its_one_sentence(tmp_path, debug):
    import nbformat

    cells = ['import labkit\nlabkit.deploy("dokcer")', "labkit.deploy(workers=0)", "labkit.attach()"]
    path = tmp_path / "errors.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABKIT_")}
    env.update(LABKIT_HOME=str(tmp_path / "home"), LABKIT_CONFIG=str(tmp_path / "settings.json"),
               **({"LABKIT_DEBUG": debug} if debug else {}))
    notebook = execute(path, env, timeout=120)
    errors = [o for c in notebook.cells for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ConfigError", "DeployError", "NotDeployed"]
    for error in errors:
        if debug:
            assert len(error.traceback) > 1, "LABKIT_DEBUG=1 must show the traceback"
        else:
            assert len(error.traceback) == 1, "\n".join(error.traceback)
            assert error.evalue in ANSI.sub("", error.traceback[0])
