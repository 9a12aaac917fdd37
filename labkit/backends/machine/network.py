"""The lab network: each machine in a network namespace of its own, on a /30 of 10.213.0.0/16.

The host's loopback is shared with everything else on it (5100 and 5672 may
be taken), so a machine gets its own namespace and addresses, like a VM on
a project network: a veth pair, the host's side ``.1`` and the machine's
``.2`` of the /30, a default route via the host. Machines reach each other
through the host, as VMs on one private network do.

The host's side plays the cloud's part, with one nftables table
(``ip labkit_machines``):

- **NAT**: the lab's range is masqueraded out of the host's default route,
  so apt, pip and npm inside reach the mirrors as the host does;
  ``net.ipv4.ip_forward`` is switched on with the first machine and set
  back to what it was when the last one goes.
- **Security group**: new connections to a machine are let in on 22 and
  5100 only, and on 5672 from the machines of the lab's group
  (``allow_broker``); everything else towards a machine is dropped, from the
  host as from other machines. It is outside the machine, as a cloud's is.
  The group is the host's (one lab per host, as on a student's computer), and
  a machine leaves it with its slot, whose address the next machine gets.

Every change happens under one lock (``/run/labkit-machines/lock``), since
two deployments may start at once, and everything here is found again by
its name (``labkit-m<index>``), so ``labkit cleanup`` can remove what a crash
left behind.
"""

from __future__ import annotations

import fcntl
import ipaddress
import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..._errors import MachineError

LAB_RANGE = ipaddress.ip_network("10.213.0.0/16")
RUN = Path("/run/labkit-machines")
TABLE = "labkit_machines"
NETNS_PREFIX = "labkit-m"
OPEN_PORTS = (22, 5100)  # to the world, as the lab's security group opens them
BROKER_PORT = 5672  # to the lab's group only
SLOTS = LAB_RANGE.num_addresses // 4


@dataclass(frozen=True)
class Link:
    """One machine's place on the lab network."""

    index: int

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def host_interface(self) -> str:
        return f"lkh{self.index}"

    @property
    def machine_interface(self) -> str:
        return f"lkm{self.index}"

    @property
    def host_address(self) -> str:
        return str(LAB_RANGE.network_address + 4 * self.index + 1)

    @property
    def address(self) -> str:
        """The machine's address: its fixed IP on the lab network."""
        return str(LAB_RANGE.network_address + 4 * self.index + 2)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


def attach() -> Link:
    """A new namespace with its veth pair and routes, on a free /30; NAT and the rules set up."""
    with _locked():
        used = {link.index for link in links()}
        index = next((i for i in range(1, SLOTS) if i not in used), None)
        if index is None:
            raise MachineError(f"The lab network {LAB_RANGE} is full: `labkit cleanup` removes machines left behind.")
        link = Link(index)
        try:
            _ip("netns", "add", link.netns)
            _ip("link", "add", link.host_interface, "type", "veth", "peer", "name", link.machine_interface,
                "netns", link.netns)
            _ip("addr", "add", f"{link.host_address}/30", "dev", link.host_interface)
            _ip("link", "set", link.host_interface, "up")
            _ip("-n", link.netns, "addr", "add", f"{link.address}/30", "dev", link.machine_interface)
            _ip("-n", link.netns, "link", "set", link.machine_interface, "up")
            _ip("-n", link.netns, "link", "set", "lo", "up")
            _ip("-n", link.netns, "route", "add", "default", "via", link.host_address)
            _ensure_table()
        except MachineError:
            _remove(link)
            raise
        return link


def detach(link: Link) -> None:
    """Remove the namespace (its veth goes with it); the last machine also takes the table and forwarding."""
    with _locked():
        _remove(link)


def allow_broker(address: str) -> None:
    """Let ``address`` (a machine of the lab's group) reach 5672 on the lab's machines."""
    with _locked():
        _nft(f"add element ip {TABLE} lab_group {{ {address} }}")


def links() -> list[Link]:
    """The lab's namespaces on this host, whoever made them (``labkit cleanup`` uses this too)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return sorted((Link(int(m.group(1))) for m in re.finditer(rf"^{NETNS_PREFIX}(\d+)\b", done.stdout, re.M)),
                  key=lambda link: link.index)


def _remove(link: Link) -> None:
    # The next machine on this slot gets the same address: it must not inherit a place in the group.
    subprocess.run(["nft", "delete", "element", "ip", TABLE, "lab_group", f"{{ {link.address} }}"],
                   capture_output=True)
    subprocess.run(["ip", "netns", "delete", link.netns], capture_output=True)
    subprocess.run(["ip", "link", "delete", link.host_interface], capture_output=True)  # if the netns was gone
    if not links():
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
        saved = RUN / "ip_forward"
        if saved.is_file():
            Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
            saved.unlink()


def _ensure_table() -> None:
    saved = RUN / "ip_forward"
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if not saved.is_file():
        saved.write_text(forward.read_text())
    forward.write_text("1\n")
    if subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True).returncode == 0:
        return
    ports = ", ".join(str(p) for p in OPEN_PORTS)
    _nft(f"""
table ip {TABLE} {{
  set lab_group {{ type ipv4_addr; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {LAB_RANGE} ip daddr != {LAB_RANGE} masquerade
  }}
  chain to_machines {{
    ct state established,related accept
    icmp type echo-request accept
    tcp dport {{ {ports} }} accept
    ip saddr @lab_group tcp dport {BROKER_PORT} accept
    drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    oifname "lkh*" jump to_machines
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname "lkh*" jump to_machines
  }}
}}""")


@contextmanager
def _locked() -> Iterator[None]:
    RUN.mkdir(mode=0o700, exist_ok=True)
    with open(RUN / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise MachineError(f"Setting up the lab network failed: `ip {' '.join(args)}` said "
                           f"{done.stderr.strip() or done.returncode}. Run `labkit cleanup`, then retry.")


def _nft(script: str) -> None:
    done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        raise MachineError(f"Setting up the lab network's rules failed: nft said {done.stderr.strip()}. "
                           "Is nftables installed (`apt-get install nftables`)?")
