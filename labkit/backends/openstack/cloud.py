"""The thin adapter between labkit and an OpenStack cloud.

``OpenStackCloud`` wraps an openstacksdk ``Connection``. Every method returns
plain dataclasses or dicts, never SDK objects, and turns the SDK's errors into
labkit errors whose one sentence says what to do next (``QuotaError`` when the
project's quota is used up, ``CloudError`` for anything else the cloud
refuses). Credentials stay with openstacksdk's own handling: ``clouds.yaml``
with ``OS_CLOUD``, or the ``OS_*`` variables of an openrc file.

    >>> cloud = OpenStackCloud.connect()            # or OpenStackCloud.connect("mycloud")
    >>> cloud.check_credentials()
    >>> ids = cloud.resolve("Ubuntu 24.04", "m1.small", "private")

It uses the SDK's proxy layer (``conn.compute``, ``conn.network``,
``conn.image``) rather than the cloud layer's ``create_server(auto_ip=True)``
/ ``add_auto_ip``: those reuse any unattached floating IP of the project (a
classmate's, in a shared teaching project) and, when the server has no port
yet, allocate an IP they then do not attach. Here each step is one request
whose failure can be named. Waiting is the SDK's own (``wait_for_server``,
``wait_for_delete``, ``image.wait_for_status``); labkit only reads the server
once more afterwards, for Nova's fault or the status it was left in.

openstacksdk is imported only when a cloud is used; without it the error
names ``pip install openstacksdk``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator

from ..._errors import CloudError, ConfigError, DeployError, LabkitError, QuotaError
from ...infra import cloudinit

if TYPE_CHECKING:  # pragma: no cover
    from openstack.connection import Connection

log = logging.getLogger(__name__)

PREFIX = "labkit-"
OWNER_KEY = "labkit-owner"
TASK_KEY = "labkit-task"
ROLE_KEY = "labkit-role"  # server, worker, development, image
SSH_PORT = 22
WEB_PORT = 5100
BROKER_PORT = 5672
# The ports the lab's VMs may reach on each other, never from outside: the rule's description.
WITHIN_GROUP = {BROKER_PORT: "labkit broker", SSH_PORT: "labkit git over SSH"}
#: The Glance tag of images labkit baked from a contextualized server.
BAKED_TAG = "labkit-baked"
#: Nova's limit on user data, counted as sent (after gzip and base64: cloudinit.encode).
USER_DATA_LIMIT = 65535
#: Nova's limit on a metadata key or value.
METADATA_LIMIT = 255
#: How many names an error message lists before it says "and N more".
NAMES_SHOWN = 25

INSTALL_HINT = "run `pip install openstacksdk` (or `pip install -e '.[test]'`), then retry"
NO_CREDENTIALS = (
    "No OpenStack credentials were found: put your cloud in clouds.yaml "
    "(~/.config/openstack/clouds.yaml) and set OS_CLOUD to its name, or source your "
    "project's openrc file so that the OS_* variables (OS_AUTH_URL, OS_USERNAME, ...) are set, then retry."
)


# -- what the methods return --------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """IDs (and names) of the image, flavor and network a server boots with."""

    image_id: str
    flavor_id: str
    network_id: str
    image_name: str = ""
    flavor_name: str = ""
    network_name: str = ""
    #: The image was baked by labkit: its VMs skip the installs.
    image_baked: bool = False


@dataclass(frozen=True)
class ServerInfo:
    id: str
    name: str
    status: str
    fixed_ips: list[str] = field(default_factory=list)
    floating_ips: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    key_name: str | None = None
    fault: str | None = None
    created: str | None = None

    @property
    def public_ip(self) -> str | None:
        return self.floating_ips[0] if self.floating_ips else None

    @property
    def owner(self) -> str | None:
        return self.metadata.get(OWNER_KEY)


@dataclass(frozen=True)
class FloatingIP:
    id: str
    address: str
    status: str | None = None
    port_id: str | None = None
    fixed_address: str | None = None
    network_id: str | None = None
    description: str = ""


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    #: The ingress rules now in place: dicts with protocol, port, cidr, ethertype.
    ingress: list[dict] = field(default_factory=list)
    created: bool = False
    rules_added: int = 0
    rules_removed: int = 0


@dataclass(frozen=True)
class LabResources:
    """Everything on the cloud that belongs to the lab (for ``status`` and ``down``)."""

    servers: list[ServerInfo] = field(default_factory=list)
    floating_ips: list[FloatingIP] = field(default_factory=list)
    security_groups: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.servers or self.floating_ips or self.security_groups or self.images)


# -- the adapter ---------------------------------------------------------------
class OpenStackCloud:
    """One OpenStack project, seen through the few calls labkit needs."""

    def __init__(self, conn: "Connection") -> None:
        sdk_exceptions, ks_exceptions = _import_sdk()
        self.conn = conn
        self._exc = sdk_exceptions
        self._ks = ks_exceptions

    @classmethod
    def connect(cls, cloud: str | None = None, password: str | None = None) -> "OpenStackCloud":
        """Connect with openstacksdk's own configuration (clouds.yaml, OS_CLOUD, OS_*).

        ``cloud`` names an entry of clouds.yaml; by default ``OS_CLOUD`` does,
        or the ``OS_*`` variables describe the cloud.
        """
        _import_sdk()
        import openstack
        from keystoneauth1 import exceptions as ks_exceptions
        from openstack import exceptions as sdk_exceptions

        try:
            # A password typed in the notebook, for a clouds.yaml that (rightly) holds none.
            conn = (openstack.connect(cloud=cloud, app_name="labkit", password=password) if password
                    else openstack.connect(cloud=cloud, app_name="labkit"))
        except ks_exceptions.auth_plugins.MissingRequiredOptions as exc:
            named = cloud or os.environ.get("OS_CLOUD")
            if named:  # openstacksdk ignores OS_CLOUD when it finds no clouds.yaml at all
                raise ConfigError(
                    f"The cloud {named!r} (from {'the cloud argument' if cloud else 'OS_CLOUD'}) is not described "
                    "in any clouds.yaml that openstacksdk found: put it in ~/.config/openstack/clouds.yaml (or "
                    "point OS_CLIENT_CONFIG_FILE at your file), or unset OS_CLOUD and source your project's "
                    "openrc file to set the OS_* variables, then retry."
                ) from exc
            raise ConfigError(NO_CREDENTIALS) from exc
        except ks_exceptions.auth_plugins.NoMatchingPlugin as exc:
            raise ConfigError(
                f"The auth_type of the cloud is not one openstacksdk knows ({exc}): "
                "fix auth_type in clouds.yaml or OS_AUTH_TYPE, then retry."
            ) from exc
        except sdk_exceptions.ConfigException as exc:
            named = cloud or os.environ.get("OS_CLOUD")
            if named or re.search(r"Cloud .* was not found", str(exc)):
                raise ConfigError(
                    f"openstacksdk could not load the cloud {named!r} ({exc}): "
                    "check the name against clouds.yaml (~/.config/openstack/clouds.yaml or "
                    "/etc/openstack/clouds.yaml) and OS_CLOUD, then retry."
                ) from exc
            raise ConfigError(f"Your OpenStack configuration could not be read ({exc}): {NO_CREDENTIALS}") from exc
        return cls(conn)

    def __repr__(self) -> str:  # never the config: it holds the password
        return f"<OpenStackCloud {getattr(self.conn.config, 'name', None) or 'cloud'}>"

    # -- credentials --------------------------------------------------------
    def record(self) -> dict:
        """What a deployment's state keeps of the cloud: the credentials stay in clouds.yaml."""
        return {"kind": "openstack"}

    def services(self, server_id: str) -> None:
        """None: a real VM's services are driven over SSH (the fake cloud drives its own)."""
        return None

    def disk(self, server_id: str) -> None:
        """None: a real VM's files are reached over SSH (the fake cloud's are folders here)."""
        return None

    def check_credentials(self) -> dict:
        """Ask Keystone for a token; return who and where we are (never a secret)."""
        auth = dict(self.conn.config.config.get("auth") or {})
        auth_url = auth.get("auth_url") or "the auth_url"
        try:
            self.conn.authorize()
            project_id = self.conn.current_project_id
        except self._exc.SDKException as exc:
            raise self._auth_error(exc.__context__ or exc, auth_url) from exc
        except self._ks.ClientException as exc:
            raise self._auth_error(exc, auth_url) from exc
        return {
            "cloud": getattr(self.conn.config, "name", None),
            "region": self.conn.config.get_region_name(),
            "auth_url": auth.get("auth_url"),
            "project_id": project_id,
            "project_name": auth.get("project_name"),
            "username": auth.get("username"),
        }

    def _auth_error(self, exc: BaseException, auth_url: str) -> LabkitError:
        ks = self._ks
        status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
        if isinstance(exc, (ks.auth_plugins.MissingRequiredOptions, ks.auth_plugins.MissingAuthPlugin)):
            return ConfigError(NO_CREDENTIALS)
        if status == 401 or isinstance(exc, ks.http.Unauthorized) or "HTTP 401" in str(exc):
            return CloudError(
                f"Keystone at {auth_url} refused the credentials (authentication refused): check the user name, "
                "password or application credential and the project in clouds.yaml or your OS_* variables, "
                "then retry."
            )
        if isinstance(exc, (ks.connection.ConnectFailure, ks.connection.ConnectTimeout, ks.discovery.DiscoveryFailure)):
            return CloudError(
                f"Could not reach the identity service at {auth_url} ({_one_line(exc)}): check auth_url in "
                "clouds.yaml (or OS_AUTH_URL) and your network connection, then retry."
            )
        return CloudError(
            f"Logging in to {auth_url} failed ({_one_line(exc)}): check your clouds.yaml or OS_* variables, then retry."
        )

    # -- image, flavor, network ---------------------------------------------
    def resolve(self, image: str, flavor: str, network: str) -> Resolved:
        """Names or IDs in, IDs out; a name that does not exist lists the ones that do."""
        with self._calling("looking up the image"):
            found_image = self._find("image", image, self._find_image, self._image_names)
            status = (found_image.status or "").lower()
            if status and status != "active":
                raise CloudError(
                    f"The image {found_image.name or image!r} is {status}, not active: {_choose(self._image_names())}."
                )
        with self._calling("looking up the flavor"):
            found_flavor = self._find("flavor", flavor, self.conn.compute.find_flavor, self._flavor_names)
        with self._calling("looking up the network"):
            found_network = self._find("network", network, self.conn.network.find_network, self._network_names)
        return Resolved(
            image_id=found_image.id,
            flavor_id=found_flavor.id,
            network_id=found_network.id,
            image_name=found_image.name or "",
            flavor_name=found_flavor.name or "",
            network_name=found_network.name or "",
            image_baked=BAKED_TAG in (found_image.tags or []),
        )

    def _find(self, kind: str, name_or_id: str, finder, names) -> Any:
        try:
            return finder(name_or_id, ignore_missing=False)
        except self._exc.DuplicateResource as exc:
            raise CloudError(
                f"Several {kind}s are named {name_or_id!r}: give the {kind}'s ID instead "
                f"(`openstack {kind} list` shows them)."
            ) from exc
        except self._exc.NotFoundException as exc:
            raise CloudError(f"There is no {kind} {name_or_id!r} on this cloud: {_choose(names())}.") from exc

    def _find_image(self, name_or_id: str, ignore_missing: bool = False) -> Any:
        # Not conn.image.find_image: Image.find calls the deprecated
        # ignore_missing=True itself and then searches hidden images too.
        if _is_uuid(name_or_id):
            try:
                return self.conn.image.get_image(name_or_id)
            except self._exc.NotFoundException:
                pass
        matches = list(self.conn.image.images(name=name_or_id))
        if len(matches) > 1:
            raise self._exc.DuplicateResource(f"More than one image is named {name_or_id!r}")
        if not matches:
            raise self._exc.NotFoundException(f"No image found for {name_or_id}")
        return matches[0]

    def _image_names(self) -> list[str]:
        return sorted({i.name for i in self.conn.image.images(status="active") if i.name})

    def _flavor_names(self) -> list[str]:
        flavors = sorted(self.conn.compute.flavors(), key=lambda f: (f.vcpus or 0, f.ram or 0, f.name or ""))
        return [f"{f.name} ({f.vcpus} vCPU, {(f.ram or 0) / 1024:g} GB)" for f in flavors if f.name]

    def _network_names(self) -> list[str]:
        return sorted(n.name for n in self.conn.network.networks() if n.name and not n.is_router_external)

    def choices(self) -> dict[str, list[str]]:
        """What a student may pick from, by name, for the setup form's lists."""
        with self._calling("listing images, flavors, networks and key pairs"):
            flavors = sorted(self.conn.compute.flavors(), key=lambda f: (f.vcpus or 0, f.ram or 0, f.name or ""))
            return {
                "images": self._image_names(),
                "flavors": [f.name for f in flavors if f.name],
                "networks": self._network_names(),
                "keypairs": sorted(k.name for k in self.conn.compute.keypairs() if k.name),
            }

    # -- keypair and security group -----------------------------------------
    def ensure_keypair(self, name: str, public_key: str) -> dict:
        """Upload ``public_key`` as keypair ``name`` unless it is already there."""
        with self._calling(f"looking up the keypair {name!r}"):
            try:
                existing = self.conn.compute.get_keypair(name)
            except self._exc.NotFoundException:
                existing = None
        if existing is None:
            try:
                with self._calling(f"uploading the keypair {name!r}"):
                    created = self.conn.compute.create_keypair(name=name, public_key=public_key.strip())
                return {"name": created.name, "fingerprint": created.fingerprint, "created": True}
            except CloudError as exc:
                if not isinstance(exc.__cause__, self._exc.ConflictException):
                    raise
                with self._calling(f"looking up the keypair {name!r}"):  # someone uploaded it meanwhile
                    existing = self.conn.compute.get_keypair(name)
        if _key_body(existing.public_key) != _key_body(public_key):
            raise CloudError(
                f"The keypair {name!r} on the cloud holds another public key: delete it "
                f"(`openstack keypair delete {name}`) or choose another keypair name, then retry."
            )
        return {"name": existing.name, "fingerprint": existing.fingerprint, "created": False}

    def ensure_security_group(
        self, name: str, ssh_cidr: str, web_cidr: str, *, web_port: int = WEB_PORT
    ) -> SecurityGroup:
        """The lab's security group, with exactly two ingress rules: TCP 22 and the web port.

        Idempotent: a second call changes nothing. Other ingress rules found in
        the group are removed (it is the lab's own group), except the rules
        ``allow_within_group`` adds between members (the broker for worker
        VMs, SSH for CI/CD's development VM); Neutron's default egress rules stay.
        """
        wanted = {
            _rule_key("tcp", SSH_PORT, _cidr(ssh_cidr, "ssh_cidr")),
            _rule_key("tcp", web_port, _cidr(web_cidr, "web_cidr")),
        }
        with self._calling(f"looking up the security group {name!r}"):
            project_id = self.conn.current_project_id
            groups = list(self.conn.network.security_groups(name=name, project_id=project_id))
        if len(groups) > 1:
            raise CloudError(
                f"Several security groups are named {name!r}: delete the extra ones "
                f"(`openstack security group list --project {project_id}`), then retry."
            )
        created = not groups
        if created:
            with self._calling(f"creating the security group {name!r}"):
                group = self.conn.network.create_security_group(
                    name=name, description=f"labkit: SSH and the lab's web port {web_port}"
                )
        else:
            group = groups[0]

        removed = added = 0
        present = set()
        for rule in group.security_group_rules or []:
            if rule.get("direction") != "ingress":
                continue
            key = _rule_key(rule.get("protocol"), rule.get("port_range_min"), rule.get("remote_ip_prefix"),
                            rule.get("port_range_max"), rule.get("remote_group_id"), rule.get("ethertype"))
            if key in {_within_group_key(group.id, port) for port in WITHIN_GROUP}:
                continue  # scale-out's or CI/CD's rule: members only, never the world
            if key in wanted and key not in present:
                present.add(key)
                continue
            with self._calling(f"removing an unexpected ingress rule from {name!r}"):
                try:
                    self.conn.network.delete_security_group_rule(rule["id"], ignore_missing=False)
                except self._exc.NotFoundException:
                    pass
            removed += 1
        for protocol, port, cidr, _, _ in sorted(wanted - present, key=lambda k: k[1]):
            with self._calling(f"adding the rule for TCP port {port} to {name!r}"):
                try:
                    self.conn.network.create_security_group_rule(
                        security_group_id=group.id,
                        direction="ingress",
                        ethertype=_ethertype(cidr),
                        protocol=protocol,
                        port_range_min=port,
                        port_range_max=port,
                        remote_ip_prefix=cidr,
                        description="labkit",
                    )
                except self._exc.ConflictException as exc:
                    if "SecurityGroupRuleExists" not in _error_type(exc) and "already exists" not in _details(exc):
                        raise
            added += 1
        ingress = [
            {"protocol": p, "port": port, "cidr": cidr, "ethertype": _ethertype(cidr)}
            for p, port, cidr, _, _ in sorted(wanted, key=lambda k: k[1])
        ]
        return SecurityGroup(
            id=group.id, name=group.name, ingress=ingress, created=created, rules_added=added, rules_removed=removed
        )

    def allow_within_group(self, name: str, port: int = BROKER_PORT) -> bool:
        """Let the group's members reach ``port`` on each other; True if the rule was added.

        The rule's source is the group itself (``remote_group_id``), not a
        CIDR: worker VMs in the group reach the server's broker (5672), the
        development VM its SSH (22) for git, over the private network; nobody
        else can, floating IP or not.
        """
        if port not in WITHIN_GROUP:
            raise ValueError(f"no rule between members is planned for port {port}")
        with self._calling(f"looking up the security group {name!r}"):
            groups = list(self.conn.network.security_groups(name=name, project_id=self.conn.current_project_id))
        if len(groups) != 1:
            raise CloudError(
                f"Expected one security group named {name!r}, found {len(groups)}: deploy the server first "
                "(`labkit up --backend openstack`), or delete the extra groups, then retry."
            )
        group = groups[0]
        for rule in group.security_group_rules or []:
            key = _rule_key(rule.get("protocol"), rule.get("port_range_min"), rule.get("remote_ip_prefix"),
                            rule.get("port_range_max"), rule.get("remote_group_id"), rule.get("ethertype"))
            if rule.get("direction") == "ingress" and key == _within_group_key(group.id, port):
                return False
        with self._calling(f"adding the rule for TCP port {port} between members of {name!r}"):
            try:
                self.conn.network.create_security_group_rule(
                    security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
                    port_range_min=port, port_range_max=port, remote_group_id=group.id, description=WITHIN_GROUP[port],
                )
            except self._exc.ConflictException as exc:
                if "SecurityGroupRuleExists" not in _error_type(exc) and "already exists" not in _details(exc):
                    raise
                return False
        return True

    # -- servers -------------------------------------------------------------
    def create_server(
        self,
        name: str,
        image_id: str,
        flavor_id: str,
        network_id: str,
        keypair: str | None,
        security_group: str | None,
        userdata: str,
        metadata: dict,
        tags: list[str] | tuple[str, ...] | None = None,
    ) -> ServerInfo:
        """Ask Nova for the server and return at once (status BUILD); see ``wait_active``."""
        encoded = cloudinit.encode(userdata) if userdata else None
        if encoded and len(encoded) > USER_DATA_LIMIT:
            raise DeployError(
                f"The cloud-init user data is {len(encoded):,} bytes after gzip and base64 and Nova accepts at most "
                f"{USER_DATA_LIMIT:,}: make the files it carries smaller, then retry."
            )
        attrs: dict[str, Any] = {
            "name": name,
            "image_id": image_id,
            "flavor_id": flavor_id,
            "networks": [{"uuid": network_id}],
            "metadata": _metadata(metadata),
        }
        if encoded:
            attrs["user_data"] = encoded
        if keypair:
            attrs["key_name"] = keypair
        if security_group:
            attrs["security_groups"] = [{"name": security_group}]
        with self._calling(f"creating the server {name!r}"):
            if tags:
                from openstack import utils

                # Tags at creation need compute microversion 2.52; the metadata
                # carries the owner anyway, so older clouds just go without.
                if utils.supports_microversion(self.conn.compute, "2.52"):
                    attrs["tags"] = [str(t) for t in tags]
            server = self.conn.compute.create_server(**attrs)
        info = _server_info(server, name=name)
        return info if server.status else replace(info, status="BUILD")  # Nova's 202 answer has no status

    def get_server(self, server_id: str) -> ServerInfo | None:
        """The server now, or None when it does not exist."""
        with self._calling("looking up the server"):
            try:
                return _server_info(self.conn.compute.get_server(server_id))
            except self._exc.NotFoundException:
                return None

    def wait_active(self, server_id: str, timeout: float = 600.0, poll: float = 5.0) -> ServerInfo:
        """Wait (openstacksdk's ``wait_for_server``) until the server is ACTIVE; ERROR raises with Nova's fault."""
        gone = CloudError(f"The server {server_id} disappeared while starting (someone deleted it?): "
                          "run `labkit down`, then deploy again.")
        with self._calling("waiting for the server to become ACTIVE"):
            try:
                server = self.conn.compute.get_server(server_id)
                return _server_info(self.conn.compute.wait_for_server(server, failures=["ERROR"], interval=poll,
                                                                      wait=timeout))
            except self._exc.NotFoundException:
                raise gone from None
            except self._exc.ResourceFailure:
                failed = True  # the SDK says only that it went to ERROR: Nova's fault says why
            except self._exc.ResourceTimeout:
                failed = False
        info = self.get_server(server_id)
        if info is None:
            raise gone
        if failed:
            reason = info.fault or "Nova gave no reason"
            if _QUOTA.search(reason):
                raise QuotaError(
                    f"The server {info.name} went to ERROR because a quota is used up ({reason}): run "
                    "`labkit down` to delete it and anything else you no longer need, then retry."
                )
            raise CloudError(
                f"The server {info.name} went to ERROR while starting ({reason}): run `labkit down` to "
                "delete it, then retry, perhaps with another flavor or image."
            )
        raise CloudError(
            f"Timed out after {timeout:g} s waiting for the server {info.name} to become ACTIVE "
            f"(it is still {info.status}): run `labkit down`, then retry, or allow more time "
            "(LABKIT_START_TIMEOUT)."
        )

    def private_address(self, server_id: str) -> str:
        """The server's fixed IPv4 address on the project's network (where worker VMs reach its broker)."""
        server = self.get_server(server_id)
        if server is None:
            raise CloudError(f"The server {server_id} does not exist any more: run `labkit down`, then deploy again.")
        for address in server.fixed_ips:
            if address and ipaddress.ip_address(address).version == 4:
                return address
        raise CloudError(
            f"The server {server.name} has no fixed IPv4 address (it is {server.status}): wait until it is "
            "ACTIVE, then retry."
        )

    def find_servers(self, metadata: dict[str, str]) -> list[ServerInfo]:
        """The project's servers whose metadata holds every item of ``metadata`` (worker VMs, say)."""
        with self._calling("listing the servers"):
            servers = [_server_info(s) for s in self.conn.compute.servers()]
        return [s for s in servers if all(s.metadata.get(k) == str(v) for k, v in metadata.items())]

    def console_log(self, server_id: str, length: int | None = None) -> str:
        """The server's console log (the last ``length`` lines); '' when the cloud has none."""
        with self._calling("reading the console log"):
            try:
                output = self.conn.compute.get_server_console_output(server_id, length=length)
            except self._exc.HttpException as exc:
                # Nova: 404 ConsoleNotAvailable, 409 InstanceNotReady, 501 driver
                # without console logs; some clouds answer 400.
                if exc.status_code in (400, 404, 409, 501):
                    return ""
                raise
        return (output or {}).get("output") or ""

    def delete_server(self, server_id: str, wait: bool = True, timeout: float = 300.0, poll: float = 2.0) -> bool:
        """Delete the server; with ``wait``, until Nova no longer knows it. False if it was not there."""
        with self._calling("deleting the server"):
            try:
                self.conn.compute.delete_server(server_id, ignore_missing=False)
            except self._exc.NotFoundException:
                return False
        if not wait:
            return True
        from openstack.compute.v2.server import Server

        with self._calling("waiting for the server to be deleted"):
            try:
                self.conn.compute.wait_for_delete(Server.new(id=server_id), interval=poll, wait=timeout)
                return True
            except self._exc.ResourceTimeout:
                pass
        info = self.get_server(server_id)
        if info is None:  # gone just after the last look
            return True
        raise CloudError(
            f"Timed out after {timeout:g} s waiting for the server {info.name or server_id} to be deleted "
            f"(it is still {info.status}): run `labkit down` again in a minute."
        )

    # -- floating IPs --------------------------------------------------------
    def attach_floating_ip(
        self, server_id: str, pool: str | None = None, retries: int = 10, delay: float = 3.0
    ) -> FloatingIP:
        """Allocate a floating IP from ``pool`` (the one external network by default) and attach it.

        A server that already has a floating IP keeps it. Attaching is retried
        while Neutron does not yet know the server's port (no port / 404 / 409
        / 'No ports'); if it finally fails, the new IP is released again.

        Not openstacksdk's ``add_auto_ip``/``create_floating_ip``: they take no
        description, and the owner written there is how ``labkit cleanup`` tells
        this student's IPs from a classmate's (4.22.0's signatures, checked).
        """
        with self._calling("looking up the server"):
            server = self.conn.compute.get_server(server_id)
        info = _server_info(server)
        if info.floating_ips:
            with self._calling("looking up the server's floating IP"):
                for existing in self.conn.network.ips(floating_ip_address=info.floating_ips[0]):
                    return _fip_info(existing)
        network = self._external_network(pool)
        description = f"{PREFIX}server={server_id}"
        if info.owner:
            description = f"{OWNER_KEY}={info.owner} {description}"

        fip: Any = None
        problem = "the server has no network port yet"
        try:
            for attempt in range(retries + 1):
                if attempt:
                    time.sleep(delay)
                with self._calling("looking up the server's port"):
                    port = self._server_port(server_id)
                if port is None:
                    problem = "the server has no network port yet"
                    log.debug("attempt %d: %s", attempt + 1, problem)
                    continue
                if fip is None:
                    with self._calling(f"allocating a floating IP from {network.name or network.id}"):
                        fip = self.conn.network.create_ip(floating_network_id=network.id, description=description)
                try:
                    with self._calling(f"attaching the floating IP {fip.floating_ip_address}"):
                        attached = self.conn.network.update_ip(fip, port_id=port[0], fixed_ip_address=port[1])
                    return _fip_info(attached)
                except CloudError as exc:
                    if not _is_attach_race(exc.__cause__, self._exc):
                        raise
                    problem = _details(exc.__cause__) or str(exc.__cause__)
                    log.debug("attempt %d: attaching failed: %s", attempt + 1, problem)
        except BaseException:
            if fip is not None:
                self._release_quietly(fip)
            raise
        leaked = ""
        if fip is not None:
            leaked = self._release_quietly(fip)
        raise CloudError(
            f"Could not attach a floating IP to the server {info.name} after {retries + 1} tries ({problem})"
            f"{leaked}: run `labkit down`, then deploy again."
        )

    def _release_quietly(self, fip) -> str:
        """Release an IP we allocated; return '' or a note about the leak."""
        try:
            self.conn.network.delete_ip(fip, ignore_missing=True)
            return "; the floating IP was released again"
        except Exception as exc:  # the caller raises the real problem
            log.warning("could not release floating IP %s: %s", fip.floating_ip_address, _one_line(exc))
            return (
                f"; releasing the floating IP {fip.floating_ip_address} failed too, so delete it with "
                f"`openstack floating ip delete {fip.id}`"
            )

    def _external_network(self, pool: str | None):
        with self._calling("looking up the external network for floating IPs"):
            if pool:
                try:
                    network = self.conn.network.find_network(pool, ignore_missing=False)
                except self._exc.NotFoundException:
                    network = None
                if network is None or not network.is_router_external:
                    names = sorted(n.name or n.id for n in self.conn.network.networks(is_router_external=True))
                    raise CloudError(
                        f"{pool!r} is not an external network this project can take floating IPs from: "
                        f"{_choose(names)}."
                    )
                return network
            networks = list(self.conn.network.networks(is_router_external=True))
        if not networks:
            raise CloudError(
                "This project sees no external network to take floating IPs from: ask your cloud's "
                "administrators which pool to use, then pass it as the floating IP pool."
            )
        if len(networks) > 1:
            names = sorted(n.name or n.id for n in networks)
            raise CloudError(
                f"This cloud has several external networks ({', '.join(names)}): pass the one to take floating "
                "IPs from as the floating IP pool."
            )
        return networks[0]

    def _server_port(self, server_id: str) -> tuple[str, str] | None:
        """(port id, IPv4 address) of the server's newest port, or None while it has none."""
        ports = sorted(self.conn.network.ports(device_id=server_id), key=lambda p: p.created_at or "", reverse=True)
        for port in ports:
            for fixed in port.fixed_ips or []:
                try:
                    if ipaddress.ip_address(fixed.get("ip_address", "")).version == 4:
                        return port.id, fixed["ip_address"]
                except ValueError:
                    continue
        return None

    def release_floating_ip(self, ip: str) -> bool:
        """Give a floating IP (its address or ID) back to the pool; False if it was not there."""
        with self._calling(f"releasing the floating IP {ip}"):
            if _is_address(ip):
                found = list(self.conn.network.ips(floating_ip_address=ip))
                if not found:
                    return False
                fip_id = found[0].id
            else:
                fip_id = ip
            try:
                self.conn.network.delete_ip(fip_id, ignore_missing=False)
            except self._exc.NotFoundException:
                return False
        return True

    # -- security groups and images ------------------------------------------
    def delete_security_group(self, group_id: str) -> bool:
        """Delete the security group; False if it was not there.

        Neutron refuses while a port still uses the group (409
        SecurityGroupInUse); the error then names the servers using it.
        """
        with self._calling(f"deleting the security group {group_id}"):
            try:
                self.conn.network.delete_security_group(group_id, ignore_missing=False)
            except self._exc.NotFoundException:
                return False
            except self._exc.ConflictException as exc:
                if _error_type(exc) != "SecurityGroupInUse" and "in use" not in _details(exc).lower():
                    raise
                users = self._security_group_users(group_id)
                raise CloudError(
                    f"The security group {group_id} is still in use by {users}: delete "
                    f"{'them' if ',' in users else 'it'} first (`labkit cleanup` deletes servers before "
                    "security groups), then retry."
                ) from exc
        return True

    def _security_group_users(self, group_id: str) -> str:
        """'the servers a, b' (or the ports) using the group, as well as Neutron tells."""
        try:
            ports = list(self.conn.network.ports(security_group_ids=[group_id]))
            device_ids = sorted({p.device_id for p in ports if p.device_id})
            names = {s.id: s.name for s in self.conn.compute.servers()} if device_ids else {}
        except (self._exc.SDKException, self._ks.ClientException) as exc:  # the 409 is the real problem
            log.debug("could not list the users of security group %s: %s", group_id, _one_line(exc))
            return "a server or port"
        servers = [names.get(d, d) for d in device_ids]
        if servers:
            return ("the server " if len(servers) == 1 else "the servers ") + ", ".join(servers)
        orphans = sorted(p.id for p in ports)
        if orphans:
            return ("the port " if len(orphans) == 1 else "the ports ") + ", ".join(orphans)
        return "a server or port"

    def create_image(self, server_id: str, name: str, metadata: dict[str, str]) -> dict:
        """Snapshot the server into an image (Nova createImage) tagged ``labkit-baked``; returns at once.

        ``metadata`` becomes the image's properties (the owner, the
        deployment). Nova answers before Glance has the data: see
        ``wait_image_active``.
        """
        from openstack.compute.v2.server import Server

        with self._calling(f"creating the image {name!r}"):
            # Not conn.compute.create_server_image: it looks the new image up with the
            # cloud layer's find_image, which warns (deprecated ignore_missing) and may
            # list every image; the resource's own action plus one GET by ID is the same request.
            image_id = Server.new(id=server_id).create_image(self.conn.compute, name, _metadata(metadata))
            image = self.conn.image.get_image(image_id)
        with self._calling(f"tagging the image {name!r}"):
            self.conn.image.add_tag(image, BAKED_TAG)  # type: ignore[union-attr, arg-type]  # Glance v2 only
        return {**_image_info(image), "tags": sorted({*(image.tags or []), BAKED_TAG})}

    def wait_image_active(self, image_id: str, timeout: float = 1800.0, poll: float = 5.0) -> dict:
        """Poll Glance until the image is active; killed or deleted raises, so does the timeout."""
        with self._calling("looking up the image"):
            image = self.conn.image.get_image(image_id)
        try:
            with self._calling(f"waiting for the image {image.name!r} to become active"):
                image = self.conn.image.wait_for_status(
                    image, "active", failures=["killed", "deleted", "deactivated"], interval=poll, wait=int(timeout))
        except CloudError as exc:
            cause = exc.__cause__
            if isinstance(cause, self._exc.ResourceTimeout):
                raise CloudError(
                    f"Timed out after {timeout:g} s waiting for the image {image.name!r} to become active: "
                    f"snapshots of large disks take long, so check `openstack image show {image_id}`, then retry "
                    "or delete it with `labkit cleanup`."
                ) from cause
            if isinstance(cause, self._exc.ResourceFailure):
                raise CloudError(
                    f"The image {image.name!r} failed while being saved ({_one_line(cause)}): delete it with "
                    "`labkit cleanup`, then bake again."
                ) from cause
            raise
        return _image_info(image)

    def delete_image(self, image_id: str) -> bool:
        """Delete the image; False if it was not there."""
        with self._calling(f"deleting the image {image_id}"):
            try:
                self.conn.image.delete_image(image_id, ignore_missing=False)
            except self._exc.NotFoundException:
                return False
        return True

    # -- the lab's resources -------------------------------------------------
    def list_lab_resources(self, owner: str | None) -> LabResources:
        """Servers (metadata ``labkit-owner``), their floating IPs, and ``labkit-`` groups and images.

        ``owner=None`` lists every owner's. Security groups and images are
        shared by a lab's deployments, so they are found by the ``labkit-``
        prefix (a group's ``in_use_by`` names the servers still using it).
        """
        with self._calling("listing the lab's resources"):
            project_id = self.conn.current_project_id
            every_server = [_server_info(s) for s in self.conn.compute.servers()]
            floating = [_fip_info(f) for f in self.conn.network.ips(project_id=project_id)]
            groups = [g for g in self.conn.network.security_groups(project_id=project_id)
                      if (g.name or "").startswith(PREFIX)]
            images = [i for i in self.conn.image.images(owner=project_id)
                      if (i.name or "").startswith(PREFIX) or any(str(t).startswith(PREFIX) for t in i.tags or [])]

        def ours(server: ServerInfo) -> bool:
            return OWNER_KEY in server.metadata and (owner is None or server.owner == owner)

        def labelled(fip: FloatingIP) -> bool:  # attach_floating_ip's description: "labkit-owner=X labkit-server=Y"
            if owner is None:
                return fip.description.startswith(PREFIX)
            return f"{OWNER_KEY}={owner}" in fip.description.split()

        servers = [s for s in every_server if ours(s)]
        addresses = {ip for s in servers for ip in s.floating_ips}
        ips = [f for f in floating if f.address in addresses or labelled(f)]
        return LabResources(
            servers=servers,
            floating_ips=ips,
            security_groups=[
                {
                    "id": g.id,
                    "name": g.name,
                    "in_use_by": sorted(s.name for s in every_server if g.name in s.security_groups),
                }
                for g in groups
            ],
            images=[_image_info(i) for i in images],
        )

    # -- errors --------------------------------------------------------------
    @contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        """Turn SDK and keystoneauth errors raised while ``doing`` into labkit errors."""
        try:
            yield
        except LabkitError:
            raise
        except self._exc.SDKException as exc:
            raise self._translate(exc, doing) from exc
        except self._ks.ClientException as exc:
            auth_url = (self.conn.config.config.get("auth") or {}).get("auth_url") or "the auth_url"
            error = self._auth_error(exc, auth_url)
            raise type(error)(f"While {doing}: {error}") from exc

    def _translate(self, exc: Exception, doing: str) -> LabkitError:
        status = getattr(exc, "status_code", None)
        details = _details(exc)
        kind = _error_type(exc)
        if _is_quota(status, details, kind):
            return QuotaError(
                f"{_capital(doing)} failed because the project's quota is used up ({details}): delete servers "
                "or floating IPs you no longer need (`labkit down`) or ask your cloud's administrators for more "
                "quota, then retry."
            )
        if kind == "IpAddressGenerationFailure" or "No more IP addresses" in details:
            return QuotaError(
                f"{_capital(doing)} failed because no floating IP is left on that network ({details}): release "
                "floating IPs you no longer need (`labkit down`), choose another pool, or ask your cloud's "
                "administrators, then retry."
            )
        if status == 401:
            return CloudError(
                f"{_capital(doing)} failed: the cloud refused the credentials (authentication refused): "
                "check clouds.yaml or your OS_* variables, then retry."
            )
        if status == 403:
            return CloudError(
                f"{_capital(doing)} failed: the cloud does not allow it ({details}): ask your cloud's "
                "administrators for the permission, then retry."
            )
        if status is not None and status >= 500:
            return CloudError(
                f"{_capital(doing)} failed: the cloud answered HTTP {status} ({details}): wait a minute, "
                "then retry, and tell your cloud's administrators if it persists."
            )
        if isinstance(exc, self._exc.ResourceTimeout):
            return CloudError(f"{_capital(doing)} timed out ({exc}): retry in a minute.")
        text = details or _one_line(exc)
        return CloudError(f"{_capital(doing)} failed ({text}): check the names and settings given, then retry.")


