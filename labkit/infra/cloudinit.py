"""The cloud-init user-data that turns a fresh VM into the production server.

The templates live in ``cloud-init/`` at the top of the repository, so the
notebooks can show them as they are; this module fills them in:

- the release: the production server's code, its pinned requirements and
  the trained model, as a reproducible tar.gz inside the user-data;
- the secrets: a broker user and password generated per deployment, or
  placeholders when the text is only to be read;
- the chart library's version and checksum (it is too large for the
  user-data, so the VM fetches it with npm and checks it against ours).

Nova accepts at most 65,535 bytes of user-data after base64; labkit sends it
gzip-compressed (``encode``), which cloud-init unpacks itself. ``check`` says
whether a rendered document fits and, given cloud-init's JSON schema,
whether it validates.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigError
from .._files import SERVER_DIR, TEMPLATE_DIR
from . import nginx as _nginx
from .rabbitmq import new_account

CHART_FILE = SERVER_DIR / "static" / "vendor" / "chart.umd.min.js"
CHART_VERSION = "4.6.1"
WEB_PORT = 5100
GUNICORN_SOCKET = "/run/labkit-web/gunicorn.sock"  # the VM's: RuntimeDirectory of labkit-web.service
USERDATA_LIMIT = 65_535  # bytes, as sent: after gzip and base64 (Nova)

TEMPLATES = {
    "single-server": "Task 1, the whole production server on one VM, without Docker",
    "worker": "scale-out, a VM of Celery workers joining an existing server's broker",
    "docker-server": "Task 2, the production server as Docker Compose containers on one VM",
    "development-server": "CI/CD, the development server: retrains the model and pushes it to production",
}


@dataclass(frozen=True)
class Secrets:
    broker_user: str
    broker_password: str

    @classmethod
    def generate(cls) -> "Secrets":
        return cls(*new_account())

    @classmethod
    def placeholders(cls) -> "Secrets":
        return cls("BROKER_USER", "BROKER_PASSWORD")


@dataclass(frozen=True)
class Release:
    b64: str
    model_version: str
    size: int  # bytes of the tar.gz


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(path), arcname)
    # Fixed owner and time: the same code and model give the same bytes.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o644  # not the checkout's: whoever unpacks it as root, every user of the VM must read it
    with open(path, "rb") as f:
        tar.addfile(info, f)


CICD_DIR = SERVER_DIR / "cicd"


def _targz(members: list[tuple[Path, str]]) -> bytes:
    """The files as a reproducible tar.gz: (path here, name in the archive) in the order given."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for path, arcname in members:
                _add(tar, path, arcname)
    return buffer.getvalue()


def cicd_code() -> bytes:
    """``production_server/cicd/`` as tar.gz, to unpack into a VM's /opt/labkit/app."""
    return _targz([(p, str(p.relative_to(SERVER_DIR.parent))) for p in sorted(CICD_DIR.glob("*.py"))])


# What only a Task 2 VM (and the docker backend) needs, to build and run the containers. The other
# VMs go without: the single-server user-data is within a few KB of Nova's limit with them.
CONTAINER_FILES = {"Dockerfile", "Dockerfile.dockerignore", "compose.yaml", "nginx.conf"}


def release(model_dir: Path, containers: bool = True) -> Release:
    """The server's code (without the vendored chart library), requirements and model, as tar.gz.

    ``containers``: with what builds and runs the Compose stack (``CONTAINER_FILES``).
    """
    model_dir = Path(model_dir)
    metadata = model_dir / "metadata.json"
    if not metadata.is_file():
        raise ConfigError(f"No trained model in {model_dir}: run `labkit train` first.")
    # Not cicd/: the hooks' code would push single-server's user-data past the 64 KiB limit, and
    # only a deployment that sets up CI/CD needs it; `labkit cicd init` copies it to the VM.
    files = sorted(
        p for p in SERVER_DIR.rglob("*")
        if p.is_file() and not {"__pycache__", "vendor"} & set(p.parts) and CICD_DIR not in p.parents
        and (containers or p.name not in CONTAINER_FILES)
    )
    names = ["model.keras", "metadata.json"]
    if (model_dir / "model.onnx").is_file():  # models trained before the ONNX engine have none
        names.insert(1, "model.onnx")
    raw = _targz([(p, str(p.relative_to(SERVER_DIR.parent))) for p in files]
                 + [(SERVER_DIR / "requirements.txt", "requirements.txt")]
                 + [(model_dir / name, f"model/{name}") for name in names])
    version = json.loads(metadata.read_text())["version"]
    return Release(base64.b64encode(raw).decode(), version, len(raw))


