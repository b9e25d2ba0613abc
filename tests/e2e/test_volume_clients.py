"""kamaki 0.16 (Python 2.7) drives the volume API on the testbed: it creates a server, adds a
volume to it, lists and shows volumes and attachments, snapshots the volume, detaches it from
the stopped server and attaches it again, makes a volume of the snapshot, and deletes
everything; the quota of disk space follows, and the portal's reconciler follows the Ganeti
jobs.  On ``/volume/v2.0`` (kamaki's endpoint) an attached volume is ``in_use``, Synnefo's
spelling, which kamaki's ``--wait`` and ``volume wait --until`` expect."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.test_image_clients import kamaki_for
from tests.testbed import compute, plan
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
FOLDER = plan.STATE_DIR / "volume-e2e"
GiB = 1 << 30

Kamaki = Callable[..., Any]


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    compute.ensure_backend(portal, cluster1)
    cloud = compute.user_with_image(portal, "kamaki-volumes", FOLDER, "kamaki volume linux")
    try:
        with compute.reconciler(portal, FOLDER / "reconcile.log"):
            yield cloud
    finally:
        compute.remove_tree(FOLDER)


def test_kamaki_volume_lifecycle(cloud: Cloud, portal: Any) -> None:
    kamaki = kamaki_for(portal, {"token": cloud.token}, FOLDER / "kamaki")
    created = kamaki("server", "create", "--name", "vm-volumes", "--flavor-id", str(cloud.flavor),
                     "--image-id", cloud.image, "--wait", "--output-format", "json")  # fmt: skip
    server = str(json.JSONDecoder().raw_decode(created.stdout)[0]["id"])
    cloud.wait_status(int(server), "ACTIVE")
    types = _json(kamaki, "volume", "types")
    assert [t["id"] for t in types] == ["archipelago"]
    (root,) = _json(kamaki, "volume", "list", "-l")
    assert root["bootable"] == "true" and root["imageRef"] == cloud.image
    assert root["server_id"] == server and root["status"] == "in_use"
    assert cloud.quota_usage("cyclades.disk") == GiB

    # a new volume on the running server (kamaki has no JSON output for volume create)
    made = _top_level(kamaki("volume", "create", "--size", "1", "--server-id", server,
                             "--name", "data", "--wait").stdout)  # fmt: skip
    assert made["status"] == "creating" and made["server_id"] == server, made
    volume = made["id"]
    shown = _json(kamaki, "volume", "info", volume)
    assert shown["status"] == "in_use", shown
    assert shown["size"] == 1 and shown["display_name"] == "data"
    assert [(a["server_id"], a["device"]) for a in shown["attachments"]] == [(server, "/dev/vdb")]
    listed = _json(kamaki, "volume", "list")
    assert [(v["id"], v["name"]) for v in listed] == [(root["id"], ""), (volume, "data")]
    attached = _json(kamaki, "server", "attachments", server)
    assert [(a["volumeId"], a["device"]) for a in attached] == [
        (root["id"], "/dev/vda"),
        (volume, "/dev/vdb"),
    ]
    one = _json(kamaki, "server", "attachment", server, "--attachment-id", volume)
    assert one["volumeId"] == volume and str(one["serverId"]) == server
    renamed = _json(kamaki, "volume", "modify", volume, "--name", "data-renamed")
    assert renamed["display_name"] == "data-renamed" and renamed["status"] == "in_use"
    assert cloud.quota_usage("cyclades.disk") == 2 * GiB

    # a live snapshot, written as a file in the background
    snap = _json(kamaki, "snapshot", "create", "--volume-id", volume, "--name", "data-snap")
    assert snap["volume_id"] == volume and snap["status"] in ("creating", "available"), snap
    snap = _wait_snapshot(kamaki, snap["id"])
    assert snap["size"] == 1 and snap["display_name"] == "data-snap"
    assert snap["SNF:location"].startswith(f"pithos://{cloud.uuid}/snapshots/"), snap
    assert [s["id"] for s in _json(kamaki, "snapshot", "list", "-l")] == [snap["id"]]

    # detaching needs the server stopped; the volume keeps its disk space
    refused = kamaki("server", "detach", server, "--volume-id", volume, check=False)
    assert refused.returncode != 0 and "409" in refused.stderr, refused.stderr
    kamaki("server", "shutdown", server, "--wait")
    cloud.wait_status(int(server), "STOPPED")
    detached = kamaki("server", "detach", server, "--volume-id", volume)
    assert "1 detachment deleted" in detached.stderr, detached.stderr
    kamaki("volume", "wait", volume, "--until", "available", "--timeout", "120")
    shown = _wait_volume(kamaki, volume, "available")
    assert shown["attachments"] == [] and shown["server_id"] is None
    assert [a["volumeId"] for a in _json(kamaki, "server", "attachments", server)] == [root["id"]]
    assert cloud.quota_usage("cyclades.disk") == 2 * GiB

    # ... and attached again (to the stopped server)
    again = _json(kamaki, "server", "attach", server, "--volume-id", volume)
    assert again["volumeId"] == volume and again["device"] == "/dev/vdb", again
    kamaki("volume", "wait", volume, "--until", "in_use", "--timeout", "120")
    assert _json(kamaki, "volume", "info", volume)["status"] == "in_use"

    # a volume of the snapshot, on its own: available at once, deleted at once
    restored = _top_level(kamaki("volume", "create", "--size", "1", "--name", "restored",
                                 "--snapshot-id", snap["id"]).stdout)  # fmt: skip
    assert restored["status"] == "available" and restored["snapshot_id"] == snap["id"], restored
    assert cloud.quota_usage("cyclades.disk") == 3 * GiB
    kamaki("volume", "delete", restored["id"], "--wait")
    assert restored["id"] not in [v["id"] for v in _json(kamaki, "volume", "list")]

    # the attached volume goes with its server stopped; then the snapshot and the server
    kamaki("volume", "delete", volume)
    _wait_gone(kamaki, volume)
    assert cloud.quota_usage("cyclades.disk") == GiB
    kamaki("snapshot", "delete", snap["id"])
    assert _json(kamaki, "snapshot", "list") == []
    kamaki("server", "delete", server, "--wait")
    assert cloud.wait_status(int(server), "DELETED")["deleted"] is True
    assert _json(kamaki, "volume", "list") == []
    assert cloud.quota_usage("cyclades.disk") == 0


def _json(kamaki: Kamaki, *args: str) -> Any:
    return json.loads(kamaki(*args, "--output-format", "json").stdout)


def _top_level(output: str) -> dict[str, str]:
    """The top-level ``key: value`` lines of kamaki's plain printout of one item (nested
    lists and dicts are indented under their key)."""
    out = {}
    for line in output.splitlines():
        if line[:1].isspace() or ": " not in line:
            continue
        key, _, value = line.partition(": ")
        out[key] = value.strip()
    assert "id" in out, f"no id in kamaki's output:\n{output}"
    return out


def _wait_volume(kamaki: Kamaki, volume: str, want: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        shown = _json(kamaki, "volume", "info", volume)
        if shown["status"] == want:
            return shown
        assert shown["status"] != "error", shown
        assert time.monotonic() < deadline, f"volume {volume} is {shown['status']}, not {want}"
        time.sleep(0.5)


def _wait_snapshot(kamaki: Kamaki, snapshot: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        shown = _json(kamaki, "snapshot", "info", snapshot)
        if shown["status"] != "creating":
            assert shown["status"] == "available", shown
            return shown
        assert time.monotonic() < deadline, f"snapshot {snapshot} is still creating"
        time.sleep(0.5)


def _wait_gone(kamaki: Kamaki, volume: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while volume in [v["id"] for v in _json(kamaki, "volume", "list")]:
        assert time.monotonic() < deadline, f"volume {volume} is still there"
        time.sleep(0.5)
    gone = kamaki("volume", "info", volume, check=False)
    assert gone.returncode != 0 and "404" in gone.stderr, gone.stderr
