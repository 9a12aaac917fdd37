"""Show the lab's files in a notebook: the cloud-init user-data, the Dockerfile, the hooks.

What a student reads here is exactly what a VM or a container receives:
rendered by the same code, checked by the same checks. Only the display
shortens the release archive's base64 line, which is tens of kilobytes of
noise to a reader.
"""

from __future__ import annotations

import html
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .._config import Settings
from .._files import CHECKOUT, lab_file, shown
from ..infra import cloudinit as _cloudinit

SCHEMA = "cloud-config-v1.schema.json"
LONG_LINE = 160


SCHEMA_FILE = "schema-cloud-config-v1.json"  # its name inside the cloud-init package
# An installed cloud-init (a cloud image, or a machine that has the package).
SYSTEM_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas") / SCHEMA_FILE
VENV_SCHEMA = Path(sys.prefix) / "share" / "cloud-init" / SCHEMA_FILE  # where scripts/setup.sh puts it
SCHEMA_HELP = ("run `bash scripts/setup.sh`, which takes it from Debian's cloud-init package, "
               "or set LABKIT_CLOUDINIT_SCHEMA to a copy of cloud-init's schema-cloud-config-v1.json")


def schema_path() -> Path | None:
    """cloud-init's own JSON schema, wherever it is.

    In order: LABKIT_CLOUDINIT_SCHEMA; the installed cloud-init package's;
    the copy ``scripts/setup.sh`` takes from Debian's package into the
    virtual environment; the project's shared folder beside the repository.
    """
    candidates = [os.environ.get("LABKIT_CLOUDINIT_SCHEMA"), SYSTEM_SCHEMA, VENV_SCHEMA,
                  CHECKOUT.parent / "shared" / "schemas" / SCHEMA]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _shortened(text: str) -> str:
    return "\n".join(
        line if len(line) <= LONG_LINE else f"{line[:80]}... ({len(line):,} characters)"
        for line in text.splitlines()
    )


@dataclass(frozen=True)
class UserData:
    template: str
    text: str
    size: int  # bytes as sent to Nova: after gzip and base64
    problems: tuple[str, ...]
    schema: Path | None  # None: only the size and the YAML were checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def _repr_html_(self) -> str:
        checked = f"cloud-init's schema ({self.schema.name}), YAML and size" if self.schema else (
            f"YAML and size only (cloud-init's schema was not found: {SCHEMA_HELP})")
        verdict = ("valid" if self.ok else "<b>problems</b>: " + "; ".join(html.escape(p) for p in self.problems))
        head = (f"<p><code>{html.escape(self.template)}</code>: {self.size:,} of {_cloudinit.USERDATA_LIMIT:,} "
                f"bytes as sent (gzip, then base64); checked: {checked}; {verdict}.</p>")
        return head + f"<pre style='max-height:30em;overflow:auto'>{html.escape(_shortened(self.text))}</pre>"


def cloud_init(template: str = "single-server", workers: int = 1, settings: Settings | None = None) -> UserData:
    """The user-data a VM would receive from ``template``, with placeholders for the secrets."""
    settings = settings or Settings.from_env()
    text = _cloudinit.render(template, settings.model_dir, workers=workers)
    schema = schema_path()
    problems = _cloudinit.check(text, json.loads(schema.read_text()) if schema else None)
    return UserData(template, text, _cloudinit.encoded_size(text), tuple(problems), schema)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    content: str | None = None  # a file read elsewhere (on a VM); None: read ``path`` here

    @property
    def text(self) -> str:
        return self.content if self.content is not None else self.path.read_text(encoding="utf-8")

    def _repr_html_(self) -> str:
        return f"<p><code>{html.escape(shown(self.path))}</code></p><pre>{html.escape(self.text)}</pre>"


def show_file(path: str | Path) -> SourceFile:
    """A file of the lab (named from the repository's top), for reading in a notebook."""
    return SourceFile(lab_file(path))
