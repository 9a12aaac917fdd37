"""Layer 1 of the OpenStack tests: the real openstacksdk, speaking HTTP to faked answers.

No cloud is needed. ``requests_mock`` answers every request the SDK sends,
with JSON shaped like real Keystone, Nova, Neutron and Glance answers (after
the API references and openstacksdk's own unit-test fakes:
``openstack/tests/unit/base.py`` ``make_fake_server`` and
``openstack/tests/unit/cloud/fakes.py``), and ``ConnectionFixture`` supplies
the token and service catalog. The tests check what the adapter returns and
the requests it actually sent: method, URL and body.

A request nobody registered gets HTTP 599 and fails the test at teardown.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("openstack", reason="openstacksdk is not installed: pip install -e '.[test]'")
pytest.importorskip("requests_mock", reason="requests-mock is not installed: pip install -e '.[test]'")
pytest.importorskip("fixtures", reason="fixtures is not installed: pip install -e '.[test]'")

import openstack.connection  # noqa: E402
import requests_mock  # noqa: E402
from openstack.fixture.connection import ConnectionFixture  # noqa: E402

import labkit  # noqa: E402
from labkit.backends.openstack.cloud import OpenStackCloud  # noqa: E402
from labkit.infra import cloudinit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROJECT_ID = "1c36b64c840a42cd9e9b931a369337f0"
PASSWORD = "s3cret-Passw0rd"

IDENTITY = "https://identity.example.com"
COMPUTE = "https://compute.example.com/v2.1"
NETWORK = "https://network.example.com/v2.0"
IMAGE = "https://image.example.com/v2"

SERVER_ID = "9a7a4c87-5a4b-4d6a-9d3e-2f1f1c0b6c01"
PORT_ID = "c0a5bd5e-41f8-4b7f-9e0d-6a0a3f9f4d11"
FIP_ID = "2f245a7b-796b-4f26-9cf9-9e82d248fda7"
EXT_NET_ID = "376da547-b977-4cfe-9cba-275c80debf57"
PRIVATE_NET_ID = "a87cc70a-3e15-4acf-8205-9b711a3531b7"
IMAGE_ID = "70a599e0-31e7-49b7-b260-868f441e862b"
FLAVOR_ID = "0c1d9008-f546-4608-9e8f-f8bdaec8dddd"
SG_ID = "85cc3048-abc3-43cc-89b3-377341426ac5"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdef student@laptop"


# -- JSON shaped like the real services' answers ------------------------------
def nova_server(status="ACTIVE", *, name="lab-test", fault=None, floating=None, metadata=None, task_state=None):
    """A server as Nova's GET /servers/{id} shows it (microversion 2.96)."""
    addresses = {}
    if status == "ACTIVE":
        addresses = {
            "private": [
                {"OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:df:b0:8d", "version": 4, "addr": "10.1.0.9",
                 "OS-EXT-IPS:type": "fixed"},
            ]
        }
        if floating:
            addresses["private"].append(
                {"OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:df:b0:8d", "version": 4, "addr": floating,
                 "OS-EXT-IPS:type": "floating"}
            )
    server = {
        "id": SERVER_ID,
        "name": name,
        "status": status,
        "tenant_id": PROJECT_ID,
        "user_id": "9c119f4beaaa438792ce89387362b3ad",
        "metadata": metadata if metadata is not None else {"labkit-owner": "alice", "labkit-task": "serve"},
        "tags": ["labkit"],
        "addresses": addresses,
        "image": {"id": IMAGE_ID, "links": []},
        "flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0,
                   "swap": 0, "extra_specs": {}},
        "key_name": "labkit-alice",
        "security_groups": [{"name": "labkit-lab"}],
        "created": "2025-03-23T23:57:12Z",
        "updated": "2025-03-23T23:57:39Z",
        "hostId": "89d165f04384e3ffa4b6536669eb49104d30d6ca832bba2684605dbc",
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": status.lower(),
        "OS-EXT-STS:power_state": 1 if status == "ACTIVE" else 0,
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-SRV-USG:launched_at": "2025-03-23T23:57:38.000000" if status == "ACTIVE" else None,
        "OS-SRV-USG:terminated_at": None,
        "accessIPv4": "",
        "accessIPv6": "",
        "config_drive": "",
        "progress": 0,
        "locked": False,
        "description": None,
        "host_status": "UP",
        "os-extended-volumes:volumes_attached": [],
        "links": [{"href": f"{COMPUTE}/servers/{SERVER_ID}", "rel": "self"}],
    }
    if fault:
        server["fault"] = {"code": 500, "created": "2025-03-23T23:57:40Z", "message": fault}
    return {"server": server}


def nova_error(status, message):
    """Nova's error body: {"<kind>": {"code": ..., "message": ...}}."""
    kind = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest",
            501: "notImplemented"}[status]
    return {"status_code": status, "json": {kind: {"code": status, "message": message}}}


def neutron_error(status, kind, message):
    return {"status_code": status, "json": {"NeutronError": {"type": kind, "message": message, "detail": ""}}}


def glance_image(image_id, name, *, status="active", owner="admin-project", tags=()):
    return {
        "id": image_id, "name": name, "status": status, "visibility": "public", "owner": owner,
        "tags": list(tags), "container_format": "bare", "disk_format": "qcow2", "min_disk": 0, "min_ram": 0,
        "size": 3402170368, "checksum": "ee36e35a297980dee1b514de9803ec6d", "protected": False,
        "os_hidden": False, "created_at": "2025-01-10T05:05:02Z", "updated_at": "2025-01-10T05:05:02Z",
        "self": f"/v2/images/{image_id}", "file": f"/v2/images/{image_id}/file", "schema": "/v2/schemas/image",
    }


def nova_flavor(flavor_id, name, vcpus, ram):
    return {
        "id": flavor_id, "name": name, "vcpus": vcpus, "ram": ram, "disk": 20, "swap": 0,
        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0, "description": None, "extra_specs": {},
        "links": [{"href": f"{COMPUTE}/flavors/{flavor_id}", "rel": "self"}],
    }


def neutron_network(network_id, name, *, external=False):
    return {
        "id": network_id, "name": name, "status": "ACTIVE", "admin_state_up": True, "shared": False,
        "router:external": external, "subnets": [], "project_id": PROJECT_ID, "tenant_id": PROJECT_ID,
        "mtu": 1450, "port_security_enabled": True, "availability_zones": ["nova"], "tags": [],
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z", "revision_number": 1,
    }


def neutron_port(port_id=PORT_ID, ip="10.1.0.9"):
    return {
        "id": port_id, "name": "", "network_id": PRIVATE_NET_ID, "device_id": SERVER_ID,
        "device_owner": "compute:nova", "status": "ACTIVE", "admin_state_up": True,
        "mac_address": "fa:16:3e:df:b0:8d", "project_id": PROJECT_ID, "tenant_id": PROJECT_ID,
        "fixed_ips": [{"subnet_id": "e8ebb2a6-3c0a-4f12-a3c8-b6d4b8d1f3c6", "ip_address": ip}],
        "security_groups": [SG_ID], "created_at": "2025-03-23T23:57:20Z", "updated_at": "2025-03-23T23:57:30Z",
        "revision_number": 3, "tags": [],
    }


