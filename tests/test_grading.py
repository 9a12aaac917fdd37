"""Grading: the answer key, the question cells in nbgrader's format, and `labkit grade`.

The submissions in tests/fixtures/submissions/ are hand-made notebooks (see
the README there); the question cells are checked with nbgrader's own
validator, nbgraderformat.v3.MetadataValidatorV3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from labkit import GradingError, grading
from labkit.cli import main

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "submissions"
NB1 = "01-single-server"
Q1, Q2, Q3 = "task1-how-it-works", "task1-drawbacks", "task1-faster-contextualization"


@pytest.fixture(scope="module")
def key():
    return grading.load_answers()


def released_notebook(folder: Path, name: str, key, template: str | None = None) -> Path:
    """A notebook as the author builds it: the generated question cells and the lab's metadata."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}")]
    for question in key.of_notebook(name):
        cells = grading.question_cells(question.grade_id, key)
        if template is not None:
            cells[1].source = template
        nb.cells += cells
    nb.metadata["labkit"] = {"lab": grading.LAB_ID, "notebook": name}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


# --- the answer key -------------------------------------------------------------------------------

def test_answer_key_covers_the_three_notebooks(key):
    assert key.notebooks == ["01-single-server", "02-docker-scaling", "03-ci-cd"]
    assert len(key.grade_ids) == len(set(key.grade_ids)) == 10


@pytest.mark.parametrize("grade_id", grading.load_answers().grade_ids)
def test_every_reference_answer_is_short_and_has_a_rubric(key, grade_id):
    question = key[grade_id]
    assert 80 <= len(question.reference.split()) <= 200, len(question.reference.split())
    assert sum(item.points for item in question.rubric) == question.points > 0
    assert all(item.earned_for for item in question.rubric)


def test_a_broken_answer_key_is_refused_with_the_file_named(tmp_path, key):
    source = (REPO / "answers" / f"{NB1}.yaml").read_text()
    (tmp_path / f"{NB1}.yaml").write_text(source.replace("points: 3\n", "points: 5\n", 1))
    with pytest.raises(GradingError, match=rf"{NB1}.yaml: the rubric of '{Q1}' gives 3 points, the question 5"):
        grading.load_answers(tmp_path)
    (tmp_path / f"{NB1}.yaml").write_text(source)
    (tmp_path / "02-copy.yaml").write_text(source.replace(f"notebook: {NB1}", "notebook: 02-copy"))
    with pytest.raises(GradingError, match=f"The grade_id '{Q1}' appears twice"):
        grading.load_answers(tmp_path)
    with pytest.raises(GradingError, match="No answer key"):
        grading.load_answers(tmp_path / "empty")


# --- the question cells and nbgrader's schema --------------------------------------------------------

def test_question_cells_are_a_locked_prompt_and_a_manually_graded_answer(key):
    prompt, answer = grading.question_cells(Q2, key)
    assert prompt.cell_type == answer.cell_type == "markdown"
    assert prompt.metadata.nbgrader == {"grade": False, "solution": False, "locked": True, "task": False,
                                        "grade_id": f"{Q2}-prompt", "schema_version": 3}
    assert answer.metadata.nbgrader == {"grade": True, "solution": True, "locked": False, "task": False,
                                        "grade_id": Q2, "points": 4, "schema_version": 3}
    assert answer.source == "> ✏️ *Your answer here: replace this line with your answer.*"
    assert prompt.source.startswith("**Question: Drawbacks of the single-server deployment** (4 points)\n\n")


def test_the_answer_cell_renders_as_a_box_to_fill_in_not_as_more_prompt():
    # Markdown as JupyterLab renders it: a quoted, italic instruction with a pencil, no HTML or script.
    from nbconvert.filters.markdown import markdown2html

    assert markdown2html(grading.TEMPLATE) == (
        "<blockquote>\n<p>✏️ <em>Your answer here: replace this line with your answer.</em></p>\n</blockquote>\n")


def test_every_generated_question_passes_nbgraders_own_validator(key):
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    nb = nbformat.v4.new_notebook()
    for grade_id in key.grade_ids:
        nb.cells += grading.question_cells(grade_id, key)
    MetadataValidatorV3().validate_nb(nb)  # raises on any fault
    assert grading.validate_nbgrader(nb) == []