def templates() -> dict[str, str]:
    """Template names and what each builds."""
    return dict(TEMPLATES)


def render(
    name: str,
    model_dir: Path,
    *,
    deployment: str = "lab",
    workers: int = 1,
    secrets: Secrets | None = None,
    broker_host: str = "BROKER_HOST",
    baked: bool = False,
    login_user: str = "ubuntu",
) -> str:
    """The #cloud-config document for template ``name``; placeholders for secrets unless given.

    ``login_user``: the image's default user (who labkit logs in as), for the development server.

    ``baked``: for a VM booting from an image labkit baked (``bake``): no
    release and no installs, only this deployment's secrets and services.
    """
    import jinja2

    if name not in TEMPLATES:
        raise ConfigError(f"No cloud-init template {name!r}: choose one of {', '.join(TEMPLATES)}.")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    chart_sha = hashlib.sha256(CHART_FILE.read_bytes()).hexdigest()
    return env.get_template(f"{name}.yaml.j2").render(
        description=TEMPLATES[name],
        deployment=deployment,
        workers=workers,
        secrets=secrets or Secrets.placeholders(),
        release=None if baked else release(model_dir, containers=name == "docker-server"),
        chart={"version": CHART_VERSION, "sha256": chart_sha},
        broker_host=broker_host,
        baked=baked,
        # The buffering proxy on 5100, Debian's nginx in front of gunicorn's socket, as the local backend has it.
        nginx_site=_nginx.site(f"0.0.0.0:{WEB_PORT}", f"unix:{GUNICORN_SOCKET}"),
        gunicorn_socket=GUNICORN_SOCKET,
        login_user=login_user,
    )


def encode(userdata: str) -> str:
    """The user-data as it goes to Nova: gzip-compressed, then base64.

    cloud-init unpacks gzip-compressed user-data itself (its documented
    "Gzip Compressed Content" format). Without it the release archive,
    already base64 inside the YAML, would be base64-encoded a second time
    on the way: 77 KB against Nova's 65,535 bytes, where gzip brings the
    same document to 56 KB. The bytes are reproducible (no timestamp).
    """
    return base64.b64encode(gzip.compress(userdata.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def decode(encoded: str) -> str:
    """``encode`` undone, as cloud-init does on the VM (also takes plain base64, as older labkit sent)."""
    raw = base64.b64decode(encoded)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")


def encoded_size(userdata: str) -> int:
    """Bytes Nova counts: the user-data as ``encode`` sends it."""
    return len(encode(userdata))


def check(userdata: str, schema: dict | None = None) -> list[str]:
    """Problems with a rendered document: size, YAML, and (given the schema) cloud-init's own rules."""
    import yaml

    problems = []
    if not userdata.startswith("#cloud-config\n"):
        problems.append("the first line must be #cloud-config")
    size = encoded_size(userdata)
    if size > USERDATA_LIMIT:
        problems.append(f"{size} bytes after gzip and base64, more than Nova's {USERDATA_LIMIT}")
    try:
        document = yaml.safe_load(userdata)
    except yaml.YAMLError as exc:
        return problems + [f"not valid YAML: {exc}"]
    if schema is not None:
        import jsonschema

        validator = jsonschema.Draft4Validator(schema)
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.path) or "(top)"
            problems.append(f"{where}: {error.message}")
    return problems
