"""Stand-ins for the Compose stack's base images, for a machine where no container registry answers.

The docker-server template builds the server's image ``FROM python:3.11-slim-bookworm``
and runs ``rabbitmq:3.13-alpine`` and ``nginx:stable``. Where this host reaches no
registry (this lab's CI, a campus without Docker Hub), the machine gets images of those
names made here from Debian 12 packages instead: a copy of the Debian 12 machine image
with Python 3.11, RabbitMQ and nginx added, which the machine's Docker imports when it
starts and commits under each name with the command the official image has. The
Dockerfile and compose.yaml run unchanged against them.

They are stand-ins, good for testing the Dockerfile, the compose file, the health checks
and labkit's commands, not the official images: RabbitMQ is Debian's 3.10 (Alpine's 3.13
in the real one), nginx Debian's 1.22. Where a registry answers, the machine pulls the
real images and none of this is used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import httpx

from . import image as _image

SUITE = "bookworm"  # python:3.11-slim-bookworm's Debian, and its Python
PACKAGES = ("python3-venv", "rabbitmq-server", "nginx")  # beside the machine image's python3, CA, procps
VENV = "/usr/local/python"  # where the stand-in's pip installs, as /usr/local is the official image's
RECIPE = 2  # bump when the build changes: a cached tar of an older recipe is built again
REGISTRY = "https://registry-1.docker.io/v2/"

# The official images' entry points, as far as the compose file relies on them: RabbitMQ creates the
# user of RABBITMQ_DEFAULT_USER/PASS (and no guest); nginx runs in the foreground.
RABBITMQ_ENTRYPOINT = """\
#!/bin/sh
# labkit's stand-in for rabbitmq's entry point: the default user from the environment, no guest.
set -e
mkdir -p /etc/rabbitmq/conf.d
cat > /etc/rabbitmq/conf.d/10-labkit.conf <<EOF
default_user = ${RABBITMQ_DEFAULT_USER:?set RABBITMQ_DEFAULT_USER}
default_pass = ${RABBITMQ_DEFAULT_PASS:?set RABBITMQ_DEFAULT_PASS}
listeners.tcp.default = 5672
EOF
chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
exec "$@"
"""
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Each name the Dockerfile and compose.yaml use, and what `docker commit --change` gives it.
IMAGES = {
    "python:3.11-slim-bookworm": [f"ENV PATH={PATH}", 'CMD ["python3"]'],
    "rabbitmq:3.13-alpine": [f"ENV PATH={PATH}", 'ENTRYPOINT ["/usr/local/bin/labkit-rabbitmq-entrypoint"]',
                             'CMD ["rabbitmq-server"]', "EXPOSE 5672"],
    "nginx:stable": [f"ENV PATH={PATH}", 'CMD ["nginx", "-g", "daemon off;"]', "STOPSIGNAL SIGQUIT",
                     "EXPOSE 80"],
}
TAR_ON_MACHINE = "/var/lib/labkit/stand-ins.tar"
BASE_TAG = "labkit/stand-in:base"


def registry_reachable(timeout: float = 5.0) -> bool:
    """Whether Docker Hub answers this host at all (its API says 401 to anyone not logged in)."""
    try:
        httpx.get(REGISTRY, timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


def recipe_key() -> str:
    text = json.dumps({"base": _image.recipe_key(SUITE), "packages": PACKAGES, "recipe": RECIPE,
                       "entry": RABBITMQ_ENTRYPOINT}, sort_keys=True)
    return f"stand-ins-{SUITE}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def ensure(cache: Path) -> Path:
    """The stand-ins' tree as a tar in the image cache, built first if it is not there (about a minute)."""
    tar = cache / f"{recipe_key()}.tar"
    if tar.is_file():
        return tar
    # The base first: it takes the cache's lock itself.
    base = _image.ensure(cache, suite=SUITE)

    def build(partial: Path) -> None:
        tree = cache / f"{recipe_key()}.tree"
        shutil.rmtree(tree, ignore_errors=True)
        _build(tree, base)
        _image._run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(partial), "."], "tar", timeout=600)
        shutil.rmtree(tree, ignore_errors=True)

    def prune() -> None:
        for old in cache.glob(f"stand-ins-{SUITE}-*.tar"):
            if old != tar:
                old.unlink()  # an older recipe's

    _image.build_once(cache, tar, build, after=prune)
    return tar


def _build(tree: Path, base: _image.Image) -> None:
    # From the machine image of the same Debian (built anyway for Task 1, and in the cache): a copy
    # takes a second where another debootstrap takes most of a minute.
    _image._run(["cp", "-a", "--reflink=auto", str(base.root), str(tree)], "copying the machine image", timeout=600)
    _image._chroot(tree, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                         f"--no-install-recommends {' '.join(PACKAGES)} && "
                         f"python3 -m venv {VENV} && rm -f /etc/nginx/sites-enabled/default && "
                         # As in the official image: the logs go to the container's output. Debian's own
                         # files belong to www-data, which the master (without CAP_DAC_OVERRIDE) cannot open.
                         "ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log && "
                         "apt-get clean",
                   timeout=1200)
    entry = tree / "usr/local/bin/labkit-rabbitmq-entrypoint"
    entry.write_text(RABBITMQ_ENTRYPOINT)
    entry.chmod(0o755)
    # What a running machine's Docker does not need, and what each container gets of its own.
    shutil.rmtree(tree / "var/lib/apt/lists", ignore_errors=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True)
    for path in (tree / "etc/hostname", tree / "etc/resolv.conf"):
        path.unlink(missing_ok=True)


def importer() -> str:
    """The script the machine's Docker runs once it has started (``ExecStartPost``): import and name."""
    lines = ["#!/bin/sh",
             "# labkit: stand-ins for the Compose stack's base images, made from Debian packages where no",
             "# container registry answered (labkit/backends/machine/standins.py). Each name once; quick after that.",
             "set -e",
             f'[ -f {TAR_ON_MACHINE} ] || exit 0',
             f"docker image inspect {BASE_TAG} >/dev/null 2>&1 || docker import {TAR_ON_MACHINE} {BASE_TAG} >/dev/null"]
    for name, changes in IMAGES.items():
        flags = " ".join("--change " + _quote(change) for change in changes)
        lines.append(f"docker image inspect {name} >/dev/null 2>&1 || {{ c=$(docker create {BASE_TAG} /bin/true) && "
                     f"docker commit {flags} \"$c\" {name} >/dev/null && docker rm \"$c\" >/dev/null; }}")
    return "\n".join(lines) + "\n"


DROP_IN = """\
# labkit: the stand-in base images, imported once Docker answers (see /usr/local/sbin/labkit-stand-ins)
[Service]
ExecStartPost=/bin/sh /usr/local/sbin/labkit-stand-ins
TimeoutStartSec=600
"""


def machine_files(tar: Path) -> dict[str, bytes | Path]:
    """What goes on the docker-server machine's disk before it boots, so that its Docker has the stand-ins."""
    return {
        TAR_ON_MACHINE: tar,
        "/usr/local/sbin/labkit-stand-ins": importer().encode(),
        "/etc/systemd/system/docker.service.d/labkit-stand-ins.conf": DROP_IN.encode(),
    }


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"