def _answer(**changes):
    meta = {"grade": True, "solution": True, "locked": False, "grade_id": "q", "points": 2, "schema_version": 3}
    meta.update(changes)
    return nbformat.v4.new_markdown_cell("YOUR ANSWER HERE", metadata={"nbgrader": {k: v for k, v in meta.items() if v is not None}})


@pytest.mark.parametrize("cell, says", [
    (_answer(solution=False), "not marked as a solution cell"),
    (_answer(grade=False), "not marked as a grade cell"),
    (_answer(points=None), "does not have points"),
    (_answer(points=-1), "less than the minimum"),
    (_answer(grade_id=None), "does not have a grade_id"),
    (_answer(grade_id="has space"), "does not match"),
    (_answer(schema_version=2), "Outdated schema version"),
    (_answer(schema_version=None), "Outdated schema version"),
    (_answer(grade="yes"), "is not of type 'boolean'"),
    (_answer(weight=1), "Additional properties are not allowed"),
], ids=["grade-without-solution", "solution-without-grade", "no-points", "negative-points", "no-grade-id",
        "bad-grade-id", "schema-2", "no-schema-version", "grade-not-boolean", "unknown-key"])
def test_nbgraders_validator_rejects_wrong_metadata(cell, says):
    nb = nbformat.v4.new_notebook(cells=[cell])
    problems = grading.validate_nbgrader(nb)
    assert len(problems) == 1 and says in problems[0], problems


def test_nbgraders_validator_rejects_a_grade_id_used_twice():
    nb = nbformat.v4.new_notebook(cells=[_answer(), _answer()])
    assert grading.validate_nbgrader(nb) == ["Duplicate grade id: q"]


# --- the lab's notebooks against answers/ --------------------------------------------------------------

def test_the_lab_notebooks_and_answers_agree(key, report):
    problems, pending = grading.check_lab(REPO / "notebooks", key)
    assert problems == []
    checked = [name for name in key.notebooks if name not in pending]
    report(f"grading: answers/ cross-checked against notebooks {checked or 'none yet'}; "
           f"waiting for {pending or 'none'}")


def test_check_lab_passes_a_generated_notebook_and_fails_each_disagreement(tmp_path, key):
    path = released_notebook(tmp_path, NB1, key)
    assert grading.check_lab(tmp_path, key) == ([], ["02-docker-scaling", "03-ci-cd"])

    nb = nbformat.read(path, as_version=4)
    extra = _answer(grade_id="task1-extra")
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in (Q3, f"{Q3}-prompt")]
    nb.cells.append(extra)
    nb.metadata.pop("labkit")
    nbformat.write(nb, path)
    other = released_notebook(tmp_path, "02-docker-scaling", key)
    nb2 = nbformat.read(other, as_version=4)
    nb2.cells.append(_answer(grade_id=Q1))
    nbformat.write(nb2, other)
    nb4 = nbformat.v4.new_notebook(cells=[_answer(grade_id="task4-only")])
    nbformat.write(nb4, tmp_path / "04-unknown.ipynb")

    problems, _ = grading.check_lab(tmp_path, key)
    assert f"{NB1}.ipynb: the answer cell 'task1-extra' has no reference answer in {key.folder}" in problems
    assert any(p.startswith(f"{NB1}.ipynb: no answer cell for '{Q3}'") for p in problems)
    assert any(p.startswith(f"{NB1}.ipynb: the notebook's metadata.labkit is None") for p in problems)
    assert f"02-docker-scaling.ipynb: the answer cell '{Q1}' belongs to {NB1} in {key.folder}" in problems
    assert f"02-docker-scaling.ipynb: grade_id '{Q1}' is also used in {NB1}.ipynb" in problems
    assert any(p.startswith("04-unknown.ipynb: has nbgrader cells but no answer file") for p in problems)


