"""Settings, read once from ``LABKIT_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import _userconfig
from production_server.engines import ENGINES

from ._errors import ConfigError

# The variables, in one place, so --help texts and docs name the same ones.
HOME = "LABKIT_HOME"
MODEL_DIR = "LABKIT_MODEL_DIR"
DATA_DIR = "LABKIT_DATA_DIR"
BROKER_URL = "LABKIT_BROKER_URL"
BACKEND = "LABKIT_BACKEND"
PORT = "LABKIT_PORT"
HOST = "LABKIT_HOST"
START_TIMEOUT = "LABKIT_START_TIMEOUT"
PREDICT_TIMEOUT = "LABKIT_PREDICT_TIMEOUT"
PROGRESS = "LABKIT_PROGRESS"
ENGINE = "LABKIT_ENGINE"

DEFAULT_NAME = "lab"


def _xdg(variable: str, fallback: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / fallback)


def _number(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: set it to e.g. {default:g}, or unset it.") from None


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "labkit")
    model_dir: Path = field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "labkit" / "model")
    data_dir: Path | None = None
    broker_url: str | None = None
    backend: str = "local"
    port: int = 5100
    host: str = "127.0.0.1"  # the loopback address the local web server listens on
    start_timeout: float = 180.0
    predict_timeout: float = 5.0
    progress: str = "auto"  # auto | bar | lines | off
    engine: str = "keras"  # what the workers run the model with: keras | onnx

    def __post_init__(self) -> None:
        # Accept plain strings for paths, as a student would type them.
        for name in ("home", "model_dir", "data_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value).expanduser())
        if self.engine not in ENGINES:
            raise ConfigError(
                f"{self.engine!r} is not a model engine: choose one of {', '.join(ENGINES)} "
                f"(engine=..., `labkit up --engine`, or {ENGINE})."
            )

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        # The student's saved choices (labkit.ui) under the real environment.
        env = _userconfig.environ() if env is None else dict(env)
        settings = cls()
        changes: dict = {}
        if env.get(HOME):
            changes["home"] = Path(env[HOME]).expanduser()
        if env.get(MODEL_DIR):
            changes["model_dir"] = Path(env[MODEL_DIR]).expanduser()
        if env.get(DATA_DIR):
            changes["data_dir"] = Path(env[DATA_DIR]).expanduser()
        if env.get(BROKER_URL):
            changes["broker_url"] = env[BROKER_URL]
        if env.get(BACKEND):
            changes["backend"] = env[BACKEND]
        if env.get(HOST):
            changes["host"] = env[HOST]
        if env.get(PROGRESS):
            changes["progress"] = env[PROGRESS]
        if env.get(ENGINE):
            changes["engine"] = env[ENGINE]
        changes["port"] = int(_number(env, PORT, settings.port))
        changes["start_timeout"] = _number(env, START_TIMEOUT, settings.start_timeout)
        changes["predict_timeout"] = _number(env, PREDICT_TIMEOUT, settings.predict_timeout)
        return replace(settings, **changes)

    @property
    def deployments_dir(self) -> Path:
        return self.home / "deployments"
