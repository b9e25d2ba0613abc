"""A server created through the compute API on Ganeti's KVM hypervisor (QEMU under TCG)
reaches ACTIVE, and its guest prints, on the serial console, the host name that snf-image
gave it; the console action reports its VNC console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import compute, guest, images, plan
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud

from .test_compute_ganeti import instance

pytestmark = [pytest.mark.ganeti, pytest.mark.kvm]
FOLDER = plan.STATE_DIR / "compute-kvm"
BACKEND = "c1-kvm"


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    """cluster1 registered a second time, for KVM instances (Debian's initrd, for the
    virtio and ext4 modules), as the only open backend while the module runs."""
    compute.ensure_backend(portal, cluster1)
    info = cluster1.info
    portal.snf_portal("backend", "add", BACKEND, "--host", info.address, "--user",
                      info.rapi_user, "--password-stdin", "--pin", info.rapi_pin,
                      "--hypervisor", "kvm", input=info.rapi_password + "\n")  # fmt: skip
    kernel = Path(cluster1.info.kernel)
    initrd = kernel.parent / kernel.name.replace("vmlinuz-", "initrd.img-")
    cluster1.gnt("gnt-cluster", "modify", "-H", f"kvm:initrd_path={initrd}")
    cloud = compute.user_with_image(portal, "kvm", FOLDER, flavor=("kvm-small", 1, 256, 1))
    try:
        with compute.only_backend(portal, BACKEND), compute.reconciler(portal, FOLDER / "r.log"):
            yield cloud
    finally:
        cluster1.gnt("gnt-cluster", "modify", "-H", "kvm:initrd_path=")
        portal.snf_portal("backend", "remove", BACKEND)
        compute.remove_tree(FOLDER)


def test_a_kvm_server_boots_with_its_customized_hostname(cloud: Cloud, cluster1: Cluster) -> None:
    server = cloud.create_server("vm-kvm", cloud.image, cloud.flavor)
    name = f"snf-{server['id']}"
    try:
        cloud.wait_status(server["id"], "ACTIVE", timeout=300)
        sock = f"/run/ganeti/kvm-hypervisor/ctrl/{name}.serial"
        want = f"{images.HELLO} hostname={name} ".encode()
        output, _ = cluster1.master.call(guest.read_console_until, sock, want, 240.0)
        assert want in output
        # The console action gives out VNC consoles only (this one is a serial console) ...
        action = f"/compute/v2.0/servers/{server['id']}/action"
        status, _, body = cloud.api("POST", action, {"console": {"type": "vnc"}})
        assert status == 409 and "no VNC console" in body["conflict"]["message"], body
        # ... as Ganeti's RAPI reports it for the instance's hypervisor parameters.
        cluster1.gnt("gnt-instance", "modify", "-H",
                     "serial_console=false,vnc_bind_address=127.0.0.1", name)  # fmt: skip
        status, _, body = cloud.api("POST", action, {"console": {"type": "vnc"}})
        assert status == 200, body
        fields = instance(cluster1, name)
        assert fields is not None and fields["network_port"] > 5900
        assert body["console"] == {"type": "vnc", "host": "127.0.0.1",
                                   "port": fields["network_port"], "password": ""}  # fmt: skip
    finally:
        cloud.delete_server(server["id"])
