"""The OpenStack backend: a VM contextualized by cloud-init (Task 1).

labkit's side of a launch is five steps (credentials and names, key pair and
security group, the server, ACTIVE, a floating IP); then the VM runs its own
steps, which labkit reads from the console log as they are printed, and last
it waits for ``http://IP:5100/healthz``. All cloud calls go through one thin
adapter (``cloud.OpenStackCloud``; ``testing.fake_cloud.FakeCloud`` in the
tests), so this module never sees an SDK object.
"""

from __future__ import annotations

import getpass
import re
import shlex
import socket
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from ... import _config, _userconfig
from ..._config import Settings
from ..._errors import CICDError, ConfigError, DeployError, LabkitError, ScaleError, ServerNotReady
from ..._state import RunDir
from ...infra import cloudinit, health
from ...infra import console as _console
from ...infra.hosts import SSHHost
from ..base import ProcessRow, State, new_state, url_of
from ...notebook.progress import Progress, tell
from .cloud import BROKER_PORT, ROLE_KEY, SSH_PORT

WEB_PORT = 5100
CLIENT_STEPS = [
    "check the credentials, image, flavor and network",
    "key pair and security group",
    "launch the server",
    "wait for the server to be ACTIVE",
    "attach a floating IP",
]
LAST_STEP = "wait for the server to answer on port 5100"
HEALTH_TIMEOUT = 300.0  # seconds for a VM's workers to answer once its steps are done
# The VM templates a deployment can start from, and the lab task each one is.
TASKS = {"single-server": "task-1", "docker-server": "task-2"}
# CI/CD on the VMs (cloud-init/*.yaml.j2 put the rest there). Production's CI/CD
# files belong to DEPLOY_USER, whose shell is git-shell: the development VM's
# key logs in as that user, and can do nothing but push and fetch.
DEPLOY_USER = "deploy"
VM_APP = "/opt/labkit/app"
VM_PYTHON = "/opt/labkit/venv/bin/python"
VM_CICD = "/opt/labkit/cicd"
VM_DATA = "/opt/labkit/cache/labkit"  # where the templates' "fetch the data set" steps put it
DEV_KEY = ".ssh/labkit_deploy"  # in the development VM's login user's home


def default_owner() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class CloudSettings:
    """Where and how to launch; names, not IDs, as a student sees them in the dashboard."""

    image: str = "Ubuntu 24.04"
    flavor: str = "m1.medium"
    network: str | None = None  # the project's network: required, clouds name them differently
    keypair: str = "labkit"
    public_key: Path | None = None  # None: ~/.ssh/id_ed25519.pub or id_rsa.pub
    private_key: Path | None = None  # None: the same key without .pub
    floating_pool: str | None = None
    allow_cidr: str = "0.0.0.0/0"  # who may reach ports 22 and 5100
    security_group: str = "labkit-server"
    template: str = "single-server"  # Task 1; "docker-server" for Task 2 (Compose on the VM)
    ssh_user: str | None = None  # the image's default user; None: "debian" for a Debian image, else "ubuntu"
    owner: str = field(default_factory=default_owner)
    launch_timeout: float = 600.0
    contextualize_timeout: float = 1800.0
    poll: float = 5.0

    @classmethod
    def from_env(cls, env: dict | None = None) -> "CloudSettings":
        changes: dict = _config.read(_config.CLOUD, env)
        if "public_key" in changes:
            changes["public_key"] = Path(changes["public_key"]).expanduser()
            changes["private_key"] = changes["public_key"].with_suffix("")
        return replace(cls(), **changes)

    def __post_init__(self) -> None:
        if self.template not in TASKS:
            raise ConfigError(f"No VM template {self.template!r}: choose one of {', '.join(TASKS)} "
                              "(LABKIT_OS_TEMPLATE, or --template).")

    def login_user(self) -> str:
        """Who labkit logs in as: the default user cloud-init gives the key pair's key on this image."""
        return self.ssh_user or ("debian" if "debian" in self.image.lower() else "ubuntu")

    def read_public_key(self) -> str:
        candidates = [self.public_key] if self.public_key else [
            Path.home() / ".ssh" / "id_ed25519.pub", Path.home() / ".ssh" / "id_rsa.pub"]
        for path in candidates:
            if path and path.is_file():
                return path.read_text().strip()
        raise ConfigError(
            "No SSH public key found (" + ", ".join(str(p) for p in candidates) + "): create one with "
            "`ssh-keygen -t ed25519`, or set LABKIT_OS_PUBLIC_KEY to yours."
        )


