"""The machine image: a Debian root file system that looks like a cloud image, built once.

What a cloud's Debian image has, and no more: systemd, cloud-init, SSH,
sudo and the usual base tools, with no SSH host keys, no machine id and
no hostname (cloud-init makes them at first boot, per instance). The
lab's packages are *not* in it: the user-data installs them, as on a VM,
which is the whole point of Task 1.

The image inherits the host's way out, so apt and pip inside reach the
package mirrors as the host does (a campus or corporate proxy that
re-signs TLS, or this machine's registries): the host's apt sources and
``Acquire::`` settings, its extra CA certificates and its pip configuration.

Built with ``debootstrap`` into a folder beside the cache and renamed when
complete, under a lock: a build that dies leaves nothing a later run would
trust. Measured here: about 60 s (debootstrap 42 s, the chroot's apt 20 s).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..._errors import MachineError
from ...notebook.progress import Progress

SUITE = "bookworm"  # the host's release here, and Python 3.11, which the pinned requirements need
MIRROR = "http://deb.debian.org/debian"
# What Debian's genericcloud image has that the lab's templates may rely on (or must install).
PACKAGES = ("cloud-init", "openssh-server", "sudo", "locales", "procps", "netbase", "gnupg", "udev", "kmod",
            "curl", "iproute2", "python3")
BASE = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
RECIPE = 1  # bump when the steps below change: a cached image of an older recipe is built again
# cloud-init reads only the NoCloud seed (no network probing for a metadata service), leaves the
# network as labkit set it up outside, and names the host in /etc/hosts (sudo warns otherwise).
CLOUD_CFG = """\
# labkit: a local machine, contextualized from the NoCloud seed labkit writes before each boot
datasource_list: [NoCloud, None]
network: {config: disabled}
manage_etc_hosts: localhost
"""
STEPS = ("download a Debian base system (debootstrap)", "install cloud-init and SSH in the image",
         "make it look like a cloud image")


@dataclass(frozen=True)
class Image:
    """A built image: ``root`` is the file system that each machine gets a copy of."""

    root: Path
    suite: str
    built_in_s: float | None  # None: it was in the cache


def recipe_key(suite: str = SUITE) -> str:
    text = json.dumps({"suite": suite, "packages": PACKAGES, "base": BASE, "recipe": RECIPE,
                       "cloud_cfg": CLOUD_CFG}, sort_keys=True)
    return f"debian-{suite}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def ensure(cache: Path, progress: Progress | None = None, suite: str = SUITE) -> Image:
    """The cached image, built first if it is not there (about a minute, with progress)."""
    folder = cache / recipe_key(suite)
    took: list[float] = []  # the build's own time, not the wait for another process's build

    def build(partial: Path) -> None:
        started = time.monotonic()
        _build(partial / "rootfs", suite, progress or Progress(len(STEPS), "machine image", "off"))
        took.append(time.monotonic() - started)
        (partial / "complete").write_text(f"built in {took[0]:.0f} s\n")

    build_once(cache, folder, build, after=lambda: prune(cache, keep=folder.name, suite=suite))
    return Image(folder / "rootfs", suite, took[0] if took else None)


def build_once(cache: Path, target: Path, build: Callable[[Path], None],
               after: Callable[[], object] | None = None) -> bool:
    """Make ``target`` in ``cache`` with ``build(partial)``, unless it is there; True if it was built here.

    Under the cache's lock: another process may be building it, so wait, then use its build. The
    build goes to ``<target>.partial``, renamed into place when done: a build that crashed never
    stands under the real name. ``after`` runs under the lock too (removing older recipes' builds).
    """
    if target.exists():
        return False
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return False
        partial = target.with_name(f"{target.name}.partial")
        _remove(partial)
        build(partial)
        _remove(target)
        partial.rename(target)
        if after is not None:
            after()
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(cache: Path, keep: str, suite: str = SUITE) -> list[str]:
    """Remove the images of older recipes of ``suite`` (400 MB each); return their names.

    Safe while machines run: each deployment boots a copy of its own, never the image.
    Called under the cache's lock, once a new image is complete.
    """
    removed = []
    for old in sorted(cache.glob(f"debian-{suite}-*")):
        if old.is_dir() and old.name != keep and not old.name.startswith(f"{keep}."):
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old.name)
    return removed


def _build(root: Path, suite: str, progress: Progress) -> None:
    mirror = host_mirror() or MIRROR
    with progress.step(STEPS[0]):
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE)}", suite, str(root), mirror],
             "debootstrap", timeout=1200)
    with progress.step(STEPS[1]):
        inherit_way_out(root, suite)
        # debootstrap cannot resolve cloud-init's virtual dependencies; apt in the chroot can.
        _chroot(root, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                      f"--no-install-recommends {' '.join(PACKAGES)} && update-ca-certificates", timeout=1200)
    with progress.step(STEPS[2]):
        (root / "etc/locale.gen").write_text("en_US.UTF-8 UTF-8\n")  # cloud-init's locale module needs it
        _chroot(root, "locale-gen >/dev/null && update-locale LANG=en_US.UTF-8 && apt-get clean", timeout=300)
        (root / "etc/cloud/cloud.cfg.d/99-labkit.cfg").write_text(CLOUD_CFG)
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # made per instance at first boot, as on a cloud image
        (root / "etc/machine-id").write_text("")  # systemd makes one at boot
        (root / "etc/hostname").unlink(missing_ok=True)  # cloud-init sets local-hostname
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True)


def host_mirror() -> str | None:
    """The Debian mirror the host's apt uses (deb822 or one-line sources), if it names one."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        text = path.read_text(errors="replace")
        found = re.findall(r"^\s*URIs:\s*(\S+/debian)/?\s*$", text, re.M) + \
            re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s", text, re.M)
        if found:
            return found[0]
    return None


def inherit_way_out(root: Path, suite: str) -> None:
    """The host's apt sources and settings, CA certificates and pip configuration, into ``root``."""
    apt = root / "etc/apt"
    if suite == _host_suite():
        for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
            if path.is_file() and path.name.endswith((".list", ".sources")) and _is_debian(path):
                target = apt / path.relative_to("/etc/apt")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        if any((apt / "sources.list.d").glob("*")) and (apt / "sources.list").is_file():
            (apt / "sources.list").unlink()  # debootstrap's own line would list the suite twice
    for path in Path("/etc/apt/apt.conf.d").glob("*"):
        # Proxies and the like; the host's docker-clean and autoremove settings are not the image's business.
        if path.is_file() and "Acquire::" in path.read_text(errors="replace"):
            shutil.copy2(path, apt / "apt.conf.d" / path.name)
    certs = Path("/usr/local/share/ca-certificates")
    for cert in certs.glob("*.crt") if certs.is_dir() else []:
        target = root / "usr/local/share/ca-certificates" / cert.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cert, target)
    for path in (Path("/etc/pip.conf"), Path("/etc/xdg/pip")):
        target = root / path.relative_to("/")
        if path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        elif path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)


def _host_suite() -> str | None:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=(\S+)$", text, re.M)
    return match.group(1) if match and "ID=debian" in text else None


def _is_debian(path: Path) -> bool:
    text = path.read_text(errors="replace")
    return "/debian" in text and "deb" in text


def _chroot(root: Path, script: str, timeout: float) -> None:
    # The host's resolver, for apt inside; the machine gets its own at boot.
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    _run(["chroot", str(root), "sh", "-c", script], "the image's apt-get", timeout=timeout, env=env)


def _run(cmd: list[str], what: str, timeout: float, env: dict | None = None) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise MachineError(f"Building the machine image: {what} took over {timeout:.0f} s; check the network "
                           "(the host's apt must reach its mirror), then retry.") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise MachineError(f"Building the machine image: {what} failed (exit {done.returncode}). "
                           f"Its last lines:\n{tail}\nFix that (is the host's apt working?), then retry.")
