"""Test doubles of what cannot exist on a laptop or in CI: an OpenStack cloud.

``FakeCloud`` answers as Nova, Neutron and Glance do (the ``Cloud``
protocol of ``backends.openstack.cloud``), with servers that are local
deployments; ``MachineCloud`` is the same cloud whose servers are real
systemd machines contextualized by real cloud-init (``labkit.backends.machine``).
The openstack backend talks to them exactly as to ``OpenStackCloud``; only
``backends.from_state`` knows them, to reattach to a deployment on one.
"""
