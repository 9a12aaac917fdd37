"""``labkit.check_environment()``: is this machine ready for the lab?

One row per thing the lab needs, each saying what is wrong and what to do,
so the first notebook can show a table instead of a traceback three
notebooks later. Nothing here starts a process that outlives the check.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from .. import _userconfig
from .._config import Settings
from .._errors import LabkitError
from .display import Table

OK, PROBLEM, OPTIONAL = "ok", "problem", "optional"
MACHINES = "local machines (machine backend)"
# Checks that only one backend needs, by the backend.
ONLY_FOR = {
    "RabbitMQ (local backend)": "local",
    "Docker engine (docker backend)": "docker",
    "OpenStack credentials": "openstack",
    MACHINES: "machine",
}


@dataclass(frozen=True)
class Check:
    what: str
    state: str  # ok | problem | optional (missing, but only one backend needs it)
    detail: str
    todo: str = ""


class Checks(list):
    """The rows of ``check_environment()``; shown as a table in a notebook."""

    @property
    def ok(self) -> bool:
        return all(check.state != PROBLEM for check in self)

    @property
    def problems(self) -> list[Check]:
        return [check for check in self if check.state == PROBLEM]

    def frame(self):
        import pandas as pd

        return pd.DataFrame([check.__dict__ for check in self])

    def _repr_html_(self) -> str:
        # The characters themselves, not entities: to_html escapes every cell, as it must for the details.
        marks = {OK: "\u2713", PROBLEM: "\u2717", OPTIONAL: "\u2013"}
        rows = [[check.what, marks[check.state], check.detail, check.todo] for check in self]
        summary = "Ready." if self.ok else f"{len(self.problems)} problem(s): see the last column."
        return f"<p><b>{summary}</b></p>" + Table(["what", "state", "detail", "todo"], rows).html()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _packages() -> Check:
    wanted = ["flask", "celery", "keras", "tensorflow-cpu", "onnxruntime", "ipywidgets"]
    found = {name: _version(name) for name in wanted}
    if not found["tensorflow-cpu"]:
        found["tensorflow-cpu"] = _version("tensorflow")
    missing = [name for name, version in found.items() if version is None and name != "onnxruntime"]
    detail = ", ".join(f"{name} {version}" for name, version in found.items() if version)
    if missing:
        return Check("Python packages", PROBLEM, f"missing: {', '.join(missing)}",
                     "run `bash scripts/setup.sh` from the repository, then restart the kernel")
    return Check("Python packages", OK, f"Python {platform.python_version()}; {detail}")


def _rabbitmq() -> Check:
    from ..infra.rabbitmq import find_programs

    try:
        server, _ = find_programs()
    except LabkitError as exc:
        return Check("RabbitMQ (local backend)", PROBLEM, str(exc), "sudo apt-get install -y rabbitmq-server")
    return Check("RabbitMQ (local backend)", OK, server)


def _data(settings: Settings) -> Check:
    from production_server import data

    candidates = ([Path(settings.data_dir) / data.FILENAME] if settings.data_dir else []) + data.candidate_paths()
    for path in candidates:
        if path.is_file():
            if data.checksum(path.read_bytes()) != data.SHA256:
                return Check("Pima data set", PROBLEM, f"{path} is not the expected file (sha256 differs)",
                             "delete it; `labkit train` downloads the original")
            return Check("Pima data set", OK, str(path))
    return Check("Pima data set", PROBLEM, "not found in " + ", ".join(str(p.parent) for p in candidates),
                 "run `labkit train` once with a network connection (it downloads the file), "
                 "or set LABKIT_DATA_DIR to the folder that holds it")


def _model(settings: Settings) -> Check:
    metadata = Path(settings.model_dir) / "metadata.json"
    if not metadata.is_file():
        return Check("trained model", PROBLEM, f"no model in {settings.model_dir}",
                     "run `labkit train` (about a minute), or labkit.train() in a cell")
    import json

    try:
        info = json.loads(metadata.read_text())
    except ValueError as exc:
        return Check("trained model", PROBLEM, f"{metadata} is not valid JSON ({exc})", "run `labkit train` again")
    return Check("trained model", OK,
                 f"version {info.get('version', '?')}, held-out accuracy {info.get('accuracy', '?')}, "
                 f"in {settings.model_dir}")


def _docker() -> Check:
    if not shutil.which("docker"):
        return Check("Docker engine (docker backend)", PROBLEM, "no docker command",
                     "only needed for backend='docker'; the local backend runs the same stack")
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return Check("Docker engine (docker backend)", PROBLEM, "`docker info` did not answer in 10 s",
                     "only needed for backend='docker'")
    if done.returncode != 0 or not done.stdout.strip():
        return Check("Docker engine (docker backend)", PROBLEM, "the docker command finds no running engine",
                     "only needed for backend='docker'; start Docker, or use the local backend")
    return Check("Docker engine (docker backend)", OK, f"engine {done.stdout.strip()}")


def _machines(settings: Settings) -> Check:
    from ..backends import machine as machines
    from ..backends.machine.image import recipe_key

    if problems := machines.missing():
        return Check(MACHINES, PROBLEM, "needs " + "; ".join(problems),
                     "only needed for backend='machine' (Task 1 contextualized by real cloud-init on this host)")
    built = (settings.machine_images / recipe_key() / "complete").is_file()
    return Check(MACHINES, OK, "systemd-nspawn, debootstrap and nftables; the image is "
                 + ("built" if built else "built at the first deploy (about a minute)"))


def cloud_names(config) -> list[str]:
    """The clouds a student described: clouds.yaml entries, and "envvars" for a sourced RC file."""
    clouds = config.cloud_config.get("clouds", {})
    # openstacksdk invents a cloud called "defaults" (no auth at all) when it found nothing.
    return [name for name, entry in clouds.items() if name != "defaults" or entry.get("auth")]


def _openstack(env: dict) -> Check:
    try:
        from openstack.config import loader
    except ImportError:
        return Check("OpenStack credentials", PROBLEM, "openstacksdk is not installed",
                     "only needed for backend='openstack': pip install openstacksdk")
    try:
        names = cloud_names(loader.OpenStackConfig(load_envvars=True))
    except Exception as exc:  # a broken clouds.yaml must not stop the other checks
        return Check("OpenStack credentials", PROBLEM, f"clouds.yaml could not be read ({exc})",
                     "fix the file (~/.config/openstack/clouds.yaml)")
    chosen = env.get("OS_CLOUD")
    if chosen and chosen not in names:
        return Check("OpenStack credentials", PROBLEM, f"OS_CLOUD={chosen!r} is not in clouds.yaml ({names})",
                     "choose one of the listed clouds in 00-setup, or fix clouds.yaml")
    if not names:
        return Check("OpenStack credentials", PROBLEM, "no clouds.yaml entry and no OS_* variables",
                     "only needed for backend='openstack': download clouds.yaml from your dashboard")
    return Check("OpenStack credentials", OK, "clouds: " + ", ".join(names) + (f" (chosen: {chosen})" if chosen else ""))


def check_environment(settings: Settings | None = None, docker: bool = True) -> Checks:
    """What the lab needs, one row each, with what to do about anything missing."""
    settings = settings or Settings.from_env()
    env = _userconfig.environ()
    checks = Checks([_packages(), _rabbitmq(), _data(settings), _model(settings)])
    if docker:
        checks.append(_docker())
    checks.append(_machines(settings))
    checks.append(_openstack(env))
    # What only one backend needs is a problem only when that backend is the chosen one.
    return Checks(
        replace(c, state=OPTIONAL) if c.state == PROBLEM and ONLY_FOR.get(c.what, settings.backend) != settings.backend
        else c
        for c in checks
    )
