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


def path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CONFIG):
        return Path(env[CONFIG]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "labkit" / "settings.json"


def load(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The saved variables; an empty dict when nothing was saved."""
    file = path(env)
    if not file.is_file():
        return {}
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{file} is not a valid settings file ({exc}): fix it, or delete it and save your choices again."
        ) from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{file} should hold a JSON object: delete it and save your choices again.")
    return {str(k): str(v) for k, v in saved.items() if ALLOWED.match(str(k)) and not SECRET.search(str(k))}


def save(values: Mapping[str, object], env: Mapping[str, str] | None = None) -> Path:
    """Merge ``values`` into the file (an empty value removes the name); returns its path."""
    for name in values:
        if SECRET.search(name):
            raise ConfigError(f"{name} looks like a secret and is never saved: give it at run time instead.")
        if not ALLOWED.match(name):
            raise ConfigError(f"{name} is not a setting labkit saves: use a LABKIT_* name or OS_CLOUD.")
    merged = load(env)
    for name, value in values.items():
        if value in (None, ""):
            merged.pop(name, None)
        else:
            merged[name] = str(value)
    file = path(env)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    # Written whole and renamed, so a crash never leaves half a file; 0600 as it names the cloud.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(merged, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, file)
    return file


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The saved variables overlaid by the real environment: what every ``from_env`` reads."""
    env = os.environ if env is None else env
    return {**load(env), **env}
