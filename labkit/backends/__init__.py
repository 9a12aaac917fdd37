"""Backends: where a deployment runs. Each implements ``base.Backend``."""

from __future__ import annotations

from .._errors import ConfigError
from .base import Backend


def get(name: str) -> Backend:
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    raise ConfigError(
        f"Unknown backend {name!r}: this version of labkit has 'local'. "
        "Set LABKIT_BACKEND=local or pass backend='local'."
    )
