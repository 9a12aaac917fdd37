"""labkit's public names and __all__ agree (after httpx's test of the same name)."""

from __future__ import annotations

import inspect

import labkit


def test_all_names_exist():
    missing = [name for name in labkit.__all__ if not hasattr(labkit, name)]
    assert missing == []


def test_all_has_no_duplicates():
    assert len(set(labkit.__all__)) == len(labkit.__all__)


def test_every_public_function_and_class_is_exported():
    public = {
        name
        for name, member in vars(labkit).items()
        if not name.startswith("_")
        and (inspect.isfunction(member) or inspect.isclass(member))
        and (member.__module__ or "").partition(".")[0] == "labkit"
    }
    assert public, "found no public function or class at all: the check itself is broken"
    assert sorted(public - set(labkit.__all__)) == []


def test_exported_members_are_defined_in_labkit():
    for name in labkit.__all__:
        member = getattr(labkit, name)
        assert inspect.isfunction(member) or inspect.isclass(member), name
        assert member.__module__.startswith("labkit."), (name, member.__module__)


def test_the_experiments_are_exported():
    # Notebooks call these as labkit.sweep(...) and labkit.compare_engines(...).
    assert {"sweep", "SweepResult", "compare_engines", "EngineComparison"} <= set(labkit.__all__)


def test_grading_is_reachable_from_labkit():
    # Instructors and the notebook author use labkit.grading.grade(...) and .question_cells(...).
    assert {"grade", "question_cells", "check_lab", "sync_notebook"} <= set(labkit.grading.__all__)
    assert "GradingError" in labkit.__all__


def test_cicd_is_reachable_from_labkit():
    # Notebooks call labkit.cicd.init(...) and .attach(...); a refused push is labkit.PushRejected.
    missing = [name for name in labkit.cicd.__all__ if not hasattr(labkit.cicd, name)]
    assert missing == []
    assert {"init", "attach", "Pipeline", "PushResult"} <= set(labkit.cicd.__all__)
    assert {"CICDError", "PushRejected"} <= set(labkit.__all__)


def test_every_labkit_name_the_notebooks_use_exists():
    """The notebooks' `from labkit import x` and `labkit.x.y` resolve: a renamed module breaks no student's lab."""
    import importlib
    import re

    import nbformat
    from conftest import REPO

    used = set()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                used |= {("labkit", name) for name in re.findall(r"^from labkit import (\w+)", cell.source, re.M)}
                used |= {tuple(m.split(".")) for m in re.findall(r"\blabkit(?:\.\w+)+", cell.source)}
    assert ("labkit", "ui") in used  # the notebooks are read
    for parts in used:
        target = importlib.import_module(parts[0])
        for i, name in enumerate(parts[1:], start=1):
            # An attribute, or a module that nothing imported yet.
            target = getattr(target, name) if hasattr(target, name) else importlib.import_module(
                ".".join(parts[: i + 1]))
