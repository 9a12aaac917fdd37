"""The OpenStack backend (Task 1 on a cloud): VMs contextualized by cloud-init.

    backend.py  ``OpenStackBackend``: launch, watch the console, scale, bake, CI/CD's sides
    cloud.py    the ``Cloud`` protocol and ``OpenStackCloud``, its openstacksdk adapter
    cleanup.py  ``labkit cleanup``: find and delete what the lab left on a cloud

The test doubles of ``Cloud`` live in ``labkit.testing``.
"""
