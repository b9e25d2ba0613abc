"""Volumes on a real Ganeti cluster (fake hypervisor): extra volumes added to a server
(RAPI disk add with the archipelago provider), detached with their data and attached to
another server, live snapshots that become files, images and new volumes, quota through
all of it, and python-openstackclient's volume commands."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from snf.archipelago import volumes
from snf.archipelago.store import default_owner
from snf.archipelago.store_dir import DirStore
from snf.archipelago.volume import Volume
from tests.testbed import compute, plan
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud

from .test_compute_ganeti import OPENSTACK, instance, openstack

pytestmark = pytest.mark.ganeti
GiB, MiB = 1 << 30, 1 << 20
FOLDER = plan.STATE_DIR / "volume-tests"
V2 = "/volume/v3"  # Cinder's spelling of the statuses (in-use)


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    assert OPENSTACK.exists(), "python-openstackclient is not installed (make deps)"
    backend = compute.ensure_backend(portal, cluster1)
    cloud = compute.user_with_image(portal, "volumes", FOLDER, "busybox linux")
    try:
        with compute.only_backend(portal, backend), compute.reconciler(portal, FOLDER / "r.log"):
            yield cloud
    finally:
        compute.remove_tree(FOLDER)


def wait_volume(cloud: Cloud, volume_id: str, want: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = cloud.api("GET", f"{V2}/volumes/{volume_id}")
        assert status == 200, body
        volume = body["volume"]
        if volume["status"] == want:
            return volume
        assert volume["status"] != "error" or want == "error", volume
        if time.monotonic() > deadline:
            raise AssertionError(f"volume {volume_id} is {volume['status']}, not {want}")
        time.sleep(0.5)


def wait_snapshot(cloud: Cloud, snap_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = cloud.api("GET", f"{V2}/snapshots/{snap_id}")
        assert status == 200, body
        if body["snapshot"]["status"] != "creating":
            return body["snapshot"]
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def disks(cluster: Cluster, server_id: int) -> dict[str, str]:
    """The instance's disks: name -> Ganeti disk UUID."""
    fields = instance(cluster, f"snf-{server_id}")
    assert fields is not None
    return dict(zip(fields["disk.names"], fields["disk.uuids"], strict=True))


def disk_volume(cluster: Cluster, server_id: int, volume_id: str) -> str:
    """The archipelago volume behind a volume's Ganeti disk."""
    store = DirStore(plan.SHARED_STORE)
    try:
        found = volumes.lookup_disk(store, disks(cluster, server_id)[f"vol-{volume_id}"])
        assert found is not None
        return str(found["volume"])
    finally:
        store.close()


def write(name: str, offset: int, data: bytes) -> None:
    store = DirStore(plan.SHARED_STORE)
    try:
        with Volume(store, name, default_owner()) as vol:
            vol.write(offset, data)
            vol.flush()
    finally:
        store.close()


def read(name: str, offset: int, length: int) -> bytes:
    store = DirStore(plan.SHARED_STORE)
    try:
        return volumes.peek(store, name, offset, length)
    finally:
        store.close()


def action(cloud: Cloud, server_id: int, body: dict[str, Any], want: str) -> None:
    status, _, answer = cloud.api("POST", f"/compute/v2.0/servers/{server_id}/action", body)
    assert status == 202, answer
    cloud.wait_status(server_id, want)