def neutron_fip(*, port_id=None, fixed=None, status="DOWN", description="", address="172.24.4.228", fip_id=FIP_ID):
    return {
        "id": fip_id, "floating_ip_address": address, "floating_network_id": EXT_NET_ID,
        "router_id": "d23abc8d-2991-4a55-ba98-2aaea84cc72f" if port_id else None, "port_id": port_id,
        "fixed_ip_address": fixed, "status": status, "description": description, "project_id": PROJECT_ID,
        "tenant_id": PROJECT_ID, "tags": [], "port_details": None, "dns_domain": "", "dns_name": "",
        "created_at": "2025-03-23T23:58:00Z", "updated_at": "2025-03-23T23:58:00Z", "revision_number": 1,
    }


def neutron_rule(rule_id, direction, ethertype, protocol=None, port=None, cidr=None, remote_group=None):
    return {
        "id": rule_id, "direction": direction, "ethertype": ethertype, "protocol": protocol,
        "port_range_min": port, "port_range_max": port, "remote_ip_prefix": cidr, "remote_group_id": remote_group,
        "security_group_id": SG_ID, "description": "", "project_id": PROJECT_ID, "tenant_id": PROJECT_ID,
        "created_at": "2025-03-23T23:50:00Z", "updated_at": "2025-03-23T23:50:00Z", "revision_number": 0,
    }


def neutron_security_group(name, rules):
    return {
        "id": SG_ID, "name": name, "description": "", "stateful": True, "project_id": PROJECT_ID,
        "tenant_id": PROJECT_ID, "security_group_rules": rules, "tags": [], "shared": False,
        "created_at": "2025-03-23T23:50:00Z", "updated_at": "2025-03-23T23:50:00Z", "revision_number": 1,
    }


# -- the fake cloud ------------------------------------------------------------
class FakeServices:
    """Answers on ``requests_mock`` and what the SDK sent, minus login and version discovery."""

    def __init__(self, mocker, os_fixture):
        self.mocker = mocker
        self.unregistered: list[str] = []

        def unregistered(request, context):
            self.unregistered.append(f"{request.method} {request.url}")
            context.status_code = 599
            return {"error": "no answer registered for this request"}

        # Registered first: requests_mock tries the most recent registration first.
        mocker.register_uri(requests_mock.ANY, re.compile(".*"), json=unregistered)
        mocker.get(f"{IDENTITY}/", json={"versions": {"values": [{
            "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"href": f"{IDENTITY}/v3/", "rel": "self"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }]}})
        mocker.post(f"{IDENTITY}/v3/auth/tokens", json=os_fixture.v3_token, status_code=201,
                    headers={"X-Subject-Token": "gAAAAABfake-token"})
        mocker.get(f"{COMPUTE}/", json={"version": {
            "id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z", "links": [{"href": f"{COMPUTE}/", "rel": "self"}],
        }})
        mocker.get("https://image.example.com/", status_code=300, json={"versions": [
            {"id": "v2.16", "status": "CURRENT", "links": [{"href": f"{IMAGE}/", "rel": "self"}]},
        ]})

    def on(self, method: str, url: str, *answers: dict, **answer):
        """Answer ``method url`` with ``answer``, or with ``answers`` in turn (the last one repeats)."""
        if answer:
            return self.mocker.register_uri(method, url, **answer)
        if len(answers) == 1:
            return self.mocker.register_uri(method, url, **answers[0])
        return self.mocker.register_uri(method, url, list(answers))

    def sent(self, method: str | None = None) -> list[str]:
        """'METHOD /path?query' for each service request, in order."""
        calls = []
        for request in self.mocker.request_history:
            url = urllib.parse.urlsplit(request.url)
            if url.netloc.startswith("identity.") or url.path in ("/", "/v2.1/", "/v2.1"):
                continue
            if method and request.method != method:
                continue
            path = urllib.parse.unquote(url.path) + (f"?{urllib.parse.unquote_plus(url.query)}" if url.query else "")
            calls.append(f"{request.method} {path}")
        return calls

    def bodies(self, method: str, path: str) -> list[dict]:
        """The JSON bodies sent with ``method`` to a URL whose path is ``path``."""
        return [
            request.json()
            for request in self.mocker.request_history
            if request.method == method and urllib.parse.urlsplit(request.url).path == path
        ]


@pytest.fixture
def fake(requests_mock):
    with ConnectionFixture(project_id=PROJECT_ID) as os_fixture:
        fake = FakeServices(requests_mock, os_fixture)
        yield fake
    assert fake.unregistered == [], "requests nobody answered"


def make_connection():
    return openstack.connection.Connection(
        auth={
            "auth_url": IDENTITY,
            "username": "alice",
            "password": PASSWORD,
            "project_name": "teaching",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        region_name="RegionOne",
    )


@pytest.fixture
def cloud(fake):
    return OpenStackCloud(make_connection())


# -- create, wait, console ------------------------------------------------------
def test_create_server_sends_one_request_and_wait_active_polls_until_active(fake, cloud):
    fake.on("POST", f"{COMPUTE}/servers", status_code=202, json={"server": {
        "id": SERVER_ID, "OS-DCF:diskConfig": "MANUAL", "adminPass": "kH8bqvW3yUvM",
        "security_groups": [{"name": "labkit-lab"}],
        "links": [{"href": f"{COMPUTE}/servers/{SERVER_ID}", "rel": "self"}],
    }})
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}",
            {"json": nova_server("BUILD")}, {"json": nova_server("BUILD")}, {"json": nova_server("ACTIVE")})
    userdata = "#cloud-config\nfinal_message: labkit up after $UPTIME s\n"

    created = cloud.create_server(
        "lab-test", IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID, keypair="labkit-alice", security_group="labkit-lab",
        userdata=userdata, metadata={"labkit-owner": "alice", "labkit-task": "serve", "workers": 2},
        tags=["labkit"],
    )
    assert created.id == SERVER_ID
    assert created.status == "BUILD"
    assert fake.sent() == ["POST /v2.1/servers"]
    (body,) = fake.bodies("POST", "/v2.1/servers")
    assert body == {"server": {
        "name": "lab-test",
        "imageRef": IMAGE_ID,
        "flavorRef": FLAVOR_ID,
        "networks": [{"uuid": PRIVATE_NET_ID}],
        "key_name": "labkit-alice",
        "security_groups": [{"name": "labkit-lab"}],
        "user_data": cloudinit.encode(userdata),
        "metadata": {"labkit-owner": "alice", "labkit-task": "serve", "workers": "2"},
        "tags": ["labkit"],
    }}
    assert "kH8bqvW3yUvM" not in repr(created)
    # gzip-compressed, which cloud-init unpacks by itself (its "Gzip Compressed Content" format).
    assert gzip.decompress(base64.b64decode(body["server"]["user_data"])).decode() == userdata

    server = cloud.wait_active(SERVER_ID, timeout=5, poll=0)
    assert server.status == "ACTIVE"
    assert server.fixed_ips == ["10.1.0.9"] and server.public_ip is None
    assert server.owner == "alice" and server.security_groups == ["labkit-lab"]
    assert fake.sent("GET") == [f"GET /v2.1/servers/{SERVER_ID}"] * 3


def test_user_data_over_novas_limit_is_refused_before_any_request(fake, cloud):
    incompressible = secrets.token_urlsafe(50_000)  # gzip cannot shrink random text below the limit
    with pytest.raises(labkit.DeployError, match="65,535"):
        cloud.create_server("lab-test", IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID, None, None,
                            userdata=incompressible, metadata={})
    assert fake.sent() == []


@pytest.mark.parametrize("fault, error", [
    ("No valid host was found. There are not enough hosts available.", labkit.CloudError),
    ("Build of instance 9a7a4c87 aborted: Maximum number of ports exceeded", labkit.QuotaError),
], ids=["no-valid-host", "port-quota"])
def test_wait_active_reports_novas_fault_when_the_server_goes_to_error(fake, cloud, fault, error):
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}",
            {"json": nova_server("BUILD")}, {"json": nova_server("ERROR", fault=fault)})
    with pytest.raises(labkit.CloudError, match="went to ERROR") as caught:
        cloud.wait_active(SERVER_ID, timeout=5, poll=0)
    assert type(caught.value) is error
    assert fault in str(caught.value) and "labkit down" in str(caught.value)
    # openstacksdk's wait_for_server sees ERROR on the second look; labkit looks once more for the fault.
    assert fake.sent() == [f"GET /v2.1/servers/{SERVER_ID}"] * 3


def test_a_server_deleted_while_starting_says_so(fake, cloud):
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}",
            {"json": nova_server("BUILD")}, nova_error(404, "Instance could not be found."))
    with pytest.raises(labkit.CloudError, match="disappeared while starting"):
        cloud.wait_active(SERVER_ID, timeout=5, poll=0)


