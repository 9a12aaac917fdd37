"""One local machine: a copy of the image, booted with systemd-nspawn, contextualized by cloud-init.

A machine is what a VM is to the lab: real systemd as PID 1, real cloud-init
reading the user-data from its NoCloud seed
(``/var/lib/cloud/seed/nocloud/{meta-data,user-data}``: the instance id, the
host name and the SSH key, then the very bytes Nova would serve), sshd, and
an address of its own on the lab network. Its console is a file
(``console.log``): nspawn's ``--console=read-only`` copies the machine's
``/dev/console`` there, so cloud-init's output and the ``[labkit] step``
markers land in it as they are printed, as in a cloud's console log.

nspawn runs in a session of its own, so the machine outlives the labkit
command that booted it (``labkit up`` returns; the machine stays). SIGTERM
to nspawn powers the machine off cleanly; what does not stop in time is
killed with its PID 1, which takes every process of the machine with it.

Docker inside (Task 2) needs four settings of nspawn, found in real runs on
this kind of host: the unified cgroup hierarchy (the host's v1 controllers
are read-only inside), writable /proc/sys (dockerd sets ip_forward), all
capabilities, and the keyring and bpf system calls.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..._errors import MachineError
from ...infra import procs
from . import network
from .image import Image

NSPAWN = "systemd-nspawn"
NAME_PREFIX = "labkit-"  # every machine's name starts so: `labkit cleanup` finds them by it


@dataclass(frozen=True)
class Seed:
    """What cloud-init's NoCloud data source reads, as a cloud's metadata service would serve it."""

    instance_id: str
    hostname: str
    public_key: str
    userdata: bytes  # as sent to Nova: gzip-compressed cloud-config, which cloud-init unpacks itself

    def meta_data(self) -> str:
        return (f"instance-id: {self.instance_id}\nlocal-hostname: {self.hostname}\n"
                f"public-keys:\n  - {self.public_key}\n")


class Machine:
    """A booted machine; ``to_dict``/``from_dict`` keep it in a deployment's state."""

    def __init__(self, name: str, folder: Path, link: network.Link, proc: procs.Proc | None = None):
        self.name = name
        self.folder = Path(folder)
        self.link = link
        self.proc = proc

    def __repr__(self) -> str:
        return f"<Machine {self.name} {self.address}>"

    @property
    def root(self) -> Path:
        return self.folder / "rootfs"

    @property
    def console_file(self) -> Path:
        return self.folder / "console.log"

    @property
    def address(self) -> str:
        return self.link.address

    # -- life ---------------------------------------------------------------------
    @classmethod
    def boot(cls, name: str, folder: Path, image: Image, seed: Seed, files: dict[str, bytes | Path] | None = None,
             docker: bool = False) -> "Machine":
        """Copy the image into ``folder``, seed it, put it on the lab network and boot it.

        ``files`` are laid on the copy's disk before boot (path in the machine -> bytes, or a host file), as a
        cloud's image carries what its users put there. Returns once nspawn runs; cloud-init then
        runs in the machine: follow ``console()``.
        """
        if not name.startswith(NAME_PREFIX):
            raise ValueError(f"a machine's name starts with {NAME_PREFIX!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        root = folder / "rootfs"
        done = subprocess.run(["cp", "-a", "--reflink=auto", str(image.root), str(root)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise MachineError(f"Copying the machine image failed: {done.stderr.strip()}. "
                               "Is there room on the disk (`df -h`)?")
        seed_dir = root / "var/lib/cloud/seed/nocloud"
        seed_dir.mkdir(parents=True, exist_ok=True)
        (seed_dir / "meta-data").write_text(seed.meta_data())
        (seed_dir / "user-data").write_bytes(seed.userdata)
        for path, data in (files or {}).items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):  # a large file: copied, never read into memory
                shutil.copyfile(data, target)
            else:
                target.write_bytes(data)
        shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")  # the host's resolver, as the NAT reaches it
        link = network.attach()
        machine = cls(name, folder, link)
        try:
            machine.proc = procs.spawn("machine", machine._command(docker), machine._env(docker),
                                        machine.console_file)
            if not procs.wait_until(lambda: machine.leader() is not None or not machine.proc.alive(), 30, 0.1) \
                    or machine.leader() is None:
                raise MachineError(f"The machine {name} did not start: {procs.tail(machine.console_file, 15)}")
        except BaseException:
            machine.destroy()
            raise
        return machine

    def _command(self, docker: bool) -> list[str]:
        command = [NSPAWN, "--boot", f"--directory={self.root}", f"--machine={self.name}", "--register=no",
                   "--keep-unit", f"--network-namespace-path={self.link.netns_path}", "--resolv-conf=off",
                   "--console=read-only", "--link-journal=no"]
        if docker:
            command += ["--capability=all", "--system-call-filter=@keyring bpf"]
        return command

    @staticmethod
    def _env(docker: bool) -> dict:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}
        if docker:
            env.update(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1", SYSTEMD_NSPAWN_API_VFS_WRITABLE="1")
        return env

    def leader(self) -> psutil.Process | None:
        """The machine's PID 1 (systemd), as the host sees it."""
        nspawn = self.proc.handle() if self.proc else None
        if nspawn is None:
            return None
        # Until it has exec'd the machine's init, nspawn's forked child still is nspawn: not yet the leader.
        try:
            for child in nspawn.children(recursive=True):
                parent = child.parent()  # None if it ended a moment ago: the fork, once init runs
                if child.name() != NSPAWN and parent is not None and parent.name() == NSPAWN:
                    return child
        except psutil.Error:
            pass
        return None

    def running(self) -> bool:
        return self.leader() is not None

    def destroy(self, timeout: float = 60.0) -> None:
        """Power off (SIGTERM to nspawn), kill what is left, leave the network, delete the copy."""
        nspawn = self.proc.handle() if self.proc else None
        # All below nspawn, taken now: a machine whose init never started has only nspawn's fork there.
        below = _below(nspawn)
        if nspawn is not None:
            nspawn.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs([nspawn], timeout=timeout)
            if alive:  # a machine that does not power off: its PID 1 takes its namespace with it
                for process in [*below, nspawn]:
                    try:
                        process.kill()
                    except psutil.Error:
                        pass
                psutil.wait_procs(alive, timeout=10)
            procs.reap(nspawn)
        # A second destroy (a stale record) must not take the namespace of another machine that got
        # this slot since the first one freed it.
        option = f"--network-namespace-path={self.link.netns_path}"
        if not any(option in process.info["cmdline"] for process in running_machines()):
            network.detach(self.link)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- inside -------------------------------------------------------------------
    def console(self) -> str:
        try:
            return self.console_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def run(self, command: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``command`` inside the machine as root (nsenter into its PID 1's namespaces)."""
        leader = self.leader()
        if leader is None:
            raise MachineError(f"The machine {self.name} is not running: `labkit status` says more.")
        return subprocess.run(["nsenter", "-t", str(leader.pid), "-a", *command], capture_output=True, text=True,
                              timeout=timeout)

    # -- state --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "folder": str(self.folder), "index": self.link.index,
                "address": self.address, "proc": self.proc.to_dict() if self.proc else None}

    @classmethod
    def from_dict(cls, data: dict) -> "Machine":
        proc = procs.Proc.from_dict(data["proc"]) if data.get("proc") else None
        return cls(data["name"], Path(data["folder"]), network.Link(int(data["index"])), proc)


def running_machines() -> list[psutil.Process]:
    """The nspawn processes of the lab's machines running on this host, whoever booted them (``labkit cleanup``)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if cmdline and Path(cmdline[0]).name == NSPAWN and any(
                arg.startswith(f"--machine={NAME_PREFIX}") for arg in cmdline):
            found.append(process)
    # Until the machine's init has exec'd, nspawn's forked children still carry its command line:
    # only the outermost one is the machine.
    pids = {process.pid for process in found}
    return [process for process in found if _parent_pid(process) not in pids]


def _below(process: psutil.Process | None) -> list[psutil.Process]:
    try:
        return process.children(recursive=True) if process is not None else []
    except psutil.Error:
        return []


def _parent_pid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None

