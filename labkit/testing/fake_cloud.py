"""A fake OpenStack cloud whose servers are real local deployments.

It answers the same calls as ``backends.openstack.cloud.OpenStackCloud``, so the
OpenStack backend's whole path (launch, watch the markers in the console log,
health, predict, scale out, bake, destroy) runs here and in CI with no cloud.
What it cannot do is run cloud-init or systemd. A "server" has a disk (a
folder) where it writes the user-data's ``write_files`` and unpacks the
release it carries; then it starts RabbitMQ with the broker user and password
from the ``server.env`` on that disk and the production server with the local
backend, on an address of its own in the loopback range (127.0.0.N, port
5100, as a VM would answer on its floating IP). A worker VM starts real
Celery workers from its unpacked release, joining the server's real broker;
the fake network lets them through only when a security group rule lets the
group's members reach 5672. An image is a copy of a server's disk. The console
log is the fake VM's own progress markers.

Its state (servers, addresses, groups, images) lives in a folder, so another
process can reattach to it, as to a real cloud.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import yaml

from production_server import archives

from .._config import Settings
from .._errors import CloudError, ConfigError, DeployError
from .._state import RunDir
from ..backends.openstack.cloud import (
    BAKED_TAG,
    BROKER_PORT,
    OWNER_KEY,
    PREFIX,
    ROLE_KEY,
    FloatingIP,
    LabResources,
    Resolved,
    SecurityGroup,
    ServerInfo,
)
from ..infra import cloudinit
from ..infra import procs as _procs
from ..infra.rabbitmq import Node
from ..notebook.progress import Progress

ENV_FILE = "etc/labkit/server.env"
APP_DIR = "opt/labkit/app"
RELEASE = "opt/labkit/release.tar.gz"
# What `bake` takes off a server before the snapshot (the broker's data too), as on a real VM.
SECRET_FILES = (ENV_FILE, "opt/labkit/rabbitmq/configure")
CLOUD_INIT_STATE = "var/lib/cloud"
BROKER_DATA = "var/lib/rabbitmq"
WORKER_READY_TIMEOUT = 120.0
# The templates' final_message, as cloud-init prints it once it has run the user-data.
FINAL_MESSAGE = "[labkit] vm-{server_id}: cloud-init fake has run the user-data (the step markers above say how it went)\n"


class FakeCloud:
    def __init__(self, root: Path, settings: Settings):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings = replace(settings, home=self.root / "vms", progress="lines")
        self._db = self.root / "cloud.json"

    def record(self) -> dict:
        """What a deployment's state keeps, to find this cloud again."""
        return {"kind": "fake", "root": str(self.root), "model_dir": str(self.settings.model_dir),
                "data_dir": str(self.settings.data_dir) if self.settings.data_dir else None}

    @classmethod
    def from_record(cls, record: dict) -> "FakeCloud":
        return cls(Path(record["root"]), Settings(model_dir=record["model_dir"], data_dir=record["data_dir"]))

    # -- storage ------------------------------------------------------------
    def _load(self) -> dict:
        if self._db.is_file():
            return json.loads(self._db.read_text())
        return {"servers": {}, "floating_ips": {}, "security_groups": {}, "keypairs": {}}

    def _save(self, db: dict) -> None:
        # Whole or not at all: a VM booting in a background thread reads the file meanwhile (CI once
        # read it half-written: "Expecting value: line 1 column 1").
        tmp = self._db.with_name(f".{self._db.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(db, indent=2))
        os.replace(tmp, self._db)

    def _console(self, server_id: str) -> Path:
        return self.root / "console" / f"{server_id}.log"

    def _disk(self, server_id: str) -> Path:
        return self.root / "disks" / server_id

    def _memory(self, server_id: str) -> Path:
        """The VM's /run: a tmpfs on a real VM, so never in a snapshot."""
        return self.root / "run" / server_id

    def disk(self, server_id: str) -> Path | None:
        """The folder that is this server's disk: its /opt/labkit is disk/opt/labkit (None: reached over SSH)."""
        return self._disk(server_id)

    def _run(self, server_id: str, part: str = "") -> RunDir:
        return RunDir(self.settings.deployments_dir, f"vm-{server_id}{part}")

    # -- the adapter's calls ------------------------------------------------
    def check_credentials(self) -> dict:
        return {"cloud": "fake", "project": "labkit-fake"}

    def resolve(self, image: str, flavor: str, network: str | None) -> Resolved:
        """Any name is a stock image ("image-1"), except the images made here (``create_image``)."""
        for image_id, found in self._load().get("images", {}).items():
            if image in (image_id, found["name"]):
                return Resolved(image_id, "flavor-1", "network-1", found["name"], flavor, network or "private",
                                image_baked=BAKED_TAG in found["tags"])
        return Resolved("image-1", "flavor-1", "network-1", image, flavor, network or "private")

    def ensure_keypair(self, name: str, public_key: str) -> dict:
        db = self._load()
        created = name not in db["keypairs"]
        db["keypairs"].setdefault(name, public_key)
        self._save(db)
        return {"name": name, "fingerprint": "fake", "created": created}

    def ensure_security_group(self, name: str, ssh_cidr: str, web_cidr: str) -> SecurityGroup:
        db = self._load()
        rules = [{"protocol": "tcp", "port": 22, "cidr": ssh_cidr}, {"protocol": "tcp", "port": 5100, "cidr": web_cidr}]
        created = name not in db["security_groups"]
        # As the real adapter: the members-only rules survive, anything else is replaced.
        kept = [r for r in db["security_groups"].get(name, []) if r.get("remote_group") == name]
        db["security_groups"][name] = rules + kept
        self._save(db)
        return SecurityGroup(id=f"sg-{name}", name=name, ingress=rules, created=created)

    def allow_within_group(self, name: str, port: int = BROKER_PORT) -> bool:
        db = self._load()
        if name not in db["security_groups"]:
            raise CloudError(f"Expected one security group named {name!r}, found 0: deploy the server first, then retry.")
        rule = {"protocol": "tcp", "port": port, "remote_group": name}
        if rule in db["security_groups"][name]:
            return False
        db["security_groups"][name].append(rule)
        self._save(db)
        return True

    def create_server(self, name, image_id, flavor_id, network_id, keypair, security_group,
                      userdata: str, metadata: dict, tags=None) -> ServerInfo:
        problems = cloudinit.check(userdata)
        if problems:
            raise CloudError("Nova would refuse this user-data: " + "; ".join(problems))
        server_id = secrets.token_hex(6)
        db = self._load()
        if image_id != "image-1" and image_id not in db.get("images", {}):
            raise CloudError(f"There is no image {image_id!r} on this cloud: bake one first, or use a stock image.")
        fixed = next(f"10.0.0.{n}" for n in range(10, 255)
                     if f"10.0.0.{n}" not in {s.get("fixed_ip") for s in db["servers"].values()})
        db["servers"][server_id] = {
            "name": name, "status": "BUILD", "metadata": metadata, "tags": list(tags or []),
            "security_groups": [security_group], "key_name": keypair, "address": None, "fixed_ip": fixed,
            "image_id": image_id,
            "workers": 0 if metadata.get(ROLE_KEY) == "development" else _workers_in(userdata),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._save(db)
        disk = self._disk(server_id)
        if image_id in db.get("images", {}):
            shutil.copytree(self.root / "images" / image_id, disk)
        disk.mkdir(parents=True, exist_ok=True)
        (disk / CLOUD_INIT_STATE).mkdir(parents=True, exist_ok=True)
        (disk / CLOUD_INIT_STATE / "user-data.txt").write_text(userdata)
        if metadata.get(ROLE_KEY) == "development":
            threading.Thread(target=self._boot_development_vm, args=(server_id,), daemon=True).start()
        elif "path: /etc/systemd/system/labkit-web.service" not in userdata:
            # A worker VM needs no floating IP: it boots at once, in the background.
            threading.Thread(target=self._boot_worker_vm, args=(server_id,), daemon=True).start()
        return self._server(server_id)

    def _server(self, server_id: str) -> ServerInfo:
        """A server the caller knows is there (it made it, or listed it)."""
        info = self.get_server(server_id)
        if info is None:
            raise CloudError(f"The server {server_id} does not exist any more: run `labkit down`, then deploy again.")
        return info

    def get_server(self, server_id: str) -> ServerInfo | None:
        server = self._load()["servers"].get(server_id)
        return None if server is None else self._info(server_id, server)

    @staticmethod
    def _info(server_id: str, server: dict) -> ServerInfo:
        return ServerInfo(
            id=server_id, name=server["name"], status=server["status"], fixed_ips=[server["fixed_ip"]],
            floating_ips=[server["address"]] if server["address"] else [], metadata=server["metadata"],
            tags=server["tags"], security_groups=server["security_groups"], key_name=server["key_name"],
            created=server["created"],
        )

    def wait_active(self, server_id: str, timeout: float = 600.0, poll: float = 5.0) -> ServerInfo:
        db = self._load()
        db["servers"][server_id]["status"] = "ACTIVE"
        self._save(db)
        return self._server(server_id)

    def attach_floating_ip(self, server_id: str, pool: str | None = None, **_) -> FloatingIP:
        db = self._load()
        taken = {s["address"] for s in db["servers"].values()}
        address = next(
            a for a in (f"127.0.0.{n}" for n in range(2, 255))
            if a not in taken and not _procs.port_in_use(5100, a)
        )
        db["servers"][server_id]["address"] = address
        db["floating_ips"][address] = {"id": f"fip-{address}", "server_id": server_id,
                                       "owner": db["servers"][server_id]["metadata"].get(OWNER_KEY)}
        self._save(db)
        if db["servers"][server_id]["metadata"].get(ROLE_KEY) == "development":
            return FloatingIP(id=f"fip-{address}", address=address, status="ACTIVE")  # it booted already
        # The VM boots once it has an address; in the fake, "booting" is a local
        # deployment, started in the background so its markers arrive over time.
        threading.Thread(
            target=self._boot, args=(server_id, address, db["servers"][server_id]["workers"]), daemon=True
        ).start()
        return FloatingIP(id=f"fip-{address}", address=address, status="ACTIVE")

    def _boot(self, server_id: str, address: str, workers: int) -> None:
        from ..backends.local.backend import LocalBackend

        fresh = self._brings_release(server_id)
        with self._console_stream(server_id, f"a local deployment at {address}") as stream:
            local = LocalBackend().plan_steps(workers)
            progress = Progress(len(local) + (2 if fresh else 1), "fake VM", "lines", stream=stream)
            try:
                self._contextualize(server_id, progress)
                self._start_services(server_id, address, workers, progress)
            except Exception as exc:
                self._failed(server_id, stream, progress, "boot the fake VM", exc)
                return
            stream.write(FINAL_MESSAGE.format(server_id=server_id))

    def _failed(self, server_id: str, stream, progress: Progress, what: str, exc: Exception) -> None:
        """What a real VM's step runner prints when a step fails; and nothing of it keeps running."""
        stream.write(f"[labkit] step {progress.next_index()}/{progress.total}: {what} FAILED ({exc})\n")
        self._stop_services(server_id)

    @contextlib.contextmanager
    def _console_stream(self, server_id: str, what: str):
        console = self._console(server_id)
        console.parent.mkdir(parents=True, exist_ok=True)
        with open(console, "w") as stream:
            stream.write(f"[    0.000000] Linux version (fake cloud: {what})\n")
            stream.flush()
            yield stream

    def _brings_release(self, server_id: str) -> bool:
        return f"path: /{RELEASE}" in (self._disk(server_id) / CLOUD_INIT_STATE / "user-data.txt").read_text()

    def _contextualize(self, server_id: str, progress: Progress) -> None:
        """cloud-init's part: write the files; unpack the release if the user-data brings one."""
        disk = self._disk(server_id)
        document = yaml.safe_load((disk / CLOUD_INIT_STATE / "user-data.txt").read_text())
        for item in document.get("write_files", []):
            path = disk / item["path"].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            data = item.get("content", "")
            path.write_bytes(base64.b64decode(data) if item.get("encoding") == "b64" else data.encode())
            path.chmod(int(item.get("permissions", "0644"), 8))
        if any(item["path"] == f"/{RELEASE}" for item in document.get("write_files", [])):
            with progress.step("unpack the release"):
                with tarfile.open(disk / RELEASE) as tar:
                    archives.extract(tar, disk / APP_DIR)
        elif not (disk / APP_DIR).is_dir():
            raise DeployError(f"this image holds no /{APP_DIR} and the user-data no release: boot it from a "
                              "stock image with the full template, or from an image made by `labkit bake`")

    def _start_services(self, server_id: str, address: str, workers: int, progress: Progress) -> None:
        """RabbitMQ with the deployment's user from server.env, then the production server."""
        from ..backends.local.backend import LocalBackend

        with progress.step("configure RabbitMQ"):
            broker = urlsplit(_env_file(self._disk(server_id))["SERVER_BROKER_URL"])
            node = replace(Node.plan(self._disk(server_id) / BROKER_DATA, f"vm-{server_id}"),
                           user=broker.username or "", password=broker.password or "")
            mq = self._run(server_id, "-mq")
            mq.create()
            mq.write({"processes": [], "node": node.to_dict()})
            started = [node.start_epmd(mq.logs)]
            mq.write({"processes": [p.to_dict() for p in started], "node": node.to_dict()})
            started.append(node.start_server(mq.logs))
            mq.write({"processes": [p.to_dict() for p in started], "node": node.to_dict()})
        settings = replace(self.settings, host=address, port=5100, broker_url=node.url)
        run = self._run(server_id)
        with run.locked():
            state = LocalBackend().up(run, settings, workers, progress)
        if state["port"] != 5100:  # the local backend moves on when a port is taken; a VM's server cannot
            raise DeployError(f"port 5100 on {address} was taken, so the server listens on {state['port']}")

    def _stop_services(self, server_id: str) -> None:
        from ..backends.local.backend import LocalBackend

        for run in (self._run(server_id), self._run(server_id, "-mq")):
            with run.locked():
                if run.exists():
                    LocalBackend().down(run, run.read())
                run.remove()

    def _boot_worker_vm(self, server_id: str) -> None:
        """A worker VM: real Celery workers from its own unpacked release, on the server's broker."""
        db = self._load()
        server = db["servers"][server_id]
        with self._console_stream(server_id, f"worker VM {server['name']}") as stream:
            fresh = self._brings_release(server_id)
            progress = Progress(3 if fresh else 2, "fake worker VM", "lines", stream=stream)
            try:
                self._contextualize(server_id, progress)
                with progress.step("start the workers"):
                    self._start_workers(server_id, server)
                with progress.step("wait for the workers to reach the broker"):
                    self._wait_workers_ready(server_id)
            except Exception as exc:
                self._failed(server_id, stream, progress, "boot the fake worker VM", exc)
                return
            stream.write(FINAL_MESSAGE.format(server_id=server_id))

    def _boot_development_vm(self, server_id: str) -> None:
        """The development VM: its release unpacked, and the SSH key its template makes at boot."""
        with self._console_stream(server_id, "development VM") as stream:
            progress = Progress(2, "fake development VM", "lines", stream=stream)
            try:
                self._contextualize(server_id, progress)
                with progress.step("make the key this server pushes with"):
                    key = self._disk(server_id) / "home/ubuntu/.ssh/labkit_deploy"
                    key.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit-development",
                                    "-f", str(key)], check=True, capture_output=True)
            except Exception as exc:
                self._failed(server_id, stream, progress, "boot the fake development VM", exc)
                return
            stream.write(FINAL_MESSAGE.format(server_id=server_id))

    def _start_workers(self, server_id: str, server: dict) -> None:
        disk = self._disk(server_id)
        env_file = _env_file(disk)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OS_", "SERVER_", "PYTHONPATH"))},
            "SERVER_BROKER_URL": self._route(env_file["SERVER_BROKER_URL"], server),
            "SERVER_MODEL_DIR": str(disk / APP_DIR / "model"),
            "PYTHONPATH": str(disk / APP_DIR),  # the release this VM got (or its image holds), not ours
            "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
        }
        run = self._run(server_id)
        run.create()
        state: dict = {"processes": []}
        for index in range(1, server["workers"] + 1):
            # As the unit's --hostname worker-%i@%%h: the VM's hostname is its server name.
            cmd = [sys.executable, "-m", "celery", "-A", "production_server.worker", "worker", "--pool", "solo",
                   "--hostname", f"worker-{index}@{server['name']}", "--without-gossip", "--without-mingle",
                   "--loglevel", "INFO"]
            proc = _procs.spawn(f"worker-{index}", cmd, env, run.logs / f"worker-{index}.log", cwd=disk / APP_DIR)
            state["processes"].append(proc.to_dict())
            run.write(state)

    def _route(self, url: str, client: dict) -> str:
        """The fake private network: HOST:5672 reaches the broker of the server with that fixed IP, if allowed."""
        parts = urlsplit(url)
        db = self._load()
        target = next((i for i, s in db["servers"].items() if s.get("fixed_ip") == parts.hostname), None)
        if target is None:
            raise CloudError(f"no server has the private address {parts.hostname}")
        allowed = any(
            rule.get("remote_group") in client["security_groups"] and rule.get("port") == parts.port
            for group in db["servers"][target]["security_groups"]
            for rule in db["security_groups"].get(group, [])
        )
        if not allowed:
            raise CloudError(f"connecting to {parts.hostname}:{parts.port} timed out: no security group rule "
                             "lets this VM reach the server's broker")
        node = cast(dict, self._run(target, "-mq").read())["node"]  # the VM's broker's record, not a deployment's
        return url.replace(f"@{parts.hostname}:{parts.port}/", f"@127.0.0.1:{node['amqp_port']}/", 1)

    def _wait_workers_ready(self, server_id: str) -> None:
        """What the template waits for in the journal: each worker's " ready." line."""
        run = self._run(server_id)
        procs = [_procs.Proc.from_dict(p) for p in run.read()["processes"]]

        def unreachable(dead: list[str]) -> DeployError:
            return DeployError(f"{', '.join(dead) or 'the workers'} did not reach the broker: "
                               + _procs.tail(run.logs / f"{(dead or [procs[0].role])[0]}.log", 5))

        def died() -> None:
            if dead := [p.role for p in procs if not p.alive()]:
                raise unreachable(dead)

        if not _procs.wait_until(lambda: all(" ready." in _procs.tail(run.logs / f"{p.role}.log", 200) for p in procs),
                                 WORKER_READY_TIMEOUT, abort=died):
            raise unreachable([])

    def services(self, server_id: str) -> "FakeServices | None":
        """What SSH and systemd are on a real VM: here, the local deployment behind the server (None: SSH)."""
        return FakeServices(self, server_id)

    def console_log(self, server_id: str, length: int | None = None) -> str:
        path = self._console(server_id)
        text = path.read_text() if path.is_file() else ""
        return "\n".join(text.splitlines()[-length:]) if length else text

    def delete_server(self, server_id: str, wait: bool = True, **_) -> bool:
        db = self._load()
        if db["servers"].pop(server_id, None) is None:
            return False
        self._save(db)
        self._stop_services(server_id)
        with contextlib.suppress(FileNotFoundError):
            self._console(server_id).unlink()
        shutil.rmtree(self._disk(server_id), ignore_errors=True)
        shutil.rmtree(self._memory(server_id), ignore_errors=True)
        return True

    def release_floating_ip(self, ip: str) -> bool:
        db = self._load()
        found = db["floating_ips"].pop(ip, None) is not None
        self._save(db)
        return found

    def delete_security_group(self, group_id: str) -> bool:
        db = self._load()
        name = next((n for n in db["security_groups"] if f"sg-{n}" == group_id), None)
        if name is None:
            return False
        users = sorted(s["name"] for s in db["servers"].values() if name in s["security_groups"])
        if users:
            raise CloudError(
                f"The security group {group_id} is still in use by "
                f"{'the server ' if len(users) == 1 else 'the servers '}{', '.join(users)}: delete "
                f"{'it' if len(users) == 1 else 'them'} first (`labkit cleanup` deletes servers before "
                "security groups), then retry."
            )
        del db["security_groups"][name]
        self._save(db)
        return True

    def private_address(self, server_id: str) -> str:
        server = self.get_server(server_id)
        if server is None:
            raise CloudError(f"The server {server_id} does not exist any more: run `labkit down`, then deploy again.")
        return server.fixed_ips[0]

    def find_servers(self, metadata: dict[str, str]) -> list[ServerInfo]:
        servers = [self._server(i) for i in self._load()["servers"]]
        return [s for s in servers if all(s.metadata.get(k) == str(v) for k, v in metadata.items())]

    def create_image(self, server_id: str, name: str, metadata: dict[str, str]) -> dict:
        """A snapshot: a copy of the server's disk, as it is now (not its memory, not its /run)."""
        db = self._load()
        if server_id not in db["servers"]:
            raise CloudError(f"The server {server_id} does not exist: nothing to snapshot.")
        image_id = f"image-{secrets.token_hex(4)}"
        shutil.copytree(self._disk(server_id), self.root / "images" / image_id)
        db.setdefault("images", {})[image_id] = {
            "name": name, "status": "saving", "tags": [BAKED_TAG], "metadata": dict(metadata),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._save(db)
        return self._image(image_id)

    def wait_image_active(self, image_id: str, timeout: float = 1800.0, poll: float = 5.0) -> dict:
        db = self._load()
        db["images"][image_id]["status"] = "active"
        self._save(db)
        return self._image(image_id)

    def _image(self, image_id: str) -> dict:
        found = self._load()["images"][image_id]
        return {"id": image_id, "name": found["name"], "status": found["status"], "tags": found["tags"],
                "created": found["created"]}

    def image_files(self, image_id: str) -> Path:
        """The image's disk, for tests that look inside a snapshot."""
        return self.root / "images" / image_id

    def add_image(self, name: str, tags: list[str] | tuple[str, ...] = ()) -> str:
        """Upload an image (a snapshot, say): the fake's only way to get one. Returns its ID."""
        db = self._load()
        image_id = f"image-{secrets.token_hex(4)}"
        db.setdefault("images", {})[image_id] = {
            "name": name, "status": "active", "tags": list(tags),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._save(db)
        return image_id

    def delete_image(self, image_id: str) -> bool:
        db = self._load()
        found = db.get("images", {}).pop(image_id, None) is not None
        self._save(db)
        shutil.rmtree(self.root / "images" / image_id, ignore_errors=True)
        return found

    def list_lab_resources(self, owner: str | None) -> LabResources:
        """As ``OpenStackCloud.list_lab_resources``: owned servers and IPs, ``labkit-`` groups and images."""
        db = self._load()
        servers = [self._server(i) for i in db["servers"]]
        servers = [s for s in servers if OWNER_KEY in s.metadata and (owner is None or s.owner == owner)]
        addresses = {ip for s in servers for ip in s.floating_ips}
        ips = [
            FloatingIP(id=v["id"], address=a, status="ACTIVE" if v.get("server_id") in db["servers"] else "DOWN",
                       description=f"{OWNER_KEY}={v.get('owner')} {PREFIX}server={v.get('server_id')}")
            for a, v in db["floating_ips"].items()
            if a in addresses or owner is None or v.get("owner") == owner
        ]
        groups = [
            {"id": f"sg-{n}", "name": n,
             "in_use_by": sorted(s["name"] for s in db["servers"].values() if n in s["security_groups"])}
            for n in db["security_groups"] if n.startswith(PREFIX)
        ]
        images = [
            {"id": i, "name": v["name"], "status": v["status"], "tags": v["tags"], "created": v["created"]}
            for i, v in db.get("images", {}).items()
            if v["name"].startswith(PREFIX) or any(t.startswith(PREFIX) for t in v["tags"])
        ]
        return LabResources(servers=servers, floating_ips=ips, security_groups=groups, images=images)

class FakeServices:
    """The server's services, as ``SystemdOverSSH`` drives them on a real VM."""

    def __init__(self, cloud: FakeCloud, server_id: str):
        self.cloud = cloud
        self.server_id = server_id
        self.run = cloud._run(server_id)

    def scale_workers(self, current: int, target: int) -> None:
        from ..backends.local.backend import LocalBackend

        with self.run.locked():
            LocalBackend().scale(self.run, self.run.read(), target)

    def logs(self, lines: int) -> dict[str, str]:
        from ..backends.local.backend import LocalBackend

        return LocalBackend().logs(self.run, self.run.read(), lines)

    def install_cicd(self, code: bytes, development_key: str) -> None:
        """As on a VM: the code unpacked into the app, the key authorised for the deploy user."""
        disk = self.cloud._disk(self.server_id)
        with tarfile.open(fileobj=io.BytesIO(code)) as tar:
            archives.extract(tar, disk / APP_DIR)
        keys = disk / "var/lib/labkit-deploy/.ssh/authorized_keys"
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(f"restrict {development_key}\n")

    def host_key(self) -> str:
        return f"ssh-ed25519 {base64.b64encode(b'fake host key of ' + self.server_id.encode()).decode()}"

    def serve_model_from(self, pointer: str, workers: int) -> None:
        from ..backends.local.backend import LocalBackend

        with self.run.locked():
            LocalBackend().serve_model_from(self.run, self.run.read(), Path(pointer))

    def seal(self, broker_user: str, workers: int) -> None:
        """Before a snapshot: stop the services, drop the broker's data, move the secrets to /run, clean cloud-init."""
        self.cloud._stop_services(self.server_id)  # the broker's user goes with its data, below
        disk, memory = self.cloud._disk(self.server_id), self.cloud._memory(self.server_id)
        shutil.rmtree(disk / BROKER_DATA, ignore_errors=True)
        memory.mkdir(parents=True, exist_ok=True)
        for name in SECRET_FILES:
            target = memory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(disk / name, target)
        shutil.rmtree(disk / CLOUD_INIT_STATE, ignore_errors=True)

    def unseal(self, workers: int) -> None:
        """After the snapshot: the secrets back, the services started again."""
        disk, memory = self.cloud._disk(self.server_id), self.cloud._memory(self.server_id)
        for name in SECRET_FILES:
            shutil.move(memory / name, disk / name)
        shutil.rmtree(memory, ignore_errors=True)
        address = self.cloud._server(self.server_id).public_ip or ""
        with open(self.cloud._console(self.server_id), "a") as stream:
            progress = Progress(99, "fake VM", "off", stream=stream)
            self.cloud._start_services(self.server_id, address, workers, progress)


def _env_file(disk: Path) -> dict[str, str]:
    path = disk / ENV_FILE
    if not path.is_file():
        raise DeployError(f"/{ENV_FILE} is missing: the user-data did not write it")
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _workers_in(userdata: str) -> int:
    """How many worker services the user-data starts (labkit-worker@N.service)."""
    document = yaml.safe_load(userdata)
    units = set(re.findall(r"labkit-worker@(\d+)\.service", " ".join(document.get("runcmd", []))))
    if not units:
        raise ConfigError("The user-data starts no worker: nothing would answer predictions.")
    return len(units)

