"""Layer 3: a smoke test against a real OpenStack cloud, run only when OS_CLOUD names one.

    OS_CLOUD=mycloud LABKIT_OS_NETWORK=... LABKIT_OS_IMAGE=... LABKIT_OS_FLAVOR=... \\
        .venv/bin/python -m pytest -m openstack tests/test_openstack_real.py

It launches one VM (10-15 minutes of contextualization), predicts, and
removes everything it made, also when it fails.
"""

from __future__ import annotations

import os

import pytest

import labkit

# Read at import: the autouse clean_environ fixture clears OS_* and LABKIT_* before each test.
REAL = {k: v for k, v in os.environ.items() if k.startswith(("OS_", "LABKIT_OS_"))}

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.skipif("OS_CLOUD" not in REAL, reason="no real cloud: set OS_CLOUD to run the smoke test"),
]


def test_a_real_vm_serves_predictions_and_leaves_nothing(settings, monkeypatch):
    from labkit.backends.openstack import cleanup
    from labkit.backends.openstack.backend import CloudSettings, OpenStackBackend

    for key, value in REAL.items():
        monkeypatch.setenv(key, value)
    backend = OpenStackBackend(cloud_settings=CloudSettings.from_env())
    lab = labkit.deploy(backend, name="smoke", workers=1, settings=settings)
    try:
        assert lab.status().healthy
        assert lab.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])["prediction"].tolist() in ([0], [1])
        print("\n" + "\n".join(f"{s.what}: {s.seconds:.0f} s" for s in lab.steps))
    finally:
        lab.destroy()
    assert not cleanup.find(backend.cloud, backend.cloud_settings.owner).servers


def test_a_real_worker_vm_joins_and_a_baked_image_deploys_faster(settings, monkeypatch):
    from dataclasses import replace

    from labkit import compare_steps
    from labkit.backends.openstack import cleanup
    from labkit.backends.openstack.backend import CloudSettings, OpenStackBackend

    for key, value in REAL.items():
        monkeypatch.setenv(key, value)
    backend = OpenStackBackend(cloud_settings=CloudSettings.from_env())
    lab = labkit.deploy(backend, name="smoke-out", workers=1, settings=settings)
    fast = None
    try:
        lab.scale_out(1)
        assert len(lab.status().workers_by_host()) == 2
        lab.scale_out(0)
        image = lab.bake("labkit-smoke-image")
        assert lab.status().healthy
        baked = OpenStackBackend(cloud_settings=replace(backend.cloud_settings, image=image["name"]))
        fast = labkit.deploy(baked, name="smoke-baked", workers=1, settings=settings)
        assert fast.predict([[6, 148, 72, 35, 0, 33.6, 0.627, 50]])["prediction"].tolist() in ([0], [1])
        print("\n" + compare_steps({"stock image": lab, "baked image": fast}).to_string())
    finally:
        if fast is not None:
            fast.destroy()
        lab.destroy()
    left = cleanup.find(backend.cloud, backend.cloud_settings.owner)
    assert not left.servers and not [i for i in left.images if i["name"] == "labkit-smoke-image"]
