"""The compute API on a real Ganeti cluster (fake hypervisor): the portal in the testbed
registers the cluster as a backend, an image uploaded to the object store and registered
becomes a server through python-openstackclient, its disk a thin archipelago clone that
snf-image customized; actions, failures and the quota edge; the reconciler (`snf-portal
reconcile --every 1`) follows the jobs."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from snf.archipelago import volumes
from snf.archipelago.store_dir import DirStore
from tests.conftest import require
from tests.testbed import compute, images, plan
from tests.testbed.cluster import Cluster, lan
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
MiB = 1 << 20
OPENSTACK = Path(sys.executable).parent / "openstack"
FOLDER = plan.STATE_DIR / "compute-tests"


def openstack(cloud: Cloud, *argv: str, check: bool = True) -> Any:
    proc = lan().run([
        str(OPENSTACK), "--os-auth-url", f"{cloud.url}/identity/v3",
        "--os-identity-api-version", "3", "--os-username", cloud.email,
        "--os-password", compute.PASSWORD, "--os-user-domain-name", "Default",
        "--os-project-name", cloud.email, "--os-project-domain-name", "Default", *argv,
    ], timeout=300, check=check)  # fmt: skip
    return json.loads(proc.stdout) if check and "json" in argv else proc


def _instance(cluster: Cluster, name: str) -> dict[str, Any] | None:
    with cluster.rapi() as rapi:
        if name not in [i["id"] for i in rapi.instances()]:
            return None
        return rapi.instance(name)


def instance(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """The instance's RAPI fields (None if there is no such instance)."""
    return lan().call(_instance, cluster, name)


@contextmanager
def disk_of(cluster: Cluster, name: str) -> Iterator[tuple[dict[str, Any], Path]]:
    """The instance's archipelago volume (lookup record) and its filesystem, mounted from a
    copy of the volume's content."""
    fields = instance(cluster, name)
    assert fields is not None
    store = DirStore(plan.SHARED_STORE)
    copy = FOLDER / f"{name}.raw"
    try:
        found = volumes.lookup_disk(store, fields["disk.uuids"][0])
        assert found is not None
        copy.write_bytes(volumes.peek(store, found["volume"], 0, found["size"]))
        with images.mounted(copy) as root:
            yield found, root
    finally:
        copy.unlink(missing_ok=True)
        store.close()


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    require(OPENSTACK.exists(), "python-openstackclient is not installed (make deps)")
    backend = compute.ensure_backend(portal, cluster1)
    cloud = compute.user_with_image(portal, "compute", FOLDER, "busybox linux")
    try:
        with compute.only_backend(portal, backend), compute.reconciler(portal, FOLDER / "r.log"):
            yield cloud
    finally:
        compute.remove_tree(FOLDER)


def image_map(cloud: Cloud, image_id: str) -> str:
    status, got, _ = cloud.api("HEAD", f"/image/v1.0/images/{image_id}")
    assert status == 200
    location = {k.lower(): v for k, v in got.items()}["x-image-meta-location"]
    assert location.endswith("/images/linux.raw")
    from sqlalchemy import create_engine, text

    db = cloud.portal.config_dir.parent / "portal.db"
    with create_engine(f"sqlite:///{db}").connect() as conn:
        return conn.execute(text("SELECT map_name FROM images WHERE id = :i"),
                            {"i": image_id}).scalar_one()  # fmt: skip


