"""What each backend can do is declared (base.Backend, base.VMs, base.CICD), never probed by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labkit
from labkit import backends
from labkit._errors import CICDError, ConfigError
from labkit.backends.docker.backend import DockerBackend
from labkit.backends.local.backend import LocalBackend
from labkit.backends.machine.backend import MachineBackend
from labkit.backends.openstack.backend import OpenStackBackend
from production_server.engines import ENGINES

REPO = Path(__file__).resolve().parent.parent
ALL = [LocalBackend(), DockerBackend(), MachineBackend(), OpenStackBackend(connect=lambda: None)]


@pytest.mark.parametrize("backend", ALL, ids=lambda b: b.name)
def test_every_backend_says_which_engines_it_serves(backend):
    assert backend.engines and set(backend.engines) <= set(ENGINES)


@pytest.mark.parametrize("backend", ALL, ids=lambda b: b.name)
def test_only_the_cloud_has_vms_and_ci_cd_runs_locally_and_on_the_cloud(backend):
    assert isinstance(backend, backends.VMs) == (backend.name == "openstack")
    assert isinstance(backend, backends.CICD) == (backend.name in ("local", "openstack"))


def test_scale_out_and_bake_without_vms_say_what_to_do_instead(settings):
    from labkit._deploy import Deployment
    from labkit._state import RunDir

    # A recorded local deployment, never started: the refusal comes before any work or lock.
    lab = Deployment(RunDir(settings.deployments_dir, "never-started"), {"backend": "local", "id": "0", "name": "never-started"},
                     settings)
    with pytest.raises(ConfigError, match=r"The local backend cannot scale out: that needs VMs .* use scale\(n\)"):
        lab.scale_out(2)
    with pytest.raises(ConfigError, match=r"The local backend cannot bake: that needs VMs"):
        lab.bake()
    assert not (settings.deployments_dir / "never-started").exists()


def test_ci_cd_on_a_backend_without_it_is_refused_with_the_backends_that_have_it(monkeypatch, settings):
    class Attached:
        backend = DockerBackend()

    monkeypatch.setattr(labkit.cicd._pipeline, "attach_deployment", lambda name, settings: Attached())
    with pytest.raises(CICDError, match="CI/CD is built for the local and OpenStack backends, not 'docker'"):
        labkit.cicd.init(settings=settings)


def test_no_backend_is_probed_with_getattr_or_hasattr():
    """Capabilities are protocols: nothing in labkit asks an object by name for a backend's member."""
    from labkit.backends import base

    members = {name for protocol in (base.Backend, base.VMs, base.CICD)
               for name in [*vars(protocol), *protocol.__annotations__] if not name.startswith("_")} - {"name"}
    assert {"engines", "scale_out", "bake", "prepare_cicd", "serve_model_from"} <= members
    probes = []
    for path in (REPO / "labkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr") \
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in members:
                probes.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert probes == []
