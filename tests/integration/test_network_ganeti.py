"""VM networking through Ganeti, for real: a `gnt-network` network tagged for nfdhcpd, an
instance on the KVM hypervisor (QEMU under TCG) with a NIC on it, our kvm-vif-bridge doing
the NIC setup, nfdhcpd answering in the node: the guest (Debian's kernel, a busybox
initramfs with virtio_net) gets its lease with udhcpc and answers a ping; after
`gnt-instance shutdown` no rule of its tap remains."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.image.cpio import Cpio
from snf.image.helper_image import module_order
from tests.testbed import guest, install, nfdhcpd_node, plan
from tests.testbed.cluster import Cluster

pytestmark = [pytest.mark.ganeti, pytest.mark.kvm]
NETWORK = "snf-net1"
HELLO = b"snf-guest-net:"
INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t devtmpfs dev /dev; $B mount -t proc proc /proc; $B mount -t sysfs sys /sys
for m in $($B cat /modules/list); do $B insmod /modules/$m; done
$B ip link set lo up; $B ip link set eth0 up
$B udhcpc -i eth0 -q -n -t 20 -T 1 -s /udhcpc.sh > /dev/ttyS0 2>&1
while :; do
  echo "snf-guest-net: $($B cat /tmp/lease 2>/dev/null) end" > /dev/ttyS0
  $B sleep 0.5
done
"""
SCRIPT = """#!/bin/busybox sh
B=/bin/busybox
case "$1" in bound|renew)
  $B ip addr add "$ip/$mask" dev "$interface"
  [ -n "$router" ] && $B ip route add default via "$router"
  echo "ip=$ip router=$router hostname=$hostname dns=$dns" > /tmp/lease;;
esac
"""


def initramfs(kernel: Path, path: Path) -> Path:
    version = kernel.name.removeprefix("vmlinuz-")
    moddir = Path("/lib/modules", version)
    archive = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "modules"):
        archive.directory(d)
    archive.device("dev/console", 5, 1)
    archive.file("bin/busybox", guest.BUSYBOX.read_bytes(), 0o755)
    archive.file("init", INIT.encode(), 0o755)
    archive.file("udhcpc.sh", SCRIPT.encode(), 0o755)
    files = module_order(moddir, ("virtio_pci", "virtio_net"))
    for rel in files:
        archive.file(f"modules/{Path(rel).name}", (moddir / rel).read_bytes())
    archive.file("modules/list", "\n".join(Path(r).name for r in files).encode() + b"\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(archive.bytes())
    return path


@pytest.fixture
def network(cluster1: Cluster) -> Iterator[Cluster]:
    c = cluster1
    node = c.plan.master
    for n in c.plan.nodes:
        install.install_snf(n)
    etc = node.state_dir / "etc-snf"
    (etc / "conf.d").mkdir(exist_ok=True)
    (etc / "conf.d" / "network.toml").write_text('[nfdhcpd]\nnameservers = ["192.0.2.53"]\n')
    run = c.master.run
    run(["ip", "addr", "add", "10.66.0.1/24", "dev", "br0"])
    daemon = nfdhcpd_node.start(c)
    c.gnt("gnt-network", "add", "--network=10.66.0.0/24", "--gateway=10.66.0.1",
          "--tags=nfdhcpd", NETWORK)  # fmt: skip
    c.gnt("gnt-network", "connect", "--nic-parameters=mode=bridged,link=br0", NETWORK, "default")
    try:
        yield c
    finally:
        nfdhcpd_node.stop(c, daemon)
        c.gnt("gnt-network", "disconnect", NETWORK, "default", check=False)
        c.gnt("gnt-network", "remove", NETWORK, check=False)
        run(["ip", "addr", "del", "10.66.0.1/24", "dev", "br0"], check=False)
        (etc / "conf.d" / "network.toml").unlink(missing_ok=True)


def snf_rules(c: Cluster, tap: str) -> list[str]:
    out = c.master.run(["ebtables-save"], check=False).stdout
    out += c.master.run(["iptables-save"], check=False).stdout
    return [line for line in out.splitlines() if tap in line]


def test_a_kvm_instance_gets_its_lease_from_nfdhcpd_and_answers(network: Cluster) -> None:
    c = network
    kernel = Path(c.info.kernel)
    initrd = initramfs(kernel, plan.STATE_DIR / "guest" / "net-initramfs.cpio")
    name = "vm-net.snf.test"
    try:
        c.gnt("gnt-instance", "add", "-H", f"kvm:initrd_path={initrd}", "-t", "file",
              "--disk", "0:size=16M", "-o", "snftest+default", "--net",
              f"0:network={NETWORK},ip=pool", "-B", "memory=128", "--no-name-check",
              "--no-ip-check", "--no-start", "-n", c.info.master, name)  # fmt: skip
        c.gnt("gnt-instance", "startup", "--submit", name)
        sock = f"/run/ganeti/kvm-hypervisor/ctrl/{name}.serial"
        output, _ = c.master.call(guest.read_console_until, sock, b" end", 240.0)
        seen = re.search(rb"snf-guest-net: ip=(\S+) router=(\S*) hostname=(\S*)", output)
        assert seen, output[-2000:]
        ip = seen.group(1).decode()
        assert ip.startswith("10.66.0.") and seen.group(2) == b"10.66.0.1"
        assert seen.group(3) == b"vm-net"
        ping = c.master.run(["busybox", "ping", "-c", "1", "-W", "3", ip], check=False)
        assert ping.returncode == 0, ping.stdout
        states = c.plan.master.state_dir / "lib-snf" / "network"
        tap = next(p.stem for p in states.glob("*.json"))
        assert snf_rules(c, tap)
        c.gnt("gnt-instance", "shutdown", "--timeout=0", name)
        deadline = time.monotonic() + 10
        while snf_rules(c, tap) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert snf_rules(c, tap) == []
        assert not (c.plan.master.state_dir / "lib-snf" / "nfdhcpd" / tap).exists()
    finally:
        c.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name, check=False)
