"""Real Ganeti 3.0 clusters on one machine, each node in its own namespaces.

``up(ClusterPlan(1))`` clears what an earlier run left of cluster 1, creates the shared lan,
the node's namespaces and directories, runs ``gnt-cluster init`` (fake and KVM hypervisors,
KVM under TCG; ``ext``, ``file`` and ``diskless`` templates; low instance-policy minimums),
adds a RAPI user with a generated password and waits until RAPI answers from the services
host.  ``down(1)`` (or ``down()`` for everything) removes all of it again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from snf.common.errors import SnfError
from snf.common.rapi import RapiClient, fingerprint_of_pem, ha1_users_line
from snf.image.tsc import host_tsc_khz

from . import namespaces, plan
from .namespaces import Host, sh

log = logging.getLogger("snf.testbed")

RAPI_PORT = 5080
RAPI_USER = "snf-testbed"
QEMU = "/usr/bin/qemu-system-x86_64"
REQUIRED_COMMANDS = {
    "gnt-cluster": "ganeti",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "losetup": "mount",
    "start-stop-daemon": "dpkg",
    QEMU: "qemu-system-x86",
}
#: Entries of the package's /etc/ganeti that every node's own copy needs.
ETC_GANETI_SEED = ("lib", "share", "kvm-ifup-os", "xen-ifup-os")
IPOLICY_BOUNDS = (
    "min:disk-size=1,cpu-count=1,disk-count=0,memory-size=1,nic-count=0,spindle-use=0"
    "/max:disk-size=1048576,cpu-count=8,disk-count=16,memory-size=32768,nic-count=8,"
    "spindle-use=12"
)
DISK_TEMPLATES = "ext,file,diskless"


class TestbedError(SnfError):
    """The testbed cannot be brought up or down; the message says why."""


@dataclass(frozen=True)
class ClusterInfo:
    """What a client needs to reach a running testbed cluster (saved as cluster.json)."""

    index: int
    name: str
    address: str
    master: str
    nodes: list[str]
    rapi_port: int
    rapi_user: str
    rapi_password: str
    rapi_pin: str
    kernel: str


@dataclass(frozen=True)
class Cluster:
    plan: plan.ClusterPlan
    info: ClusterInfo

    @property
    def nodes(self) -> list[Host]:
        return [Host(n.netns, n.ns_dir) for n in self.plan.nodes]

    @property
    def master(self) -> Host:
        return self.nodes[0]

    def node_path(self, inside: str, node: int = 1) -> Path:
        """The host path of a path inside node ``node`` that lives in one of its own dirs."""
        n = self.plan.nodes[node - 1]
        for key, target in sorted(plan.NODE_BINDS.items(), key=lambda kv: -len(kv[1])):
            if inside == target or inside.startswith(target + "/"):
                return n.state_dir / key / inside[len(target) :].lstrip("/")
        raise ValueError(f"{inside} is not inside one of the node's own directories")

    def gnt(self, *argv: str, timeout: float = 300, check: bool = True):
        """Run a gnt-* command on the master node."""
        return self.master.run(argv, timeout=timeout, check=check)

    def rapi(self) -> RapiClient:
        """A RAPI client for this cluster; use it inside the services host (lan().call)."""
        return RapiClient(
            self.info.address,
            self.info.rapi_port,
            username=self.info.rapi_user,
            password=self.info.rapi_password,
            pin=self.info.rapi_pin,
        )


def lan() -> Host:
    """The services host: where the portal, databases and API clients run."""
    return Host(plan.LAN_NS)


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise TestbedError("the testbed needs root (namespaces, mounts, Ganeti)")
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if shutil.which(cmd) is None})
    if missing:
        raise TestbedError(f"missing packages: {' '.join(missing)} (run `make deps`)")
    find_kernel()


def find_kernel() -> Path:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    if not kernels:
        raise TestbedError("no kernel in /boot for KVM guests: install linux-image-amd64")
    return kernels[-1]


def up(cluster: plan.ClusterPlan, *, progress: Callable[[str], None] = log.info) -> Cluster:
    """Bring up a fresh cluster (removing whatever an earlier run left of it)."""
    check_prerequisites()
    if cluster.node_count != 1:
        raise TestbedError("multi-node clusters are not built yet: use one node per cluster")
    down(cluster.index)
    t0 = time.monotonic()
    namespaces.create_lan()
    hosts = cluster.state_dir / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(cluster.hosts_file())
    plan.SHARED_STORE.mkdir(parents=True, exist_ok=True)
    for node in cluster.nodes:
        binds = _prepare_node_dirs(node, hosts)
        namespaces.create_node(node, binds, node.name, bridges=["br0"])
        progress(f"{node.name}: namespaces ready ({time.monotonic() - t0:.1f} s)")
    kernel = find_kernel()
    master = Host(cluster.master.netns, cluster.master.ns_dir)
    master.run(_init_argv(cluster, kernel), timeout=180)
    progress(f"{cluster.name}: gnt-cluster init done ({time.monotonic() - t0:.1f} s)")
    info = _add_rapi_user(cluster, kernel)
    (cluster.state_dir / "cluster.json").write_text(json.dumps(asdict(info), indent=2))
    os.chmod(cluster.state_dir / "cluster.json", 0o600)
    result = Cluster(cluster, info)
    lan().call(_wait_for_rapi, result, 60.0)
    progress(f"{cluster.name}: RAPI answers at {info.address}:{info.rapi_port} "
             f"({time.monotonic() - t0:.1f} s)")  # fmt: skip
    return result


def load(index: int) -> Cluster:
    """A handle on a running cluster brought up by an earlier process."""
    path = plan.STATE_DIR / f"c{index}" / "cluster.json"
    try:
        info = ClusterInfo(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise TestbedError(f"cluster {index} is not up (no {path})") from None
    return Cluster(plan.ClusterPlan(index, len(info.nodes)), info)


def _prepare_node_dirs(node: plan.NodePlan, hosts: Path) -> dict[str, Path]:
    root = node.state_dir
    for key in plan.NODE_BINDS:
        (root / key).mkdir(parents=True, exist_ok=True)
    for entry in ETC_GANETI_SEED:
        src = Path("/etc/ganeti") / entry
        if src.is_symlink():
            (root / "etc-ganeti" / entry).symlink_to(os.readlink(src))
        elif src.exists():
            shutil.copy2(src, root / "etc-ganeti" / entry)
    (root / "etc-ganeti" / "file-storage-paths").write_text("/srv/ganeti/file-storage\n")
    for sub in ("file-storage", "os", "extstorage"):
        (root / "srv-ganeti" / sub).mkdir(exist_ok=True)
    for sub in ("extstorage", "os"):
        (root / "log-ganeti" / sub).mkdir(exist_ok=True)
    (root / "etc-snf" / "snf.toml").write_text(
        f'# written by the snf testbed for {node.name}\n[store]\npath = "{plan.SHARED_STORE}"\n'
    )
    default = root / "default-ganeti"
    # RAPI listens on the node's own addresses (inside its namespace), not only loopback.
    default.write_text('RAPI_ARGS="-b 0.0.0.0 --require-authentication"\n')
    binds = {target: root / key for key, target in plan.NODE_BINDS.items()}
    for target in plan.NODE_BINDS.values():
        Path(target).mkdir(parents=True, exist_ok=True)  # mount points on the host
    binds["/etc/hosts"] = hosts
    binds["/etc/default/ganeti"] = default
    return binds


def _init_argv(cluster: plan.ClusterPlan, kernel: Path) -> list[str]:
    tsc_khz = host_tsc_khz()  # spares the guests a TSC calibration that can hang them
    kvm = ",".join(
        [
            f"kvm_path={QEMU}",
            "kvm_flag=disabled",  # TCG: nested KVM hangs on these machines
            f"kernel_path={kernel}",
            f"kernel_args=ro tsc_early_khz={tsc_khz}" if tsc_khz else "kernel_args=ro",
            "initrd_path=",
            "serial_console=true",
            "vnc_bind_address=",
            "spice_bind=",
            "use_chroot=false",
            "security_model=none",
        ]
    )
    return [
        "gnt-cluster", "init",
        "--no-ssh-init", "--no-etc-hosts",
        "--master-netdev=eth0",
        "--nic-parameters=mode=bridged,link=br0",
        "--enabled-hypervisors=fake,kvm",
        f"--hypervisor-parameters=kvm:{kvm}",
        f"--enabled-disk-templates={DISK_TEMPLATES}",
        f"--ipolicy-disk-templates={DISK_TEMPLATES}",
        f"--ipolicy-bounds-specs={IPOLICY_BOUNDS}",
        "--file-storage-dir=/srv/ganeti/file-storage",
        cluster.name,
    ]  # fmt: skip


def _add_rapi_user(cluster: plan.ClusterPlan, kernel: Path) -> ClusterInfo:
    lib = cluster.master.state_dir / "lib-ganeti"
    password = secrets.token_urlsafe(18)
    users = lib / "rapi" / "users"
    users.parent.mkdir(exist_ok=True)
    users.write_text(ha1_users_line(RAPI_USER, password, write=True) + "\n")
    shutil.chown(users, "gnt-rapi", "gnt-masterd")
    users.chmod(0o640)
    return ClusterInfo(
        index=cluster.index,
        name=cluster.name,
        address=cluster.address,
        master=cluster.master.name,
        nodes=[n.name for n in cluster.nodes],
        rapi_port=RAPI_PORT,
        rapi_user=RAPI_USER,
        rapi_password=password,
        rapi_pin=fingerprint_of_pem((lib / "rapi.pem").read_text()),
        kernel=str(kernel),
    )


def _wait_for_rapi(cluster: Cluster, timeout: float) -> int:
    """Inside the services host: poll RAPI until an authenticated call succeeds."""
    deadline = time.monotonic() + timeout
    client = cluster.rapi()
    while True:
        try:
            client.info()  # needs the users file to have been read, unlike /version
            return client.version()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- down ------------------------------------------------------------------------------------

_NODE_NS = re.compile(re.escape(plan.NS_PREFIX) + r"c(\d+)n(\d+)$")


def _leftover_nodes(index: int | None) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    names = [p.name for p in Path("/run/netns").glob(plan.NS_PREFIX + "*")]
    names += [plan.NS_PREFIX + p.name for p in plan.NS_DIR.glob("c*n*")]
    for name in names:
        m = _NODE_NS.match(name)
        if m and (index is None or int(m.group(1)) == index):
            found.add((int(m.group(1)), int(m.group(2))))
    for cdir in plan.STATE_DIR.glob("c[0-9]*"):
        for ndir in cdir.glob("n*"):
            c, n = cdir.name[1:], ndir.name[1:]
            if c.isdigit() and n.isdigit() and (index is None or int(c) == index):
                found.add((int(c), int(n)))
    return found


def down(index: int | None = None) -> None:
    """Remove cluster ``index`` (or the whole testbed): processes, loops, mounts, dirs."""
    for c, n in sorted(_leftover_nodes(index)):
        node = plan.NodePlan(c, n)
        if node.ns_dir.exists() and namespaces.netns_exists(node.netns):
            _detach_loops(Host(node.netns, node.ns_dir).run, ("/srv/ganeti/", "/var/lib/snf/"))
        namespaces.remove_netns(node.netns, node.ns_dir)
    _detach_loops(sh, (str(plan.STATE_DIR) + "/", "/srv/ganeti/snftest/"))
    if index is not None:
        shutil.rmtree(plan.STATE_DIR / f"c{index}", ignore_errors=True)
    # The lan namespace (the services host) stays while another cluster, Ceph or a running
    # PostgreSQL (tests/testbed/postgres.py: its pid file) uses it.
    remaining = [p for p in plan.STATE_DIR.glob("c[0-9]*") if p.is_dir()]
    remaining += [p for p in [plan.STATE_DIR / "ceph"] if p.exists()]
    remaining += [p for p in [plan.STATE_DIR / "postgres/data/postmaster.pid"] if p.exists()]
    remaining += [p for p in [plan.STATE_DIR / "portal/portal.pid"] if p.exists()]
    if index is None or not remaining:
        namespaces.remove_netns(plan.LAN_NS)
        shutil.rmtree(plan.STATE_DIR, ignore_errors=True)
        if plan.NS_DIR.exists():
            sh(["umount", plan.NS_DIR], check=False)
            shutil.rmtree(plan.NS_DIR, ignore_errors=True)


def _detach_loops(run: Callable[..., object], prefixes: Sequence[str]) -> None:
    """Detach loop devices whose backing file starts with one of ``prefixes``."""
    proc = run(["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"],
               check=False)  # fmt: skip
    for line in getattr(proc, "stdout", "").splitlines():
        dev, _, back = line.partition(" ")
        if back.startswith(tuple(prefixes)):
            run(["losetup", "-d", dev], check=False)
