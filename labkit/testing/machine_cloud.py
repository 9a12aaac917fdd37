"""The fake cloud, with real VMs: its servers are local machines, contextualized by real cloud-init.

The same Nova/Neutron/Glance-shaped surface as ``fake_cloud.FakeCloud``
(key pairs, security groups, floating IPs, metadata, tags, cleanup), kept in
the same kind of folder; what ``create_server`` boots is a systemd machine
(``labkit.backends.machine``) from the user-data exactly as Nova gets it, with the key
pair's public key in its metadata, as a cloud's metadata service serves it.
So the OpenStack backend drives these VMs as it drives real ones: it follows
their console log, reaches them at their floating IP, and runs ``systemctl``
over SSH as the image's default user (``services`` and ``disk`` say "a real
VM": None).

- A server's fixed (private) address and its floating IP are the machine's
  one address on the lab network; the host's side plays both the router and
  the security group.
- ``allow_within_group(group, 5672)`` is the remote-group rule: the addresses
  of the group's servers join the nftables set that may reach 5672, and so do
  servers launched into the group later.
"""

from __future__ import annotations

import gzip
import secrets
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from .._config import Settings
from .._errors import CloudError
from ..backends import machine as machines
from ..backends.machine import network
from ..backends.machine.image import Image
from ..backends.machine.machine import NAME_PREFIX, Machine, Seed
from ..backends.openstack.cloud import BAKED_TAG, BROKER_PORT, OWNER_KEY, FloatingIP, ServerInfo
from .fake_cloud import FakeCloud

IMAGE_NAME = "Debian 12"  # what its one stock image is called, as a cloud's image list would name it
STOCK_IMAGE = "image-1"  # its ID (FakeCloud.resolve gives it to any name but a baked image's)