def test_sync_notebook_brings_prompts_and_points_up_to_date(tmp_path, key):
    path = released_notebook(tmp_path, NB1, key)
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("labkit")
    nb.cells[1].source = "**An old wording**"
    nb.cells[2].metadata.nbgrader["points"] = 10
    nbformat.write(nb, path)
    assert len(grading.check_notebook(path, key)) == 3

    assert grading.sync_notebook(path, key) == [
        "set metadata.labkit", f"updated the prompt of {Q1}", f"updated the answer cell metadata of {Q1}"]
    assert grading.check_notebook(path, key) == []
    assert grading.sync_notebook(path, key) == []


def test_sync_notebook_brings_answer_cells_of_nbgraders_stub_to_the_template(tmp_path, key):
    # The notebooks released before the template held nbgrader's stub: one sync call updates them.
    path = released_notebook(tmp_path, NB1, key, template="YOUR ANSWER HERE")
    assert grading.check_notebook(path, key) == [
        f"the answer cell {q!r} does not hold only {grading.TEMPLATE!r}: run labkit.grading.sync_notebook({str(path)!r})"
        for q in (Q1, Q2, Q3)]
    assert grading.sync_notebook(path, key) == [f"updated the answer cell template of {q}" for q in (Q1, Q2, Q3)]
    assert grading.check_notebook(path, key) == []


def test_check_notebook_refuses_narrative_right_below_an_answer_cell(tmp_path, key):
    # labkit grade would take such a cell for text the student added below the answer cell.
    path = released_notebook(tmp_path, NB1, key)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(3, nbformat.v4.new_markdown_cell("Now the drawbacks."))
    nb.cells.append(nbformat.v4.new_markdown_cell("## Terminate"))
    nb.cells.append(nbformat.v4.new_markdown_cell("Nothing of this lab is left running."))
    nbformat.write(nb, path)
    assert grading.check_notebook(path, key) == [
        f"the cell after the answer cell {Q1!r} is neither a question, code nor a heading: `labkit grade` would "
        "take it for the student's answer; start it with a heading or move it above the question"]


# --- grading submissions ------------------------------------------------------------------------------------

F = f"_{NB1}.ipynb"


def no_notebook(student: str) -> list[tuple]:
    """A student with no gradable notebook gets a row per question all the same, for completion."""
    return [(student, grade_id, 0, "no-notebook", "") for grade_id in (Q1, Q2, Q3)]


SHORT = "short for its points"
EXPECTED = [  # student, grade_id, words, flags, file; rows about a whole file have no grade_id
    ("alice", Q1, 31, "same as ivan and judy", "alice" + F),
    ("alice", Q2, 23, SHORT, "alice" + F),
    ("alice", Q3, 13, SHORT, "alice" + F),
    ("bob", Q1, 0, "unchanged", "bob" + F),
    ("bob", Q2, 0, "unchanged", "bob" + F),
    ("bob", Q3, 0, "unanswered", "bob" + F),
    ("carol", "", 0, "corrupt", "carol" + F),
    *no_notebook("carol"),
    ("dave", "", 0, "other-lab", "dave" + F),
    *no_notebook("dave"),
    ("erin", Q1, 9, SHORT, "erin" + F),
    ("erin", Q2, 11, f"duplicated, {SHORT}", "erin" + F),
    ("erin", Q3, 0, "unchanged", "erin" + F),
    ("frank", Q1, 11, SHORT, "frank" + F),  # "&" is no word
    ("frank", Q2, 6, SHORT, "frank" + F),
    ("frank", Q3, 0, "missing", "frank" + F),
    ("grace", "", 0, "corrupt", "grace" + F),
    *no_notebook("grace"),
    ("heidi", Q1, 6, SHORT, f"heidi/{NB1}.ipynb"),
    ("heidi", Q2, 2, SHORT, f"heidi/{NB1}.ipynb"),
    ("heidi", Q3, 3, SHORT, f"heidi/{NB1}.ipynb"),
    ("ivan", Q1, 31, "same as alice and judy", "ivan" + F),
    ("ivan", Q2, 56, "answer outside its cell", "ivan" + F),
    ("ivan", Q3, 3, SHORT, "ivan" + F),
    ("judy", Q1, 31, "same as alice and ivan", f"submitted/judy/lab1/{NB1}.ipynb"),
    ("judy", Q2, 0, "unchanged", f"submitted/judy/lab1/{NB1}.ipynb"),
    ("judy", Q3, 33, "", f"submitted/judy/lab1/{NB1}.ipynb"),
]


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory):
    # No released notebook: "unchanged" means nbgrader's stub, YOUR ANSWER HERE.
    return grading.grade(FIXTURES, notebooks=tmp_path_factory.mktemp("no-notebooks"))


