"""Grading the lab's written answers, and the question cells that ask them.

    >>> from labkit import grading
    >>> grading.question_cells("task1-drawbacks")        # [locked prompt, answer cell] for a notebook
    >>> report = grading.grade("submissions/")            # STUDENT_NN-name.ipynb files
    >>> report.overview                                   # completion per question
    >>> report.write("report.html")                       # or .csv

Besides unanswered and unchanged answers, a row's flags point the instructor
at answers to look at twice: the same as another student's, short for the
question's points, or typed into a cell below the answer cell.

The questions, their points, reference answers and rubrics live in the
repository's answers/ folder, one YAML file per notebook; the cells carry
nbgrader's metadata (schema version 3), so nbgrader can grade them too.
"""

from __future__ import annotations

from pathlib import Path

from ._answers import AnswerKey, Question, RubricItem, load_answers
from ._cells import LAB_ID, TEMPLATE, check_lab, check_notebook, question_cells, sync_notebook, validate_nbgrader
from ._collect import WORDS_PER_POINT, Row
from ._report import GradeReport


def grade(*submissions: Path | str, answers: Path | str | None = None,
          notebooks: Path | str | None = None) -> GradeReport:
    """Collect the answers in students' notebooks (folders or .ipynb files) into a report.

    A file that is corrupt, of another lab, or a second copy becomes a row
    saying so; it never stops the grading. ``notebooks`` is the folder of the
    released notebooks, whose answer cells tell an unchanged answer (the lab's
    template and nbgrader's stub always do).
    """
    from ._answers import DEFAULT_NOTEBOOKS
    from ._collect import collect, templates_from

    key = load_answers(answers)
    templates = templates_from(key, Path(notebooks) if notebooks is not None else DEFAULT_NOTEBOOKS)
    return GradeReport(tuple(collect([Path(p) for p in submissions], key, templates)), key)


__all__ = [
    "LAB_ID",
    "TEMPLATE",
    "WORDS_PER_POINT",
    "AnswerKey",
    "GradeReport",
    "Question",
    "Row",
    "RubricItem",
    "check_lab",
    "check_notebook",
    "grade",
    "load_answers",
    "question_cells",
    "sync_notebook",
    "validate_nbgrader",
]