def test_wait_active_times_out_naming_the_step_and_the_seconds(fake, cloud):
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}", json=nova_server("BUILD"))
    with pytest.raises(labkit.CloudError) as caught:
        cloud.wait_active(SERVER_ID, timeout=0.2, poll=0.05)
    message = str(caught.value)
    assert "0.2 s" in message and "to become ACTIVE" in message and "still BUILD" in message
    assert len(fake.sent("GET")) >= 2


@pytest.mark.parametrize("length, sent", [(50, {"os-getConsoleOutput": {"length": 50}}),
                                          (None, {"os-getConsoleOutput": {}})])
def test_console_log(fake, cloud, length, sent):
    log = "Cloud-init v. 24.1 finished at Sun, 23 Mar 2025 23:59:01 +0000. Up 61.30 seconds\n"
    fake.on("POST", f"{COMPUTE}/servers/{SERVER_ID}/action", json={"output": log})
    assert cloud.console_log(SERVER_ID, length=length) == log
    assert fake.sent() == [f"POST /v2.1/servers/{SERVER_ID}/action"]
    assert fake.bodies("POST", f"/v2.1/servers/{SERVER_ID}/action") == [sent]


@pytest.mark.parametrize("answer", [
    nova_error(404, "Guest does not have a console available."),
    nova_error(409, "Instance 9a7a4c87 is not ready yet."),
    nova_error(501, "Action os-getConsoleOutput is not supported by this cloud."),
], ids=["404-no-console", "409-not-ready", "501-not-implemented"])
def test_console_log_is_empty_on_clouds_without_one(fake, cloud, answer):
    fake.on("POST", f"{COMPUTE}/servers/{SERVER_ID}/action", **answer)
    assert cloud.console_log(SERVER_ID) == ""


# -- floating IPs ------------------------------------------------------------------
@pytest.fixture
def fip_cloud(fake, cloud):
    """A started server without a floating IP, one external network, and an IP to allocate."""
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}", json=nova_server("ACTIVE"))
    fake.on("GET", f"{NETWORK}/networks?router:external=True",
            json={"networks": [neutron_network(EXT_NET_ID, "public", external=True)]})
    fake.on("GET", f"{NETWORK}/ports?device_id={SERVER_ID}", json={"ports": [neutron_port()]})
    fake.on("POST", f"{NETWORK}/floatingips", status_code=201,
            json={"floatingip": neutron_fip(description=f"labkit-owner=alice labkit-server={SERVER_ID}")})
    fake.on("DELETE", f"{NETWORK}/floatingips/{FIP_ID}", status_code=204)
    return cloud


ATTACHED = {"json": {"floatingip": neutron_fip(port_id=PORT_ID, fixed="10.1.0.9", status="ACTIVE")}}
RACES = {
    "409": neutron_error(409, "FloatingIPSetupException", "Port c0a5bd5e is still being bound: Conflict"),
    "404-port": neutron_error(404, "PortNotFound", f"Port {PORT_ID} could not be found."),
    "400-no-ports": neutron_error(400, "BadRequest", "No ports available on the instance yet."),
}


@pytest.mark.parametrize("race", RACES, ids=list(RACES))
def test_attach_floating_ip_retries_the_race_then_succeeds(fake, fip_cloud, race):
    fake.on("GET", f"{NETWORK}/ports?device_id={SERVER_ID}", {"json": {"ports": []}},
            {"json": {"ports": [neutron_port()]}})
    fake.on("PUT", f"{NETWORK}/floatingips/{FIP_ID}", RACES[race], ATTACHED)

    fip = fip_cloud.attach_floating_ip(SERVER_ID, retries=5, delay=0)

    assert (fip.address, fip.port_id, fip.status) == ("172.24.4.228", PORT_ID, "ACTIVE")
    assert fake.sent() == [
        f"GET /v2.1/servers/{SERVER_ID}",
        "GET /v2.0/networks?router:external=True",
        f"GET /v2.0/ports?device_id={SERVER_ID}",  # no port yet
        f"GET /v2.0/ports?device_id={SERVER_ID}",
        "POST /v2.0/floatingips",
        f"PUT /v2.0/floatingips/{FIP_ID}",  # the race
        f"GET /v2.0/ports?device_id={SERVER_ID}",
        f"PUT /v2.0/floatingips/{FIP_ID}",
    ]
    assert fake.bodies("POST", "/v2.0/floatingips") == [{"floatingip": {
        "floating_network_id": EXT_NET_ID, "description": f"labkit-owner=alice labkit-server={SERVER_ID}",
    }}]
    assert fake.bodies("PUT", f"/v2.0/floatingips/{FIP_ID}") == [
        {"floatingip": {"port_id": PORT_ID, "fixed_ip_address": "10.1.0.9"}}
    ] * 2


def test_attach_floating_ip_releases_the_ip_when_attaching_finally_fails(fake, fip_cloud):
    fake.on("PUT", f"{NETWORK}/floatingips/{FIP_ID}", **RACES["409"])
    with pytest.raises(labkit.CloudError, match="after 3 tries") as caught:
        fip_cloud.attach_floating_ip(SERVER_ID, retries=2, delay=0)
    assert "released again" in str(caught.value)
    assert fake.sent("PUT") == [f"PUT /v2.0/floatingips/{FIP_ID}"] * 3
    assert fake.sent("POST") == ["POST /v2.0/floatingips"]
    assert fake.sent("DELETE") == [f"DELETE /v2.0/floatingips/{FIP_ID}"]
    assert fake.sent()[-1] == f"DELETE /v2.0/floatingips/{FIP_ID}"


