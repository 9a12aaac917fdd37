"""How labkit's results look in a notebook: charts drawn, tables readable, sentences as sentences.

A notebook shows the richest representation an object offers. A plain
matplotlib ``Figure`` offers an image only once pyplot has set up the inline
backend, which nothing in a fresh kernel does; a pandas table shows ``NaN``,
``True`` and six decimals. So everything labkit hands a notebook goes
through here.
"""

from __future__ import annotations

import functools
import html
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DPI = 100
EMPTY = "–"  # what a table shows where there is no value


@functools.cache
def _chart_class() -> type:
    # Built on first use: matplotlib takes half a second to import, and `import labkit` needs none of it.
    from matplotlib.figure import Figure

    class Chart(Figure):
        """A matplotlib Figure that draws itself in a notebook, with or without pyplot."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.save(buffer)
            return buffer.getvalue()

        def save(self, target: "str | Path | io.BytesIO") -> None:
            save_chart(self, target)

    return Chart


def save_chart(figure: "Figure", target: "str | Path | io.BytesIO") -> None:
    """Write a chart as PNG (to a path or a file object), without any GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    if isinstance(target, (str, Path)):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=DPI)


def chart(width: float, height: float) -> "Figure":
    """A figure of its own (not pyplot's global one, so nothing leaks between cells) that a notebook draws."""
    return _chart_class()(figsize=(width, height), layout="constrained")


def cell(value: object, digits: int = 1) -> str:
    """One table cell as a reader wants it: rounded, yes/no, and a dash for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return f"{float(value):,.{digits}f}"  # type: ignore[arg-type]  # numpy's float64 and kin
    return str(value)


def amount(value: float, unit: str = "") -> str:
    """A measurement with its unit: counts (failed requests) as whole numbers, the rest to one place."""
    whole = isinstance(value, int) or (not unit and float(value).is_integer())
    return (f"{int(value)} {unit}" if whole else f"{value:.1f} {unit}").strip()


def table(frame: "pd.DataFrame", digits: Mapping[str, int] | None = None, index: bool = False) -> str:
    """An HTML table of ``frame`` with every value through ``cell`` (``digits`` per column, default 1)."""
    digits = digits or {}
    shown = frame.copy()
    for column in shown.columns:
        places = digits.get(column, 1)
        shown[column] = [cell(value, places) for value in shown[column]]
    return shown.to_html(index=index, escape=True, na_rep=EMPTY)


BOLD, BOLD_HTML = re.compile(r"\*\*(.+?)\*\*"), r"<b>\1</b>"


@dataclass(frozen=True)
class Table:
    """Rows of text, written once and shown both as a README's markdown and as a notebook's HTML.

    A cell may mark a word bold with ``**...**`` (a target not met must not be overlooked).
    """

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    right: tuple[int, ...] = ()  # the columns (numbers) aligned right

    def markdown(self) -> str:
        rule = ["---:" if i in self.right else "---" for i in range(len(self.header))]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in [list(self.header), rule, *self.rows])

    def html(self) -> str:
        def td(tag: str, i: int, text: str) -> str:
            # Explicit both ways: JupyterLab right-aligns every cell, which makes sentences hard to read.
            align = f" style='text-align:{'right' if i in self.right else 'left'}'"
            return f"<{tag}{align}>{BOLD.sub(BOLD_HTML, html.escape(text))}</{tag}>"

        head = "".join(td("th", i, h) for i, h in enumerate(self.header))
        body = "".join("<tr>" + "".join(td("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in self.rows)
        return f"<table class='dataframe'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_html_(self) -> str:
        return self.html()


class Sentence(str):
    """A string that a notebook shows as a sentence, not as a quoted Python literal."""

    def _repr_markdown_(self) -> str:
        return html.escape(str(self))

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))
