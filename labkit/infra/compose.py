"""``docker compose`` for one project: the command lines, their output, and what a student should do.

Building the commands and reading their output lives here; running them is
the job of a ``Host`` (``infra.hosts``): ``LocalHost()`` runs them on this
machine, ``SSHHost(ssh, name, sudo=True)`` on a VM, so the docker backend and
a VM's Task 2 stack share one implementation.

    >>> compose = Compose("labkit-lab", "/srv/app/production_server/compose.yaml", "/srv/app/.env")
    >>> compose.check()                      # docker, the Compose v2 plugin, a daemon that answers
    >>> compose.up(workers=3, timeout=600)   # up --detach --no-build --wait --scale worker=3
    >>> [c.role for c in compose.ps()]       # ['rabbit-1', 'web-1', 'worker-1', ...]

Secrets handed to ``Compose(secrets=...)`` are blanked out of every output it
returns or puts in an error message.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from .._errors import CommandFailed, DeployError, PrerequisiteMissing
from .hosts import Host, LocalHost, Result

SERVICES = ("rabbit", "web", "proxy", "worker")  # compose.yaml's services, in the order their logs are shown
PROFILES = ("monitoring",)  # optional services (flower); `down` must see them to remove them
# Where docker-server.yaml.j2 puts the project on a VM; the template and for_vm() must agree.
VM_APP_DIR = "/opt/labkit/app"
VM_ENV_FILE = "/etc/labkit/compose.env"
FALLBACK = "or deploy without containers: `labkit up --backend local` (labkit.deploy('local'))"


@dataclass(frozen=True)
class Container:
    """One row of ``docker compose ps --format json``."""

    name: str
    service: str
    role: str  # the name without the project: "worker-2"
    state: str  # running, exited, restarting, created, ...
    health: str  # healthy, unhealthy, starting, or "" without a health check
    exit_code: int | None

    @property
    def alive(self) -> bool:
        return self.state == "running"


def parse_ps(text: str, project: str) -> list[Container]:
    """Both shapes Compose v2 has printed: a JSON array (before 2.21) or one object per line (2.21 on)."""
    text = text.strip()
    if not text:
        return []
    try:
        records = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                  if line.strip()]
    except json.JSONDecodeError as exc:
        raise DeployError(
            f"`docker compose ps --format json` printed something that is not JSON ({exc}): "
            "check `docker compose version` (labkit needs Compose v2), then retry."
        ) from None
    containers = []
    for record in records or []:
        name = record.get("Name") or record.get("Names") or record.get("ID", "?")
        prefix = f"{project}-"
        containers.append(Container(
            name=name,
            service=record.get("Service", ""),
            role=name[len(prefix):] if name.startswith(prefix) else name,
            state=(record.get("State") or "").lower(),
            health=record.get("Health") or "",
            exit_code=record.get("ExitCode"),
        ))
    return sorted(containers, key=lambda c: (c.service, _number(c.role), c.role))


def _number(role: str) -> int:
    match = re.search(r"-(\d+)$", role)
    return int(match.group(1)) if match else 0


def compose_version(text: str) -> tuple[int, ...] | None:
    """(2, 21, 0) from "Docker Compose version v2.21.0" (or from ``--short``'s "2.21.0")."""
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(p) for p in match.groups()) if match else None