def test_attach_floating_ip_does_not_retry_a_real_refusal_and_releases_the_ip(fake, fip_cloud):
    fake.on("PUT", f"{NETWORK}/floatingips/{FIP_ID}", **neutron_error(
        400, "ExternalGatewayForFloatingIPNotFound",
        "External network 376da547 is not reachable from subnet e8ebb2a6."))
    with pytest.raises(labkit.CloudError, match="not reachable from subnet"):
        fip_cloud.attach_floating_ip(SERVER_ID, retries=5, delay=0)
    assert fake.sent("PUT") == [f"PUT /v2.0/floatingips/{FIP_ID}"]
    assert fake.sent("DELETE") == [f"DELETE /v2.0/floatingips/{FIP_ID}"]


@pytest.mark.parametrize("answer", [
    neutron_error(409, "OverQuota", "Quota exceeded for resources: ['floatingip']."),
    neutron_error(409, "IpAddressGenerationFailure", f"No more IP addresses available on network {EXT_NET_ID}."),
], ids=["over-quota", "pool-empty"])
def test_no_floating_ip_left_is_a_quota_error(fake, fip_cloud, answer):
    fake.on("POST", f"{NETWORK}/floatingips", **answer)
    with pytest.raises(labkit.QuotaError, match="floating IP") as caught:
        fip_cloud.attach_floating_ip(SERVER_ID, retries=3, delay=0)
    assert answer["json"]["NeutronError"]["message"] in str(caught.value)
    assert fake.sent("POST") == ["POST /v2.0/floatingips"]
    assert fake.sent("PUT") == [] and fake.sent("DELETE") == []


def test_a_server_that_has_a_floating_ip_keeps_it(fake, cloud):
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}", json=nova_server("ACTIVE", floating="172.24.4.228"))
    fake.on("GET", f"{NETWORK}/floatingips?floating_ip_address=172.24.4.228",
            json={"floatingips": [neutron_fip(port_id=PORT_ID, fixed="10.1.0.9", status="ACTIVE")]})
    assert cloud.attach_floating_ip(SERVER_ID, delay=0).id == FIP_ID
    assert fake.sent("POST") == [] and fake.sent("PUT") == []


@pytest.mark.parametrize("target, found", [("172.24.4.228", True), (FIP_ID, True), ("172.24.4.1", False)])
def test_release_floating_ip_by_address_or_id(fake, cloud, target, found):
    fake.on("GET", f"{NETWORK}/floatingips?floating_ip_address=172.24.4.228", json={"floatingips": [neutron_fip()]})
    fake.on("GET", f"{NETWORK}/floatingips?floating_ip_address=172.24.4.1", json={"floatingips": []})
    fake.on("DELETE", f"{NETWORK}/floatingips/{FIP_ID}", status_code=204)
    assert cloud.release_floating_ip(target) is found
    assert fake.sent("DELETE") == ([f"DELETE /v2.0/floatingips/{FIP_ID}"] if found else [])


# -- quota and lookups -----------------------------------------------------------------
@pytest.mark.parametrize("message", [
    "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances",
    "Quota exceeded for cores: Requested 2, but already used 20 of 20 cores",
    "Maximum number of ports exceeded",
])
def test_nova_quota_exceeded_on_create_is_a_quota_error(fake, cloud, message):
    fake.on("POST", f"{COMPUTE}/servers", **nova_error(403, message))
    with pytest.raises(labkit.QuotaError) as caught:
        cloud.create_server("lab-test", IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID, None, None, userdata="", metadata={})
    assert message in str(caught.value) and "labkit down" in str(caught.value)
    assert fake.sent() == ["POST /v2.1/servers"]


def test_a_403_that_is_not_about_quota_is_a_plain_cloud_error(fake, cloud):
    fake.on("POST", f"{COMPUTE}/servers", **nova_error(403, "Policy doesn't allow os_compute_api:servers:create."))
    with pytest.raises(labkit.CloudError, match="does not allow it") as caught:
        cloud.create_server("lab-test", IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID, None, None, userdata="", metadata={})
    assert not isinstance(caught.value, labkit.QuotaError)


@pytest.fixture
def catalog(fake):
    """Glance, Nova and Neutron lookups by name or ID, as the real services answer them."""
    images = [glance_image(IMAGE_ID, "Ubuntu 24.04"), glance_image("6c1a6f29-7d0e-4b0f-8f3a-6c1f6b9b1a55", "Debian 12")]
    flavors = [nova_flavor(FLAVOR_ID, "m1.small", 1, 2048), nova_flavor("7", "m1.large", 4, 8192)]
    networks = [neutron_network(PRIVATE_NET_ID, "private"), neutron_network(EXT_NET_ID, "public", external=True)]

    def one(items, key):
        def answer(request, context):
            wanted = urllib.parse.unquote(request.path_url.rsplit("/", 1)[1])
            for item in items:
                if item["id"] == wanted:
                    return {key: item} if key else item
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": "not found"}}
        return answer

    def listing(items, key):
        def answer(request, context):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
            chosen = [i for i in items if "name" not in query or i["name"] == query["name"][0]]
            return {key: chosen}
        return answer

    fake.on("GET", re.compile(rf"{IMAGE}/images/[^/?]+$"), json=one(images, None))
    fake.on("GET", re.compile(rf"{IMAGE}/images(\?.*)?$"), json=listing(images, "images"))
    fake.on("GET", re.compile(rf"{COMPUTE}/flavors/(?!detail)[^/?]+$"), json=one(flavors, "flavor"))
    fake.on("GET", re.compile(rf"{COMPUTE}/flavors(/detail)?(\?.*)?$"), json=listing(flavors, "flavors"))
    fake.on("GET", re.compile(rf"{NETWORK}/networks/[^/?]+$"), json=one(networks, "network"))
    fake.on("GET", re.compile(rf"{NETWORK}/networks(\?.*)?$"), json=listing(networks, "networks"))
    return fake


def test_resolve_turns_names_into_ids(catalog, cloud):
    resolved = cloud.resolve("Ubuntu 24.04", "m1.small", "private")
    assert (resolved.image_id, resolved.flavor_id, resolved.network_id) == (IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID)
    assert catalog.sent() == [
        "GET /v2/images?name=Ubuntu 24.04",
        "GET /v2.1/flavors/m1.small", "GET /v2.1/flavors/detail?is_public=None",
        "GET /v2.0/networks/private", "GET /v2.0/networks?name=private",
    ]


def test_resolve_by_id_takes_one_request_each(catalog, cloud):
    resolved = cloud.resolve(IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID)
    assert resolved.image_name == "Ubuntu 24.04" and resolved.flavor_name == "m1.small"
    assert len(catalog.sent()) == 3


