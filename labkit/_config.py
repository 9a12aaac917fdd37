"""Settings, read once from ``LABKIT_*`` environment variables (over the file 00-setup saves).

Every variable labkit reads is named here, and ``read`` is the one way a
settings class turns them into its fields: ``Settings`` and the openstack
backend's ``CloudSettings`` alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from production_server.contract import ENGINES

from . import _userconfig
from ._errors import ConfigError

# The variables, in one place, so --help texts and docs name the same ones.
HOME = "LABKIT_HOME"
MODEL_DIR = "LABKIT_MODEL_DIR"
DATA_DIR = "LABKIT_DATA_DIR"
MACHINE_IMAGES = "LABKIT_MACHINE_IMAGES"
BROKER_URL = "LABKIT_BROKER_URL"
BACKEND = "LABKIT_BACKEND"
PORT = "LABKIT_PORT"
HOST = "LABKIT_HOST"
START_TIMEOUT = "LABKIT_START_TIMEOUT"
PREDICT_TIMEOUT = "LABKIT_PREDICT_TIMEOUT"
PROGRESS = "LABKIT_PROGRESS"
ENGINE = "LABKIT_ENGINE"
# The openstack backend's (``CloudSettings``): variable -> field.
OS_IMAGE, OS_FLAVOR, OS_NETWORK, OS_KEYPAIR = "LABKIT_OS_IMAGE", "LABKIT_OS_FLAVOR", "LABKIT_OS_NETWORK", "LABKIT_OS_KEYPAIR"
CLOUD_TEMPLATE = "LABKIT_OS_TEMPLATE"
OS_PUBLIC_KEY = "LABKIT_OS_PUBLIC_KEY"
CLOUD = {OS_IMAGE: "image", OS_FLAVOR: "flavor", OS_NETWORK: "network", OS_KEYPAIR: "keypair",
         "LABKIT_OS_FLOATING_POOL": "floating_pool", "LABKIT_OS_ALLOW_CIDR": "allow_cidr",
         CLOUD_TEMPLATE: "template", "LABKIT_OS_SSH_USER": "ssh_user", OS_PUBLIC_KEY: "public_key"}

DEFAULT_NAME = "lab"
PROGRESS_MODES = ("auto", "bar", "lines", "off")

# Settings': variable -> field; the numbers apart, to be checked and converted as numbers.
TEXTS = {HOME: "home", MODEL_DIR: "model_dir", DATA_DIR: "data_dir", MACHINE_IMAGES: "machine_images",
         BROKER_URL: "broker_url", BACKEND: "backend", HOST: "host", PROGRESS: "progress", ENGINE: "engine"}
NUMBERS = {PORT: "port", START_TIMEOUT: "start_timeout", PREDICT_TIMEOUT: "predict_timeout"}


def _xdg(variable: str, fallback: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / fallback)


def _choices(name: str) -> tuple[str, ...] | None:
    if name == BACKEND:
        from .backends import NAMES  # imported here: the backends import this module

        return NAMES
    if name == CLOUD_TEMPLATE:
        from .backends.openstack.backend import TASKS

        return tuple(TASKS)
    return {ENGINE: tuple(ENGINES), PROGRESS: PROGRESS_MODES}.get(name)


def expected(name: str, raw: str) -> str | None:
    """What the variable ``name`` should hold instead of ``raw`` ("a number (e.g. 5100)"); None if ``raw`` will do.

    One rule per variable, for the environment and the settings file alike.
    """
    if name in NUMBERS:
        try:
            float(raw)
        except ValueError:
            return f"a number (e.g. {getattr(Settings(), NUMBERS[name]):g})"
        return None
    choices = _choices(name)
    if choices is None or raw in choices:
        return None
    return "one of " + ", ".join(choices)


def read(names: Mapping[str, str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fields that the variables ``names`` (variable -> field) set, as text; each value checked first.

    ``env``: the variables to read (default: the environment over the settings file).
    """
    env = _userconfig.environ() if env is None else dict(env)
    for name in names:
        # The file's values were checked as it was read: what is wrong here comes from the environment.
        if env.get(name) and (want := expected(name, env[name])):
            raise ConfigError(f"The environment variable {name}={env[name]!r} should be {want}: "
                              "change it, or unset it.")
    return {field: env[name] for name, field in names.items() if env.get(name)}


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state") / "labkit")
    model_dir: Path = field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "labkit" / "model")
    data_dir: Path | None = None
    # The machine backend's image, built once (a cache: it can always be built again).
    machine_images: Path = field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "labkit" / "machine-images")
    broker_url: str | None = None
    backend: str = "local"
    port: int = 5100
    host: str = "127.0.0.1"  # the loopback address the local web server listens on
    start_timeout: float = 180.0
    predict_timeout: float = 5.0
    progress: str = "auto"  # auto | bar | lines | off
    engine: str = "keras"  # what the workers run the model with: keras | onnx

    def __post_init__(self) -> None:
        # Accept plain strings for paths, as a student would type them; made absolute, because the
        # deployment's programs run in folders of their own (a relative home broke supervisord).
        for name in ("home", "model_dir", "data_dir", "machine_images"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser().absolute())
        if self.engine not in ENGINES:
            raise ConfigError(
                f"{self.engine!r} is not a model engine: choose one of {', '.join(ENGINES)} "
                f"(engine=..., `labkit up --engine`, or {ENGINE})."
            )
        if self.progress not in PROGRESS_MODES:
            raise ConfigError(
                f"{self.progress!r} is not a progress display: choose one of {', '.join(PROGRESS_MODES)} "
                f"(progress=..., or {PROGRESS})."
            )

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        changes: dict = read(TEXTS, env)
        changes.update({attr: float(value) for attr, value in read(NUMBERS, env).items()})
        if "port" in changes:
            changes["port"] = int(changes["port"])
        return replace(cls(), **changes)

    @property
    def deployments_dir(self) -> Path:
        return self.home / "deployments"