# -- helpers -----------------------------------------------------------------
def _import_sdk():
    try:
        from keystoneauth1 import exceptions as ks_exceptions
        from openstack import exceptions as sdk_exceptions
    except ImportError as exc:
        raise ConfigError(f"The OpenStack backend needs openstacksdk, which is not installed: {INSTALL_HINT}.") from exc
    return sdk_exceptions, ks_exceptions


def _server_info(server, name: str | None = None) -> ServerInfo:
    fixed: list[str] = []
    floating: list[str] = []
    for addresses in (server.addresses or {}).values():
        for address in addresses:
            target = floating if address.get("OS-EXT-IPS:type") == "floating" else fixed
            target.append(address.get("addr"))
    fault = server.fault if isinstance(server.fault, dict) else None
    return ServerInfo(
        id=server.id,
        name=server.name or name or server.id,
        status=(server.status or "UNKNOWN").upper(),
        fixed_ips=fixed,
        floating_ips=floating,
        metadata=dict(server.metadata or {}),
        tags=list(server.tags or []),
        security_groups=[g.get("name") for g in server.security_groups or [] if g.get("name")],
        key_name=server.key_name,
        fault=(fault or {}).get("message"),
        created=server.created_at,
    )


def _image_info(image) -> dict:
    return {"id": image.id, "name": image.name, "status": image.status, "tags": list(image.tags or []),
            "created": image.created_at}