def test_report_rows_for_the_hand_made_submissions(fixture_report):
    frame = fixture_report.frame
    assert list(frame.columns) == ["student", "notebook", "grade_id", "points", "words", "flags", "answer",
                                   "reference", "note", "file"]
    got = list(frame[["student", "grade_id", "words", "flags", "file"]].itertuples(index=False, name=None))
    assert got == EXPECTED
    assert set(frame["notebook"]) == {NB1}


def test_report_rows_hold_the_answers_references_and_reasons(fixture_report, key):
    rows = {(r.student, r.grade_id): r for r in fixture_report.rows}
    assert rows[("alice", Q3)].answer == "Bake an image after the pip step, which took most of the time."
    assert rows[("alice", Q3)].reference == key[Q3].reference
    assert rows[("alice", Q3)].points == 3
    assert rows[("bob", Q2)].answer == "YOUR ANSWER\nHERE"
    assert rows[("erin", Q2)].answer == "A single point of failure, and slow installs.\n\nAlso: no rollback."
    assert rows[("erin", Q2)].note == "2 answer cells with this grade_id: all shown"
    assert rows[("frank", Q3)].note == "the answer cell was deleted or its nbgrader metadata changed"
    assert rows[("heidi", Q1)].note == "no lab metadata in the notebook: recognised by its answer cells"
    assert rows[("carol", "")].note.startswith(f"carol{F} is not valid JSON (line 7, column 45")
    assert rows[("dave", "")].note == (f"dave{F} belongs to the lab 'data-pipelines', not 'model-serving': "
                                       "it is not graded here")
    assert rows[("grace", "")].note == f"grace{F} is not a valid notebook (nbformat 99: Unsupported nbformat version 99)"
    assert rows[("grace", Q1)].note == f"no gradable {NB1} notebook from this student"


def test_overview_counts_completion_per_question(fixture_report):
    overview = fixture_report.overview
    got = list(overview.drop(columns=["notebook", "points"]).itertuples(index=False, name=None))
    assert got == [
        (Q1, 10, 6, 0, 1, 0, 3, 0, "60%"),
        (Q2, 10, 5, 0, 2, 0, 3, 1, "50%"),
        (Q3, 10, 4, 1, 1, 1, 3, 0, "40%"),
    ]
    assert list(overview.columns) == ["notebook", "grade_id", "points", "students", "answered", "unanswered",
                                      "unchanged", "missing", "no-notebook", "duplicated", "completion"]


def test_unchanged_is_judged_against_the_released_notebook(tmp_path, key):
    released = released_notebook(tmp_path / "released", NB1, key, template="Write your answer here.")
    submissions = tmp_path / "in"
    submissions.mkdir()
    shutil.copy(released, submissions / f"ivan_{NB1}.ipynb")
    shutil.copy(FIXTURES / f"bob{F}", submissions / f"bob{F}")

    rows = grading.grade(submissions, notebooks=tmp_path / "released").rows
    flags = {(r.student, r.grade_id): r.flags for r in rows}
    assert flags[("ivan", Q1)] == ("unchanged",)
    # bob's YOUR ANSWER HERE is nbgrader's stub, which a release made by nbgrader holds: unchanged too.
    assert flags[("bob", Q1)] == ("unchanged",)


def test_the_template_and_nbgraders_stub_are_unchanged_also_with_a_line_kept(tmp_path, key):
    released = released_notebook(tmp_path / "released", NB1, key)  # today's template
    nb = nbformat.read(released, as_version=4)
    nb.cells[2].source = "> ✏️  *your answer here: replace this line with your answer*"   # other spacing and case
    nb.cells[4].source = f"{grading.TEMPLATE}\n\nBake an image after the pip step."     # written below the line
    nb.cells[6].source = "YOUR ANSWER HERE\n\nCache the packages."                      # an old release's stub
    nbformat.write(nb, tmp_path / f"ivan{F}")

    rows = {r.grade_id: r for r in grading.grade(tmp_path / f"ivan{F}", notebooks=tmp_path / "released").rows}
    assert [(r.flags, r.answer, r.words) for r in rows.values()] == [
        (("unchanged",), "> ✏️  *your answer here: replace this line with your answer*", 0),
        ((SHORT,), "Bake an image after the pip step.", 7),
        ((SHORT,), "Cache the packages.", 3),
    ]


