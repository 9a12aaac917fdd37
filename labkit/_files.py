"""Where the lab's own files are: in a checkout, or in an installed wheel.

The cloud-init templates, the reference answers and the notebooks live at
the repository's top (``cloud-init/``, ``answers/``, ``notebooks/``), where
a reader looks for them; ``labkit/_lab/`` links to them, so that a wheel
carries copies as package data. The server's code, Dockerfile and compose
file are the ``production_server`` package's own. Nothing here assumes a
checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import production_server

LAB = Path(str(resources.files("labkit") / "_lab"))
TEMPLATE_DIR = LAB / "cloud-init"
ANSWERS_DIR = LAB / "answers"
NOTEBOOKS_DIR = LAB / "notebooks"
SERVER_DIR = Path(production_server.__file__).resolve().parent
# Beside a checkout, its sibling folders (the shared data and schemas of a course's machine).
CHECKOUT = Path(__file__).resolve().parent.parent


def shown(path: Path) -> str:
    """How a student names one of the lab's files: from the repository's top, or as the package's."""
    path = Path(path).resolve()
    # The repository's top in a checkout (where _lab's links point), labkit/_lab in a wheel.
    for root in (TEMPLATE_DIR.resolve().parent, SERVER_DIR.parent):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def lab_file(name: str | Path) -> Path:
    """``name`` as a student writes it (``production_server/Dockerfile``, ``cloud-init/worker.yaml.j2``)."""
    name = Path(name)
    if name.is_absolute():
        return name
    for root in (SERVER_DIR.parent, LAB):
        if (root / name).exists():
            return root / name
    return SERVER_DIR.parent / name  # reading it says what is missing
