"""The machine backend: Task 1 on a local systemd machine, contextualized by real cloud-init.

What the OpenStack backend does with a VM, on this host: the same rendered
user-data, gzip-compressed as Nova would get it, read by the machine's own
cloud-init from its NoCloud seed; the VM's steps (apt, pip, npm, RabbitMQ,
systemd units) run for real and print their markers to the console, which
labkit follows with the same watcher; workers are scaled and logs read
through the machine's systemd over SSH, with a key made for the deployment,
as the image's default user (``debian``), exactly as on a VM.

The data set reaches the machine from the host, on its disk before boot
(as a cloud image could carry it): the public mirror the VM template would
download from is not reachable everywhere (it is not here).

Task 2 (``template="docker-server"``) boots a Debian 13 machine (its Docker
Compose is v2; Debian 12's is v1) with the settings Docker needs inside
systemd-nspawn; Compose inside it is driven over SSH as on a VM. Where no
container registry answers, its Docker gets stand-ins for the base images
(``labkit.backends.machine.standins``).

It needs root and Linux with systemd-nspawn, debootstrap and nftables
(``labkit.backends.machine.missing()``); the image is built once (about a minute)
and cached in ``~/.cache/labkit/machine-images`` (``LABKIT_MACHINE_IMAGES``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from ..._config import Settings
from ..._errors import ConfigError, LabkitError, MachineError, PrerequisiteMissing, ScaleError
from ..._state import RunDir
from ...infra import cloudinit, health
from ...infra import console as _console
from ..base import ProcessRow, State, new_state, url_of
from ...notebook.progress import Progress
from ..openstack.backend import TASKS, ComposeOverSSH, SystemdOverSSH, render_checked
from . import ensure_image, missing, standins
from .image import SUITE as TASK_1_SUITE
from .machine import NAME_PREFIX, Machine, Seed

WEB_PORT = 5100
USER = "debian"  # the default user of Debian's cloud images, which cloud-init gives the key
STEPS = [
    "check that this host can run machines",
    "build the machine image (once: about a minute)",
    "render the user-data and make the deployment's SSH key",
    "boot the machine",
]
LAST_STEP = "wait for the server to answer on port 5100"
STAND_INS = "stand-ins for the Docker base images, where no registry answers (once: about a minute)"
CONTEXTUALIZE_TIMEOUT = 1800.0  # seconds for the machine's own steps: apt and pip over a slow mirror
HEALTH_TIMEOUT = 300.0
DATA_ON_MACHINE = "/opt/labkit/cache/labkit/pima-indians-diabetes.csv"  # where the data-set step looks first
DATA_IN_BUILD_CONTEXT = "/opt/labkit/app/data/pima-indians-diabetes.csv"  # the Dockerfile's COPY data/
DOCKER_SUITE = "trixie"  # Compose v2 in Debian's packages; Task 1 keeps the image module's suite


class MachineBackend:
    name = "machine"
    engines = ("keras",)  # its templates install the Keras worker only, as the openstack backend's

    def __init__(self, template: str = "single-server"):
        if template not in TASKS:
            raise ConfigError(f"No VM template {template!r}: choose one of {', '.join(TASKS)} (--template).")
        self.template = template
        self.docker = template == "docker-server"

    # -- up ---------------------------------------------------------------
    def plan_steps(self, workers: int) -> list[str]:
        # The machine's own steps join when its first marker says how many.
        return [*STEPS[:2], *([STAND_INS] if self.docker else []), *STEPS[2:], LAST_STEP]

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> State:
        with progress.step(STEPS[0]):
            if problems := missing():
                raise PrerequisiteMissing("The machine backend needs " + "; ".join(problems)
                                          + ". Or use the local backend, which needs none of it.")
        with progress.step(STEPS[1]):
            image = ensure_image(settings.machine_images, suite=DOCKER_SUITE if self.docker else TASK_1_SUITE)
        files = lab_files(settings, self.template)
        if self.docker:
            with progress.step(STAND_INS):
                if not standins.registry_reachable():
                    files.update(standins.machine_files(standins.ensure(settings.machine_images)))
        secrets = cloudinit.Secrets.generate()
        run.create()
        state = new_state(run, self.name, workers=workers, template=self.template, address=None, machine=None,
                          broker={"private": True, "url": None, "user": secrets.broker_user,
                                  "password": secrets.broker_password})
        run.write(state)
        with progress.step(STEPS[2]):
            userdata = render_checked(self.template, settings, run.name, workers, secrets)
            public_key = make_key(run.path / "ssh")
            seed = Seed(instance_id=f"{run.name}-{state['id']}", hostname=f"{NAME_PREFIX}{run.name}",
                        public_key=public_key,
                        userdata=gzip.compress(userdata.encode(), mtime=0))  # the bytes Nova would serve
        with progress.step(STEPS[3]):
            machine = Machine.boot(f"{NAME_PREFIX}{run.name}", run.path / "machine", image, seed,
                                   files=files, docker=self.docker)
            state.update({"machine": machine.to_dict(), "address": machine.address,
                          "url": f"http://{machine.address}:{WEB_PORT}"})
            run.write(state)  # recorded at once: `labkit down` finds the machine
        _console.follow(machine.console, progress, CONTEXTUALIZE_TIMEOUT, poll=1.0, what="VM",
                        alive=machine.running)
        _trust_host_keys(machine, run.path / "ssh" / "known_hosts")
        with progress.step(LAST_STEP):
            health.wait_or_raise(str(state["url"]), workers, HEALTH_TIMEOUT, MachineError,
                                   advice="Its steps are done: see `labkit logs`.")
        return state

    # -- the machine's services ---------------------------------------------
    def services(self, run: RunDir, state: State) -> SystemdOverSSH | ComposeOverSSH:
        """The machine's systemd units (Task 1) or its Compose project (Task 2), over SSH as on a VM."""
        from ...infra.ssh import SSH

        folder = run.path / "ssh"
        if not (address := state.get("address")):
            raise MachineError(f"The machine of {state['name']!r} has no address yet: it is still booting, or "
                               "its boot failed; `labkit logs` shows its console.")
        ssh = SSH(address, user=USER, key_file=folder / "id_ed25519", known_hosts=folder / "known_hosts")
        if state.get("template") == "docker-server":
            return ComposeOverSSH(ssh, state["name"], secrets=(state["broker"]["password"],))
        return SystemdOverSSH(ssh)

    def scale(self, run: RunDir, state: State, workers: int) -> State:
        if not state.get("address"):
            raise ScaleError("The machine has no address yet: wait for `labkit up` to finish, then scale.")
        self.services(run, state).scale_workers(state["workers"], workers)
        state["workers"] = workers
        run.write(state)
        health.wait_or_raise(url_of(state), workers, HEALTH_TIMEOUT, ScaleError, advice="See `labkit logs`.")
        return state

    def processes(self, state: State) -> list[ProcessRow]:
        machine = self._machine(state)
        if machine is None:
            return []
        running = machine.running()
        return [{"role": "machine", "id": machine.name, "state": "running" if running else "stopped",
                 "alive": running, "address": machine.address}]

    def logs(self, run: RunDir, state: State, lines: int) -> dict[str, str]:
        machine = self._machine(state)
        parts = {"console": "\n".join(machine.console().splitlines()[-lines:]) if machine else ""}
        if machine is not None and machine.running() and (run.path / "ssh" / "known_hosts").is_file():
            try:
                parts.update(self.services(run, state).logs(lines))
            except LabkitError as exc:  # sshd may not be up yet: the console still helps
                parts["services"] = f"(not reachable: {exc})"
        return parts

    def running(self, state: State) -> bool:
        machine = self._machine(state)
        return machine is not None and machine.running()

    def down(self, run: RunDir, state: State) -> None:
        if machine := self._machine(state):
            machine.destroy()

    @staticmethod
    def _machine(state: State) -> Machine | None:
        return Machine.from_dict(record) if (record := state.get("machine")) else None


