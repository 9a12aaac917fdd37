"""The grading report: a table (pandas), an overview of completion per question, HTML and CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._errors import GradingError
from ._answers import AnswerKey, Question
from ._collect import DUPLICATED, MISSING, NO_NOTEBOOK, UNANSWERED, UNCHANGED, Row

COLUMNS = ["student", "notebook", "grade_id", "points", "words", "flags", "answer", "reference", "note", "file"]

# Jinja2 escapes every value (autoescape): a student's answer may hold <script> or any HTML.
# Each question's prompt, reference answer and rubric are written once, under "The questions";
# a student's row links there instead of repeating them.
_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Grading report: {{ lab }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 90em; }
table { border-collapse: collapse; margin-bottom: 2em; width: 100%; }
th, td { border: 1px solid #ccc; padding: .4em; vertical-align: top; text-align: left; }
td.text { white-space: pre-wrap; width: 60%; }
.text { white-space: pre-wrap; }
.flag { background: #fde2e1; border-radius: .3em; padding: 0 .3em; margin-right: .2em; }
.rubric { color: #555; margin: .5em 0 0 1em; padding: 0; }
</style></head><body>
<h1>Grading report: {{ lab }}</h1>
<p>{{ students|length }} student(s); {{ problems|length }} file(s) that could not be graded.
Each question's reference answer and rubric are under <a href="#questions">The questions</a>.</p>
<h2>Completion per question</h2>
{{ overview }}
{% if problems %}<h2>Files that could not be graded</h2>
<ul>{% for row in problems %}<li><b>{{ row.student }}</b> ({{ row.flags|join(", ") }}): {{ row.note }}</li>{% endfor %}</ul>{% endif %}
{% for student in students %}
<h2 id="student-{{ loop.index }}">{{ student }}</h2>
<table><tr><th>question</th><th>answer</th><th>words</th><th>flags</th></tr>
{% for row in rows if row.student == student and row.grade_id %}
<tr><td><a href="#question-{{ row.grade_id }}"><b>{{ titles[row.grade_id] }}</b></a><br><code>{{ row.grade_id }}</code><br>{{ row.notebook }}, {{ "%g"|format(row.points) }} pt</td>
<td class="text">{{ row.answer }}</td><td>{{ row.words }}</td>
<td>{% for flag in row.flags %}<span class="flag">{{ flag }}</span>{% endfor %}{% if row.note %}<br>{{ row.note }}{% endif %}</td></tr>
{% endfor %}</table>
{% endfor %}
<h2 id="questions">The questions</h2>
{% for question in questions %}
<section id="question-{{ question.grade_id }}">
<h3>{{ question.title }}</h3>
<p><code>{{ question.grade_id }}</code>, {{ question.notebook }}, {{ "%g"|format(question.points) }} pt</p>
<p class="text">{{ question.prompt }}</p>
<h4>Reference answer</h4>
<p class="text">{{ question.reference }}</p>
<h4>Rubric</h4>
<ul class="rubric">{% for item in question.rubric %}<li>{{ "%g"|format(item.points) }} pt: {{ item.earned_for }}</li>{% endfor %}</ul>
</section>
{% endfor %}
</body></html>
"""


@dataclass(frozen=True)
class GradeReport:
    """One row per student and question (plus one per file that could not be graded)."""

    rows: tuple[Row, ...]
    key: AnswerKey

    @property
    def frame(self):
        import pandas as pd

        records = [{**row.__dict__, "flags": ", ".join(row.flags)} for row in self.rows]
        return pd.DataFrame(records, columns=COLUMNS)

    @property
    def problems(self) -> list[Row]:
        return [row for row in self.rows if not row.grade_id]

    @property
    def students(self) -> list[str]:
        return list(dict.fromkeys(row.student for row in self.rows))

    @property
    def questions(self) -> list[Question]:
        """The questions some row answers, in the lab's order: those the report explains."""
        asked = {row.grade_id for row in self.rows}
        return [question for question in self.key.questions if question.grade_id in asked]

    @property
    def overview(self):
        """Per question: how many students answered it, and why the others did not."""
        import pandas as pd

        records = []
        for question in self.key.questions:
            rows = [row for row in self.rows if row.grade_id == question.grade_id]
            if not rows:
                continue
            answered = sum(row.answered for row in rows)
            records.append({
                "notebook": question.notebook, "grade_id": question.grade_id, "points": question.points,
                "students": len(rows), "answered": answered,
                **{flag: sum(flag in row.flags for row in rows)
                   for flag in (UNANSWERED, UNCHANGED, MISSING, NO_NOTEBOOK, DUPLICATED)},
                "completion": f"{answered / len(rows):.0%}",
            })
        columns = ["notebook", "grade_id", "points", "students", "answered", UNANSWERED, UNCHANGED, MISSING,
                   NO_NOTEBOOK, DUPLICATED, "completion"]
        return pd.DataFrame(records, columns=columns)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False)

    def to_html(self) -> str:
        import jinja2
        from markupsafe import Markup

        from ._cells import LAB_ID

        environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        return environment.from_string(_HTML).render(
            lab=LAB_ID, rows=self.rows, students=self.students, problems=self.problems,
            # pandas escapes the cells it renders (escape=True is its default).
            overview=Markup(self.overview.to_html(index=False, escape=True)),
            titles={q.grade_id: q.title for q in self.key.questions},
            questions=self.questions,
        )

    def write(self, path: Path | str) -> Path:
        """Write the report as .html or .csv, by the file's suffix."""
        path = Path(path)
        writers = {".html": self.to_html, ".csv": self.to_csv}
        if path.suffix.lower() not in writers:
            raise GradingError(f"Cannot write a report to {path.name}: name a .html or a .csv file.")
        path.write_text(writers[path.suffix.lower()](), encoding="utf-8")
        return path

    def summary(self) -> str:
        """The overview and the files that could not be graded, as plain text for a terminal."""
        import pandas as pd

        lines = [f"{len(self.students)} student(s), {len(self.rows) - len(self.problems)} answer row(s)."]
        if len(self.overview):
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                lines.append(self.overview.to_string(index=False))
        lines += [f"{row.student}: {', '.join(row.flags)}: {row.note}" for row in self.problems]
        return "\n".join(lines)
