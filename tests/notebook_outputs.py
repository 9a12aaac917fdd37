"""What a student sees in an executed notebook, and what they must never see.

JupyterLab shows, of each output, its richest representation: a widget, then
HTML, then an image, then Markdown, then plain text. These checks read
exactly that representation, so a figure whose only output is the text
``<Figure size 800x320 with 1 Axes>`` is a chart that was not drawn, and an
HTML table is judged by the cells it renders.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# JupyterLab's order of preference among the representations of one output.
RICHEST_FIRST = (
    "application/vnd.jupyter.widget-view+json",
    "text/html",
    "image/png",
    "image/svg+xml",
    "text/markdown",
    "text/plain",
)
IMAGES = ("image/png", "image/svg+xml")

REPRS = [
    (re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"), "an object's repr"),
    (re.compile(r"<bound method "), "a bound method's repr"),
    (re.compile(r"\b(?:Posix|Windows)?Path\('"), "a Path's repr"),
    (re.compile(r"dtype: \w+"), "a pandas Series' repr"),
    (re.compile(r"<Figure size [^>]*>"), "a figure that was not drawn"),
    (re.compile(r"<[A-Z]\w* '[^']*'[^>]*>"), "an object's repr"),
]
# Once rendered, an entity escaped twice shows as "&#10003;" instead of a tick.
VISIBLE_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
# A Python literal as a cell's whole output: a list, dict, tuple, string, bool or None.
LITERAL = re.compile(r"""^\s*(?:[\[{(].*[\]})]|'.*'|".*"|True|False|None)\s*$""", re.S)
TABLE_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
UNROUNDED = re.compile(r"^-?\d+\.\d{4,}$")
MISSING = {"NaN", "nan", "None", "NaT", "<NA>", "True", "False"}
TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Shown:
    """One output as JupyterLab renders it: its cell, its kind and its text."""

    cell: int  # 1-based, among all cells, as JupyterLab numbers them in the margin
    source: str
    mime: str
    text: str  # the text of that representation (base64 for images)


def shown(notebook) -> list[Shown]:
    outputs = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                outputs.append(Shown(number, cell.source, f"stream/{output.name}", output.text))
            elif output.output_type == "error":
                outputs.append(Shown(number, cell.source, "error", f"{output.ename}: {output.evalue}"))
            else:
                data = output.get("data", {})
                mime = next((m for m in RICHEST_FIRST if m in data), None)
                if mime is not None:
                    text = data[mime]
                    outputs.append(Shown(number, cell.source, mime, text if isinstance(text, str) else str(text)))
    return outputs


def visible_text(output: Shown) -> str:
    """What a reader sees of an HTML or text output, with markup and entities resolved."""
    if output.mime == "text/html":
        return html.unescape(TAG.sub(" ", output.text))
    return output.text


def shown_problems(mime: str, text: str) -> list[str]:
    """What is wrong with one representation (``text/html``, ``text/plain``...) as a reader sees it."""
    found = []
    if mime in IMAGES or mime.startswith("application/"):
        return found
    seen = visible_text(Shown(0, "", mime, text))
    for pattern, what in REPRS:
        if match := pattern.search(seen):
            found.append(f"shows {what}: {match.group(0)[:80]}")
    if match := VISIBLE_ENTITY.search(seen):
        found.append(f"shows an escaped entity: {match.group(0)}")
    if mime == "text/plain" and LITERAL.match(seen):
        found.append(f"shows a Python literal instead of a sentence or a table: {seen.strip()[:80]}")
    if mime == "text/html":
        for cell_html in TABLE_CELL.findall(text):
            value = html.unescape(TAG.sub("", cell_html)).strip()
            if value in MISSING:
                found.append(f"has a table cell showing {value}")
            elif UNROUNDED.match(value):
                found.append(f"has an unrounded number in a table: {value}")
    return list(dict.fromkeys(found))


def problems(notebook) -> list[str]:
    """Every output a student should not see, one sentence each."""
    found = []
    for output in shown(notebook):
        where = f"cell {output.cell} ({output.source.strip().splitlines()[-1][:60]!r})"
        if output.mime == "error":
            found.append(f"{where} raised {output.text}")
        elif output.mime == "stream/stderr":
            if output.text.strip():
                found.append(f"{where} wrote to stderr: {output.text.strip()[:200]}")
        else:
            found.extend(f"{where} {problem}" for problem in shown_problems(output.mime, output.text))
    return found


def plots_not_drawn(notebook) -> list[str]:
    """Cells that draw a chart (``.plot()``) but show no image."""
    missing = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code" and ".plot()" in cell.source:
            mimes = {m for o in cell.get("outputs", []) for m in o.get("data", {})}
            if not mimes & set(IMAGES):
                missing.append(f"cell {number} ({cell.source.strip()[:60]!r}) shows {sorted(mimes) or 'nothing'}")
    return missing
