"""The answer key: answers/NN-name.yaml, one file per notebook (format in answers/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._errors import GradingError
from .._files import ANSWERS_DIR, NOTEBOOKS_DIR

# The lab's own, when an instructor names no folder (in a checkout or an installed wheel alike).
DEFAULT_ANSWERS = ANSWERS_DIR
DEFAULT_NOTEBOOKS = NOTEBOOKS_DIR


@dataclass(frozen=True)
class RubricItem:
    points: float
    earned_for: str


@dataclass(frozen=True)
class Question:
    grade_id: str
    notebook: str
    title: str
    points: float
    prompt: str
    reference: str
    rubric: tuple[RubricItem, ...]


@dataclass(frozen=True)
class AnswerKey:
    """Every question of the lab, in the order the notebooks ask them."""

    questions: tuple[Question, ...]
    folder: Path

    def __getitem__(self, grade_id: str) -> Question:
        for question in self.questions:
            if question.grade_id == grade_id:
                return question
        raise GradingError(f"No question has the grade_id {grade_id!r} in {self.folder}: "
                           f"use one of {', '.join(self.grade_ids)}.")

    def __contains__(self, grade_id: object) -> bool:
        return grade_id in self.grade_ids

    @property
    def grade_ids(self) -> list[str]:
        return [q.grade_id for q in self.questions]

    @property
    def notebooks(self) -> list[str]:
        return list(dict.fromkeys(q.notebook for q in self.questions))

    def of_notebook(self, notebook: str) -> list[Question]:
        return [q for q in self.questions if q.notebook == notebook]


def load_answers(folder: Path | str | None = None) -> AnswerKey:
    """Read and check every answers/*.yaml; a mistake in them raises GradingError naming the file."""
    import yaml

    folder = Path(folder) if folder is not None else DEFAULT_ANSWERS
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise GradingError(f"No answer key (*.yaml) in {folder}: pass the lab repository's answers/ folder.")
    questions: list[Question] = []
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise GradingError(f"{path} is not valid YAML ({exc}): fix it, see answers/README.md.") from exc
        questions += _questions(document, path)
    seen: set[str] = set()
    for question in questions:
        if question.grade_id in seen:
            raise GradingError(f"The grade_id {question.grade_id!r} appears twice in {folder}: "
                               "grade ids must be unique across the lab, rename one.")
        seen.add(question.grade_id)
    return AnswerKey(tuple(questions), folder)


def _questions(document: object, path: Path) -> list[Question]:
    def fail(problem: str) -> GradingError:
        return GradingError(f"{path}: {problem}: fix it, see answers/README.md for the format.")

    if not isinstance(document, dict) or not isinstance(document.get("questions"), list):
        raise fail("expected a mapping with `notebook` and a list of `questions`")
    if document.get("notebook") != path.stem:
        raise fail(f"`notebook` is {document.get('notebook')!r}, not the file's name {path.stem!r}")
    questions = []
    for number, entry in enumerate(document["questions"], start=1):
        if not isinstance(entry, dict):
            raise fail(f"question {number} is not a mapping")
        missing = [key for key in ("grade_id", "title", "points", "prompt", "reference", "rubric") if not entry.get(key)]
        if missing:
            raise fail(f"question {number} has no {', '.join(missing)}")
        try:
            rubric = tuple(RubricItem(float(item["points"]), str(item["for"]).strip()) for item in entry["rubric"])
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(f"the rubric of {entry['grade_id']!r} needs items with `points` and `for` ({exc!r})") from exc
        if sum(item.points for item in rubric) != float(entry["points"]):
            raise fail(f"the rubric of {entry['grade_id']!r} gives {sum(i.points for i in rubric):g} points, "
                       f"the question {entry['points']}")
        questions.append(Question(
            grade_id=str(entry["grade_id"]), notebook=path.stem, title=str(entry["title"]).strip(),
            points=float(entry["points"]), prompt=str(entry["prompt"]).strip(),
            reference=_unwrap(str(entry["reference"])),
            rubric=rubric,
        ))
    return questions


def _unwrap(text: str) -> str:
    """YAML block scalars keep the file's line breaks; a paragraph reads better as one line, a list stays a list."""
    paragraphs = []
    for block in text.strip().split("\n\n"):
        items: list[str] = []
        for line in (line.strip() for line in block.splitlines()):
            if not items or _starts_item(line):
                items.append(line)
            else:
                items[-1] += " " + line
        paragraphs.append("\n".join(items))
    return "\n\n".join(paragraphs)


def _starts_item(line: str) -> bool:
    number, dot, _ = line.partition(". ")
    return line[:2] in {"- ", "* "} or (bool(dot) and number.isdigit())