@pytest.mark.parametrize("args, expected", [
    (("Ubuntu 24.04", "m1.huge", "private"), "no flavor 'm1.huge' on this cloud: use one of "
                                             "m1.small (1 vCPU, 2 GB), m1.large (4 vCPU, 8 GB)"),
    (("Windows", "m1.small", "private"), "no image 'Windows' on this cloud: use one of Debian 12, Ubuntu 24.04"),
    (("Ubuntu 24.04", "m1.small", "lan"), "no network 'lan' on this cloud: use one of private"),
], ids=["flavor", "image", "network"])
def test_a_name_that_does_not_exist_lists_the_names_that_do(catalog, cloud, args, expected):
    with pytest.raises(labkit.CloudError) as caught:
        cloud.resolve(*args)
    assert expected in str(caught.value)


def test_choices_for_the_setup_form_list_names_a_student_can_pick(catalog, cloud):
    # Nova wraps each key pair of a listing in {"keypair": ...} (compute API reference, os-keypairs).
    catalog.on("GET", re.compile(rf"{COMPUTE}/os-keypairs(\?.*)?$"), json={"keypairs": [
        {"keypair": {"name": "labkit", "public_key": PUBLIC_KEY, "fingerprint": "SHA256:a", "type": "ssh"}},
        {"keypair": {"name": "laptop", "public_key": PUBLIC_KEY, "fingerprint": "SHA256:b", "type": "ssh"}}]})
    choices = cloud.choices()
    assert choices == {"images": ["Debian 12", "Ubuntu 24.04"], "flavors": ["m1.small", "m1.large"],
                       "networks": ["private"], "keypairs": ["labkit", "laptop"]}


# -- keypair, security group ---------------------------------------------------------------
def test_keypair_is_uploaded_when_missing(fake, cloud):
    fake.on("GET", f"{COMPUTE}/os-keypairs/labkit-alice", **nova_error(404, "Keypair labkit-alice not found."))
    fake.on("POST", f"{COMPUTE}/os-keypairs", json={"keypair": {
        "name": "labkit-alice", "public_key": PUBLIC_KEY, "type": "ssh", "user_id": "9c119f4b",
        "fingerprint": "SHA256:fake"}})
    result = cloud.ensure_keypair("labkit-alice", PUBLIC_KEY + "\n")
    assert result == {"name": "labkit-alice", "fingerprint": "SHA256:fake", "created": True}
    assert fake.sent() == ["GET /v2.1/os-keypairs/labkit-alice", "POST /v2.1/os-keypairs"]
    (body,) = fake.bodies("POST", "/v2.1/os-keypairs")
    assert body["keypair"]["name"] == "labkit-alice" and body["keypair"]["public_key"] == PUBLIC_KEY


@pytest.mark.parametrize("comment", ["student@laptop", "another-comment"])
def test_keypair_that_exists_is_not_uploaded_again(fake, cloud, comment):
    stored = PUBLIC_KEY.rsplit(" ", 1)[0] + " " + comment
    fake.on("GET", f"{COMPUTE}/os-keypairs/labkit-alice", json={"keypair": {
        "name": "labkit-alice", "public_key": stored, "type": "ssh", "fingerprint": "SHA256:fake",
        "user_id": "9c119f4b", "created_at": "2025-03-01T10:00:00.000000", "deleted": False, "id": 7}})
    assert cloud.ensure_keypair("labkit-alice", PUBLIC_KEY)["created"] is False
    assert fake.sent() == ["GET /v2.1/os-keypairs/labkit-alice"]


def test_keypair_with_another_key_under_the_name_is_refused(fake, cloud):
    fake.on("GET", f"{COMPUTE}/os-keypairs/labkit-alice", json={"keypair": {
        "name": "labkit-alice", "public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0 old", "type": "ssh",
        "fingerprint": "SHA256:old"}})
    with pytest.raises(labkit.CloudError, match="openstack keypair delete labkit-alice"):
        cloud.ensure_keypair("labkit-alice", PUBLIC_KEY)
    assert fake.sent("POST") == []


class SecurityGroups:
    """Neutron's security groups, with state: a new group gets Neutron's two default egress rules."""

    def __init__(self, fake, groups=()):
        self.groups = {g["id"]: g for g in groups}
        self.count = 0
        fake.on("GET", f"{NETWORK}/security-groups", json=self.list)
        fake.on("POST", f"{NETWORK}/security-groups", json=self.create_group)
        fake.on("POST", f"{NETWORK}/security-group-rules", json=self.create_rule)
        fake.on("DELETE", re.compile(rf"{NETWORK}/security-group-rules/.+"), json=self.delete_rule)

    def list(self, request, context):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
        return {"security_groups": [g for g in self.groups.values() if g["name"] == query["name"][0]]}

    def create_group(self, request, context):
        context.status_code = 201
        group = neutron_security_group(request.json()["security_group"]["name"], [
            neutron_rule("egress-4", "egress", "IPv4"), neutron_rule("egress-6", "egress", "IPv6")])
        self.groups[group["id"]] = group
        return {"security_group": group}

    def create_rule(self, request, context):
        context.status_code = 201
        asked = request.json()["security_group_rule"]
        self.count += 1
        rule = neutron_rule(f"rule-{self.count}", asked["direction"], asked["ethertype"], asked["protocol"],
                            asked["port_range_min"], asked.get("remote_ip_prefix"), asked.get("remote_group_id"))
        self.groups[asked["security_group_id"]]["security_group_rules"].append(rule)
        return {"security_group_rule": rule}

    def delete_rule(self, request, context):
        rule_id = request.path_url.rsplit("/", 1)[1]
        for group in self.groups.values():
            group["security_group_rules"] = [r for r in group["security_group_rules"] if r["id"] != rule_id]
        context.status_code = 204
        return None


