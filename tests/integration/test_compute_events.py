"""The update path on a real Ganeti cluster, with no reconciler running: the post-hooks and
snf-eventd on the master report each job's end to the portal's /internal/events, which moves
servers BUILD -> ACTIVE -> STOPPED -> ACTIVE -> DELETED; a failed create (no post-hook runs)
reaches ERROR through the daemon; with the portal stopped while jobs finish, the events wait
in the node's spool and arrive once it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.hooks import jobs
from tests.testbed import compute, eventd_node, plan
from tests.testbed import portal as tb_portal
from tests.testbed.cluster import Cluster, lan
from tests.testbed.compute import Cloud

pytestmark = pytest.mark.ganeti
FOLDER = plan.STATE_DIR / "compute-events-tests"
#: Measured figures, printed at the end (pytest -s shows them).
FIGURES: dict[str, list[float]] = {}


def _poll(url: str, token: str, want: str, timeout: float) -> tuple[dict[str, Any], float]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = compute.http("GET", url, token)
        assert status == 200, body
        server = body["server"]
        if server["status"] == want:
            return server, time.time()
        if time.monotonic() > deadline:
            raise AssertionError(f"server is {server['status']}, not {want}: {server}")
        time.sleep(0.05)


def wait(cloud: Cloud, server_id: int, want: str, timeout: float = 120) -> tuple[dict, float]:
    """Poll closely (inside the services host); the server and when it was seen so."""
    url = f"{cloud.url}/compute/v2.0/servers/{server_id}"
    return lan().call(_poll, url, cloud.token, want, timeout, timeout=timeout + 30)


def job_end(cluster: Cluster, instance: str, opcode: str) -> tuple[int, float] | None:
    """(job id, end time) of the newest finished ``opcode`` job on ``instance``."""
    queue = cluster.node_path("/var/lib/ganeti/queue")
    found = None
    for path in queue.glob("job-*"):
        try:
            job = jobs.parse(path.read_bytes())
        except (OSError, jobs.BadJob):
            continue
        for event in jobs.job_events(job, "c"):
            ours = event["instance"] == instance and event["opcode"] == opcode
            if ours and (found is None or event["job_id"] > found[0]):
                found = (event["job_id"], event["end_ts"])
    return found


def latency(name: str, cluster: Cluster, server_id: int, opcode: str, seen: float) -> None:
    """Record when the portal showed the new state, against the job's end as Ganeti wrote
    it: negative when the post-hook's event arrived before Ganeti closed the job (post-hooks
    run inside the job)."""
    deadline = time.monotonic() + 30
    while (ended := job_end(cluster, f"snf-{server_id}", opcode)) is None:
        assert time.monotonic() < deadline, f"no finished {opcode} job for snf-{server_id}"
        time.sleep(0.1)
    FIGURES.setdefault(name, []).append(seen - ended[1])


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    backend = compute.ensure_backend(portal, cluster1)
    token = portal.snf_portal("service", "add", f"events-{time.time_ns()}").strip()
    saved = eventd_node.configure(cluster1, tb_portal.BASE_URL, token)
    daemon = eventd_node.start(cluster1)
    try:
        cloud = compute.user_with_image(portal, "events", FOLDER, "busybox linux")
        with compute.only_backend(portal, backend):
            yield cloud
    finally:
        eventd_node.stop(daemon)
        eventd_node.unconfigure(saved)
        compute.remove_tree(FOLDER)
        for name, values in sorted(FIGURES.items()):
            print(f"\n{name}: {', '.join(f'{v:.2f}' for v in values)} s")


def test_the_lifecycle_follows_events_alone(cloud: Cloud, cluster1: Cluster) -> None:
    server_id = cloud.create_server("vm-events", cloud.image, cloud.flavor)["id"]
    _, seen = wait(cloud, server_id, "ACTIVE")
    latency("job end -> ACTIVE (create)", cluster1, server_id, "OP_INSTANCE_CREATE", seen)
    path = f"/compute/v2.0/servers/{server_id}/action"
    steps = [({"os-stop": None}, "STOPPED", "OP_INSTANCE_SHUTDOWN"),
             ({"os-start": None}, "ACTIVE", "OP_INSTANCE_STARTUP"),
             ({"reboot": {"type": "HARD"}}, "ACTIVE", "OP_INSTANCE_REBOOT")]  # fmt: skip
    for action, want, opcode in steps:
        status, _, body = cloud.api("POST", path, action)
        assert status == 202, body
        server, seen = wait(cloud, server_id, want)
        assert not server["SNF:task_state"], server  # the action ended, not only the status
        latency(f"job end -> {want} ({opcode})", cluster1, server_id, opcode, seen)
    assert cloud.quota_usage("cyclades.vm") == 1
    assert cloud.api("DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    _, seen = wait(cloud, server_id, "DELETED")
    latency("job end -> DELETED", cluster1, server_id, "OP_INSTANCE_REMOVE", seen)
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert cloud.quota_usage(resource) == 0, resource
    assert not list(eventd_node.spool_dir(cluster1).glob("*.json"))


def test_a_failed_create_reaches_error_through_the_daemon(cloud: Cloud, cluster1: Cluster) -> None:
    copied = cloud.api("PUT", f"/object-store/v1/{cloud.uuid}/images/other.raw", data=b"",
                       headers={"X-Copy-From": "/images/linux.raw"})  # fmt: skip
    assert copied[0] == 201, copied
    image = cloud.register_image("not linux", "images", "other.raw", OSFAMILY="windows")
    server_id = cloud.create_server("vm-fails", image, cloud.flavor)["id"]
    server, seen = wait(cloud, server_id, "ERROR")
    assert "create failed" in server["fault"]["message"]
    assert "OSFAMILY windows" in server["fault"]["details"]
    latency("job end -> ERROR (failed create, eventd)", cluster1, server_id,
            "OP_INSTANCE_CREATE", seen)  # fmt: skip
    for resource in ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk"):
        assert cloud.quota_usage(resource) == 0, resource
    log = (cluster1.plan.master.state_dir / "snf-eventd.log").read_text()
    assert f"OP_INSTANCE_CREATE snf-{server_id} error" in log
    assert cloud.api("DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    wait(cloud, server_id, "DELETED")


def _spooled(spool: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))]


def test_events_wait_for_a_stopped_portal(cloud: Cloud, cluster1: Cluster) -> None:
    ids = [cloud.create_server(f"vm-down-{i}", cloud.image, cloud.flavor)["id"] for i in (1, 2)]
    tb_portal.stop()
    try:
        deadline = time.monotonic() + 120
        while any(job_end(cluster1, f"snf-{i}", "OP_INSTANCE_CREATE") is None for i in ids):
            assert time.monotonic() < deadline, "the create jobs did not end"
            time.sleep(0.2)
        time.sleep(2)  # the daemon has seen them and failed to deliver
        spooled = _spooled(eventd_node.spool_dir(cluster1))
        assert {e["instance"] for e in spooled} == {f"snf-{i}" for i in ids}, spooled
        assert {e["status"] for e in spooled} == {"success"}
    finally:
        restarted = time.time()
        tb_portal.start()
    for server_id in ids:
        _, seen = wait(cloud, server_id, "ACTIVE", timeout=90)
        FIGURES.setdefault("portal restart -> ACTIVE (spooled)", []).append(seen - restarted)
    deadline = time.monotonic() + 30
    while _spooled(eventd_node.spool_dir(cluster1)):
        assert time.monotonic() < deadline, "the spool did not empty"
        time.sleep(0.2)
    assert cloud.quota_usage("cyclades.vm") == 2
    for server_id in ids:
        assert cloud.api("DELETE", f"/compute/v2.0/servers/{server_id}")[0] == 204
    for server_id in ids:
        wait(cloud, server_id, "DELETED")
    assert cloud.quota_usage("cyclades.vm") == 0