def test_extra_volume_detach_attach_snapshot_and_delete(cloud: Cloud, cluster1: Cluster) -> None:
    first = cloud.create_server("vol-a", cloud.image, cloud.flavor)["id"]
    second = cloud.create_server("vol-b", cloud.image, cloud.flavor)["id"]
    cloud.wait_status(first, "ACTIVE")
    cloud.wait_status(second, "ACTIVE")
    assert cloud.quota_usage("cyclades.disk") == 2 * GiB

    # a new 2 GiB volume on the running server: one RAPI disk add
    status, _, body = cloud.api("POST", f"{V2}/volumes", {"volume": {
        "size": 2, "display_name": "data", "server_id": first}})  # fmt: skip
    assert status == 202, body
    volume_id = body["volume"]["id"]
    volume = wait_volume(cloud, volume_id, "in-use")
    assert volume["attachments"][0]["server_id"] == str(first)
    assert volume["attachments"][0]["device"] == "/dev/vdb"
    assert list(disks(cluster1, first)) == [f"vol-{v}" for v in
                                            cloud_volumes(cloud, first)]  # fmt: skip
    assert cloud.quota_usage("cyclades.disk") == 4 * GiB
    shown = cloud.api("GET", f"/compute/v2.0/servers/{first}")[2]["server"]
    assert shown["volumes"][1] == volume_id

    # a live snapshot of the root volume while the server runs
    root_id = shown["volumes"][0]
    status, _, body = cloud.api("POST", f"{V2}/snapshots", {"snapshot": {"volume_id": root_id}})
    assert status == 202, body
    root_snap = wait_snapshot(cloud, body["snapshot"]["id"])
    assert root_snap["status"] == "available", root_snap
    # ... an object-store file that can be registered as an image (it boots a server below)
    container, file_name = root_snap["SNF:location"].split("/", 4)[3:]
    image = cloud.register_image("from a volume snapshot", container, file_name)

    # detaching needs the server stopped; the data goes with the volume
    gone = cloud.api("DELETE", f"/compute/v2.0/servers/{first}/os-volume_attachments/{volume_id}")
    assert gone[0] == 409 and "ACTIVE" in gone[2]["conflict"]["message"]
    action(cloud, first, {"os-stop": None}, "STOPPED")
    data = os.urandom(3 * MiB + 5)
    write(disk_volume(cluster1, first, volume_id), 100 * MiB + 7, data)
    gone = cloud.api("DELETE", f"/compute/v2.0/servers/{first}/os-volume_attachments/{volume_id}")
    assert gone[0] == 202, gone
    volume = wait_volume(cloud, volume_id, "available")
    assert volume["attachments"] == [] and f"vol-{volume_id}" not in disks(cluster1, first)
    assert cloud.quota_usage("cyclades.disk") == 4 * GiB  # the volume still holds its disk

    # attached to the other (running) server: a thin clone of the detached data
    status, _, body = cloud.api("POST", f"/compute/v2.0/servers/{second}/os-volume_attachments",
                                {"volumeAttachment": {"volumeId": volume_id}})  # fmt: skip
    assert status == 202, body
    wait_volume(cloud, volume_id, "in-use")
    moved = disk_volume(cluster1, second, volume_id)
    assert read(moved, 100 * MiB + 7, len(data)) == data

    # a snapshot of it (live), as a new volume on its own
    status, _, body = cloud.api("POST", f"{V2}/snapshots", {"snapshot": {
        "volume_id": volume_id, "display_name": "data-snap"}})  # fmt: skip
    assert status == 202, body
    snap = wait_snapshot(cloud, body["snapshot"]["id"])
    assert snap["status"] == "available" and snap["size"] == 2
    status, _, body = cloud.api("POST", f"{V2}/volumes", {"volume": {
        "size": 3, "snapshot_id": snap["id"]}})  # fmt: skip
    assert status == 202 and body["volume"]["status"] == "available", body
    restored = body["volume"]["id"]
    assert cloud.quota_usage("cyclades.disk") == 7 * GiB

    # deleting an attached volume needs its server stopped, and releases its disk
    status, _, body = cloud.api("DELETE", f"{V2}/volumes/{volume_id}")
    assert status == 409, body
    action(cloud, second, {"os-stop": None}, "STOPPED")
    assert cloud.api("DELETE", f"{V2}/volumes/{volume_id}")[0] == 202
    wait_volume_gone(cloud, volume_id)
    assert f"vol-{volume_id}" not in disks(cluster1, second)
    assert cloud.quota_usage("cyclades.disk") == 5 * GiB

    # the restored volume attaches to a stopped server, and goes when the server goes
    status, _, body = cloud.api("POST", f"/compute/v2.0/servers/{first}/os-volume_attachments",
                                {"volumeAttachment": {"volumeId": restored}})  # fmt: skip
    assert status == 202, body
    wait_volume(cloud, restored, "in-use")
    assert read(disk_volume(cluster1, first, restored), 100 * MiB + 7, len(data)) == data
    cloud.delete_server(first)
    cloud.delete_server(second)
    wait_volume_gone(cloud, restored)
    assert cloud.quota_usage("cyclades.disk") == 0

    third = cloud.create_server("vol-c", image, cloud.flavor)["id"]
    cloud.wait_status(third, "ACTIVE")
    cloud.delete_server(third)
    listed = cloud.api("GET", f"{V2}/volumes")[2]["volumes"]
    assert listed == []


def cloud_volumes(cloud: Cloud, server_id: int) -> list[str]:
    return cloud.api("GET", f"/compute/v2.0/servers/{server_id}")[2]["server"]["volumes"]


def wait_volume_gone(cloud: Cloud, volume_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while cloud.api("GET", f"{V2}/volumes/{volume_id}")[0] != 404:
        assert time.monotonic() < deadline, f"volume {volume_id} is still there"
        time.sleep(0.5)


def test_volumes_with_openstack_client(cloud: Cloud, cluster1: Cluster) -> None:
    server_id = cloud.create_server("vol-os", cloud.image, cloud.flavor)["id"]
    cloud.wait_status(server_id, "ACTIVE")
    made = openstack(cloud, "volume", "create", "--size", "1", "extra", "-f", "json")
    assert made["status"] == "available" and made["size"] == 1
    openstack(cloud, "server", "add", "volume", str(server_id), str(made["id"]))
    wait_volume(cloud, str(made["id"]), "in-use")
    listed = openstack(cloud, "volume", "list", "-f", "json")
    assert {v["Name"]: v["Status"] for v in listed}["extra"] == "in-use"
    snap = openstack(cloud, "volume", "snapshot", "create", "--volume", "extra", "s1", "-f", "json")
    assert wait_snapshot(cloud, str(snap["id"]))["status"] == "available"
    action(cloud, server_id, {"os-stop": None}, "STOPPED")
    openstack(cloud, "server", "remove", "volume", str(server_id), str(made["id"]))
    wait_volume(cloud, str(made["id"]), "available")
    openstack(cloud, "volume", "snapshot", "delete", "s1")
    openstack(cloud, "volume", "delete", "extra")
    wait_volume_gone(cloud, str(made["id"]))
    cloud.delete_server(server_id)
    assert cloud.quota_usage("cyclades.disk") == 0
