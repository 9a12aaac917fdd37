"""Students' notebooks in, one row per student and question out; a file that cannot be graded is a row too."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from .._errors import GradingError
from ._answers import AnswerKey, Question
from ._cells import LAB_ID, TEMPLATES, answer_cells, cell_text, cells_below_answers, normalized

# What a row's flags say. A row with none of the first five is an answer to read.
UNANSWERED = "unanswered"      # the answer cell is empty
UNCHANGED = "unchanged"        # the answer cell still holds the released notebook's text
MISSING = "missing"            # the notebook has no answer cell with this grade_id
NO_NOTEBOOK = "no-notebook"    # no gradable notebook with this question from this student
DUPLICATED = "duplicated"      # several answer cells with this grade_id: all are shown
CORRUPT = "corrupt"            # the file is not a notebook that can be read
OTHER_LAB = "other-lab"        # a notebook, but not one of this lab's
RESUBMITTED = "resubmitted"    # a second notebook of the same name from the same student
NOT_ANSWERED = frozenset({UNANSWERED, UNCHANGED, MISSING, NO_NOTEBOOK})
# Flags on an answer, for the instructor to look at before grading it.
OUTSIDE = "answer outside its cell"  # text in cells the student added below the answer cell: shown as the answer
SHORT = "short for its points"       # fewer than WORDS_PER_POINT words per point of the question
SAME_AS = "same as "                 # + the other students: the same words as theirs (case, punctuation aside)

# The reference answers run 30 to 60 words per point; an answer under 8 words per point
# (24 words for 3 points) can hardly hold what the rubric asks for.
WORDS_PER_POINT = 8
# nbgrader's course folders hold FOLDER/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb, and nbgrader
# writes a timestamp.txt into each STUDENT/ASSIGNMENT folder it collects.
NBGRADER_FOLDERS = ("submitted", "autograded")
NBGRADER_TIMESTAMP = "timestamp.txt"


@dataclass(frozen=True)
class Row:
    student: str
    notebook: str
    grade_id: str          # empty on a row about a whole file
    points: float | None
    words: int
    flags: tuple[str, ...]
    answer: str
    reference: str
    note: str
    file: str

    @property
    def answered(self) -> bool:
        return bool(self.grade_id) and not NOT_ANSWERED.intersection(self.flags)


@dataclass(frozen=True)
class _Submission:
    student: str
    notebook: str
    answers: dict[str, list]
    below: dict[str, list]     # cells the student added below each answer cell (cells_below_answers)
    file: str
    note: str


def collect(paths: list[Path], key: AnswerKey, templates: dict[str, frozenset[str]]) -> list[Row]:
    """Rows for every student and every question of the notebooks handed in, file problems included."""
    submissions: dict[tuple[str, str], _Submission] = {}
    file_rows: list[Row] = []
    for path, shown in _notebook_files(paths):
        read = _read(path, shown, key)
        if isinstance(read, Row):
            file_rows.append(read)
        elif (read.student, read.notebook) in submissions:
            first = submissions[(read.student, read.notebook)].file
            file_rows.append(_file_row(read.student, read.notebook, shown, RESUBMITTED,
                                       f"a second {read.notebook} notebook from this student; {first} is graded"))
        else:
            submissions[(read.student, read.notebook)] = read
    graded = [name for name in key.notebooks if any(nb == name for _, nb in submissions)]
    students = sorted({row.student for row in file_rows} | {student for student, _ in submissions})
    rows: list[Row] = []
    for student in students:
        rows += [row for row in file_rows if row.student == student]
        for notebook in graded:
            submission = submissions.get((student, notebook))
            for question in key.of_notebook(notebook):
                rows.append(_answer_row(question, submission, student, templates))
    return _flag_copies(rows)


def templates_from(key: AnswerKey, notebooks: Path) -> dict[str, frozenset[str]]:
    """Per question, the texts (normalized) that mean "not answered yet".

    They are the answer cell's text as released (notebooks/NN-*.ipynb), and
    always the lab's template and nbgrader's stub too: submissions of an
    earlier release, or of one made with `nbgrader generate_assignment`, hold those.
    """
    import nbformat

    known = {normalized(template) for template in TEMPLATES}
    found = {q.grade_id: set(known) for q in key.questions}
    for name in key.notebooks:
        path = notebooks / f"{name}.ipynb"
        if path.is_file():
            for grade_id, cells in answer_cells(nbformat.read(path, as_version=4)).items():
                found.setdefault(grade_id, set(known)).add(normalized(cell_text(cells[0])))
    return {grade_id: frozenset(texts - {""}) for grade_id, texts in found.items()}


def _notebook_files(paths: list[Path]) -> list[tuple[Path, str]]:
    """Each notebook with the name the report shows: its path inside the folder it was found in."""
    files: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            files += [(p, p.relative_to(path).as_posix()) for p in found]
        elif path.is_file():
            files.append((path, path.name))
        else:
            raise GradingError(f"{path} does not exist: name a folder of submitted notebooks or .ipynb files.")
    return files


def _read(path: Path, shown: str, key: AnswerKey) -> _Submission | Row:
    import nbformat

    student, guessed = _student_and_notebook(path, key)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        return _file_row(student, guessed, shown, CORRUPT, f"cannot be read ({exc}); ask for the file again")
    except json.JSONDecodeError as exc:
        return _file_row(student, guessed, shown, CORRUPT,
                         f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         "the file is damaged, ask the student to download the notebook from Jupyter again")
    if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
        return _file_row(student, guessed, shown, CORRUPT, "is JSON but not a Jupyter notebook (no nbformat version)")
    try:
        # Cell ids missing from an older notebook are no reason to refuse a student's work.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except (nbformat.ValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _file_row(student, guessed, shown, CORRUPT, f"is not a valid notebook (nbformat {raw['nbformat']}: {first})")
    found = answer_cells(nb)
    meta = nb.metadata.get("labkit")
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("lab") not in (None, LAB_ID):
        return _file_row(student, guessed, shown, OTHER_LAB,
                         f"belongs to the lab {meta.get('lab')!r}, not {LAB_ID!r}: it is not graded here")
    notebook, note = meta.get("notebook"), ""
    if notebook not in key.notebooks:
        matches = [name for name in key.notebooks if any(q.grade_id in found for q in key.of_notebook(name))]
        if len(matches) != 1:
            return _file_row(student, guessed, shown, OTHER_LAB,
                             "has neither this lab's notebook metadata nor the answer cells of one of its "
                             f"notebooks ({', '.join(key.notebooks)}): it is not graded here")
        notebook, note = matches[0], "no lab metadata in the notebook: recognised by its answer cells"
    if notebook != guessed:
        student, _ = _student_and_notebook(path, key, notebook)
    return _Submission(student, notebook, found, cells_below_answers(nb), shown, note)


def _answer_row(question: Question, submission: _Submission | None, student: str,
                templates: dict[str, frozenset[str]]) -> Row:
    def row(flags: tuple[str, ...], answer: str = "", words: int = 0, note: str = "") -> Row:
        return Row(student, question.notebook, question.grade_id, question.points, words, flags, answer,
                   question.reference, note, submission.file if submission else "")

    if submission is None:
        return row((NO_NOTEBOOK,), note=f"no gradable {question.notebook} notebook from this student")
    cells = submission.answers.get(question.grade_id, [])
    if not cells:
        return row((MISSING,), note=_join("the answer cell was deleted or its nbgrader metadata changed", submission.note))
    template = templates.get(question.grade_id, frozenset())
    texts = [cell_text(cell).strip() for cell in cells]
    written = _written(cells, template)
    below = _written(submission.below.get(question.grade_id, []), template)
    duplicated = (DUPLICATED,) if len(cells) > 1 else ()
    note = _join(f"{len(cells)} answer cells with this grade_id: all shown" if duplicated else "",
                 f"the answer includes {len(below)} cell(s) the student added below the answer cell" if below else "",
                 submission.note)
    if not written and not below:
        flag = UNCHANGED if any(texts) else UNANSWERED
        return row((flag,) + duplicated, "\n\n".join(t for t in texts if t), note=note)
    answer = "\n\n".join(written + below)
    words = _word_count(answer)
    short = (SHORT,) if words < WORDS_PER_POINT * question.points else ()
    return row(duplicated + ((OUTSIDE,) if below else ()) + short, answer, words, note)


def _written(cells: list, templates: frozenset[str]) -> list[str]:
    """What the student wrote in each of these cells, leaving out cells with nothing of their own."""
    return [own for own in (_own_text(cell_text(cell), templates) for cell in cells) if own]


def _own_text(text: str, templates: frozenset[str]) -> str:
    """What the student wrote in a cell: the cell without the template's lines.

    Told to replace the template's line, a student may write below it instead;
    a template's line left in place is no part of the answer.
    """
    if normalized(text) in templates:
        return ""
    return "\n".join(line for line in text.splitlines() if normalized(line) not in templates).strip()


def _word_count(text: str) -> int:
    """Words with a letter or digit in them: Markdown's >, - and * are not words of the answer."""
    return sum(1 for word in text.split() if re.search(r"\w", word))