def test_server_lifecycle_with_openstack_client(cloud: Cloud, cluster1: Cluster) -> None:
    created = openstack(cloud, "server", "create", "--flavor", "small", "--image",
                        cloud.image, "vm-os1", "-f", "json")  # fmt: skip
    assert created["status"] == "BUILD" and created["adminPass"]
    server_id = int(created["id"])
    cloud.wait_status(server_id, "ACTIVE")
    name = f"snf-{server_id}"
    fields = instance(cluster1, name)
    assert fields is not None
    assert fields["disk_template"] == "ext" and fields["oper_state"] is True
    assert f"snf:owner:{cloud.uuid}" in fields["tags"]
    # The disk is a thin clone of the image's map, customized by snf-image.
    with disk_of(cluster1, name) as (found, root):
        assert found["origin"] == image_map(cloud, cloud.image)
        assert found["size"] == 1 << 30  # the flavor's disk
        assert (root / "etc/hostname").read_text() == name + "\n"
    assert cloud.quota_usage("cyclades.vm") == 1
    assert cloud.quota_usage("cyclades.ram") == 128 * MiB

    listed = openstack(cloud, "server", "list", "-f", "json")
    assert [s["Name"] for s in listed] == ["vm-os1"]
    openstack(cloud, "server", "stop", str(server_id))
    cloud.wait_status(server_id, "STOPPED")
    assert instance(cluster1, name)["oper_state"] is False  # type: ignore[index]
    assert cloud.quota_usage("cyclades.ram") == 0
    assert cloud.quota_usage("cyclades.disk") == 1 << 30
    openstack(cloud, "server", "start", str(server_id))
    cloud.wait_status(server_id, "ACTIVE")
    openstack(cloud, "server", "reboot", "--hard", str(server_id))
    cloud.wait_status(server_id, "ACTIVE")
    shown = openstack(cloud, "server", "show", "vm-os1", "-f", "json")
    assert shown["id"] in (server_id, str(server_id))

    openstack(cloud, "server", "delete", "--wait", str(server_id))
    status, _, body = cloud.api("GET", f"/compute/v2.0/servers/{server_id}")
    assert status == 200 and body["server"]["status"] == "DELETED"
    assert instance(cluster1, name) is None
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert cloud.quota_usage(resource) == 0, resource


def test_actions_in_the_wrong_state_conflict(cloud: Cloud) -> None:
    server = cloud.create_server("vm-state", cloud.image, cloud.flavor)
    assert server["status"] == "BUILD" and len(server["adminPass"]) >= 8
    action = f"/compute/v2.0/servers/{server['id']}/action"
    status, _, body = cloud.api("POST", action, {"os-start": None})
    assert status == 409 and set(body) <= {"buildInProgress", "conflict"}
    cloud.wait_status(server["id"], "ACTIVE")
    status, _, body = cloud.api("POST", action, {"os-start": None})
    assert status == 409 and "ACTIVE" in body["conflict"]["message"]
    status, _, body = cloud.api("POST", action, {"console": {"type": "vnc"}})
    assert status == 409 and "no VNC console" in body["conflict"]["message"], body
    status, _, body = cloud.api("POST", action, {"console": {"type": "rdp"}})
    assert status == 400, body
    cloud.delete_server(server["id"])


def test_a_failing_job_leaves_an_error_and_rejects_the_commission(
    cloud: Cloud, cluster1: Cluster
) -> None:
    # snf-image refuses to customize a non-Linux image unless all tasks are excluded.  An
    # image's id is its file's: register a copy.
    copy = {"X-Copy-From": "/images/linux.raw"}
    copied = cloud.api("PUT", f"/object-store/v1/{cloud.uuid}/images/other.raw", data=b"",
                       headers=copy)  # fmt: skip
    assert copied[0] == 201, copied
    image = cloud.register_image("not linux", "images", "other.raw", OSFAMILY="windows")
    server_id = cloud.create_server("vm-fails", image, cloud.flavor)["id"]
    server = cloud.wait_status(server_id, "ERROR")
    assert "create failed" in server["fault"]["message"]
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert cloud.quota_usage(resource) == 0, resource
    cloud.delete_server(server_id)
    assert instance(cluster1, f"snf-{server_id}") is None


