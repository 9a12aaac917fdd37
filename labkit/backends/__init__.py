"""Backends: where a deployment runs. Each implements ``base.Backend``, and some ``base.VMs`` or ``base.CICD``."""

from __future__ import annotations

from typing import Any, Mapping

from .._errors import ConfigError
from .base import CICD, Backend, State, VMs

__all__ = ["Backend", "CICD", "VMs", "NAMES", "TEMPLATED", "get", "from_state"]

NAMES = ("local", "docker", "openstack", "machine")  # as the lab meets them
TEMPLATED = ("openstack", "machine")  # the backends that boot a VM from a template of cloud-init/


def get(name: str, template: str | None = None, cloud: Mapping[str, str] | None = None) -> Backend:
    """The backend called ``name``; ``template`` is the VM it boots (openstack and machine only).

    ``cloud``: what to launch with on OpenStack (``CloudSettings`` fields: image, flavor, network,
    keypair), over the saved settings; the other backends launch nothing there and ignore it.
    """
    if template is not None and name not in TEMPLATED:
        raise ConfigError(f"The {name} backend runs the production server as it is, without a VM template: "
                          f"template= applies to {' and '.join(TEMPLATED)}.")
    if name == "machine":
        from .machine.backend import MachineBackend

        return MachineBackend(template or "single-server")
    if name == "local":
        from .local.backend import LocalBackend

        return LocalBackend()
    if name == "openstack":
        from dataclasses import replace

        from .openstack.backend import CloudSettings, OpenStackBackend

        chosen: dict[str, Any] = {**(cloud or {}), **({"template": template} if template else {})}
        return OpenStackBackend(cloud_settings=replace(CloudSettings.from_env(), **chosen))
    if name == "docker":
        from .docker.backend import DockerBackend

        return DockerBackend()
    raise ConfigError(
        f"Unknown backend {name!r}: choose one of {', '.join(NAMES)} "
        "(LABKIT_BACKEND, or backend= in labkit.deploy)."
    )


def from_state(state: State) -> Backend:
    """The backend of a recorded deployment, talking to the same cloud it was launched on."""
    cloud = state.get("cloud")
    if state["backend"] == "openstack" and cloud and cloud.get("kind") in ("fake", "machines"):
        from ..testing.fake_cloud import FakeCloud
        from ..testing.machine_cloud import MachineCloud
        from .openstack.backend import OpenStackBackend

        kind: type[FakeCloud] = MachineCloud if cloud["kind"] == "machines" else FakeCloud
        return OpenStackBackend(connect=lambda: kind.from_record(cloud))
    return get(state["backend"], template=state.get("template") if state["backend"] == "machine" else None)