def _flag_copies(rows: list[Row]) -> list[Row]:
    """Flag each answer that another student gave too, in the same words (case, spacing, punctuation aside).

    Rows that are not answers (unchanged, unanswered, missing) all look alike
    and are left out; each flagged row names the other students.
    """
    students: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.answered and normalized(row.answer):
            students.setdefault((row.grade_id, normalized(row.answer)), []).append(row.student)

    def flagged(row: Row) -> Row:
        others = [s for s in students.get((row.grade_id, normalized(row.answer)), []) if s != row.student]
        return replace(row, flags=row.flags + (SAME_AS + " and ".join(others),)) if row.answered and others else row

    return [flagged(row) for row in rows]


def _file_row(student: str, notebook: str, shown: str, flag: str, note: str) -> Row:
    return Row(student, notebook, "", None, 0, (flag,), "", "", f"{shown} {note}", shown)


def _student_and_notebook(path: Path, key: AnswerKey, notebook: str | None = None) -> tuple[str, str]:
    """STUDENT_NN-name.ipynb (or STUDENT.ipynb) names the student; a folder does otherwise (_folder_student)."""
    stem = path.stem
    for name in [notebook] if notebook else key.notebooks:
        if stem == name:
            return _folder_student(path), name
        if stem.endswith(name) and stem[: -len(name)].rstrip("_-. "):
            return stem[: -len(name)].rstrip("_-. "), name
    return stem, notebook or ""


def _folder_student(path: Path) -> str:
    """STUDENT/NN-name.ipynb, or nbgrader's submitted/STUDENT/ASSIGNMENT/NN-name.ipynb.

    In nbgrader's layout the folder holding the notebook is the assignment's,
    so the student is the one above it; the layout is told by nbgrader's
    folder names or by the timestamp.txt nbgrader writes beside the notebooks.
    """
    folder = path.absolute().parent
    if folder.parent.parent.name in NBGRADER_FOLDERS or (folder / NBGRADER_TIMESTAMP).is_file():
        return folder.parent.name
    return folder.name


def _join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)
