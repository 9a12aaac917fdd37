"""The question cells in the notebooks, in nbgrader's cell metadata format (schema version 3).

Each question is two Markdown cells: a locked prompt (grade, solution false;
locked true) and a manually graded answer (grade and solution true, with
points), so that instructors who use nbgrader can grade the lab with it as
with any other assignment. The notebook's own metadata names the lab, which
is how `labkit grade` tells this lab's notebooks from another lab's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .._errors import GradingError
from ._answers import DEFAULT_NOTEBOOKS, AnswerKey, Question, load_answers

LAB_ID = "model-serving"
SCHEMA_VERSION = 3
# What a released answer cell holds: a blockquote with a pencil, so that it reads as a
# box to fill in rather than as more of the prompt (plain Markdown: JupyterLab renders it
# without any script, and nbgrader's metadata does not depend on it).
TEMPLATE = "> ✏️ *Your answer here: replace this line with your answer.*"
# nbgrader's own stub for a Markdown answer cell (ClearSolutions.text_stub): what this
# lab's notebooks held before, and what `nbgrader generate_assignment` writes.
NBGRADER_STUB = "YOUR ANSWER HERE"
TEMPLATES = (TEMPLATE, NBGRADER_STUB)
PROMPT_SUFFIX = "-prompt"


def prompt_metadata(question: Question) -> dict[str, Any]:
    return {"grade": False, "solution": False, "locked": True, "task": False,
            "grade_id": question.grade_id + PROMPT_SUFFIX, "schema_version": SCHEMA_VERSION}


def answer_metadata(question: Question) -> dict[str, Any]:
    return {"grade": True, "solution": True, "locked": False, "task": False,
            "grade_id": question.grade_id, "points": _number(question.points), "schema_version": SCHEMA_VERSION}


def prompt_source(question: Question) -> str:
    points = _number(question.points)
    return f"**Question: {question.title}** ({points} point{'' if points == 1 else 's'})\n\n{question.prompt}"


def question_cells(grade_id: str, answers: AnswerKey | Path | str | None = None) -> list:
    """The locked prompt cell and the answer cell for one question, ready to insert into a notebook."""
    import nbformat

    question = _key(answers)[grade_id]
    return [
        nbformat.v4.new_markdown_cell(prompt_source(question), metadata={"nbgrader": prompt_metadata(question)}),
        nbformat.v4.new_markdown_cell(TEMPLATE, metadata={"nbgrader": answer_metadata(question)}),
    ]


def lab_metadata(notebook: str) -> dict[str, str]:
    return {"lab": LAB_ID, "notebook": notebook}


def answer_cells(nb) -> dict[str, list]:
    """Answer cells by grade_id (a list: a student may have copied one), in notebook order."""
    found: dict[str, list] = {}
    for cell in nb.get("cells", []):
        meta = _nbgrader(cell)
        if meta.get("solution") is True and isinstance(meta.get("grade_id"), str):
            found.setdefault(meta["grade_id"], []).append(cell)
    return found


def cells_below_answers(nb) -> dict[str, list]:
    """The Markdown and raw cells below each answer cell, where a student may have typed the answer instead.

    They run up to the next cell that is clearly the notebook's own again:
    any nbgrader cell (the next question's locked prompt), a code cell, or a
    Markdown heading. check_notebook() makes sure a released notebook has one
    of these right after every answer cell, so that these cells can only be
    the student's.
    """
    found: dict[str, list] = {}
    current: str | None = None
    for cell in nb.get("cells", []):
        if _ends_answer(cell):
            meta = _nbgrader(cell)
            is_answer = meta.get("solution") is True and isinstance(meta.get("grade_id"), str)
            current = meta["grade_id"] if is_answer else None
        elif current is not None:
            found.setdefault(current, []).append(cell)
    return found


def _ends_answer(cell) -> bool:
    """Whether a cell starts something new after an answer cell: an nbgrader cell, code, or a heading."""
    heading = cell.get("cell_type") == "markdown" and re.match(r"#{1,6}(\s|$)", cell_text(cell).lstrip())
    return bool(_nbgrader(cell)) or cell.get("cell_type") == "code" or bool(heading)


def cell_text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def normalized(text: str) -> str:
    """The words of a text, lower case, one space apart: what stays of an answer when whitespace,
    case, punctuation and Markdown marks (>, *, ✏️) are set aside, to compare answers and templates."""
    return " ".join(re.findall(r"\w+", text.lower()))


def validate_nbgrader(nb) -> list[str]:
    """nbgrader's own validator (MetadataValidatorV3) on every cell and on the notebook's grade ids."""
    try:
        from nbgrader.nbgraderformat import ValidationError
        from nbgrader.nbgraderformat.common import SchemaMismatchError
        from nbgrader.nbgraderformat.v3 import MetadataValidatorV3
    except ImportError as exc:
        raise GradingError("Checking the question cells needs nbgrader: "
                           "run `pip install nbgrader` (or `pip install -e '.[test]'`), then retry.") from exc
    validator = MetadataValidatorV3()
    problems = []
    for number, cell in enumerate(nb.cells, start=1):
        try:
            validator.validate_cell(cell)
        except (ValidationError, SchemaMismatchError) as exc:
            problems.append(f"cell {number}: {_first_line(exc)}")
    if not problems:
        try:
            validator.validate_nb(nb)
        except (ValidationError, SchemaMismatchError) as exc:
            problems.append(_first_line(exc))
    return problems


def check_notebook(path: Path | str, answers: AnswerKey | Path | str | None = None) -> list[str]:
    """What is wrong with one released notebook's questions, compared with answers/ (empty: all good)."""
    import nbformat

    path = Path(path)
    key = _key(answers)
    nb = nbformat.read(path, as_version=4)
    problems = validate_nbgrader(nb)
    name = path.stem
    if nb.metadata.get("labkit") != lab_metadata(name):
        problems.append(f"the notebook's metadata.labkit is {nb.metadata.get('labkit')!r}, "
                        f"not {lab_metadata(name)!r}")
    found = answer_cells(nb)
    prompts = {_nbgrader(c).get("grade_id"): c for c in nb.cells if _nbgrader(c).get("locked") is True}
    for grade_id, cells in found.items():
        if grade_id not in key:
            problems.append(f"the answer cell {grade_id!r} has no reference answer in {key.folder}")
        elif key[grade_id].notebook != name:
            problems.append(f"the answer cell {grade_id!r} belongs to {key[grade_id].notebook} in {key.folder}")
        if len(cells) > 1:
            problems.append(f"{len(cells)} answer cells have the grade_id {grade_id!r}")
    for question in key.of_notebook(name):
        its_cells = found.get(question.grade_id)
        if not its_cells:
            problems.append(f"no answer cell for {question.grade_id!r}: insert "
                            f"labkit.grading.question_cells({question.grade_id!r}) where the question belongs")
            continue
        if dict(_nbgrader(its_cells[0])) != answer_metadata(question):
            problems.append(f"the answer cell {question.grade_id!r} has metadata {dict(_nbgrader(its_cells[0]))}")
        if cell_text(its_cells[0]).strip() != TEMPLATE:
            problems.append(f"the answer cell {question.grade_id!r} does not hold only {TEMPLATE!r}: "
                            f"run labkit.grading.sync_notebook({str(path)!r})")
        if not _followed_by_a_new_part(nb.cells, its_cells[0]):
            problems.append(f"the cell after the answer cell {question.grade_id!r} is neither a question, "
                            "code nor a heading: `labkit grade` would take it for the student's answer; "
                            "start it with a heading or move it above the question")
        prompt = prompts.get(question.grade_id + PROMPT_SUFFIX)
        if prompt is None:
            problems.append(f"no locked prompt cell {question.grade_id + PROMPT_SUFFIX!r}")
        elif cell_text(prompt) != prompt_source(question) or dict(_nbgrader(prompt)) != prompt_metadata(question):
            problems.append(f"the prompt cell {question.grade_id + PROMPT_SUFFIX!r} differs from {key.folder}")
    return problems


def sync_notebook(path: Path | str, answers: AnswerKey | Path | str | None = None) -> list[str]:
    """Rewrite a released notebook's lab metadata, prompt cells and answer-cell metadata from answers/.

    Returns what it changed. Missing questions are not inserted (where they go
    is the author's choice): check_notebook() names them.
    """
    import nbformat

    path = Path(path)
    key = _key(answers)
    nb = nbformat.read(path, as_version=4)
    changes = []
    if nb.metadata.get("labkit") != lab_metadata(path.stem):
        nb.metadata["labkit"] = lab_metadata(path.stem)
        changes.append("set metadata.labkit")
    by_id = {_nbgrader(c).get("grade_id"): c for c in nb.cells if _nbgrader(c)}
    for question in key.of_notebook(path.stem):
        prompt, answer = by_id.get(question.grade_id + PROMPT_SUFFIX), by_id.get(question.grade_id)
        if prompt is not None and (cell_text(prompt), dict(_nbgrader(prompt))) != (
                prompt_source(question), prompt_metadata(question)):
            prompt.source, prompt.metadata["nbgrader"] = prompt_source(question), prompt_metadata(question)
            changes.append(f"updated the prompt of {question.grade_id}")
        if answer is not None and dict(_nbgrader(answer)) != answer_metadata(question):
            answer.metadata["nbgrader"] = answer_metadata(question)
            changes.append(f"updated the answer cell metadata of {question.grade_id}")
        if answer is not None and _holds_an_old_template(answer):
            answer.source = TEMPLATE
            changes.append(f"updated the answer cell template of {question.grade_id}")
    if changes:
        nbformat.write(nb, path)
    return changes


def check_lab(notebooks: Path | str | None = None, answers: AnswerKey | Path | str | None = None) -> tuple[list[str], list[str]]:
    """Problems across the lab's notebooks and answers/, and the answer files whose notebook is not written yet.

    Every notebook holding nbgrader cells is checked; grade ids must be unique
    across the lab; every question has a reference answer and every reference
    answer a question in its notebook.
    """
    import nbformat

    key = _key(answers)
    folder = Path(notebooks) if notebooks is not None else DEFAULT_NOTEBOOKS
    problems: list[str] = []
    owner: dict[str, str] = {}
    present = set()
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        ids: list[str] = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c).get("grade_id")]
        if not ids and path.stem not in key.notebooks:
            continue
        present.add(path.stem)
        if path.stem not in key.notebooks:
            problems.append(f"{path.name}: has nbgrader cells but no answer file {key.folder / (path.stem + '.yaml')}")
        problems += [f"{path.name}: {problem}" for problem in check_notebook(path, key)]
        for grade_id in ids:
            if grade_id in owner and owner[grade_id] != path.name:
                problems.append(f"{path.name}: grade_id {grade_id!r} is also used in {owner[grade_id]}")
            owner.setdefault(grade_id, path.name)
    pending = [name for name in key.notebooks if name not in present]
    return problems, pending


def _followed_by_a_new_part(cells: list, answer) -> bool:
    position = next(number for number, cell in enumerate(cells) if cell is answer)
    return position + 1 == len(cells) or _ends_answer(cells[position + 1])


def _holds_an_old_template(cell) -> bool:
    """A template other than today's; an answer cell with anything else is the author's to fix."""
    text = cell_text(cell)
    return text.strip() != TEMPLATE and normalized(text) in {normalized(t) for t in TEMPLATES}


def _key(answers: AnswerKey | Path | str | None) -> AnswerKey:
    return answers if isinstance(answers, AnswerKey) else load_answers(answers)


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {})
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbgrader if isinstance(nbgrader, dict) else {}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
