"""The testbed's address and name plan: pure functions, no I/O.

One shared L2 segment (the bridge ``lan0`` in the namespace ``snftb-lan``) carries
TEST-NET-1, 192.0.2.0/24 (RFC 5737), so nothing here can collide with a real network:

==========================  =================  ==========================
what                        address            name
==========================  =================  ==========================
services host (lan ns)      192.0.2.1          svc.snf.test
node n of cluster c         192.0.2.(10c+n)    n<n>.c<c>.snf.test
cluster c (master IP)       192.0.2.(100+c)    c<c>.snf.test
==========================  =================  ==========================

Clusters 1-8 with nodes 1-9 fit.  The services host is where the portal, PostgreSQL and
the API clients run; every node runs in its own network, UTS and mount namespaces.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "snf.test"
SUBNET = ipaddress.IPv4Network("192.0.2.0/24")
PREFIX_LEN = SUBNET.prefixlen
LAN_NS = "snftb-lan"
LAN_BRIDGE = "lan0"
SVC_ADDRESS = "192.0.2.1"
SVC_NAME = f"svc.{DOMAIN}"
NS_PREFIX = "snftb-"
MAX_CLUSTERS = 8
MAX_NODES = 9

#: Host paths owned by the testbed; `down` removes them.
STATE_DIR = Path("/var/lib/snf-testbed")
NS_DIR = Path("/run/snf-testbed")

#: Per-node directories bind-mounted over these paths inside the node's mount namespace.
NODE_BINDS: dict[str, str] = {
    "etc-ganeti": "/etc/ganeti",
    "lib-ganeti": "/var/lib/ganeti",
    "run-ganeti": "/run/ganeti",
    "log-ganeti": "/var/log/ganeti",
    "lock": "/run/lock",
    "srv-ganeti": "/srv/ganeti",
    "etc-snf": "/etc/snf",
    "lib-snf": "/var/lib/snf",
    "run-snf": "/run/snf",
    "log-snf": "/var/log/snf",
}

#: Shared by every node, as an NFS export would be: the `dir` block store.
SHARED_STORE = STATE_DIR / "store"


@dataclass(frozen=True)
class NodePlan:
    cluster: int
    index: int

    @property
    def short(self) -> str:
        """``c1n1``: unique across the testbed (namespace and lan-side interface names)."""
        return f"c{self.cluster}n{self.index}"

    @property
    def name(self) -> str:
        return f"n{self.index}.c{self.cluster}.{DOMAIN}"

    @property
    def address(self) -> str:
        return str(SUBNET.network_address + 10 * self.cluster + self.index)

    @property
    def netns(self) -> str:
        return NS_PREFIX + self.short

    @property
    def state_dir(self) -> Path:
        return STATE_DIR / f"c{self.cluster}" / f"n{self.index}"

    @property
    def ns_dir(self) -> Path:
        return NS_DIR / self.short


@dataclass(frozen=True)
class ClusterPlan:
    index: int
    node_count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_CLUSTERS:
            raise ValueError(f"cluster index must be 1..{MAX_CLUSTERS}, not {self.index}")
        if not 1 <= self.node_count <= MAX_NODES:
            raise ValueError(f"node count must be 1..{MAX_NODES}, not {self.node_count}")

    @property
    def name(self) -> str:
        return f"c{self.index}.{DOMAIN}"

    @property
    def address(self) -> str:
        return str(SUBNET.network_address + 100 + self.index)

    @property
    def nodes(self) -> list[NodePlan]:
        return [NodePlan(self.index, n) for n in range(1, self.node_count + 1)]

    @property
    def master(self) -> NodePlan:
        return self.nodes[0]

    @property
    def state_dir(self) -> Path:
        return STATE_DIR / f"c{self.index}"

    def hosts_file(self) -> str:
        """/etc/hosts for this cluster's nodes: FQDN first, as Ganeti wants."""
        lines = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"{SVC_ADDRESS}\t{SVC_NAME} svc",
            f"{self.address}\t{self.name} c{self.index}",
        ]
        lines += [f"{n.address}\t{n.name} n{n.index}" for n in self.nodes]
        return "\n".join(lines) + "\n"
