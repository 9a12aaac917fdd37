"""A fake OpenStack cloud whose servers are real local deployments.

It answers the same calls as ``openstack_cloud.OpenStackCloud``, so the
OpenStack backend's whole path (launch, watch the markers in the console log,
health, predict, destroy) runs here and in CI with no cloud. What it cannot
do is run cloud-init: a "server" reads the worker count from the user-data it
was given, then starts the production server with the local backend on an
address of its own in the loopback range (127.0.0.N, port 5100, as a VM
would), and its console log is that deployment's own progress markers.

Its state (servers, addresses, groups) lives in a folder, so another process
can reattach to it, as to a real cloud.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .. import _cloudinit, _procs
from .._config import Settings
from .._errors import CloudError, ConfigError
from .._progress import Progress
from .._state import RunDir
from .openstack_cloud import OWNER_KEY, PREFIX, FloatingIP, LabResources, Resolved, SecurityGroup, ServerInfo


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
        self._db.write_text(json.dumps(db, indent=2))

    def _console(self, server_id: str) -> Path:
        return self.root / "console" / f"{server_id}.log"

    # -- the adapter's calls ------------------------------------------------
    def check_credentials(self) -> dict:
        return {"cloud": "fake", "project": "labkit-fake"}

    def resolve(self, image: str, flavor: str, network: str | None) -> Resolved:
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
        db["security_groups"][name] = rules
        self._save(db)
        return SecurityGroup(id=f"sg-{name}", name=name, ingress=rules, created=created)

    def create_server(self, name, image_id, flavor_id, network_id, keypair, security_group,
                      userdata: str, metadata: dict, tags=None) -> ServerInfo:
        problems = _cloudinit.check(userdata)
        if problems:
            raise CloudError("Nova would refuse this user-data: " + "; ".join(problems))
        server_id = secrets.token_hex(6)
        db = self._load()
        db["servers"][server_id] = {
            "name": name, "status": "BUILD", "metadata": metadata, "tags": list(tags or []),
            "security_groups": [security_group], "key_name": keypair, "address": None,
            "workers": _workers_in(userdata), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._save(db)
        return self.get_server(server_id)

    def get_server(self, server_id: str) -> ServerInfo | None:
        server = self._load()["servers"].get(server_id)
        if server is None:
            return None
        return ServerInfo(
            id=server_id, name=server["name"], status=server["status"], fixed_ips=["10.0.0.10"],
            floating_ips=[server["address"]] if server["address"] else [], metadata=server["metadata"],
            tags=server["tags"], security_groups=server["security_groups"], key_name=server["key_name"],
            created=server["created"],
        )

    def wait_active(self, server_id: str, timeout: float = 600.0, poll: float = 5.0) -> ServerInfo:
        db = self._load()
        db["servers"][server_id]["status"] = "ACTIVE"
        self._save(db)
        return self.get_server(server_id)

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
        # The VM boots once it has an address; in the fake, "booting" is a local
        # deployment, started in the background so its markers arrive over time.
        threading.Thread(
            target=self._boot, args=(server_id, address, db["servers"][server_id]["workers"]), daemon=True
        ).start()
        return FloatingIP(id=f"fip-{address}", address=address, status="ACTIVE")

    def _boot(self, server_id: str, address: str, workers: int) -> None:
        from .local import LocalBackend

        console = self._console(server_id)
        console.parent.mkdir(parents=True, exist_ok=True)
        settings = replace(self.settings, host=address, port=5100)
        run = RunDir(settings.deployments_dir, f"vm-{server_id}")
        with open(console, "w") as stream:
            stream.write(f"[    0.000000] Linux version (fake cloud: a local deployment at {address})\n")
            stream.flush()
            backend = LocalBackend()
            progress = Progress(len(backend.plan_steps(workers)), "fake VM", "lines", stream=stream)
            try:
                with run.locked():
                    backend.up(run, settings, workers, progress)
            except Exception as exc:
                stream.write(f"[labkit] step {progress.next_index()}/{progress.total}: "
                             f"boot the fake VM FAILED ({exc})\n")
                if run.exists():
                    backend.down(run, run.read())
                run.remove()
                return
            stream.write(f"[labkit] vm-{server_id}: contextualization finished (fake cloud)\n")

    def services(self, server_id: str) -> "FakeServices":
        """What SSH and systemd are on a real VM: here, the local deployment behind the server."""
        return FakeServices(RunDir(self.settings.deployments_dir, f"vm-{server_id}"))

    def console_log(self, server_id: str, length: int | None = None) -> str:
        path = self._console(server_id)
        text = path.read_text() if path.is_file() else ""
        return "\n".join(text.splitlines()[-length:]) if length else text

    def delete_server(self, server_id: str, wait: bool = True, **_) -> bool:
        from .local import LocalBackend

        db = self._load()
        if db["servers"].pop(server_id, None) is None:
            return False
        self._save(db)
        run = RunDir(self.settings.deployments_dir, f"vm-{server_id}")
        with run.locked():
            if run.exists():
                LocalBackend().down(run, run.read())
            run.remove()
        with contextlib.suppress(FileNotFoundError):
            self._console(server_id).unlink()
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
        return found

    def list_lab_resources(self, owner: str | None) -> LabResources:
        """As ``OpenStackCloud.list_lab_resources``: owned servers and IPs, ``labkit-`` groups and images."""
        db = self._load()
        servers = [self.get_server(i) for i in db["servers"]]
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
    def __init__(self, run: RunDir):
        self.run = run

    def scale_workers(self, current: int, target: int) -> None:
        from .local import LocalBackend

        with self.run.locked():
            LocalBackend().scale(self.run, self.run.read(), target)

    def logs(self, lines: int) -> dict[str, str]:
        from .local import LocalBackend

        return LocalBackend().logs(self.run, self.run.read(), lines)


def _workers_in(userdata: str) -> int:
    """How many worker services the user-data starts (labkit-worker@N.service)."""
    document = yaml.safe_load(userdata)
    units = set(re.findall(r"labkit-worker@(\d+)\.service", " ".join(document.get("runcmd", []))))
    if not units:
        raise ConfigError("The user-data starts no worker: nothing would answer predictions.")
    return len(units)

