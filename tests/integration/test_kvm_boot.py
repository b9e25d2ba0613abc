"""A real guest boots under Ganeti's KVM hypervisor, with QEMU's TCG (no nested KVM here)."""

from __future__ import annotations

import time

import pytest

from tests.testbed import guest, plan
from tests.testbed.cluster import Cluster
from tests.testbed.test_providers import EXT_PROVIDER, OS_NAME

pytestmark = [pytest.mark.ganeti, pytest.mark.kvm]


def boot_and_read_console(cluster: Cluster, name: str, timeout: float = 120) -> dict[str, float]:
    """Add and start a KVM instance; return timings up to the guest's first console line."""
    initrd = guest.write_initramfs(plan.STATE_DIR / "guest" / "initramfs.cpio")
    t0 = time.monotonic()
    cluster.gnt(
        "gnt-instance", "add", "-H", f"kvm:initrd_path={initrd}", "-t", "ext",
        "--disk", f"0:size=64,provider={EXT_PROVIDER}", "-o", OS_NAME, "-B", "memory=128",
        "--no-name-check", "--no-ip-check", "--no-start", "-n", cluster.info.master, name,
    )  # fmt: skip
    t_added = time.monotonic()
    sock = f"/run/ganeti/kvm-hypervisor/ctrl/{name}.serial"
    # Start the job without waiting for it, and read the console while the guest boots.
    cluster.gnt("gnt-instance", "startup", "--submit", name)
    output, first_byte = cluster.master.call(guest.read_console_until, sock, guest.HELLO, timeout)
    t_hello = time.monotonic()
    return {
        "add": t_added - t0,
        "first_console_byte": first_byte - t_added,
        "guest_hello": t_hello - t_added,
        "output": output.decode(errors="replace"),
    }


def test_kvm_guest_boots_under_tcg(cluster1: Cluster) -> None:
    name = "vm-kvm.snf.test"
    try:
        seen = boot_and_read_console(cluster1, name)
        assert "Linux version" in seen["output"]  # the kernel itself printed
        assert guest.HELLO.decode() in seen["output"]  # and our init ran
        info = cluster1.gnt("gnt-instance", "info", name).stdout
        assert "kvm" in info
        # QEMU runs under TCG: Ganeti did not ask for KVM acceleration.
        ps = cluster1.master.run(["ps", "-eo", "args"]).stdout
        (qemu,) = [
            line for line in ps.splitlines() if "qemu-system-x86_64" in line and name in line
        ]
        assert "accel=kvm" not in qemu and "-enable-kvm" not in qemu
        # Ganeti's own kvm-ifup put the guest's tap into the node's br0.
        links = cluster1.master.run(["ip", "-o", "link", "show", "master", "br0"]).stdout
        assert "tap" in links
    finally:
        # The busybox guest ignores ACPI power-off: do not wait the default 2 min for it.
        cluster1.gnt("gnt-instance", "remove", "-f", "--shutdown-timeout=0", name, check=False)
    assert "qemu-system" not in cluster1.master.run(["ps", "-eo", "comm"]).stdout
