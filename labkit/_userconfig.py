"""The student's saved choices: a small file outside the repository.

It holds the same names as the environment variables (``LABKIT_BACKEND``,
``LABKIT_OS_IMAGE``, ``OS_CLOUD``...), so there is one vocabulary: the
environment overrides the file, and the file overrides the defaults. It
never holds a secret: names that look like one are refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

from ._errors import ConfigError

CONFIG = "LABKIT_CONFIG"
ALLOWED = re.compile(r"^(LABKIT_[A-Z0-9_]+|OS_CLOUD|OS_REGION_NAME)$")
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
# How to mend the file: the end of every error about a value in it.
FIX = "change it there, or remove it from the file (00-setup's form saves your choices again)."


def path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG):
        return Path(env[CONFIG]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "labkit" / "settings.json"


def load(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The saved variables; an empty dict when nothing was saved.

    A value its variable cannot take is a ConfigError that names the file and
    the variable, and so is a file that is not a JSON object of names and texts.
    """
    file = path(env)
    values = {}
    for name, value in _read(file).items():
        if not ALLOWED.match(name) or SECRET.search(name):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{_where(file)} gives {name} the JSON value {json.dumps(value)}, where it takes "
                              f'text (e.g. "{name}": "..."): {FIX}')
        if want := _expected(name, str(value)):
            raise ConfigError(f"{_where(file)} sets {name}={str(value)!r}, which should be {want}: {FIX}")
        values[name] = str(value)
    return values


def save(values: Mapping[str, object], env: Mapping[str, str] | None = None) -> Path:
    """Merge ``values`` into the file (an empty value removes the name); returns its path.

    A value its variable cannot take is refused, and the file left as it was.
    """
    file = path(env)
    for name, value in values.items():
        if SECRET.search(name):
            raise ConfigError(f"{name} looks like a secret and is never saved: give it at run time instead.")
        if not ALLOWED.match(name):
            raise ConfigError(f"{name} is not a setting labkit saves: use a LABKIT_* name or OS_CLOUD.")
        if want := _expected(name, "" if value is None else str(value)):
            raise ConfigError(f"{name}={str(value)!r} should be {want}: choose another value (nothing was "
                              f"saved to {file}).")
    # The file as it is, not load(): saving a good value over a bad one is how a student mends it.
    merged = {k: v for k, v in _read(file).items() if ALLOWED.match(k) and not SECRET.search(k)}
    for name, value in values.items():
        if value in (None, ""):
            merged.pop(name, None)
        else:
            merged[name] = str(value)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    # Written whole and renamed, so a crash never leaves half a file; 0600 as it names the cloud.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(merged, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, file)
    return file


def _where(file: Path) -> str:
    return f"The settings file {file} ({CONFIG})"


def _read(file: Path) -> dict:
    """The file's JSON object as it is; {} when there is no file."""
    if not file.is_file():
        return {}
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_where(file)} cannot be read as JSON ({exc}): fix it, or delete it and save your "
                          "choices again in 00-setup.") from None
    if not isinstance(saved, dict):
        raise ConfigError(f'{_where(file)} should hold a JSON object of names and values, like {{"LABKIT_BACKEND": '
                          '"local"}: fix it, or delete it and save your choices again in 00-setup.')
    return {str(k): v for k, v in saved.items()}


def _expected(name: str, value: str) -> str | None:
    from ._config import expected  # imported here: _config reads this module

    return expected(name, value) if value else None


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The saved variables overlaid by the real environment: what every ``from_env`` reads."""
    env = os.environ if env is None else env
    return {**load(env), **env}