def test_a_second_copy_of_a_notebook_is_a_row_not_a_second_grade(tmp_path):
    shutil.copy(FIXTURES / f"alice{F}", tmp_path / f"alice{F}")
    (tmp_path / "alice").mkdir()
    shutil.copy(FIXTURES / f"erin{F}", tmp_path / "alice" / f"{NB1}.ipynb")
    rows = grading.grade(tmp_path, notebooks=tmp_path / "none").rows
    # The first in path order is graded (alice/ sorts before alice_...), the other is named.
    assert [(r.grade_id, r.flags, r.note) for r in rows if not r.grade_id] == [
        ("", ("resubmitted",), f"alice{F} a second {NB1} notebook from this student; alice/{NB1}.ipynb is graded")]
    assert [(r.words, r.file) for r in rows if r.grade_id] == [(9, f"alice/{NB1}.ipynb"), (11, f"alice/{NB1}.ipynb"),
                                                         (0, f"alice/{NB1}.ipynb")]


def test_identical_answers_of_two_students_name_each_other(fixture_report):
    # ivan re-spaced alice's answer and changed its case, judy wrote it in capitals: all three are flagged.
    rows = {(r.student, r.grade_id): r for r in fixture_report.rows}
    assert rows[("judy", Q1)].answer.lower() == rows[("alice", Q1)].answer.lower()
    assert [rows[(s, Q1)].flags for s in ("alice", "ivan", "judy")] == [
        ("same as ivan and judy",), ("same as alice and judy",), ("same as alice and ivan",)]
    # Templates left as they were look alike too, but are no copies.
    assert rows[("bob", Q2)].flags == rows[("judy", Q2)].flags == ("unchanged",)


def _one_answer_submission(folder: Path, key, grade_id: str, answer: str) -> Path:
    path = released_notebook(folder, NB1, key)
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id).source = answer
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("grade_id, words, flags", [
    (Q2, 31, (SHORT,)), (Q2, 32, ()),   # 4 points: 32 words
    (Q3, 23, (SHORT,)), (Q3, 24, ()),   # 3 points: 24 words
], ids=["4-points-31-words", "4-points-32-words", "3-points-23-words", "3-points-24-words"])
def test_an_answer_under_eight_words_a_point_is_short(tmp_path, key, grade_id, words, flags):
    assert grading.WORDS_PER_POINT == 8
    path = _one_answer_submission(tmp_path / "alice", key, grade_id, "- " + " ".join(["word"] * words))
    row = next(r for r in grading.grade(path, notebooks=tmp_path / "none").rows if r.grade_id == grade_id)
    assert (row.student, row.words, row.flags) == ("alice", words, flags)   # "-" is no word


def test_an_answer_typed_below_its_cell_is_shown_and_flagged(fixture_report):
    rows = {(r.student, r.grade_id): r for r in fixture_report.rows}
    assert rows[("ivan", Q2)].answer == (
        "1. A single point of failure: if the VM or RabbitMQ dies, the service and its queued tasks are gone.\n"
        "2. Slow boots: every new VM installs the same packages again, for 15 minutes.\n\n"
        "3. Scaling stops at one machine: workers fight gunicorn for the cores.\n"
        "4. Updates mean SSH and hand edits, with no rollback.")
    assert rows[("ivan", Q2)].flags == ("answer outside its cell",)
    assert rows[("ivan", Q2)].note == "the answer includes 2 cell(s) the student added below the answer cell"
    # The template's line left above the answer is dropped; what follows the heading is the notebook's.
    assert (rows[("ivan", Q3)].answer, rows[("ivan", Q3)].note) == ("Bake an image.", "")


