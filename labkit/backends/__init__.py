"""Backends: where a deployment runs. Each implements ``base.Backend``."""

from __future__ import annotations

from .._errors import ConfigError
from .base import Backend

NAMES = ("local", "openstack", "docker")


def get(name: str) -> Backend:
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    if name == "openstack":
        from .openstack import OpenStackBackend

        return OpenStackBackend()
    if name == "docker":
        from .docker import DockerBackend

        return DockerBackend()
    raise ConfigError(
        f"Unknown backend {name!r}: choose one of {', '.join(NAMES)} "
        "(LABKIT_BACKEND, or backend= in labkit.deploy)."
    )


def from_state(state: dict) -> Backend:
    """The backend of a recorded deployment, talking to the same cloud it was launched on."""
    cloud = state.get("cloud")
    if state["backend"] == "openstack" and cloud and cloud.get("kind") == "fake":
        from .fake_cloud import FakeCloud
        from .openstack import OpenStackBackend

        return OpenStackBackend(connect=lambda: FakeCloud.from_record(cloud))
    return get(state["backend"])