def _fip_info(fip) -> FloatingIP:
    return FloatingIP(
        id=fip.id,
        address=fip.floating_ip_address,
        status=fip.status,
        port_id=fip.port_id,
        fixed_address=fip.fixed_ip_address,
        network_id=fip.floating_network_id,
        description=fip.description or "",
    )


def _metadata(metadata: dict) -> dict[str, str]:
    out = {}
    for key, value in (metadata or {}).items():
        key, value = str(key), str(value)
        if not key or len(key) > METADATA_LIMIT or len(value) > METADATA_LIMIT:
            raise DeployError(
                f"Server metadata {key[:40]!r} is too long for Nova (keys and values hold at most "
                f"{METADATA_LIMIT} characters): shorten it, then retry."
            )
        out[key] = value
    return out


def _cidr(value: str, name: str) -> str:
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not a network in CIDR notation: use e.g. 203.0.113.7/32 for one address "
            "or 0.0.0.0/0 for anywhere."
        ) from None


def _rule_key(protocol, port_min, cidr, port_max=None, remote_group=None, ethertype="IPv4") -> tuple:
    """What makes two ingress rules the same, normalised (no CIDR and no group means anywhere)."""
    if cidr is None and remote_group is None:
        cidr = "::/0" if ethertype == "IPv6" else "0.0.0.0/0"
    elif cidr is not None:
        cidr = str(ipaddress.ip_network(cidr, strict=False))
    port_max = port_min if port_max is None else port_max
    return (str(protocol).lower() if protocol else None, port_min, cidr, port_max, remote_group)