def test_security_group_gets_exactly_ssh_and_web_rules_and_a_second_call_creates_nothing(fake, cloud):
    neutron = SecurityGroups(fake)

    first = cloud.ensure_security_group("labkit-lab", ssh_cidr="203.0.113.7/32", web_cidr="0.0.0.0/0")

    assert first.created and first.rules_added == 2 and first.rules_removed == 0
    assert fake.sent("POST") == ["POST /v2.0/security-groups"] + ["POST /v2.0/security-group-rules"] * 2
    assert fake.sent("GET") == [f"GET /v2.0/security-groups?name=labkit-lab&project_id={PROJECT_ID}"]
    rules = [b["security_group_rule"] for b in fake.bodies("POST", "/v2.0/security-group-rules")]
    assert [{k: r[k] for k in ("security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                                "port_range_max", "remote_ip_prefix")} for r in rules] == [
        {"security_group_id": SG_ID, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "203.0.113.7/32"},
        {"security_group_id": SG_ID, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
         "port_range_min": 5100, "port_range_max": 5100, "remote_ip_prefix": "0.0.0.0/0"},
    ]
    ingress = [r for r in neutron.groups[SG_ID]["security_group_rules"] if r["direction"] == "ingress"]
    assert sorted((r["protocol"], r["port_range_min"]) for r in ingress) == [("tcp", 22), ("tcp", 5100)]

    sent_before = len(fake.sent())
    second = cloud.ensure_security_group("labkit-lab", ssh_cidr="203.0.113.7/32", web_cidr="0.0.0.0/0")
    assert (second.created, second.rules_added, second.rules_removed) == (False, 0, 0)
    assert fake.sent()[sent_before:] == [f"GET /v2.0/security-groups?name=labkit-lab&project_id={PROJECT_ID}"]


def test_security_group_loses_ingress_rules_the_lab_did_not_ask_for(fake, cloud):
    neutron = SecurityGroups(fake, [neutron_security_group("labkit-lab", [
        neutron_rule("egress-4", "egress", "IPv4"),
        neutron_rule("old-ssh", "ingress", "IPv4", "tcp", 22, "0.0.0.0/0"),
        neutron_rule("web", "ingress", "IPv4", "tcp", 5100, "0.0.0.0/0"),
        neutron_rule("ping", "ingress", "IPv4", "icmp", None, "0.0.0.0/0"),
    ])])
    result = cloud.ensure_security_group("labkit-lab", ssh_cidr="203.0.113.7", web_cidr="0.0.0.0/0")
    assert (result.created, result.rules_added, result.rules_removed) == (False, 1, 2)
    assert sorted(fake.sent("DELETE")) == ["DELETE /v2.0/security-group-rules/old-ssh",
                                           "DELETE /v2.0/security-group-rules/ping"]
    ingress = [r for r in neutron.groups[SG_ID]["security_group_rules"] if r["direction"] == "ingress"]
    assert sorted((r["port_range_min"], r["remote_ip_prefix"]) for r in ingress) == [
        (22, "203.0.113.7/32"), (5100, "0.0.0.0/0")]


def test_security_group_rule_over_quota_is_a_quota_error(fake, cloud):
    SecurityGroups(fake)
    fake.on("POST", f"{NETWORK}/security-group-rules",
            **neutron_error(409, "OverQuota", "Quota exceeded for resources: ['security_group_rule']."))
    with pytest.raises(labkit.QuotaError, match="security_group_rule"):
        cloud.ensure_security_group("labkit-lab", ssh_cidr="0.0.0.0/0", web_cidr="0.0.0.0/0")


def test_security_group_rejects_a_cidr_that_is_not_one(fake, cloud):
    with pytest.raises(labkit.ConfigError, match="ssh_cidr='my laptop'"):
        cloud.ensure_security_group("labkit-lab", ssh_cidr="my laptop", web_cidr="0.0.0.0/0")
    assert fake.sent() == []


# -- delete, list -----------------------------------------------------------------------
def test_delete_server_waits_until_nova_answers_404(fake, cloud):
    fake.on("DELETE", f"{COMPUTE}/servers/{SERVER_ID}", status_code=204)
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}",
            {"json": nova_server("ACTIVE", task_state="deleting")},
            {"json": nova_server("ACTIVE", task_state="deleting")},
            nova_error(404, "Instance could not be found."))
    assert cloud.delete_server(SERVER_ID, wait=True, timeout=5, poll=0) is True
    assert fake.sent() == [f"DELETE /v2.1/servers/{SERVER_ID}"] + [f"GET /v2.1/servers/{SERVER_ID}"] * 3


def test_delete_server_that_is_gone_already(fake, cloud):
    fake.on("DELETE", f"{COMPUTE}/servers/{SERVER_ID}", **nova_error(404, "Instance could not be found."))
    assert cloud.delete_server(SERVER_ID) is False
    assert fake.sent() == [f"DELETE /v2.1/servers/{SERVER_ID}"]


def test_delete_server_times_out_naming_the_step(fake, cloud):
    fake.on("DELETE", f"{COMPUTE}/servers/{SERVER_ID}", status_code=204)
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}", json=nova_server("ACTIVE", task_state="deleting"))
    with pytest.raises(labkit.CloudError, match=r"0\.1 s waiting for the server lab-test to be deleted"):
        cloud.delete_server(SERVER_ID, timeout=0.1, poll=0.02)


def test_list_lab_resources_finds_only_this_labs(fake, cloud):
    mine = nova_server("ACTIVE", floating="172.24.4.228")["server"]
    theirs = dict(nova_server("ACTIVE", name="lab-bob", metadata={"labkit-owner": "bob"})["server"], id="bob-1")
    stranger = dict(nova_server("ACTIVE", name="web", metadata={})["server"], id="other-1",
                    security_groups=[{"name": "default"}])
    fake.on("GET", f"{COMPUTE}/servers/detail", json={"servers": [mine, theirs, stranger]})
    fake.on("GET", f"{NETWORK}/floatingips?project_id={PROJECT_ID}", json={"floatingips": [
        neutron_fip(port_id=PORT_ID, fixed="10.1.0.9", status="ACTIVE"),  # on my server, no label
        neutron_fip(fip_id="leaked", address="172.24.4.50", description="labkit-owner=alice labkit-server=gone"),
        neutron_fip(fip_id="bobs", address="172.24.4.51", description="labkit-owner=bob labkit-server=bob-1"),
        neutron_fip(fip_id="unrelated", address="172.24.4.52"),
    ]})
    fake.on("GET", f"{NETWORK}/security-groups?project_id={PROJECT_ID}", json={"security_groups": [
        neutron_security_group("labkit-lab", []), dict(neutron_security_group("default", []), id="default-id"),
    ]})
    fake.on("GET", f"{IMAGE}/images?owner={PROJECT_ID}", json={"images": [
        glance_image("snap-1", "labkit-snapshot-alice", owner=PROJECT_ID),
        glance_image("tagged", "server image", owner=PROJECT_ID, tags=["labkit-base"]),
        glance_image("mine", "my holiday photos", owner=PROJECT_ID),
    ]})

    found = cloud.list_lab_resources("alice")

    assert [s.id for s in found.servers] == [SERVER_ID]
    assert sorted(f.id for f in found.floating_ips) == [FIP_ID, "leaked"]
    assert found.security_groups == [{"id": SG_ID, "name": "labkit-lab", "in_use_by": ["lab-bob", "lab-test"]}]
    assert sorted(i["id"] for i in found.images) == ["snap-1", "tagged"]
    assert {s.id for s in cloud.list_lab_resources(None).servers} == {SERVER_ID, "bob-1"}


def test_delete_security_group_sends_one_delete(fake, cloud):
    fake.on("DELETE", f"{NETWORK}/security-groups/{SG_ID}", status_code=204)
    assert cloud.delete_security_group(SG_ID) is True
    assert fake.sent() == [f"DELETE /v2.0/security-groups/{SG_ID}"]


def test_delete_security_group_that_is_gone_already(fake, cloud):
    fake.on("DELETE", f"{NETWORK}/security-groups/{SG_ID}",
            **neutron_error(404, "SecurityGroupNotFound", f"Security group {SG_ID} does not exist"))
    assert cloud.delete_security_group(SG_ID) is False
    assert fake.sent() == [f"DELETE /v2.0/security-groups/{SG_ID}"]


def test_delete_security_group_in_use_names_the_servers_using_it(fake, cloud):
    fake.on("DELETE", f"{NETWORK}/security-groups/{SG_ID}",
            **neutron_error(409, "SecurityGroupInUse", f"Security Group {SG_ID} in use."))
    fake.on("GET", f"{NETWORK}/ports?security_groups={SG_ID}", json={"ports": [neutron_port()]})
    fake.on("GET", f"{COMPUTE}/servers/detail", json={"servers": [nova_server("ACTIVE")["server"]]})
    with pytest.raises(labkit.CloudError, match="in use by the server lab-test: delete it first") as caught:
        cloud.delete_security_group(SG_ID)
    assert not isinstance(caught.value, labkit.QuotaError)
    assert fake.sent() == [f"DELETE /v2.0/security-groups/{SG_ID}",
                           f"GET /v2.0/ports?security_groups={SG_ID}", "GET /v2.1/servers/detail"]