def test_nbgraders_submitted_folder_names_the_student_not_the_assignment(fixture_report, tmp_path):
    assert [r.student for r in fixture_report.rows if r.file.startswith("submitted/")] == ["judy"] * 3
    # nbgrader's collect writes timestamp.txt beside the notebooks, whatever the course folder is called.
    assignment = tmp_path / "collected" / "kim" / "lab1"
    assignment.mkdir(parents=True)
    shutil.copy(FIXTURES / f"alice{F}", assignment / f"{NB1}.ipynb")
    (assignment / "timestamp.txt").write_text("2024-05-02 10:00:00.000000 UTC")
    shutil.copy(FIXTURES / f"erin{F}", assignment / f"lena_{NB1}.ipynb")
    rows = grading.grade(tmp_path / "collected", notebooks=tmp_path / "none").rows
    assert [(r.student, r.file) for r in rows if r.grade_id == Q1] == [
        ("kim", f"kim/lab1/{NB1}.ipynb"), ("lena", f"kim/lab1/lena_{NB1}.ipynb")]


def test_a_missing_submission_path_is_an_error(tmp_path):
    with pytest.raises(GradingError, match="does not exist"):
        grading.grade(tmp_path / "nothing-here", notebooks=tmp_path)


# --- the report's files and the command ----------------------------------------------------------------------

def test_html_report_escapes_what_students_wrote(fixture_report, tmp_path):
    html = fixture_report.write(tmp_path / "report.html").read_text()
    assert "<script" not in html
    assert "I tried &lt;script&gt;alert(&#34;frank&#34;)&lt;/script&gt; &amp; it was escaped." in html
    assert html.count('<h2 id="student-') == 10
    assert "carol_01-single-server.ipynb is not valid JSON" in html


def test_html_report_explains_each_question_once_and_links_every_row_to_it(fixture_report, key):
    html = fixture_report.to_html()
    for question in map(key.__getitem__, (Q1, Q2, Q3)):
        assert html.count(f'<section id="question-{question.grade_id}">') == 1
        assert html.count(f'<a href="#question-{question.grade_id}">') == 10   # a row per student
        assert html.count(question.rubric[0].earned_for.split(",")[0]) == 1
    assert html.count("One point of failure: web server, broker and workers share one VM") == 1
    assert html.count("<h2") == 1 + 1 + 10 + 1   # completion, files not graded, students, the questions
    assert html.index('<h2 id="student-10">') < html.index('<h2 id="questions">The questions</h2>')


def test_csv_report_reads_back_as_the_frame(fixture_report, tmp_path):
    path = fixture_report.write(tmp_path / "report.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    expected = fixture_report.frame.astype(object).where(fixture_report.frame.notna(), "").astype(str)
    assert back.to_dict("records") == expected.to_dict("records")


def test_report_refuses_other_file_types(fixture_report, tmp_path):
    with pytest.raises(GradingError, match="name a .html or a .csv file"):
        fixture_report.write(tmp_path / "report.txt")


def test_labkit_grade_prints_the_overview_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report.csv"
    assert main(["grade", str(FIXTURES), "--out", str(out), "--notebooks", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "10 student(s), 30 answer row(s)."
    assert f"grace: corrupt: grace{F} is not a valid notebook" in printed
    assert "task1-faster-contextualization" in printed and "40%" in printed
    assert printed.rstrip().endswith(f"Wrote {out}.")
    assert len(pd.read_csv(out)) == len(EXPECTED)


@pytest.mark.parametrize("args", [["grade", "/no/such/folder"], ["grade", str(FIXTURES), "--out", "report.txt"],
                                  ["grade"]], ids=["no-such-folder", "bad-out-suffix", "no-argument"])
def test_labkit_grade_usage_errors_exit_2(args, capsys):
    assert main(args) == 2
    assert "Usage: labkit grade" in capsys.readouterr().err


def test_fixture_files_are_what_their_readme_says():
    # Guard against a fixture "repaired" by a tool: the broken ones must stay broken.
    with pytest.raises(json.JSONDecodeError):
        json.loads((FIXTURES / f"carol{F}").read_text())
    assert json.loads((FIXTURES / f"grace{F}").read_text())["nbformat"] == 99
    assert "id" not in json.loads((FIXTURES / "heidi" / f"{NB1}.ipynb").read_text())["cells"][0]
