"""The machine backend: the lab's VMs as local systemd machines, booted with systemd-nspawn.

    image.py     the Debian image, built once (a cloud image's contents: systemd, cloud-init, SSH)
    network.py   each machine's namespace and address on the lab network: NAT out, a security group in
    machine.py   one machine: a copy of the image booted from a NoCloud seed, its console followed
    backend.py   ``MachineBackend``: Task 1 on such a machine, from the very user-data a VM gets
    standins.py  the Compose stack's base images, built here when no registry answers
    cleanup.py   ``labkit cleanup --machines``: what a crash left behind

They need root and Linux with systemd-nspawn, debootstrap and nftables:
``missing()`` says which of these this host lacks.
"""

from __future__ import annotations

import os
import shutil

from .image import Image
from .image import ensure as ensure_image
from .machine import Machine, Seed
from .network import Link

# command -> the Debian package that has it
TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nft": "nftables",
         "ip": "iproute2", "nsenter": "util-linux", "ssh-keygen": "openssh-client"}


def missing() -> list[str]:
    """What this host lacks to run machines, each as "what (how to get it)"; empty when it can."""
    problems = []
    if os.uname().sysname != "Linux":
        return ["Linux (machines are systemd-nspawn containers)"]
    if os.geteuid() != 0:
        problems.append("root (run labkit as root, e.g. with sudo)")
    packages = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None
                       and not os.path.exists(f"/usr/sbin/{tool}") and not os.path.exists(f"/usr/bin/{tool}")})
    if packages:
        problems.append(f"{', '.join(packages)} (`apt-get install {' '.join(packages)}`)")
    return problems


__all__ = ["Image", "Link", "Machine", "Seed", "ensure_image", "missing"]
