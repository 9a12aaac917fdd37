"""A private RabbitMQ node for one local deployment.

A student's machine may already run RabbitMQ on 5672 (this one does), so each
deployment starts its own node: its own data directory, free ports, its own
Erlang port mapper (epmd), and a random user. The guest account never exists:
the node is created with ``default_user`` set, which replaces guest.

All three of its servers listen on 127.0.0.1 only: AMQP (``listeners.tcp``),
epmd (``-address``; epmd adds ::1 itself) and Erlang's distribution port
(``inet_dist_use_interface``), which would otherwise listen on every interface.

Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that only root or the
rabbitmq user may run; the real script in ``/usr/lib/rabbitmq/bin`` runs as
anybody, with HOME pointing at the node's folder for its own Erlang cookie.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .._errors import DeployError, PrerequisiteMissing
from . import procs

INSTALL_HINT = (
    "install it with `sudo apt-get install -y rabbitmq-server` (Debian/Ubuntu) or "
    "`conda install -c conda-forge rabbitmq-server`, or set LABKIT_BROKER_URL to a broker you already run"
)


# Debian keeps the runnable scripts and epmd outside PATH (see the module docstring).
SYSTEM_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/lib/erlang/bin")
ERTS_GLOB = "/usr/lib/erlang/erts-*/bin"

# Erlang's distribution listener on 127.0.0.1 only (RabbitMQ's networking guide: "inter-node
# communication interface"). No space inside the tuple: the scripts split these variables on spaces.
LOOPBACK_ONLY = "-kernel inet_dist_use_interface {127,0,0,1}"


def new_account() -> tuple[str, str]:
    """A broker user and password of its own for one deployment, on any backend or VM.

    Hex only: a urlsafe token starts with "-" one time in 64, and ``rabbitmqctl add_user`` then
    takes the password for an option, refuses it and prints it to the VM's console (a real run
    did). Hex also needs no quoting in a URL, a shell or a Compose .env. 192 random bits.
    """
    return f"lab-{secrets.token_hex(4)}", secrets.token_hex(24)


def _find(program: str) -> str | None:
    for folder in SYSTEM_DIRS:
        candidate = os.path.join(folder, program)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(program)  # conda-forge's rabbitmq-server, or another install
    if found:
        return found
    matches = sorted(glob.glob(os.path.join(ERTS_GLOB, program)))
    return matches[-1] if matches else None


def find_programs() -> tuple[str, str]:
    server = _find("rabbitmq-server")
    if server is None:
        raise PrerequisiteMissing(f"rabbitmq-server was not found: {INSTALL_HINT}.")
    epmd = _find("epmd")
    if epmd is None:
        raise PrerequisiteMissing(f"epmd (Erlang's port mapper) was not found: {INSTALL_HINT}.")
    return server, epmd


@dataclass(frozen=True)
class Node:
    """Where a node lives and how to reach it; saved in the deployment's state."""

    folder: str
    nodename: str
    amqp_port: int
    dist_port: int
    epmd_port: int
    user: str
    password: str

    @classmethod
    def plan(cls, folder: Path, name: str) -> "Node":
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(procs.free_port())
        amqp, dist, epmd = sorted(ports)
        user, password = new_account()
        return cls(
            folder=str(folder),
            nodename=f"labkit-{name}@localhost",
            amqp_port=amqp,
            dist_port=dist,
            epmd_port=epmd,
            user=user,
            password=password,
        )

    @property
    def url(self) -> str:
        return f"amqp://{quote(self.user)}:{quote(self.password, safe='')}@127.0.0.1:{self.amqp_port}//"

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def environment(self) -> dict:
        """Write the node's config files; return the environment that points the scripts at them."""
        folder = Path(self.folder)
        for sub in ("mnesia", "log"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        config = folder / "rabbitmq.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
                f"default_user = {self.user}\n"
                f"default_pass = {self.password}\n"
                "default_vhost = /\n"
                "log.console = true\n"
                "log.file = false\n"
            )
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq-env.conf").write_text("# empty: this node takes its settings from labkit\n")
        return {
            **os.environ,
            "HOME": str(folder),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            # We run epmd ourselves, so that stopping the node leaves nothing behind; and the
            # distribution port listens on the loopback only (Erlang's default is every
            # interface): whoever reaches it with the cookie runs code as this user.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-start_epmd false {LOOPBACK_ONLY}",
            # The same for a CLI tool (rabbitmqctl) run with this environment: its own
            # distribution listener, while it talks to the node, stays on the loopback.
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_ONLY,
        }

    def epmd_command(self) -> list[str]:
        """This node's own epmd, on its port, on the loopback (it adds ::1 itself)."""
        _, epmd = find_programs()
        return [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"]

    def start_epmd(self, log_dir: Path) -> procs.Proc:
        return procs.spawn("epmd", self.epmd_command(), self.environment(), log_dir / "epmd.log")

    def start_server(self, log_dir: Path, timeout: float = 60.0) -> procs.Proc:
        """Start the node (epmd must run); return once it accepts our user."""
        server, _ = find_programs()
        log = log_dir / "rabbitmq.log"
        proc = procs.spawn("rabbitmq", [server], self.environment(), log, cwd=Path(self.folder))
        try:
            self.wait_ready(proc, log, timeout)
        except DeployError:
            procs.stop(proc)
            raise
        return proc

    def wait_ready(self, node_proc: procs.Proc, log: Path, timeout: float) -> None:
        def died() -> None:
            if not node_proc.alive():
                raise DeployError(
                    f"RabbitMQ stopped while starting; the end of its log ({log}):\n{procs.tail(log)}\n"
                    "Fix what it says, then run `labkit up` again."
                )

        if procs.wait_until(self.accepts_login, timeout, 0.25, abort=died):
            return
        raise DeployError(
            f"RabbitMQ did not accept connections within {timeout:.0f} s; see {log}. "
            "Run `labkit down`, then `labkit up` again."
        )

    def accepts_login(self) -> bool:
        import amqp.exceptions
        import kombu
        import kombu.exceptions

        if not procs.port_in_use(self.amqp_port):
            return False
        try:
            with kombu.Connection(self.url, connect_timeout=1) as conn:
                conn.ensure_connection(max_retries=0)
            return True
        except (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError):
            return False  # booting: the user table may not be there yet