def test_concurrent_creates_at_the_quota_edge(cloud: Cloud) -> None:
    """The user may hold 2 servers: of 5 simultaneous creates exactly 2 are accepted."""
    body = {"server": {"name": "vm-edge", "imageRef": cloud.image,
                       "flavorRef": cloud.flavor}}  # fmt: skip

    def create(_: int) -> tuple[int, Any]:
        status, _h, answer = cloud.api("POST", "/compute/v2.0/servers", body)
        return status, answer

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(create, range(5)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [202, 202, 413, 413, 413], results
    assert all("overLimit" in answer for status, answer in results if status == 413)
    ids = [answer["server"]["id"] for status, answer in results if status == 202]
    for server_id in ids:
        cloud.wait_status(server_id, "ACTIVE")
    assert cloud.quota_usage("cyclades.vm") == 2
    for server_id in ids:
        cloud.delete_server(server_id)
    assert cloud.quota_usage("cyclades.vm") == 0


@pytest.mark.parametrize(
    "server, status, fault",
    [
        ({"name": "x", "imageRef": "IMAGE", "flavorRef": 999}, 404, "itemNotFound"),
        ({"name": "x", "imageRef": "00000000-0000-0000-0000-000000000000", "flavorRef": "F"},
         404, "itemNotFound"),
        ({"name": "x", "imageRef": "IMAGE", "flavorRef": "F",
          "personality": [{"path": "/a", "contents": "YQ=="}] * 6}, 413, "overLimit"),
        ({"name": "x", "imageRef": "IMAGE", "flavorRef": "F",
          "personality": [{"path": "/a", "contents": "not base64!"}]}, 400, "badRequest"),
        ({"name": "x", "imageRef": "IMAGE", "flavorRef": "F", "metadata": {"k": 5}},
         400, "badRequest"),
        ({"name": "", "imageRef": "IMAGE", "flavorRef": "F"}, 400, "badRequest"),
        ({"imageRef": "IMAGE", "flavorRef": "F"}, 400, "badRequest"),
    ],
)  # fmt: skip
def test_bad_create_requests_leave_nothing(
    cloud: Cloud, server: dict[str, Any], status: int, fault: str
) -> None:
    server = {k: cloud.image if v == "IMAGE" else cloud.flavor if v == "F" else v
              for k, v in server.items()}  # fmt: skip
    got, _, body = cloud.api("POST", "/compute/v2.0/servers", {"server": server})
    assert got == status and fault in body, body
    _, _, listed = cloud.api("GET", "/compute/v2.0/servers")
    assert listed["servers"] == []
    assert cloud.quota_usage("cyclades.vm") == 0


def test_a_running_server_snapshotted_becomes_an_image_for_a_new_server(
    cloud: Cloud, cluster1: Cluster
) -> None:
    marker = {"path": "/etc/snf-first", "contents": base64.b64encode(b"first\n").decode()}
    first = cloud.create_server("vm-first", cloud.image, cloud.flavor, personality=[marker])
    cloud.wait_status(first["id"], "ACTIVE")
    status, got, body = cloud.api("POST", f"/compute/v2.0/servers/{first['id']}/action",
                                  {"createImage": {"name": "first snapshot",
                                                   "metadata": {"purpose": "test"}}})  # fmt: skip
    assert status == 202, body
    image = body["image_id"]
    assert {k.lower(): v for k, v in got.items()}["location"].endswith(f"/images/{image}")
    status, got, _ = cloud.api("HEAD", f"/image/v1.0/images/{image}")
    meta = {k.lower(): v for k, v in got.items()}
    root = cloud.api("GET", f"/compute/v2.0/servers/{first['id']}")[2]["server"]["volumes"][0]
    assert status == 200 and f"/snapshots/volume-{root}-" in meta["x-image-meta-location"]
    assert meta["x-image-meta-size"] == str(1 << 30)
    assert cloud.wait_status(first["id"], "ACTIVE")  # the server ran on
    cloud.delete_server(first["id"])  # the snapshot does not need it

    second = cloud.create_server("vm-second", image, cloud.flavor)
    cloud.wait_status(second["id"], "ACTIVE")
    with disk_of(cluster1, f"snf-{second['id']}") as (_, root):
        assert (root / "etc/snf-first").read_bytes() == b"first\n"  # from the snapshot
        assert (root / "etc/hostname").read_text() == f"snf-{second['id']}\n"  # its own
    cloud.delete_server(second["id"])
