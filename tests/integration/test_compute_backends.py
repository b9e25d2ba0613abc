"""Two real testbed clusters registered as backends: new servers spread over them, a drained
one takes none, and with every backend drained a create is refused and leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.testbed import compute, plan
from tests.testbed.cluster import Cluster, lan
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
FOLDER = plan.STATE_DIR / "compute-backends"


def _names(cluster: Cluster) -> list[str]:
    with cluster.rapi() as rapi:
        return [i["id"] for i in rapi.instances()]


def instances(cluster: Cluster) -> list[str]:
    return lan().call(_names, cluster)


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, cluster2: Cluster, portal: Any) -> Iterator[Cloud]:
    compute.ensure_backend(portal, cluster1)
    compute.ensure_backend(portal, cluster2)
    cloud = compute.user_with_image(portal, "backends", FOLDER)
    try:
        with compute.reconciler(portal, FOLDER / "reconcile.log"):
            yield cloud
    finally:
        for name in ("c1", "c2"):  # the tests drain them
            portal.snf_portal("backend", "undrain", name)
        compute.remove_tree(FOLDER)


def test_servers_spread_over_the_clusters(
    cloud: Cloud, cluster1: Cluster, cluster2: Cluster
) -> None:
    ids = [cloud.create_server(f"vm-spread-{i}", cloud.image, cloud.flavor)["id"] for i in (1, 2)]
    for server_id in ids:
        cloud.wait_status(server_id, "ACTIVE")
    on = {c.plan.index: instances(c) for c in (cluster1, cluster2)}
    placed = sorted(index for index, names in on.items() for i in ids if f"snf-{i}" in names)
    assert placed == [1, 2], on
    for server_id in ids:
        cloud.delete_server(server_id)


def test_a_drained_backend_takes_no_new_server(
    cloud: Cloud, portal: Any, cluster1: Cluster, cluster2: Cluster
) -> None:
    portal.snf_portal("backend", "drain", "c1")
    listed = portal.snf_portal("backend", "list")
    assert "c1\t" in listed and "drained" in listed.split("c1\t", 1)[1].splitlines()[0]
    ids = [cloud.create_server(f"vm-drain-{i}", cloud.image, cloud.flavor)["id"] for i in (1, 2)]
    for server_id in ids:
        cloud.wait_status(server_id, "ACTIVE")
    on_two = instances(cluster2)
    assert all(f"snf-{i}" in on_two for i in ids)
    assert not any(f"snf-{i}" in instances(cluster1) for i in ids)
    # Draining stops new servers only: the running ones still take actions.
    portal.snf_portal("backend", "drain", "c2")
    status, _, body = cloud.api("POST", "/compute/v2.0/servers", {"server": {
        "name": "vm-nowhere", "imageRef": cloud.image, "flavorRef": cloud.flavor}})  # fmt: skip
    assert status == 503 and "serviceUnavailable" in body, body
    status, _, listed_servers = cloud.api("GET", "/compute/v2.0/servers")
    assert sorted(s["id"] for s in listed_servers["servers"]) == sorted(ids)
    with pytest.raises(RuntimeError, match="still runs 2 server"):
        portal.snf_portal("backend", "remove", "c2")
    for server_id in ids:
        cloud.delete_server(server_id)