def test_delete_security_group_refused_otherwise_is_translated(fake, cloud):
    fake.on("DELETE", f"{NETWORK}/security-groups/{SG_ID}",
            **neutron_error(403, "PolicyNotAuthorized", "rule:delete_security_group is disallowed by policy"))
    with pytest.raises(labkit.CloudError, match="does not allow it .*disallowed by policy"):
        cloud.delete_security_group(SG_ID)
    assert fake.sent() == [f"DELETE /v2.0/security-groups/{SG_ID}"]


def test_delete_image_sends_one_delete(fake, cloud):
    fake.on("DELETE", f"{IMAGE}/images/{IMAGE_ID}", status_code=204)
    assert cloud.delete_image(IMAGE_ID) is True
    assert fake.sent() == [f"DELETE /v2/images/{IMAGE_ID}"]


def test_delete_image_that_is_gone_already(fake, cloud):
    fake.on("DELETE", f"{IMAGE}/images/{IMAGE_ID}", status_code=404,
            text=f"404 Not Found\n\nNo image found with ID {IMAGE_ID}")
    assert cloud.delete_image(IMAGE_ID) is False
    assert fake.sent() == [f"DELETE /v2/images/{IMAGE_ID}"]


@pytest.mark.parametrize("status, text, expected", [
    (403, "403 Forbidden\n\nImage {id} is protected and cannot be deleted.", "does not allow it"),
    (500, "500 Internal Server Error", "HTTP 500"),
], ids=["protected", "server-error"])
def test_delete_image_refused_is_a_cloud_error(fake, cloud, status, text, expected):
    fake.on("DELETE", f"{IMAGE}/images/{IMAGE_ID}", status_code=status, text=text.format(id=IMAGE_ID))
    with pytest.raises(labkit.CloudError, match=expected):
        cloud.delete_image(IMAGE_ID)
    assert fake.sent("DELETE") == [f"DELETE /v2/images/{IMAGE_ID}"]


# -- credentials -------------------------------------------------------------------------
def test_check_credentials_names_the_project_and_never_the_password(fake, cloud):
    who = cloud.check_credentials()
    assert who["project_id"] == PROJECT_ID and who["username"] == "alice" and who["region"] == "RegionOne"
    assert PASSWORD not in json.dumps(who) and PASSWORD not in repr(cloud)
    (login,) = [r for r in fake.mocker.request_history if r.url.endswith("/v3/auth/tokens")]
    assert login.json()["auth"]["identity"]["password"]["user"]["name"] == "alice"


