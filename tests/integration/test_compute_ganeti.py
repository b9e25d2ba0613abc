"""The compute API on a real Ganeti cluster (fake hypervisor): the portal in the testbed
registers the cluster as a backend, an image uploaded to the object store and registered
becomes a server through python-openstackclient, its disk a thin archipelago clone that
snf-image customized; actions, failures and the quota edge; the reconciler (`snf-portal
reconcile --every 1`) follows the jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from snf.archipelago import volumes
from snf.archipelago.store_dir import DirStore
from tests.conftest import require
from tests.integration.test_snf_image_ganeti import set_mode
from tests.testbed import images, install, plan
from tests.testbed.cluster import Cluster, lan

pytestmark = pytest.mark.ganeti
MiB = 1 << 20
OPENSTACK = Path(sys.executable).parent / "openstack"
PASSWORD = "compute test password"


def http(method: str, url: str, token: str, body: Any = None,
         headers: dict[str, str] | None = None, data: bytes | None = None,
         ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One request from inside the testbed; the JSON answer decoded when there is one."""
    headers = {"X-Auth-Token": token, **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, got, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        status, got, raw = err.code, dict(err.headers), err.read()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, got, decoded


def api(cloud: dict[str, Any], method: str, path: str, body: Any = None, **kw: Any) -> Any:
    return lan().call(http, method, cloud["url"] + path, cloud["token"], body, **kw)


def openstack(cloud: dict[str, Any], *argv: str, check: bool = True) -> Any:
    proc = lan().run([
        str(OPENSTACK), "--os-auth-url", f"{cloud['url']}/identity/v3",
        "--os-identity-api-version", "3", "--os-username", cloud["email"],
        "--os-password", PASSWORD, "--os-user-domain-name", "Default",
        "--os-project-name", cloud["email"], "--os-project-domain-name", "Default", *argv,
    ], timeout=300, check=check)  # fmt: skip
    return json.loads(proc.stdout) if check and "json" in argv else proc


def wait_status(cloud: dict[str, Any], server_id: int, want: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = api(cloud, "GET", f"/compute/v2.0/servers/{server_id}")
        assert status == 200, body
        server = body["server"]
        if server["status"] == want:
            return server
        settled = not server["SNF:task_state"]
        assert server["status"] != "ERROR" or want == "ERROR" or not settled, server.get("fault")
        if time.monotonic() > deadline:
            raise AssertionError(f"server {server_id} is {server['status']}, not {want}")
        time.sleep(0.5)


def register_image(cloud: dict[str, Any], name: str, obj: str, **props: str) -> str:
    headers = {"X-Image-Meta-Name": name, "X-Image-Meta-Disk-Format": "diskdump",
               "X-Image-Meta-Container-Format": "bare",
               "X-Image-Meta-Location": f"pithos://{cloud['uuid']}/images/{obj}"}  # fmt: skip
    headers |= {f"X-Image-Meta-Property-{k}": v for k, v in props.items()}
    status, got, body = api(cloud, "POST", "/image/v1.0/images/", headers=headers, data=b"")
    assert status == 200, body
    return {k.lower(): v for k, v in got.items()}["x-image-meta-id"]


def _instance(cluster: Cluster, name: str) -> dict[str, Any] | None:
    with cluster.rapi() as rapi:
        if name not in [i["id"] for i in rapi.instances()]:
            return None
        return rapi.instance(name)


def instance(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """The instance's RAPI fields (None if there is no such instance)."""
    return lan().call(_instance, cluster, name)


def quota_usage(cloud: dict[str, Any], resource: str) -> int:
    _, _, body = api(cloud, "GET", "/account/v1.0/quotas")
    return body[cloud["uuid"]][resource]["usage"]


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[dict[str, Any]]:
    require(OPENSTACK.exists(), "python-openstackclient is not installed (make deps)")
    for node in cluster1.plan.nodes:
        install.install_snf(node)
    set_mode(cluster1, "direct")
    info = cluster1.info
    portal.snf_portal("backend", "add", "c1", "--host", info.address, "--user", info.rapi_user,
                      "--password-stdin", "--pin", info.rapi_pin, "--hypervisor", "fake",
                      input=info.rapi_password + "\n")  # fmt: skip
    flavor = portal.snf_portal("flavor", "add", "small", "--vcpus", "1", "--ram", "128",
                               "--disk", "1").strip()  # fmt: skip
    email = "compute@example.test"
    uuid = portal.snf_portal("user", "add", email, "--name", "Compute", "--active",
                             "--password-stdin", input=PASSWORD + "\n").strip()  # fmt: skip
    token = portal.snf_portal("token", "issue", email).strip()
    cloud = {"url": portal.base_url, "uuid": uuid, "email": email, "token": token,
             "flavor": int(flavor), "portal": portal}  # fmt: skip
    folder = plan.STATE_DIR / "compute-tests"
    folder.mkdir(parents=True, exist_ok=True)
    root = images.build_root(folder / "root", payload=8 * MiB)
    raw = folder / "linux.raw"
    images.build_disk(raw, 64 * MiB, root)
    assert api(cloud, "PUT", f"/object-store/v1/{uuid}/images", data=b"")[0] in (201, 202)
    status, _, body = api(cloud, "PUT", f"/object-store/v1/{uuid}/images/linux.raw",
                          data=raw.read_bytes(),
                          headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert status == 201, body
    cloud["image"] = register_image(cloud, "busybox linux", "linux.raw")
    reconciler = portal.spawn("reconcile", "--every", "1", log=folder / "reconcile.log")
    try:
        yield cloud
    finally:
        reconciler.terminate()
        reconciler.wait(10)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def image_map(cloud: dict[str, Any], image_id: str) -> str:
    status, got, _ = api(cloud, "HEAD", f"/image/v1.0/images/{image_id}")
    assert status == 200
    location = {k.lower(): v for k, v in got.items()}["x-image-meta-location"]
    assert location.endswith("/images/linux.raw")
    from sqlalchemy import create_engine, text

    db = cloud["portal"].config_dir.parent / "portal.db"
    with create_engine(f"sqlite:///{db}").connect() as conn:
        return conn.execute(text("SELECT map_name FROM images WHERE id = :i"),
                            {"i": image_id}).scalar_one()  # fmt: skip


def test_server_lifecycle_with_openstack_client(cloud: dict[str, Any], cluster1: Cluster) -> None:
    created = openstack(cloud, "server", "create", "--flavor", "small", "--image",
                        cloud["image"], "vm-os1", "-f", "json")  # fmt: skip
    assert created["status"] == "BUILD" and created["adminPass"]
    server_id = int(created["id"])
    wait_status(cloud, server_id, "ACTIVE")
    name = f"snf-{server_id}"
    fields = instance(cluster1, name)
    assert fields is not None
    assert fields["disk_template"] == "ext" and fields["oper_state"] is True
    assert f"snf:owner:{cloud['uuid']}" in fields["tags"]
    # The disk is a thin clone of the image's map, customized by snf-image.
    store = DirStore(plan.SHARED_STORE)
    try:
        found = volumes.lookup_disk(store, fields["disk.uuids"][0])
        assert found is not None and found["origin"] == image_map(cloud, cloud["image"])
        copy = plan.STATE_DIR / "compute-tests" / "disk.raw"
        size = volumes.load_map(store, found["volume"]).size
        assert size == 1 << 30  # the flavor's disk
        copy.write_bytes(volumes.peek(store, found["volume"], 0, size))
        with images.mounted(copy) as root:
            assert (root / "etc/hostname").read_text() == name + "\n"
        copy.unlink()
    finally:
        store.close()
    assert quota_usage(cloud, "cyclades.vm") == 1
    assert quota_usage(cloud, "cyclades.ram") == 128 * MiB

    listed = openstack(cloud, "server", "list", "-f", "json")
    assert [s["Name"] for s in listed] == ["vm-os1"]
    openstack(cloud, "server", "stop", str(server_id))
    wait_status(cloud, server_id, "STOPPED")
    assert instance(cluster1, name)["oper_state"] is False  # type: ignore[index]
    assert quota_usage(cloud, "cyclades.ram") == 0
    assert quota_usage(cloud, "cyclades.disk") == 1 << 30
    openstack(cloud, "server", "start", str(server_id))
    wait_status(cloud, server_id, "ACTIVE")
    openstack(cloud, "server", "reboot", "--hard", str(server_id))
    wait_status(cloud, server_id, "ACTIVE")
    shown = openstack(cloud, "server", "show", "vm-os1", "-f", "json")
    assert shown["id"] in (server_id, str(server_id))

    openstack(cloud, "server", "delete", "--wait", str(server_id))
    status, _, body = api(cloud, "GET", f"/compute/v2.0/servers/{server_id}")
    assert status == 200 and body["server"]["status"] == "DELETED"
    assert instance(cluster1, name) is None
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert quota_usage(cloud, resource) == 0, resource


def test_actions_in_the_wrong_state_conflict(cloud: dict[str, Any]) -> None:
    status, _, body = api(
        cloud,
        "POST",
        "/compute/v2.0/servers",
        {"server": {"name": "vm-state", "imageRef": cloud["image"], "flavorRef": cloud["flavor"]}},
    )
    assert status == 202, body
    server_id = body["server"]["id"]
    assert body["server"]["status"] == "BUILD" and len(body["server"]["adminPass"]) >= 8
    status, _, body = api(cloud, "POST", f"/compute/v2.0/servers/{server_id}/action",
                          {"os-start": None})  # fmt: skip
    assert status == 409 and set(body) <= {"buildInProgress", "conflict"}
    wait_status(cloud, server_id, "ACTIVE")
    status, _, body = api(cloud, "POST", f"/compute/v2.0/servers/{server_id}/action",
                          {"os-start": None})  # fmt: skip
    assert status == 409 and "ACTIVE" in body["conflict"]["message"]
    assert api(cloud, "DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    wait_status(cloud, server_id, "DELETED")


def test_a_failing_job_leaves_an_error_and_rejects_the_commission(
    cloud: dict[str, Any], cluster1: Cluster
) -> None:
    # snf-image refuses to customize a non-Linux image unless all tasks are excluded.  An
    # image's id is its file's: register a copy.
    copied = api(cloud, "PUT", f"/object-store/v1/{cloud['uuid']}/images/other.raw", data=b"",
                 headers={"X-Copy-From": "/images/linux.raw"})  # fmt: skip
    assert copied[0] == 201, copied
    image = register_image(cloud, "not linux", "other.raw", OSFAMILY="windows")
    status, _, body = api(
        cloud,
        "POST",
        "/compute/v2.0/servers",
        {"server": {"name": "vm-fails", "imageRef": image, "flavorRef": cloud["flavor"]}},
    )
    assert status == 202, body
    server_id = body["server"]["id"]
    server = wait_status(cloud, server_id, "ERROR")
    assert "create failed" in server["fault"]["message"]
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert quota_usage(cloud, resource) == 0, resource
    assert api(cloud, "DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    wait_status(cloud, server_id, "DELETED")
    assert instance(cluster1, f"snf-{server_id}") is None


def test_concurrent_creates_at_the_quota_edge(cloud: dict[str, Any]) -> None:
    """The user may hold 2 servers: of 5 simultaneous creates exactly 2 are accepted."""
    body = {"server": {"name": "vm-edge", "imageRef": cloud["image"],
                       "flavorRef": cloud["flavor"]}}  # fmt: skip

    def create(_: int) -> tuple[int, Any]:
        status, _h, answer = api(cloud, "POST", "/compute/v2.0/servers", body)
        return status, answer

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(create, range(5)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [202, 202, 413, 413, 413], results
    assert all("overLimit" in answer for status, answer in results if status == 413)
    ids = [answer["server"]["id"] for status, answer in results if status == 202]
    for server_id in ids:
        wait_status(cloud, server_id, "ACTIVE")
    assert quota_usage(cloud, "cyclades.vm") == 2
    for server_id in ids:
        assert api(cloud, "DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    for server_id in ids:
        wait_status(cloud, server_id, "DELETED")
    assert quota_usage(cloud, "cyclades.vm") == 0


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
    cloud: dict[str, Any], server: dict[str, Any], status: int, fault: str
) -> None:
    server = {k: cloud["image"] if v == "IMAGE" else cloud["flavor"] if v == "F" else v
              for k, v in server.items()}  # fmt: skip
    got, _, body = api(cloud, "POST", "/compute/v2.0/servers", {"server": server})
    assert got == status and fault in body, body
    _, _, listed = api(cloud, "GET", "/compute/v2.0/servers")
    assert listed["servers"] == []
    assert quota_usage(cloud, "cyclades.vm") == 0