class OpenStackBackend:
    name = "openstack"
    engines = ("keras",)  # the VM templates install the Keras worker only

    def __init__(self, connect: Callable[[], object] | None = None, cloud_settings: CloudSettings | None = None):
        self._connect = connect
        self.cloud_settings = cloud_settings or CloudSettings.from_env()
        self._cloud = None

    @property
    def cloud(self):
        if self._cloud is None:
            if self._connect is not None:
                self._cloud = self._connect()
            else:
                from .cloud import OpenStackCloud

                # OS_CLOUD as the student saved it in 00-setup, unless the environment names another.
                self._cloud = OpenStackCloud.connect(_userconfig.environ().get("OS_CLOUD"))
        return self._cloud

    # -- up ---------------------------------------------------------------
    def plan_steps(self, workers: int) -> list[str]:
        # The VM's own steps join when its first marker says how many there are.
        return [*CLIENT_STEPS, LAST_STEP]

    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> State:
        cs = self.cloud_settings
        cloud = self.cloud
        secrets = cloudinit.Secrets.generate()
        if not cs.network:
            raise ConfigError(
                "Which network should the VM join? Set LABKIT_OS_NETWORK to your project's network "
                "(the dashboard's Network > Networks lists them)."
            )
        with progress.step(CLIENT_STEPS[0]):
            cloud.check_credentials()
            resolved = cloud.resolve(cs.image, cs.flavor, cs.network)
            # An image labkit baked holds the installs already: the short user-data.
            if resolved.image_baked and cs.template != "single-server":
                raise ConfigError(f"A baked image holds the single-server stack, not {cs.template}: "
                                  "deploy it with the single-server template, or choose a stock image.")
            userdata = render_checked(cs.template, settings, run.name, workers, secrets, baked=resolved.image_baked)
            if not resolved.image_baked and (note := old_python_note(resolved.image_name or cs.image)):
                tell(note, settings.progress)
        with progress.step(CLIENT_STEPS[1]):
            cloud.ensure_keypair(cs.keypair, cs.read_public_key())
            cloud.ensure_security_group(cs.security_group, cs.allow_cidr, cs.allow_cidr)
        created = datetime.now(timezone.utc)
        state = new_state(run, self.name, created=created.isoformat(timespec="seconds"), workers=workers) | {
            "server_id": None, "floating_ip": None, "owner": cs.owner, "template": cs.template,
            # The password stays in the private run directory: worker VMs join with it (scale_out).
            "broker": {"private": True, "url": None, "user": secrets.broker_user,
                       "password": secrets.broker_password},
            "cloud": cloud.record(),
            # What worker VMs launch with: an attached backend may have other CloudSettings.
            "launch": {"image_id": resolved.image_id, "flavor_id": resolved.flavor_id,
                       "network_id": resolved.network_id, "baked": resolved.image_baked,
                       "keypair": cs.keypair, "security_group": cs.security_group,
                       "model_dir": str(settings.model_dir)},
            "worker_vms": [], "images": [],
        }
        run.create()
        run.write(state)
        with progress.step(CLIENT_STEPS[2]):
            metadata = _metadata(cs.owner, run.name, created, role="server", task=TASKS[cs.template])
            server = cloud.create_server(
                f"labkit-{run.name}", resolved.image_id, resolved.flavor_id, resolved.network_id,
                cs.keypair, cs.security_group, userdata, metadata, tags=["labkit", TASKS[cs.template]],
            )
            state["server_id"] = server.id
            run.write(state)  # recorded before waiting: `labkit down` can always find it
        with progress.step(CLIENT_STEPS[3]):
            cloud.wait_active(server.id, timeout=cs.launch_timeout, poll=cs.poll)
        with progress.step(CLIENT_STEPS[4]):
            ip = cloud.attach_floating_ip(server.id, pool=cs.floating_pool)
            state.update(floating_ip=ip.address, url=f"http://{ip.address}:{WEB_PORT}")
            run.write(state)
        self._watch(server.id, progress, cs)
        self._remember_host_keys(run, state, server.id, state["floating_ip"])
        with progress.step(LAST_STEP):
            try:
                health.wait_or_raise(url_of(state), workers, HEALTH_TIMEOUT, DeployError,
                                       advice="The VM finished its steps: check that the security group lets "
                                              "you reach port 5100.")
            except DeployError as exc:
                # The failed deployment is deleted next, and `labkit logs` with it: what they say goes here.
                logs = self.logs(run, state, 15)
                raise DeployError(f"{exc} The end of its logs:\n" + "\n".join(
                    f"--- {part} ---\n{text.rstrip()}" for part, text in logs.items() if text.strip())) from None
        return state

    def _remember_host_keys(self, run: RunDir, state: State, server_id: str, address: str | None) -> None:
        """The VM's host keys, as cloud-init printed them to its console, in the deployment's known_hosts.

        Read from the console (which only the cloud's API shows) rather than
        trusted on first use: floating IPs are reused, and the next VM on an
        address has other keys. A console without them (an image whose
        cloud-init prints none) leaves labkit's own known_hosts to trust on first use.
        """
        keys = _console.wait_for_host_keys(lambda: self.cloud.console_log(server_id), poll=self.cloud_settings.poll)
        state.setdefault("ssh_user", self.cloud_settings.login_user())
        if self.cloud_settings.private_key:
            state.setdefault("ssh_key", str(self.cloud_settings.private_key))
        if keys and address:
            path = run.path / "known_hosts"
            kept = [line for line in (path.read_text().splitlines() if path.is_file() else [])
                    if line.split(" ", 1)[0] != address]
            path.write_text("".join(f"{line}\n" for line in kept + [f"{address} {key}" for key in keys]))
            state["known_hosts"] = str(path)
        run.write(state)

    def _watch(self, server_id: str, progress: Progress, cs: CloudSettings) -> None:
        """Follow the VM's markers in the console log until its last step, a failure, or the timeout."""
        _console.follow(lambda: self.cloud.console_log(server_id), progress, cs.contextualize_timeout, cs.poll)

    # -- scale out: worker VMs on the private network ---------------------------
    def scale_out(self, run: RunDir, state: State, vms: int, progress: Progress, workers_per_vm: int = 1) -> State:
        """Run exactly ``vms`` worker VMs beside the server; they join its broker at its private address."""
        cs = self.cloud_settings
        launch = state["launch"]
        current = list(state.get("worker_vms") or [])
        progress.expect(3 if vms > len(current) else 2 if vms < len(current) else 1)  # + the new VMs' own steps
        if not state.get("floating_ip"):
            raise ScaleError("The server has no address yet: wait for `labkit up` to finish, then scale out.")
        if state.get("development_vm") and vms:
            raise ScaleError("CI/CD delivers new models to the server's own workers only: worker VMs would keep "
                             "serving the old one. Scale the server's workers with scale(n) instead.")
        if state.get("template", "single-server") != "single-server":
            # Task 2's broker lives on Compose's own network and publishes no port: nothing outside can join.
            raise ScaleError("Worker VMs join a single-server (Task 1) deployment's broker; on a Task 2 VM "
                             "scale the worker containers with scale(n) instead.")
        if vms > len(current):
            with progress.step(f"let the lab's VMs reach the broker and launch {vms - len(current)} worker VM(s)"):
                self.cloud.allow_within_group(launch["security_group"], BROKER_PORT)
                broker_host = self.cloud.private_address(state["server_id"])
                settings = Settings(model_dir=launch["model_dir"])
                secrets = cloudinit.Secrets(state["broker"]["user"], state["broker"]["password"])
                userdata = render_checked("worker", settings, run.name, workers_per_vm, secrets,
                                   baked=launch["baked"], broker_host=broker_host)
                created = datetime.now(timezone.utc)
                used = {vm["index"] for vm in current}
                new = []
                for index in [i for i in range(1, vms + len(current) + 1) if i not in used][:vms - len(current)]:
                    name = f"labkit-{run.name}-w{index}"
                    server = self.cloud.create_server(
                        name, launch["image_id"], launch["flavor_id"], launch["network_id"], launch["keypair"],
                        launch["security_group"], userdata, _metadata(state["owner"], run.name, created, "worker"),
                        tags=["labkit", "worker"],
                    )
                    new.append({"id": server.id, "name": name, "index": index, "workers": workers_per_vm})
                    state["worker_vms"] = current + new
                    run.write(state)  # recorded at once: `labkit down` finds every VM it launched
            with progress.step("wait for the worker VMs to be ACTIVE"):
                for vm in new:
                    self.cloud.wait_active(vm["id"], timeout=cs.launch_timeout, poll=cs.poll)
            for vm in new:
                self._watch(vm["id"], progress, cs)
            current += new
        elif vms < len(current):
            with progress.step(f"delete {len(current) - vms} worker VM(s)"):
                # Tasks a deleted VM held are not lost: they are acknowledged only once done,
                # so RabbitMQ hands them to another worker.
                for vm in current[vms:]:
                    self.cloud.delete_server(vm["id"], wait=True)
                current = current[:vms]
                state["worker_vms"] = current
                run.write(state)
        expected = state["workers"] + sum(vm["workers"] for vm in current)
        with progress.step(f"wait for {expected} worker(s) to answer"):
            health.wait_or_raise(url_of(state), expected, HEALTH_TIMEOUT, ScaleError,
                                   advice="See `labkit logs`, then `labkit scale-out 0` to remove the worker VMs.")
        return state

    # -- bake: an image of the contextualized server ----------------------------
    def bake(self, run: RunDir, state: State, image_name: str, progress: Progress) -> dict:
        """Snapshot the server into an image that later deployments boot from, skipping the installs.

        The snapshot holds no secret of this deployment: before it the
        services stop, RabbitMQ loses its user and data, the files with the
        password move to /run (memory, not disk) and cloud-init forgets
        this instance; after it they come back and the server serves again.
        The image belongs to this deployment: ``destroy`` deletes it.
        """
        cs = self.cloud_settings
        if not state.get("floating_ip"):
            raise DeployError("The server has no address yet: wait for `labkit up` to finish, then bake.")
        progress.expect(5)
        services = self.services(state)
        with progress.step("stop the services and take the secrets off the disk"):
            services.seal(state["broker"]["user"], state["workers"])
        try:
            with progress.step("snapshot the server"):
                metadata = _metadata(state["owner"], run.name, datetime.now(timezone.utc), role="image")
                image = self.cloud.create_image(state["server_id"], image_name, metadata)
                state["images"] = [*state.get("images", []), {"id": image["id"], "name": image_name}]
                run.write(state)
            with progress.step("wait for the image to be active"):
                image = self.cloud.wait_image_active(image["id"], timeout=cs.contextualize_timeout, poll=cs.poll)
        finally:
            with progress.step("start the services again"):
                services.unseal(state["workers"])
        with progress.step("wait for the server to answer"):
            health.wait_or_raise(url_of(state), state["workers"], HEALTH_TIMEOUT, DeployError,
                                   advice="The image is ready; see `labkit logs` for why the server "
                                          "did not come back.")
        return image

    # -- CI/CD: a development VM that pushes to the server ---------------------
    def prepare_cicd(self, run: RunDir, state: State, settings: Settings, root: Path):
        """Launch the development VM (once), and let it push to the server's ``deploy`` user.

        The server gets production_server/cicd (left out of its user-data for
        size), git and the ``deploy`` user with the development VM's public key;
        the development VM gets the server's host key, read over labkit's own
        SSH connection to the server.
        """
        from ...cicd._steps import must

        if state.get("template", "single-server") != "single-server":
            raise CICDError("CI/CD delivers to a single-server (Task 1) deployment: deploy one "
                            "(`labkit up --backend openstack --template single-server`), then run this again.")
        if state.get("worker_vms"):
            raise CICDError("Worker VMs serve a copy of the model of their own, which the pipeline would not "
                            "update: remove them (`labkit scale-out 0`), then run this again.")
        if not state.get("development_vm", {}).get("ready"):
            self._launch_development(run, state, settings)
        # git pushes from the development VM to the server's private address, whatever CIDR port 22
        # is open to: a rule between the lab's VMs, as for the broker.
        self.cloud.allow_within_group(state["launch"]["security_group"], SSH_PORT)
        sides = self.cicd_sides(run, state, settings, root)
        home = f"{self._vm_root(state['development_vm']['id'])}{_dev_home(state)}"
        dev_key = f"{home}/{DEV_KEY}.pub"
        key = must(sides.development, ["cat", dev_key], "Reading the development VM's public key").stdout.strip()
        services = self.services(state)
        services.install_cicd(cloudinit.cicd_code(), key)
        known_hosts = f"{home}/.ssh/known_hosts"
        entry = f"{self.cloud.private_address(state['server_id'])} {services.host_key()}"
        must(sides.development, ["sh", "-c", 'grep -qxF "$2" "$1" 2>/dev/null || printf "%s\\n" "$2" >> "$1"',
                                 "sh", known_hosts, entry], "Recording the server's host key")
        return sides

    def cicd_sides(self, run: RunDir, state: State, settings: Settings, root: Path):
        """Production is the server VM, development the development VM (folders, in the fake cloud)."""
        from ...infra.hosts import Host, LocalHost, Sides, git_over_ssh

        dev = state.get("development_vm") or {}
        if not dev.get("ready"):
            raise CICDError("This deployment has no development VM ready: run `labkit cicd init` (again).")
        prod_root, dev_root = self._vm_root(_server_id(state)), self._vm_root(dev["id"])
        prod_env = {"PYTHONPATH": f"{prod_root}{VM_APP}"}
        dev_env = {"PYTHONPATH": f"{dev_root}{VM_APP}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        production: Host
        development: Host
        clone_options: tuple[str, ...]
        if prod_root:
            # The fake cloud's VMs are folders here, and reach each other's folders directly.
            data = str(self.cloud.settings.data_dir) if self.cloud.settings.data_dir else None
            production = LocalHost("the production VM", prod_env)
            development = LocalHost("the development VM", {**dev_env, **({"LABKIT_DATA_DIR": data} if data else {})})
            python, url, data_dir = sys.executable, url_of(state), data
            repo_url, clone_options = f"{prod_root}{VM_CICD}/repo.git", ()
        else:
            # Where the development template's "fetch the data set" step put it (not the user's ~/.cache).
            dev_env["LABKIT_DATA_DIR"] = VM_DATA
            production = SSHHost(self._ssh(state, _public_ip(state)), "the production VM", as_user=DEPLOY_USER,
                                 env=prod_env)
            development = SSHHost(self._ssh(state, dev["floating_ip"]), "the development VM", env=dev_env)
            python, url, data_dir = VM_PYTHON, f"http://127.0.0.1:{WEB_PORT}", VM_DATA
            repo_url = f"{DEPLOY_USER}@{self.cloud.private_address(state['server_id'])}:{VM_CICD}/repo.git"
            clone_options = git_over_ssh(f"{_dev_home(state)}/{DEV_KEY}")
        return Sides(
            production=production, production_root=f"{prod_root}{VM_CICD}", python=python,
            pythonpath=f"{prod_root}{VM_APP}", served_model=f"{prod_root}{VM_APP}/model", url=url,
            data_dir=data_dir, development=development, development_dir=f"{dev_root}{_dev_home(state)}/cicd",
            dev_python=python, repo_url=repo_url, clone_options=clone_options,
        )

    def serve_model_from(self, run: RunDir, state: State, pointer: Path) -> State:
        """Restart the server's workers one at a time on CI/CD's release pointer."""
        self.services(state).serve_model_from(str(pointer), state["workers"])
        health.wait_or_raise(url_of(state), state["workers"], HEALTH_TIMEOUT, CICDError,
                               advice="The workers did not come back on the release pointer: see `labkit logs`.")
        state["model_dir"] = str(pointer)
        run.write(state)
        return state

    def _vm_root(self, server_id: str) -> str:
        """'' on a real VM; in the fake cloud, the folder that is that VM's disk."""
        disk = self.cloud.disk(server_id)
        return str(disk) if disk is not None else ""

    def _launch_development(self, run: RunDir, state: State, settings: Settings) -> None:
        cs, launch = self.cloud_settings, state["launch"]
        if earlier := state.pop("development_vm", None):
            # An earlier `cicd init` stopped before its VM was ready: start again from a new one.
            self.cloud.delete_server(earlier["id"], wait=True)
            if earlier.get("floating_ip"):
                self.cloud.release_floating_ip(earlier["floating_ip"])
            run.write(state)
        progress = Progress(3, "development VM", settings.progress)
        user = state.get("ssh_user") or cs.login_user()  # the server's image, which the development VM boots too
        with progress.step("launch the development VM"):
            userdata = render_checked("development-server", Settings(model_dir=launch["model_dir"]), run.name, 1,
                               cloudinit.Secrets.placeholders(), login_user=user)
            metadata = _metadata(state["owner"], run.name, datetime.now(timezone.utc), role="development")
            server = self.cloud.create_server(
                f"labkit-{run.name}-dev", launch["image_id"], launch["flavor_id"], launch["network_id"],
                launch["keypair"], launch["security_group"], userdata, metadata, tags=["labkit", "development"],
            )
            state["development_vm"] = {"id": server.id, "name": f"labkit-{run.name}-dev", "floating_ip": None,
                                       "home": f"/home/{user}"}
            run.write(state)  # recorded at once: `labkit down` finds it
        with progress.step("wait for it to be ACTIVE and attach a floating IP"):
            self.cloud.wait_active(server.id, timeout=cs.launch_timeout, poll=cs.poll)
            state["development_vm"]["floating_ip"] = self.cloud.attach_floating_ip(server.id,
                                                                                   pool=cs.floating_pool).address
            run.write(state)
        self._watch(server.id, progress, cs)
        self._remember_host_keys(run, state, server.id, state["development_vm"]["floating_ip"])
        state["development_vm"]["ready"] = True
        run.write(state)

    # -- the VM's services ----------------------------------------------------
    def services(self, state: State):
        """The VM's service manager: systemd (Task 1) or Compose (Task 2) over SSH, or the fake cloud's own."""
        if (services := self.cloud.services(state["server_id"])) is not None:
            return services
        ssh = self._ssh(state, _public_ip(state))
        if state.get("template") == "docker-server":
            return ComposeOverSSH(ssh, state["name"], secrets=(state["broker"].get("password") or "",))
        return SystemdOverSSH(ssh)

    def _ssh(self, state: State, host: str):
        """SSH to one of the deployment's VMs with the user and key it was launched with, whatever the
        settings of whoever attaches now; the VMs' host keys as their consoles showed them."""
        from ...infra.ssh import SSH

        return SSH(host, user=state.get("ssh_user") or self.cloud_settings.login_user(),
                   key_file=state.get("ssh_key") or self.cloud_settings.private_key,
                   known_hosts=state.get("known_hosts"))

    def scale(self, run: RunDir, state: State, workers: int) -> State:
        if not state.get("floating_ip"):
            raise ScaleError("The server has no address yet: wait for `labkit up` to finish, then scale.")
        if state.get("worker_vms"):
            # Health counts every worker, the VMs' too: one change at a time keeps the count checkable.
            raise ScaleError(
                "Worker VMs are running: remove them with `labkit scale-out 0`, scale the server's own workers, "
                "then scale out again."
            )
        self.services(state).scale_workers(state["workers"], workers)
        state["workers"] = workers
        run.write(state)
        health.wait_or_raise(url_of(state), workers, HEALTH_TIMEOUT, ScaleError,
                               advice="See `labkit logs`.")
        return state

    def processes(self, state: State) -> list[ProcessRow]:
        def row(role: str, server_id: str | None, address: str | None, found) -> ProcessRow:
            return {"role": role, "id": server_id, "state": found.status if found else "gone",
                    "alive": bool(found) and found.status == "ACTIVE", "address": address}

        server = self.cloud.get_server(state["server_id"]) if state.get("server_id") else None
        rows = [row("server", state.get("server_id"), state.get("floating_ip"), server)]
        for vm in state.get("worker_vms") or []:
            found = self.cloud.get_server(vm["id"])
            rows.append(row(f"worker VM {vm['name']}", vm["id"],
                            found.fixed_ips[0] if found and found.fixed_ips else None, found))
        if dev := state.get("development_vm"):
            rows.append(row("development VM", dev["id"], dev.get("floating_ip"), self.cloud.get_server(dev["id"])))
        return rows

    def logs(self, run: RunDir, state: State, lines: int) -> dict[str, str]:
        log = self.cloud.console_log(state["server_id"]) if state.get("server_id") else ""
        parts = {"console": "\n".join(log.splitlines()[-lines:])}
        if state.get("floating_ip"):
            try:
                parts.update(self.services(state).logs(lines))
            except LabkitError as exc:  # the VM may not take SSH yet: the console still helps
                parts["services"] = f"(not reachable: {exc})"
        return parts

    def running(self, state: State) -> bool:
        server = self.cloud.get_server(state["server_id"]) if state.get("server_id") else None
        return server is not None and server.status == "ACTIVE"

    def down(self, run: RunDir, state: State) -> None:
        # The key pair and security group are shared by the lab's deployments:
        # `labkit cleanup` removes them with everything else.
        for vm in [*(state.get("worker_vms") or []), *filter(None, [state.get("development_vm")])]:
            self.cloud.delete_server(vm["id"], wait=True)
            if vm.get("floating_ip"):
                self.cloud.release_floating_ip(vm["floating_ip"])
        for image in state.get("images") or []:
            self.cloud.delete_image(image["id"])
        if state.get("server_id"):
            self.cloud.delete_server(state["server_id"], wait=True)
        if state.get("floating_ip"):
            self.cloud.release_floating_ip(state["floating_ip"])


# Releases whose Python is older than the 3.11 the pinned requirements need (numpy 2.4).
OLD_RELEASES = {"ubuntu": {"focal": "20.04", "jammy": "22.04", "bionic": "18.04"},
                "debian": {"bullseye": "11", "buster": "10"}}


def old_python_note(image: str) -> str | None:
    """A sentence when the image's name says a release whose Python is too old (Ubuntu 22.04, Debian 11 or older).

    The VM's first step checks the Python itself and stops at once; this says it before
    anything is launched, from the name alone (a name can mislead, so it does not refuse).
    """
    name = image.lower()
    found = None
    if match := re.search(r"ubuntu\D{0,3}(\d{2})\.(\d{2})", name):
        found = f"Ubuntu {match[1]}.{match[2]}" if (int(match[1]), int(match[2])) <= (22, 10) else None
    elif match := re.search(r"debian\D{0,3}(\d{1,2})\b", name):
        found = f"Debian {match[1]}" if int(match[1]) <= 11 else None
    else:
        found = next((f"{distro.title()} {version}" for distro, names in OLD_RELEASES.items()
                      for codename, version in names.items() if codename in name), None)
    if found is None:
        return None
    return (f"The image {image!r} looks like {found}, whose Python is older than the 3.11 the server needs: "
            "the VM's first step will stop there. Choose Ubuntu 24.04 or Debian 12 (or newer) with --image.")


def _dev_home(state: State) -> str:
    """The development VM's login user's home, where CI/CD works (a state older than the field: Ubuntu's)."""
    return state["development_vm"].get("home", "/home/ubuntu")


def render_checked(template: str, settings: Settings, deployment: str, workers: int, secrets: cloudinit.Secrets,
                   **options) -> str:
    """The user-data a VM boots with (OpenStack's or the machine backend's), refused if Nova would refuse it."""
    userdata = cloudinit.render(template, settings.model_dir, deployment=deployment, workers=workers,
                                 secrets=secrets, **options)
    problems = cloudinit.check(userdata)
    if problems:
        raise DeployError("The user-data cannot be sent: " + "; ".join(problems) + ". Fix the template, then retry.")
    return userdata


def _metadata(owner: str, deployment: str, created: datetime, role: str, task: str = "task-1") -> dict[str, str]:
    return {
        "labkit-owner": owner, "labkit-task": task, "labkit-deployment": deployment,
        ROLE_KEY: role, "labkit-created": created.isoformat(timespec="seconds"),
        # A reminder for whoever lists the project's servers: nobody should pay for a forgotten VM.
        "labkit-expires": (created + timedelta(days=1)).isoformat(timespec="seconds"),
    }


class ComposeOverSSH:
    """Task 2's VM: the Compose project docker-server.yaml.j2 started, driven over SSH.

    The same command lines as the docker backend (``infra.compose.Compose``, tested
    against recorded Compose output), run with sudo: the image's default user
    is not in the docker group. Verified only on paper: no VM boots here.
    """

    def __init__(self, ssh, deployment: str, secrets: tuple[str, ...] = ()):
        from ...infra.compose import Compose

        self.compose = Compose.for_vm(deployment, SSHHost(ssh, "the server VM", sudo=True),
                                      tuple(s for s in secrets if s))

    def scale_workers(self, current: int, target: int) -> None:
        # Compose starts or stops containers until `target` run; stop is Celery's warm shutdown.
        self.compose.scale(target, timeout=600)

    def logs(self, lines: int) -> dict[str, str]:
        return self.compose.logs(lines)

    def seal(self, *_args, **_kwargs) -> None:
        raise ScaleError("Baking works for the single-server (Task 1) stack; a Task 2 VM's image is the "
                         "container image itself: deploy it again instead.")


class SystemdOverSSH:
    """The single-server VM's systemd units, driven over SSH as the image's default user.

    Every command is an argv run through ``infra.hosts.SSHHost``; the few that
    need a shell (a pipe, a fallback) say so with ``sh -c``. Verified on real
    machines of the machine cloud (tests/test_openstack_machines.py), whose
    units are the ones the cloud-init template installs.
    """

    def __init__(self, ssh):
        self.host = SSHHost(ssh, "the server VM")

    def _root(self, *argv: str, timeout: float = 120) -> None:
        self.host.run(["sudo", *argv], timeout=timeout, check=True)

    def _shell(self, line: str, timeout: float = 120) -> None:
        self.host.run(["sh", "-c", line], timeout=timeout, check=True)

    def scale_workers(self, current: int, target: int) -> None:
        if target > current:
            self._root("systemctl", "enable", "--now", *_workers(range(current + 1, target + 1)), timeout=60)
        elif target < current:
            # stop is Celery's warm shutdown: tasks in hand finish first.
            self._root("systemctl", "disable", "--now", *_workers(range(target + 1, current + 1)))

    def seal(self, broker_user: str, workers: int) -> None:
        """Before a snapshot: nothing of the deployment's secrets may stay on the disk.

        The password files go to /run (a tmpfs: in memory, not in the
        snapshot); RabbitMQ's data goes entirely (a VM from the image starts
        it afresh under its own host name); ``cloud-init clean`` removes the
        stored user-data, which holds the password, and makes a VM booted
        from the image run its own user-data; the journal is emptied.
        """
        self._root("systemctl", "disable", "--now", "labkit-web.service", *_workers(range(1, workers + 1)))
        self._root("rabbitmqctl", "delete_user", broker_user)
        self._root("systemctl", "stop", "rabbitmq-server.service")
        self._root("rm", "-rf", "/var/lib/rabbitmq/mnesia", "/etc/rabbitmq/rabbitmq.conf")
        self._root("install", "-d", "-m", "0700", "/run/labkit-bake")
        self._root("mv", "/etc/labkit/server.env", "/opt/labkit/rabbitmq/configure", "/run/labkit-bake/")
        self._root("cloud-init", "clean", "--logs")
        self._root("journalctl", "--rotate")
        self._root("journalctl", "--vacuum-time=1s")
        self.host.run(["sync"], timeout=120, check=True)

    def unseal(self, workers: int) -> None:
        """After the snapshot: the secrets back from /run, the broker and services as before."""
        self._root("mv", "/run/labkit-bake/server.env", "/etc/labkit/server.env", timeout=180)
        self._root("mv", "/run/labkit-bake/configure", "/opt/labkit/rabbitmq/configure", timeout=180)
        self._root("systemctl", "start", "rabbitmq-server.service", timeout=180)
        self._root("/opt/labkit/rabbitmq/configure", timeout=180)
        self._root("systemctl", "enable", "--now", "labkit-web.service", *_workers(range(1, workers + 1)),
                   timeout=180)

    def install_cicd(self, code: bytes, development_key: str) -> None:
        """CI/CD's production side: its code, git, and a ``deploy`` user that only the development VM's key reaches."""
        import base64

        home = f"/var/lib/labkit-{DEPLOY_USER}"
        keys = f"{home}/.ssh/authorized_keys"
        self._shell(f"echo {base64.b64encode(code).decode()} | base64 -d | sudo tar -xzf - -C {VM_APP}", timeout=300)
        self._shell("command -v git >/dev/null || { sudo apt-get update -q && "
                    "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git; }",
                    timeout=300)
        self._shell(f"id {DEPLOY_USER} >/dev/null 2>&1 || sudo useradd --system --create-home --home-dir {home} "
                    f"--shell /usr/bin/git-shell {DEPLOY_USER}", timeout=300)
        self._root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, "-m", "0755", VM_CICD, timeout=300)
        self._root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, "-m", "0700", f"{home}/.ssh", timeout=300)
        # git-shell lets the key push and fetch only; `restrict` takes forwarding and a pty from it too.
        self._shell(f"echo {shlex.quote(f'restrict {development_key}')} | sudo tee {keys} >/dev/null", timeout=300)
        self._root("chown", f"{DEPLOY_USER}:", keys, timeout=300)
        self._root("chmod", "0600", keys, timeout=300)

    def host_key(self) -> str:
        """The server's ed25519 host key, as known_hosts writes it after the address."""
        return self.host.run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], timeout=30, check=True).stdout.strip()

    def serve_model_from(self, pointer: str, workers: int) -> None:
        """Point the workers at ``pointer``, one restart at a time, with one extra worker meanwhile.

        The extra worker takes the queue while each of the others restarts
        (``restart`` waits for Celery's warm shutdown: its task in hand finishes).
        """
        line = f"SERVER_MODEL_DIR={pointer}"
        self._root("sed", "-i", f"s|^SERVER_MODEL_DIR=.*|{line}|", "/etc/labkit/server.env", timeout=30)
        self._root("grep", "-qx", line, "/etc/labkit/server.env", timeout=30)
        extra = workers + 1
        try:
            self._shell(self._until_ready(extra), timeout=180)
            for i in range(1, workers + 1):
                self._shell(self._until_ready(i), timeout=180)
        finally:
            self._root("systemctl", "stop", f"labkit-worker@{extra}.service", timeout=180)

    @staticmethod
    def _until_ready(index: int) -> str:
        """(Re)start a worker, then wait for Celery's " ready." line from that start on; or show its journal."""
        unit = f"labkit-worker@{index}.service"
        return (f"since=$(date '+%Y-%m-%d %H:%M:%S') && sudo systemctl restart {unit} && "
                f"for i in $(seq 1 120); do sudo journalctl -q --no-pager -u {unit} --since \"$since\" | "
                "grep -q ' ready\\.' && exit 0; sleep 1; done; "
                f"sudo journalctl -q --no-pager -n 20 -u {unit} >&2; exit 1")

    def logs(self, lines: int) -> dict[str, str]:
        cloud_init = self.host.run(["sudo", "tail", "-n", str(lines), "/var/log/cloud-init-output.log"], timeout=30)
        services = self.host.run(["sudo", "journalctl", "--no-pager", "-n", str(lines), "-u", "labkit-web.service",
                                  "-u", "labkit-worker@*"], timeout=30)
        return {"cloud-init": cloud_init.stdout, "services": services.stdout}


def _server_id(state: State) -> str:
    if not (server_id := state.get("server_id")):
        raise ServerNotReady(f"The deployment {state['name']!r} has no server yet: its launch did not get that "
                             "far; run `labkit down`, then deploy again.")
    return server_id


def _public_ip(state: State) -> str:
    """The server's floating IP, which labkit logs in and talks to the server through."""
    if not (address := state.get("floating_ip")):
        raise ServerNotReady(f"The server of {state['name']!r} has no floating IP yet: it is still starting, or "
                             "its start failed; `labkit status` says which.")
    return address


def _workers(indexes: range) -> list[str]:
    return [f"labkit-worker@{i}.service" for i in indexes]