class MachineCloud(FakeCloud):
    def __init__(self, root: Path, settings: Settings):
        super().__init__(root, settings)
        self.image = machines.ensure_image(settings.machine_images)

    def record(self) -> dict:
        return {**super().record(), "kind": "machines", "machine_images": str(self.settings.machine_images)}

    @classmethod
    def from_record(cls, record: dict) -> "MachineCloud":
        return cls(Path(record["root"]), Settings(model_dir=record["model_dir"], data_dir=record["data_dir"],
                                                  machine_images=record["machine_images"]))

    # -- "a real VM" ------------------------------------------------------------
    def services(self, server_id: str) -> None:
        return None  # systemd (or Compose) over SSH, as on a real cloud

    def disk(self, server_id: str) -> None:
        return None  # its files are reached over SSH

    # -- servers ----------------------------------------------------------------
    def create_server(self, name, image_id, flavor_id, network_id, keypair, security_group,
                      userdata: str, metadata: dict, tags=None) -> ServerInfo:
        from ..infra import cloudinit

        if problems := cloudinit.check(userdata):
            raise CloudError("Nova would refuse this user-data: " + "; ".join(problems))
        image = self._boot_image(image_id)
        db = self._load()
        public_key = db["keypairs"].get(keypair)
        if public_key is None:
            raise CloudError(f"There is no key pair {keypair!r}: create it first (ensure_keypair).")
        server_id = secrets.token_hex(4)
        folder = self.root / "machines" / server_id
        seed = Seed(instance_id=f"i-{server_id}", hostname=f"{NAME_PREFIX}{server_id}", public_key=public_key,
                    userdata=gzip.compress(userdata.encode(), mtime=0))
        db["servers"][server_id] = {
            "name": name, "status": "BUILD", "metadata": metadata, "tags": list(tags or []),
            "security_groups": [security_group], "key_name": keypair, "address": None, "fixed_ip": None,
            "image_id": image_id, "workers": 0, "machine": None,
            "created": _now(),
        }
        self._save(db)
        from ..backends.machine.backend import lab_files

        # The data set on its disk, as an image could carry it: the public mirror is not reachable everywhere.
        machine = Machine.boot(seed.hostname, folder, image, seed, files=lab_files(self.settings))
        db = self._load()
        db["servers"][server_id].update(status="ACTIVE", fixed_ip=machine.address, machine=machine.to_dict())
        self._save(db)
        self._sync_broker_rule()
        return self._server(server_id)

    def _machine(self, server_id: str) -> Machine | None:
        server = self._load()["servers"].get(server_id)
        return Machine.from_dict(server["machine"]) if server and server.get("machine") else None

    def get_server(self, server_id: str) -> ServerInfo | None:
        server = self._load()["servers"].get(server_id)  # one read: the record and its machine together
        if server is None:
            return None
        info = self._info(server_id, server)
        if server.get("machine") and not Machine.from_dict(server["machine"]).running():
            info = replace(info, status="SHUTOFF")
        return info

    def wait_active(self, server_id: str, timeout: float = 600.0, poll: float = 5.0) -> ServerInfo:
        return self._server(server_id)

    def attach_floating_ip(self, server_id: str, pool: str | None = None, **_) -> FloatingIP:
        db = self._load()
        server = db["servers"][server_id]
        address = server["fixed_ip"]  # one address on the lab network: it is reachable from this host
        server["address"] = address
        db["floating_ips"][address] = {"id": f"fip-{address}", "server_id": server_id,
                                       "owner": server["metadata"].get(OWNER_KEY)}
        self._save(db)
        return FloatingIP(id=f"fip-{address}", address=address, status="ACTIVE")

    def console_log(self, server_id: str, length: int | None = None) -> str:
        machine = self._machine(server_id)
        text = machine.console() if machine else ""
        return "\n".join(text.splitlines()[-length:]) if length else text

    def private_address(self, server_id: str) -> str:
        server = self._load()["servers"].get(server_id)
        if server is None or not server.get("fixed_ip"):
            raise CloudError(f"The server {server_id} does not exist any more: run `labkit down`, then deploy again.")
        return server["fixed_ip"]

    def delete_server(self, server_id: str, wait: bool = True, **_) -> bool:
        machine = self._machine(server_id)
        db = self._load()
        if db["servers"].pop(server_id, None) is None:
            return False
        self._save(db)
        if machine is not None:
            machine.destroy()
        return True

    # -- the security group's remote-group rule for the broker ---------------------
    def allow_within_group(self, name: str, port: int = BROKER_PORT) -> bool:
        added = super().allow_within_group(name, port)
        self._sync_broker_rule()
        return added

    def _sync_broker_rule(self) -> None:
        db = self._load()
        admitted = {group for group, rules in db["security_groups"].items()
                    if {"protocol": "tcp", "port": BROKER_PORT, "remote_group": group} in rules}
        for server in db["servers"].values():
            if server.get("fixed_ip") and admitted & set(server["security_groups"]):
                network.allow_broker(server["fixed_ip"])

    # -- images -------------------------------------------------------------------
    def create_image(self, server_id: str, name: str, metadata: dict[str, str]) -> dict:
        """A snapshot: a copy of the machine's disk as it is now (not its /run, a tmpfs inside).

        The backend seals the server first (services stopped, secrets moved to /run,
        ``cloud-init clean``), as it would before a Nova snapshot of a running VM.
        """
        machine = self._machine(server_id)
        if machine is None:
            raise CloudError(f"The server {server_id} does not exist: nothing to snapshot.")
        machine.run(["sync"])
        image_id = f"image-{secrets.token_hex(4)}"
        target = self.image_files(image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["cp", "-a", "--reflink=auto", str(machine.root), str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise CloudError(f"The snapshot failed: {done.stderr.strip()}. Is there room on the disk?")
        # The next VM gets a seed of its own; nothing of this one's may stay.
        shutil.rmtree(target / "var/lib/cloud/seed", ignore_errors=True)
        db = self._load()
        db.setdefault("images", {})[image_id] = {
            "name": name, "status": "saving", "tags": [BAKED_TAG], "metadata": dict(metadata), "created": _now(),
        }
        self._save(db)
        return self._image(image_id)

    def image_files(self, image_id: str) -> Path:
        return self.root / "images" / image_id / "rootfs"

    def delete_image(self, image_id: str) -> bool:
        found = super().delete_image(image_id)
        shutil.rmtree(self.image_files(image_id).parent, ignore_errors=True)
        return found

    def _boot_image(self, image_id: str) -> Image:
        if image_id == STOCK_IMAGE:
            return self.image
        if image_id not in self._load().get("images", {}):
            raise CloudError(f"There is no image {image_id!r} on this cloud: bake one first, or use {IMAGE_NAME!r}.")
        return Image(self.image_files(image_id), self.image.suite, None)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