def lab_files(settings: Settings, template: str = "single-server") -> dict[str, bytes | Path]:
    """What the lab puts on a machine's disk before it boots: the data set, where its step looks first
    (for docker-server: in the image's build context, where the Dockerfile copies it from)."""
    from production_server import data

    where = DATA_IN_BUILD_CONTEXT if template == "docker-server" else DATA_ON_MACHINE
    return {where: data.locate(folder=settings.data_dir).read_bytes()}


def make_key(folder: Path) -> str:
    """A new ed25519 key pair for the deployment, in its private run directory; returns the public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    path = folder / "id_ed25519"
    path.touch(mode=0o600)
    path.write_bytes(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} labkit-deployment"
    (folder / "id_ed25519.pub").write_text(line + "\n")
    return line


def _trust_host_keys(machine: Machine, known_hosts: Path) -> None:
    """known_hosts from the machine's own disk: its host keys, read before SSH ever connects.

    No trust on first use, and a deployment of its own: the next machine on
    this address is another machine, with other keys.
    """
    lines = []
    for pub in sorted((machine.root / "etc/ssh").glob("ssh_host_*_key.pub")):
        kind, key = pub.read_text().split()[:2]
        lines.append(f"{machine.address} {kind} {key}")
    if not lines:
        raise MachineError(f"The machine {machine.name} has no SSH host keys after cloud-init: see `labkit logs`.")
    known_hosts.write_text("\n".join(lines) + "\n")