@dataclass(frozen=True)
class Compose:
    project: str
    file: str
    env_file: str
    host: Host = field(default_factory=LocalHost)
    secrets: tuple[str, ...] = ()
    docker: str = "docker"

    @classmethod
    def for_vm(cls, deployment: str, host: Host, secrets: tuple[str, ...] = ()) -> "Compose":
        """The project cloud-init's docker-server template starts on a VM."""
        return cls(project_name(deployment), f"{VM_APP_DIR}/production_server/compose.yaml", VM_ENV_FILE,
                   host, secrets)

    # -- the command lines -------------------------------------------------
    def base(self, *profiles: str) -> list[str]:
        argv = [self.docker, "compose", "--project-name", self.project, "--file", self.file,
                "--env-file", self.env_file]
        for profile in profiles:
            argv += ["--profile", profile]
        return argv

    def build_argv(self) -> list[str]:
        return self.base() + ["build"]

    def up_argv(self, workers: int) -> list[str]:
        # --wait: return once every container is running and its health check passes.
        return self.base() + ["up", "--detach", "--no-build", "--wait", "--scale", f"worker={workers}"]

    def scale_argv(self, workers: int) -> list[str]:
        # --no-recreate: RabbitMQ and the web server keep running while workers come and go.
        return self.base() + ["up", "--detach", "--no-build", "--no-recreate", "--scale", f"worker={workers}"]

    def ps_argv(self) -> list[str]:
        return self.base() + ["ps", "--all", "--format", "json"]

    def logs_argv(self, service: str, lines: int) -> list[str]:
        return self.base() + ["logs", "--no-color", "--tail", str(lines), service]

    def down_argv(self) -> list[str]:
        return self.base(*PROFILES) + ["down", "--volumes", "--remove-orphans"]

    # -- prerequisites -----------------------------------------------------
    def check(self) -> tuple[int, ...]:
        """The Compose version, once docker, the Compose v2 plugin and the daemon all answer."""
        version = self.check_cli()
        self.check_daemon()
        return version

    def check_cli(self) -> tuple[int, ...]:
        result = self._answer([self.docker, "compose", "version"], 30)
        if result.exit_code == 127:
            raise PrerequisiteMissing(
                "Docker is not installed (no `docker` command): install it (Ubuntu: "
                f"`sudo apt-get install docker.io docker-compose-v2`), {FALLBACK}."
            )
        version = compose_version(result.stdout) if result.exit_code == 0 else None
        if version is None or version < (2, 1, 1):
            said = self._tail(result.stderr or result.stdout) or "no version"
            raise PrerequisiteMissing(
                f"`docker compose` (the Compose v2 plugin, 2.1.1 or later) is not available ({said}): install it "
                f"(Ubuntu: `sudo apt-get install docker-compose-v2`; Docker's own packages: "
                f"docker-compose-plugin), {FALLBACK}."
            )
        return version

    def check_daemon(self) -> None:
        result = self._answer([self.docker, "info", "--format", "{{.ServerVersion}}"], 30)
        if result.exit_code == 0 and result.stdout.strip():
            return
        said = self._tail(result.stderr or result.stdout)
        if "permission denied" in said.lower():
            raise DeployError(
                f"You may not talk to the Docker daemon ({said}): add yourself to the docker group "
                f"(`sudo usermod -aG docker $USER`, then log in again), {FALLBACK}."
            )
        raise DeployError(
            f"The Docker daemon does not answer ({said}): start it (`sudo systemctl start docker`, or start "
            f"Docker Desktop), {FALLBACK}."
        )

    # -- actions -----------------------------------------------------------
    def build(self, timeout: float) -> None:
        self._run(self.build_argv(), timeout, "building the server's image")

    def up(self, workers: int, timeout: float) -> None:
        self._run(self.up_argv(workers), timeout, "starting the containers")

    def scale(self, workers: int, timeout: float) -> None:
        self._run(self.scale_argv(workers), timeout, f"scaling to {workers} worker container(s)")

    def ps(self, timeout: float = 30) -> list[Container]:
        return parse_ps(self._run(self.ps_argv(), timeout, "listing the containers").stdout, self.project)

    def logs(self, lines: int, timeout: float = 30) -> dict[str, str]:
        out = {}
        for service in SERVICES:
            result = self._answer(self.logs_argv(service, lines), timeout)
            out[service] = self.redact(result.stdout + result.stderr).rstrip("\n")
        return out

    def down(self, timeout: float) -> None:
        self._run(self.down_argv(), timeout, "removing the containers")

    # -- internals ---------------------------------------------------------
    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "********")
        return text

    def _tail(self, text: str, lines: int = 12) -> str:
        return self.redact("\n".join(text.strip().splitlines()[-lines:]))

    def _answer(self, argv: list[str], timeout: float) -> Result:
        try:
            return self.host.run(argv, timeout=timeout)
        except CommandFailed as exc:  # it did not finish
            raise DeployError(f"{self.redact(str(exc))} See `labkit logs`, and raise LABKIT_START_TIMEOUT "
                              "if the machine is only slow.") from None

    def _run(self, argv: list[str], timeout: float, what: str) -> Result:
        result = self._answer(argv, timeout)
        if result.exit_code != 0:
            raise DeployError(
                f"docker compose failed {what} (exit code {result.exit_code}); it said:\n"
                f"{self._tail(result.stderr or result.stdout)}\n"
                f"Fix what it reports, then run `labkit down` and retry ({shlex.join(argv[1:2] + argv[8:])})."
            )
        return result


def project_name(deployment: str) -> str:
    """Compose project names allow lower-case letters, digits, '-' and '_': deployment names fit."""
    return f"labkit-{deployment}"


def env_values(*, deployment: str, broker_user: str, broker_password: str, model_version: str, web_bind: str,
               web_port: int, predict_timeout: float, chart_version: str, chart_sha256: str,
               model_engine: str = "keras") -> dict[str, str]:
    """What compose.yaml reads from the project's .env; the VM template writes the same keys."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", model_version)[:120] or "latest"
    return {
        "BROKER_USER": broker_user,
        "BROKER_PASSWORD": broker_password,
        "SERVER_IMAGE": f"{project_name(deployment)}-server:{tag}",
        "WEB_BIND": web_bind,
        "WEB_PORT": str(web_port),
        "PREDICT_TIMEOUT": f"{predict_timeout:g}",
        "MODEL_ENGINE": model_engine,
        "CHART_VERSION": chart_version,
        "CHART_SHA256": chart_sha256,
    }


def env_text(values: dict[str, str]) -> str:
    for key, value in values.items():
        # Compose's .env has its own quoting rules; values that need none avoid them all.
        if not re.fullmatch(r"[A-Za-z0-9_.:/@+-]*", value):
            raise ValueError(f"{key} holds characters a .env file would need quoted")
    return "".join(f"{key}={value}\n" for key, value in values.items())