def _within_group_key(group_id: str, port: int) -> tuple:
    return _rule_key("tcp", port, None, port, group_id)


def _ethertype(cidr: str) -> str:
    return "IPv6" if ipaddress.ip_network(cidr, strict=False).version == 6 else "IPv4"


def _key_body(public_key: str | None) -> str:
    """The type and base64 part of an OpenSSH public key (the comment does not count)."""
    return " ".join((public_key or "").split()[:2])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _details(exc) -> str:
    return _one_line(getattr(exc, "details", None) or "")


def _error_type(exc) -> str:
    """Neutron's error type (``OverQuota``, ``IpAddressGenerationFailure``, ...), if the answer has one."""
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("NeutronError"), dict):
        return str(body["NeutronError"].get("type") or "")
    return ""


_QUOTA = re.compile(r"quota exceeded|over ?quota|exceeds? .*quota|maximum number of \w+ exceeded", re.I)


def _is_quota(status, details: str, kind: str) -> bool:
    if kind == "OverQuota":
        return True
    return status in (403, 409, 413) and bool(_QUOTA.search(details))


_NO_PORT = re.compile(r"no ports?\b|port .*not (yet )?(found|bound)", re.I)


def _is_attach_race(exc, sdk_exceptions) -> bool:
    """Neutron does not (yet) know the port: worth another try."""
    if not isinstance(exc, sdk_exceptions.HttpException):
        return False
    if exc.status_code in (404, 409):
        return True
    return exc.status_code == 400 and bool(_NO_PORT.search(_details(exc)))


def _choose(names: list[str]) -> str:
    """'use one of a, b, c' (at most NAMES_SHOWN of them), or what to do when there are none."""
    if not names:
        return "this project sees none at all, so ask your cloud's administrators which to use"
    more = len(names) - NAMES_SHOWN
    return "use one of " + ", ".join(names[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
