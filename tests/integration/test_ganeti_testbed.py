"""The testbed is a real, isolated Ganeti 3.0 cluster: lifecycle through the CLI and RAPI.

Uses the test-only providers of tests/testbed/providers (a loop-device ExtStorage provider,
an OS definition and hooks), which record every call with its environment.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from snf.common.errors import CommandFailed, JobFailed, RapiAuthError
from snf.common.rapi import HooksAborted
from tests.testbed import plan, test_providers
from tests.testbed.cluster import Cluster, lan
from tests.testbed.test_providers import EXT_PROVIDER, OS_NAME

pytestmark = pytest.mark.ganeti

# hail refuses `ext` instances on a one-node cluster (no failover node: FailN1), so name it.
ADD = ["gnt-instance", "add", "-t", "ext", "-o", OS_NAME, "--no-name-check", "--no-ip-check",
       "-B", "memory=64"]  # fmt: skip


def add(cluster: Cluster) -> list[str]:
    return [*ADD, "-n", cluster.info.master]


def disk(size: int = 64, **params: str) -> list[str]:
    extra = "".join(f",{k}={v}" for k, v in params.items())
    return ["--disk", f"0:size={size},provider={EXT_PROVIDER}{extra}"]


def calls(cluster: Cluster, kind: str, action: str | None = None) -> list[dict[str, Any]]:
    return [
        c
        for c in test_providers.calls(cluster.plan.master)
        if c["kind"] == kind and (action is None or c["action"] == action)
    ]


def instance_names(cluster: Cluster) -> list[str]:
    out = cluster.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout
    return out.split()


def volume_files(cluster: Cluster) -> list[str]:
    vols = cluster.node_path("/srv/ganeti/snftest/volumes")
    return sorted(p.name for p in vols.glob("*.img")) if vols.exists() else []


@pytest.fixture
def c1(cluster1: Cluster) -> Cluster:
    test_providers.clear_calls(cluster1.plan.master)
    return cluster1


def test_node_is_isolated_from_the_host(c1: Cluster) -> None:
    master = c1.master
    assert master.run(["hostname"]).stdout.strip() == c1.plan.master.name
    assert master.run(["python3", "-c", "import socket; print(socket.getfqdn())"]).stdout.strip() \
        == c1.plan.master.name  # fmt: skip
    node_addrs = master.run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert c1.plan.master.address in node_addrs and c1.plan.address in node_addrs
    # Nothing of the testbed shows in the host's own network namespace.
    host_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for addr in (plan.SVC_ADDRESS, c1.plan.address, c1.plan.master.address):
        assert f" {addr}/" not in host_addrs
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for link in (plan.LAN_BRIDGE, c1.plan.master.short):
        assert f" {link}:" not in host_links and f" {link}@" not in host_links
    # The cluster's configuration lives in the node's own /var/lib/ganeti only.
    assert master.run(["test", "-f", "/var/lib/ganeti/config.data"], check=False).returncode == 0
    assert c1.node_path("/var/lib/ganeti/config.data").exists()
    info = master.run(["gnt-cluster", "info"]).stdout
    assert f"Cluster name: {c1.plan.name}" in info
    assert "fake" in info and "kvm" in info


def test_instance_lifecycle_with_the_cli(c1: Cluster) -> None:
    name = "vm-cli.snf.test"
    c1.gnt(*add(c1), *disk(64), "-O", "marker=hello", name)
    assert name in instance_names(c1)

    creates = calls(c1, "extstorage", "create")
    assert len(creates) == 1
    vol_env = creates[0]["env"]
    assert vol_env["VOL_SIZE"] == "64"
    assert vol_env["EXTP_PROVIDER"] == EXT_PROVIDER
    assert re.fullmatch(r"[0-9a-f-]{36}\.ext\.disk0", vol_env["VOL_NAME"])
    assert vol_env["VOL_UUID"]
    actions = [c["action"] for c in calls(c1, "extstorage")]
    assert actions[:4] == ["create", "attach", "open", "setinfo"]

    (os_create,) = calls(c1, "os", "create")
    env = os_create["env"]
    assert env["OS_API_VERSION"] == "20"
    assert env["OS_NAME"] == "snftest" and env["OS_VARIANT"] == "default"
    assert env["INSTANCE_NAME"] == name
    assert env["HYPERVISOR"] == "fake"
    assert env["OSP_MARKER"] == "hello"
    assert env["DISK_COUNT"] == "1" and env["DISK_0_PATH"].startswith("/dev/loop")
    assert env["DISK_0_UUID"] == vol_env["VOL_UUID"]
    assert env["PATH"] == "/sbin:/bin:/usr/sbin:/usr/bin"  # Ganeti resets the environment
    # The OS script really wrote onto the provider's volume.
    (volume,) = volume_files(c1)
    data = (c1.node_path("/srv/ganeti/snftest/volumes") / volume).read_bytes()[:64]
    assert data.startswith(b"SNFTEST-OS " + name.encode())

    (post,) = calls(c1, "hook", "instance-add-post")
    assert post["env"]["GANETI_HOOKS_PHASE"] == "post"
    assert post["env"]["GANETI_OP_CODE"] == "OP_INSTANCE_CREATE"
    assert post["env"]["GANETI_INSTANCE_NAME"] == name

    status = c1.gnt("gnt-instance", "list", "--no-headers", "-o", "status", name).stdout
    assert status.strip() == "running"
    c1.gnt("gnt-instance", "shutdown", name)
    assert calls(c1, "extstorage")[-1]["action"] == "detach"
    c1.gnt("gnt-instance", "startup", name)
    assert calls(c1, "extstorage")[-1]["action"] == "open"

    c1.gnt("gnt-instance", "remove", "-f", name)
    assert name not in instance_names(c1)
    assert calls(c1, "extstorage")[-1]["action"] == "remove"
    assert volume_files(c1) == []


def test_pre_hook_exiting_1_aborts_the_job_with_its_message(c1: Cluster) -> None:
    name = "deny-me.snf.test"
    with pytest.raises(CommandFailed) as failed:
        c1.gnt(*add(c1), *disk(), name)
    assert f"snftest policy: instance {name} is refused" in failed.value.output
    assert "50-snftest-deny-pre" in failed.value.output
    assert name not in instance_names(c1)
    assert calls(c1, "extstorage", "create") == []  # nothing was done


def test_failing_provider_create_fails_the_job_cleanly(c1: Cluster) -> None:
    name = "vm-fail.snf.test"
    with pytest.raises(CommandFailed) as failed:
        c1.gnt(*add(c1), *disk(fail="create"), name)
    assert "injected failure in create" in failed.value.output
    assert name not in instance_names(c1)
    assert [c["action"] for c in calls(c1, "extstorage")] == ["create"]
    assert volume_files(c1) == []


def test_failing_provider_attach_fails_the_job(c1: Cluster) -> None:
    name = "vm-fail-attach.snf.test"
    with pytest.raises(CommandFailed) as failed:
        c1.gnt(*add(c1), *disk(fail="attach"), name)
    assert "injected failure in attach" in failed.value.output
    assert name not in instance_names(c1)
    # Ganeti removes a disk by attaching it first: a provider whose attach fails is never
    # asked to remove, so the volume stays behind (our providers' attach must not fail).
    assert "remove" not in [c["action"] for c in calls(c1, "extstorage")]
    for leftover in volume_files(c1):
        (c1.node_path("/srv/ganeti/snftest/volumes") / leftover).unlink()


def test_failing_os_create_fails_the_job_and_leaves_the_instance_down(c1: Cluster) -> None:
    """Ganeti keeps an instance whose OS create failed (stopped, disks kept) for the caller
    to remove: the compute service must remove such a server itself."""
    name = "vm-osfail.snf.test"
    with pytest.raises(CommandFailed) as failed:
        c1.gnt(*add(c1), *disk(), "-O", "fail=yes", name)
    assert "injected failure in create" in failed.value.output
    status = c1.gnt("gnt-instance", "list", "--no-headers", "-o", "status", name).stdout
    assert status.strip() == "ADMIN_down"
    assert len(volume_files(c1)) == 1
    c1.gnt("gnt-instance", "remove", "-f", name)
    assert name not in instance_names(c1)
    assert volume_files(c1) == []


# --- the same through snf.common's RAPI client, from the services host ---------------------


def _rapi_lifecycle(cluster: Cluster, name: str) -> dict[str, Any]:
    """Runs inside the services host."""
    client = cluster.rapi()
    seen: dict[str, Any] = {"progress": []}
    job = client.create_instance(
        name,
        disk_template="ext",
        disks=[{"size": 32, "provider": EXT_PROVIDER}],
        nics=[{}],
        os=OS_NAME,
        beparams={"memory": 64},
        osparams={"marker": "rapi"},
        pnode=cluster.info.master,
    )
    seen["create_result"] = client.wait_for_job(
        job, on_progress=lambda serial, msg: seen["progress"].append(msg)
    )
    seen["instance"] = client.instance(name)
    client.wait_for_job(client.shutdown_instance(name))
    seen["after_shutdown"] = client.instance(name)["status"]
    client.wait_for_job(client.startup_instance(name))
    seen["after_startup"] = client.instance(name)["status"]
    client.wait_for_job(client.delete_instance(name))
    seen["names_after_delete"] = [i["id"] for i in client.instances()]
    return seen


def test_instance_lifecycle_through_the_rapi_client(c1: Cluster) -> None:
    name = "vm-rapi.snf.test"
    seen = lan().call(_rapi_lifecycle, c1, name)
    inst = seen["instance"]
    assert inst["name"] == name
    assert inst["disk_template"] == "ext"
    assert inst["status"] == "running"
    assert inst["os"] == OS_NAME
    assert seen["after_shutdown"] == "ADMIN_down"
    assert seen["after_startup"] == "running"
    assert name not in seen["names_after_delete"]
    assert seen["progress"], "the job's log messages reach on_progress"
    (os_create,) = calls(c1, "os", "create")
    assert os_create["env"]["OSP_MARKER"] == "rapi"


def _rapi_denied(cluster: Cluster) -> HooksAborted:
    client = cluster.rapi()
    job = client.create_instance(
        "deny-rapi.snf.test", disk_template="ext", nics=[],
        disks=[{"size": 32, "provider": EXT_PROVIDER}], os=OS_NAME, pnode=cluster.info.master,
    )  # fmt: skip
    try:
        client.wait_for_job(job)
    except HooksAborted as exc:
        return exc
    raise AssertionError("the job succeeded")


def test_pre_hook_abort_through_rapi(c1: Cluster) -> None:
    exc = lan().call(_rapi_denied, c1)
    assert isinstance(exc, JobFailed)
    assert exc.error_class == "HooksAbort"
    assert "snftest policy: instance deny-rapi.snf.test is refused" in exc.detail


def _wrong_credentials(good: Cluster, other: Cluster) -> str:
    client = other.rapi()
    client = type(client)(
        other.info.address, other.info.rapi_port, username=good.info.rapi_user,
        password=good.info.rapi_password, pin=other.info.rapi_pin,
    )  # fmt: skip
    try:
        client.instances()
    except RapiAuthError as exc:
        return str(exc)
    return "accepted"


def test_second_cluster_is_independent(c1: Cluster, cluster2: Cluster) -> None:
    c2 = cluster2
    assert c2.info.name != c1.info.name and c2.info.address != c1.info.address
    assert c2.master.run(["hostname"]).stdout.strip() == c2.plan.master.name
    name = "vm-both.snf.test"
    c1.gnt(*add(c1), *disk(), name)
    try:
        assert name not in instance_names(c2)
        c2.gnt(*add(c2), *disk(), name)  # the same name in the other cluster is no conflict
        c2.gnt("gnt-instance", "remove", "-f", name)
        assert name in instance_names(c1)
    finally:
        c1.gnt("gnt-instance", "remove", "-f", name)
    # Each cluster has its own RAPI password and certificate.
    assert c1.info.rapi_pin != c2.info.rapi_pin
    assert lan().call(_wrong_credentials, c1, c2) != "accepted"
    assert plan.ClusterPlan(2).master.netns != plan.ClusterPlan(1).master.netns