def test_refused_credentials_say_authentication_refused(fake):
    fake.on("POST", f"{IDENTITY}/v3/auth/tokens", status_code=401, json={"error": {
        "code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
    with pytest.raises(labkit.CloudError, match="authentication refused") as caught:
        OpenStackCloud(make_connection()).check_credentials()
    assert "clouds.yaml" in str(caught.value) and PASSWORD not in str(caught.value)


def test_unreachable_identity_service_is_a_cloud_error(fake):
    import requests

    fake.on("GET", f"{IDENTITY}/", exc=requests.exceptions.ConnectionError("Name or service not known"))
    fake.on("POST", f"{IDENTITY}/v3/auth/tokens", exc=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(labkit.CloudError, match="auth_url"):
        OpenStackCloud(make_connection()).check_credentials()


@pytest.mark.parametrize("env, clouds_yaml, expected", [
    ({}, None, ["clouds.yaml", "OS_CLOUD", "OS_AUTH_URL"]),
    ({"OS_CLOUD": "nosuchcloud"}, None, ["'nosuchcloud'", "clouds.yaml", "OS_CLOUD"]),
    ({"OS_CLOUD": "nosuchcloud"}, "clouds:\n  other:\n    auth:\n      auth_url: https://other.example.com\n",
     ["'nosuchcloud'", "clouds.yaml", "OS_CLOUD"]),
], ids=["nothing-set", "os-cloud-without-clouds-yaml", "os-cloud-not-in-clouds-yaml"])
def test_no_credentials_is_a_config_error_naming_clouds_yaml_and_os_cloud(tmp_path, env, clouds_yaml, expected):
    # A fresh process: openstacksdk fixes its clouds.yaml search path (cwd, XDG, ~/.config, /etc)
    # at import time, so only a new interpreter with an empty environment and a private HOME
    # is sure to find no clouds.yaml of the developer's.
    script = textwrap.dedent("""
        import labkit
        from labkit.backends.openstack.cloud import OpenStackCloud
        try:
            OpenStackCloud.connect()
        except labkit.ConfigError as exc:
            print("ConfigError:", exc)
    """)
    clean = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": os.defpath,
             "PYTHONPATH": str(REPO), **env}
    if clouds_yaml:
        (tmp_path / "config" / "openstack").mkdir(parents=True)
        (tmp_path / "config" / "openstack" / "clouds.yaml").write_text(clouds_yaml)
    for site in ("/etc/openstack", "/etc/xdg/openstack"):
        if Path(site, "clouds.yaml").exists():
            pytest.skip(f"this machine has {site}/clouds.yaml, which openstacksdk always reads")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=clean, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.startswith("ConfigError:"), result.stdout + result.stderr
    for word in expected:
        assert word in result.stdout


def test_missing_openstacksdk_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openstack", None)
    with pytest.raises(labkit.ConfigError, match="pip install openstacksdk"):
        OpenStackCloud.connect()


# -- bake: Nova createImage, Glance until active -------------------------------------------
# Shapes after the API references: compute "Create Image (createImage Action)" (microversion
# 2.45+ answers 202 with {"image_id": ...}), image v2 "Show image" and "Add image tag" (204).
SNAPSHOT_ID = "0e7761dd-ee98-41f0-ba35-05994e446431"
BAKED_PROPERTIES = {"labkit-owner": "alice", "labkit-deployment": "lab"}


def glance_snapshot(status):
    return {**glance_image(SNAPSHOT_ID, "labkit-lab-baked", status=status, owner=PROJECT_ID),
            "visibility": "private", "size": None if status == "queued" else 2147483648,
            "image_type": "snapshot", "instance_uuid": SERVER_ID, **BAKED_PROPERTIES}


@pytest.fixture
def snapshot(fake):
    fake.on("POST", f"{COMPUTE}/servers/{SERVER_ID}/action", status_code=202, json={"image_id": SNAPSHOT_ID})
    fake.on("PUT", f"{IMAGE}/images/{SNAPSHOT_ID}/tags/labkit-baked", status_code=204)
    return fake


def test_create_image_asks_nova_for_a_snapshot_with_the_owner_and_tags_it(snapshot, cloud):
    snapshot.on("GET", f"{IMAGE}/images/{SNAPSHOT_ID}", json=glance_snapshot("queued"))

    image = cloud.create_image(SERVER_ID, "labkit-lab-baked", BAKED_PROPERTIES)

    assert (image["id"], image["name"], image["status"]) == (SNAPSHOT_ID, "labkit-lab-baked", "queued")
    assert image["tags"] == ["labkit-baked"]
    assert snapshot.bodies("POST", f"/v2.1/servers/{SERVER_ID}/action") == [
        {"createImage": {"name": "labkit-lab-baked", "metadata": BAKED_PROPERTIES}}]
    assert snapshot.sent() == [f"POST /v2.1/servers/{SERVER_ID}/action", f"GET /v2/images/{SNAPSHOT_ID}",
                               f"PUT /v2/images/{SNAPSHOT_ID}/tags/labkit-baked"]


def test_create_image_over_the_snapshot_quota_is_a_quota_error(snapshot, cloud):
    snapshot.on("POST", f"{COMPUTE}/servers/{SERVER_ID}/action",
                **nova_error(403, "Quota exceeded for resources: ['images']."))
    with pytest.raises(labkit.QuotaError, match="quota"):
        cloud.create_image(SERVER_ID, "labkit-lab-baked", BAKED_PROPERTIES)
    assert snapshot.sent() == [f"POST /v2.1/servers/{SERVER_ID}/action"]


def test_wait_image_active_polls_glance_until_active(fake, cloud):
    fake.on("GET", f"{IMAGE}/images/{SNAPSHOT_ID}", {"json": glance_snapshot("queued")},
            {"json": glance_snapshot("saving")}, {"json": glance_snapshot("active")})
    image = cloud.wait_image_active(SNAPSHOT_ID, timeout=5, poll=0)
    assert image["status"] == "active" and image["id"] == SNAPSHOT_ID
    assert fake.sent() == [f"GET /v2/images/{SNAPSHOT_ID}"] * 3


def test_wait_image_active_reports_a_killed_snapshot(fake, cloud):
    fake.on("GET", f"{IMAGE}/images/{SNAPSHOT_ID}", {"json": glance_snapshot("saving")},
            {"json": glance_snapshot("killed")})
    with pytest.raises(labkit.CloudError, match=r"failed while being saved .*`labkit cleanup`, then bake again"):
        cloud.wait_image_active(SNAPSHOT_ID, timeout=5, poll=0)


def test_wait_image_active_times_out_naming_the_image(fake, cloud):
    fake.on("GET", f"{IMAGE}/images/{SNAPSHOT_ID}", json=glance_snapshot("saving"))
    with pytest.raises(labkit.CloudError, match=r"Timed out after 0.2 s waiting for the image 'labkit-lab-baked'"):
        cloud.wait_image_active(SNAPSHOT_ID, timeout=0.2, poll=0.05)


def test_resolve_sees_whether_an_image_was_baked(catalog, cloud):
    catalog.on("GET", f"{IMAGE}/images?name=labkit-lab-baked",
               json={"images": [glance_snapshot("active") | {"tags": ["labkit-baked"]}]})
    assert cloud.resolve("labkit-lab-baked", "m1.small", "private").image_baked
    assert not cloud.resolve("Ubuntu 24.04", "m1.small", "private").image_baked


# -- scale-out: the broker rule, the private address, worker VMs ----------------------------
def test_broker_rule_admits_the_groups_members_only_and_is_added_once(fake, cloud):
    neutron = SecurityGroups(fake, [neutron_security_group("labkit-server", [
        neutron_rule("ssh", "ingress", "IPv4", "tcp", 22, "0.0.0.0/0"),
        neutron_rule("web", "ingress", "IPv4", "tcp", 5100, "0.0.0.0/0")])])

    assert cloud.allow_within_group("labkit-server") is True
    [body] = [b["security_group_rule"] for b in fake.bodies("POST", "/v2.0/security-group-rules")]
    assert body == {"security_group_id": SG_ID, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                    "port_range_min": 5672, "port_range_max": 5672, "remote_group_id": SG_ID,
                    "description": "labkit broker"}
    assert "remote_ip_prefix" not in body  # never a CIDR: the broker is not open to the world

    assert cloud.allow_within_group("labkit-server") is False
    # The next deployment's ensure_security_group keeps the rule and adds nothing.
    again = cloud.ensure_security_group("labkit-server", ssh_cidr="0.0.0.0/0", web_cidr="0.0.0.0/0")
    assert (again.rules_added, again.rules_removed) == (0, 0)
    assert len(fake.bodies("POST", "/v2.0/security-group-rules")) == 1 and fake.sent("DELETE") == []
    ingress = [r for r in neutron.groups[SG_ID]["security_group_rules"] if r["direction"] == "ingress"]
    assert sorted((r["port_range_min"], r["remote_group_id"]) for r in ingress) == [
        (22, None), (5100, None), (5672, SG_ID)]


def test_broker_rule_without_the_group_says_deploy_first(fake, cloud):
    SecurityGroups(fake)
    with pytest.raises(labkit.CloudError, match="found 0: deploy the server first"):
        cloud.allow_within_group("labkit-server")


def test_private_address_is_the_fixed_ipv4(fake, cloud):
    fake.on("GET", f"{COMPUTE}/servers/{SERVER_ID}", json=nova_server("ACTIVE", floating="172.24.4.228"))
    assert cloud.private_address(SERVER_ID) == "10.1.0.9"


def test_worker_vms_are_created_found_by_metadata_and_deleted(fake, cloud):
    worker_id = "5b2c8a4e-7d1f-4c3e-9a6b-0f1e2d3c4b5a"
    worker_meta = {"labkit-owner": "alice", "labkit-deployment": "lab", "labkit-role": "worker"}
    fake.on("POST", f"{COMPUTE}/servers", status_code=202, json={"server": {
        "id": worker_id, "OS-DCF:diskConfig": "MANUAL", "adminPass": "xY9", "security_groups": [
            {"name": "labkit-server"}], "links": []}})
    created = cloud.create_server("labkit-lab-w1", IMAGE_ID, FLAVOR_ID, PRIVATE_NET_ID, "labkit-alice",
                                  "labkit-server", "#cloud-config\n", worker_meta, tags=["labkit", "worker"])
    assert created.id == worker_id
    (body,) = fake.bodies("POST", "/v2.1/servers")
    assert body["server"]["metadata"] == worker_meta and body["server"]["security_groups"] == [
        {"name": "labkit-server"}]

    worker = dict(nova_server("ACTIVE", name="labkit-lab-w1", metadata=worker_meta)["server"], id=worker_id)
    server = nova_server("ACTIVE", metadata={"labkit-owner": "alice", "labkit-deployment": "lab"})["server"]
    fake.on("GET", f"{COMPUTE}/servers/detail", json={"servers": [server, worker]})
    assert [s.id for s in cloud.find_servers({"labkit-deployment": "lab", "labkit-role": "worker"})] == [worker_id]

    fake.on("DELETE", f"{COMPUTE}/servers/{worker_id}", status_code=204)
    fake.on("GET", f"{COMPUTE}/servers/{worker_id}", nova_error(404, "Instance could not be found."))
    assert cloud.delete_server(worker_id, wait=True, timeout=5, poll=0) is True
    assert fake.sent()[-2:] == [f"DELETE /v2.1/servers/{worker_id}", f"GET /v2.1/servers/{worker_id}"]
