"""kamaki 0.16 (Python 2.7) drives the compute API on the testbed: it registers an image it
uploaded, lists flavors and images, creates a server and waits for it, lists and shows it,
and deletes it; the portal's reconciler follows the Ganeti jobs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_image_clients import kamaki_for
from tests.testbed import compute, plan
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
FOLDER = plan.STATE_DIR / "compute-e2e"


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    compute.ensure_backend(portal, cluster1)
    cloud = compute.new_user(portal, f"kamaki-{uuid.uuid4().hex[:8]}@example.test")
    cloud.flavor = compute.ensure_flavor(portal, "small", 1, 128, 1)
    try:
        with compute.reconciler(portal, FOLDER / "reconcile.log"):
            yield cloud
    finally:
        compute.remove_tree(FOLDER)


def test_kamaki_server_lifecycle(cloud: Cloud, portal: Any) -> None:
    kamaki = kamaki_for(portal, {"token": cloud.token}, FOLDER / "kamaki")
    raw = compute.linux_image(FOLDER)
    kamaki("container", "create", "images")
    kamaki("file", "upload", raw, "/images/linux.raw")
    registered = kamaki("image", "register", "--name", "kamaki linux", "--location",
                        "/images/linux.raw", "--output-format", "json")  # fmt: skip
    image = json.JSONDecoder().raw_decode(registered.stdout)[0]["id"]  # then a note on .meta
    assert image in kamaki("image", "list").stdout
    flavors = json.loads(kamaki("flavor", "list", "--output-format", "json").stdout)
    assert cloud.flavor in [f["id"] for f in flavors]

    created = kamaki("server", "create", "--name", "vm-kamaki", "--flavor-id", str(cloud.flavor),
                     "--image-id", image, "--wait").stdout  # fmt: skip
    server = cloud.wait_status(_id(created), "ACTIVE")
    listed = json.loads(kamaki("server", "list", "--output-format", "json").stdout)
    assert [s["name"] for s in listed] == ["vm-kamaki"]
    info = json.loads(kamaki("server", "info", str(server["id"]), "--output-format",
                             "json").stdout)  # fmt: skip
    assert info["status"] == "ACTIVE" and info["image"]["id"] == image
    kamaki("server", "shutdown", str(server["id"]), "--wait")
    cloud.wait_status(server["id"], "STOPPED")
    kamaki("server", "delete", str(server["id"]), "--wait")
    assert cloud.wait_status(server["id"], "DELETED")["deleted"] is True
    assert cloud.quota_usage("cyclades.vm") == 0


def _id(output: str) -> int:
    """The id in kamaki's printout of a created server (``id: 12`` at the top level; the
    flavor's and image's ids are indented under them)."""
    for line in output.splitlines():
        if line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        if key == "id" and value.strip().isdigit():
            return int(value)
    raise AssertionError(f"no server id in kamaki's output:\n{output}")
