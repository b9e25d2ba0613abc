"""A customized image boots for real: snf-image deploys it onto a Ganeti instance of the KVM
hypervisor (QEMU under TCG), and the guest's own init reports, on the serial console, the
host name and the injected file that customization put there."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_snf_image_ganeti import add, remove, set_mode
from tests.testbed import guest, images, install, plan
from tests.testbed.cluster import Cluster

pytestmark = [pytest.mark.ganeti, pytest.mark.kvm]
MiB = 1 << 20


@pytest.fixture(scope="module")
def image(cluster1: Cluster) -> Iterator[Path]:
    for node in cluster1.plan.nodes:
        install.install_snf(node)
    folder = plan.STATE_DIR / "snf-image-boot"
    folder.mkdir(parents=True, exist_ok=True)
    root = images.build_root(folder / "root")
    images.build_disk(folder / "linux.raw", 64 * MiB, root)
    yield folder / "linux.raw"
    for p in sorted(folder.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    folder.rmdir()


def test_a_customized_image_boots_and_shows_its_customization(
    cluster1: Cluster, image: Path
) -> None:
    set_mode(cluster1, "helper")
    name = "vm-boot.snf.test"
    kernel = Path(cluster1.info.kernel)
    initrd = kernel.parent / kernel.name.replace("vmlinuz-", "initrd.img-")
    personality = [
        {"path": images.INJECTED, "contents": base64.b64encode(b"injected-ok").decode(),
         "owner": "root", "group": "root", "mode": 0o644}
    ]  # fmt: skip
    try:
        params = {"img_personality": json.dumps(personality)}
        add(cluster1, name, str(image), hypervisor=f"kvm:initrd_path={initrd}",
            params=params, memory=256, start=False)  # fmt: skip
        cluster1.gnt("gnt-instance", "startup", "--submit", name)
        sock = f"/run/ganeti/kvm-hypervisor/ctrl/{name}.serial"
        want = f"{images.HELLO} hostname={name} file=injected-ok end".encode()
        output, _ = cluster1.master.call(guest.read_console_until, sock, want, 240.0)
        assert b"Linux version" in output
    finally:
        # The busybox init ignores ACPI power-off: do not wait for it.
        remove(cluster1, name)
