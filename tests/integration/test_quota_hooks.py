"""The quota pre-hooks on a real Ganeti cluster (fake hypervisor, `file` disks, the trivial
test OS): an administrator's `gnt-instance add` of an instance tagged with a user's UUID is
charged to that user through the testbed portal, refused over quota with the hook's line in
Ganeti's HooksAbort and nothing left, and refused when the portal cannot be reached; the
portal's own instances (a commission tag) and untagged ones are not charged; a remove
releases what was charged.  Disks added by `gnt-instance modify --disk add` (which Ganeti
does not show hooks; the hook reads them from the running job) are refused over quota and
charged within it, and a removed disk is released.  Dry runs (`--dry-run`, whose pre-hooks
Ganeti runs too) charge nothing and are refused over quota with the same line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.testbed import compute, install
from tests.testbed.cluster import Cluster
from tests.testbed.compute import Cloud
from tests.testbed.test_providers import OS_NAME

pytestmark = pytest.mark.ganeti
MiB = 1 << 20
TOKEN_FILE = "/etc/snf/quota-hooks-token"
DROPIN = "60-quota-hooks.toml"
UNREACHABLE = "http://192.0.2.1:9"  # the services host, a port nothing listens on


def configure(c: Cluster, portal_url: str) -> None:
    for node in c.plan.nodes:
        dropins = node.state_dir / "etc-snf" / "conf.d"
        dropins.mkdir(exist_ok=True)
        (dropins / DROPIN).write_text(
            f'[hooks]\nportal_url = "{portal_url}"\nservice_token_file = "{TOKEN_FILE}"\n'
        )


@pytest.fixture(scope="module")
def cloud(cluster1: Cluster, portal: Any) -> Iterator[Cloud]:
    user = compute.new_user(portal, "quota-hooks@example.test")
    token = portal.snf_portal("service", "add", f"quota-hooks-{time.time_ns()}").strip()
    for node in cluster1.plan.nodes:
        install.install_snf(node)
        secret = node.state_dir / "etc-snf" / TOKEN_FILE.removeprefix("/etc/snf/")
        secret.write_text(token + "\n")
        secret.chmod(0o600)
    configure(cluster1, portal.base_url)
    try:
        yield user
    finally:
        for node in cluster1.plan.nodes:
            (node.state_dir / "etc-snf" / "conf.d" / DROPIN).unlink(missing_ok=True)
            (node.state_dir / "etc-snf" / TOKEN_FILE.removeprefix("/etc/snf/")).unlink(
                missing_ok=True
            )


@pytest.fixture
def made(cluster1: Cluster) -> Iterator[list[str]]:
    """Names of the instances a test tries to make; whatever exists of them is removed."""
    names: list[str] = []
    yield names
    for name in names:
        if name in instances(cluster1):
            cluster1.gnt("gnt-instance", "remove", "-f", name, check=False, timeout=300)


def instances(c: Cluster) -> list[str]:
    return c.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout.split()


def add(c: Cluster, names: list[str], name: str, *tags: str, memory: int = 64,
        dry_run: bool = False) -> Any:  # fmt: skip
    names.append(name)
    argv = ["gnt-instance", "add", "-t", "file", "--disk", "0:size=64M", "-o", OS_NAME,
            "--no-name-check", "--no-ip-check", "-H", "fake", "-B",
            f"memory={memory},vcpus=1", "-n", c.info.master]  # fmt: skip
    if tags:
        argv += ["--tags", ",".join(tags)]
    if dry_run:
        argv.append("--dry-run")
    return c.gnt(*argv, name, check=False, timeout=300)


def usage(cloud: Cloud) -> dict[str, int]:
    return {r: cloud.quota_usage(r) for r in ("cyclades.vm", "cyclades.ram", "cyclades.disk")}


NOTHING = {"cyclades.vm": 0, "cyclades.ram": 0, "cyclades.disk": 0}
GiB = 1 << 30


def disk_sizes(c: Cluster, name: str) -> str:
    return c.gnt("gnt-instance", "list", "--no-headers", "-o", "disk.sizes", name).stdout.strip()


def test_an_owned_instance_is_charged_and_released(
    cloud: Cloud, cluster1: Cluster, made: list[str]
) -> None:
    done = add(cluster1, made, "qh-owned.snf.test", f"snf:owner:{cloud.uuid}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert usage(cloud) == {"cyclades.vm": 1, "cyclades.ram": 64 * MiB,
                            "cyclades.disk": 64 * MiB}  # fmt: skip
    cluster1.gnt("gnt-instance", "shutdown", "qh-owned.snf.test")
    assert cloud.quota_usage("cyclades.ram") == 0 and cloud.quota_usage("cyclades.vm") == 1
    cluster1.gnt("gnt-instance", "modify", "-B", "vcpus=2,memory=96", "qh-owned.snf.test")
    assert cloud.quota_usage("cyclades.cpu") == 0  # stopped: only the totals change
    cluster1.gnt("gnt-instance", "startup", "qh-owned.snf.test")
    assert cloud.quota_usage("cyclades.cpu") == 2
    assert cloud.quota_usage("cyclades.ram") == 96 * MiB
    cluster1.gnt("gnt-instance", "remove", "-f", "qh-owned.snf.test")
    assert usage(cloud) == NOTHING


def test_over_quota_is_refused_by_the_pre_hook(
    cloud: Cloud, cluster1: Cluster, portal: Any, made: list[str]
) -> None:
    portal.snf_portal("quota", "set", cloud.email, "cyclades.vm", "1")
    try:
        first = add(cluster1, made, "qh-first.snf.test", f"snf:owner:{cloud.uuid}")
        assert first.returncode == 0, first.stdout + first.stderr
        refused = add(cluster1, made, "qh-over.snf.test", f"snf:owner:{cloud.uuid}")
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert "hooks execution failed" in output and "snf-quota" in output
        assert (f"snf-quota: add of qh-over.snf.test refused: cyclades.vm over quota for user "
                f"{cloud.uuid}: limit 1, usage 1, asked for 1") in output  # fmt: skip
        assert "qh-over.snf.test" not in instances(cluster1)
        assert cloud.quota_usage("cyclades.vm") == 1
    finally:
        portal.snf_portal("quota", "set", cloud.email, "cyclades.vm", "2")
    cluster1.gnt("gnt-instance", "remove", "-f", "qh-first.snf.test")
    assert usage(cloud) == NOTHING


def test_the_portals_own_instances_are_not_charged(
    cloud: Cloud, cluster1: Cluster, made: list[str]
) -> None:
    done = add(cluster1, made, "qh-portal.snf.test", f"snf:owner:{cloud.uuid}",
               "snf:server:999999", "snf:commission:999999")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert usage(cloud) == NOTHING
    cluster1.gnt("gnt-instance", "remove", "-f", "qh-portal.snf.test")


def test_no_portal_refuses_owned_instances_only(
    cloud: Cloud, cluster1: Cluster, portal: Any, made: list[str]
) -> None:
    configure(cluster1, UNREACHABLE)
    try:
        started = time.monotonic()
        refused = add(cluster1, made, "qh-noportal.snf.test", f"snf:owner:{cloud.uuid}")
        took = time.monotonic() - started
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0 and took < 30, (took, output)
        assert (f"snf-quota: add of qh-noportal.snf.test refused: the portal at {UNREACHABLE} "
                "cannot be reached") in output  # fmt: skip
        assert "qh-noportal.snf.test" not in instances(cluster1)
        # Without an owner tag the hook does not ask the portal at all.
        done = add(cluster1, made, "qh-plain.snf.test", "web")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        configure(cluster1, portal.base_url)
    assert usage(cloud) == NOTHING
    cluster1.gnt("gnt-instance", "remove", "-f", "qh-plain.snf.test")


def test_disks_added_by_modify_are_charged(
    cloud: Cloud, cluster1: Cluster, portal: Any, made: list[str]
) -> None:
    """The owner's disk limit leaves room for the instance's first disk (64 MiB) and 32 MiB
    more: adding 64 MiB is refused before Ganeti makes the disk, adding 32 MiB is charged,
    and removing it (stopped: the fake hypervisor cannot hot-unplug) releases it."""
    name = "qh-disks.snf.test"
    portal.snf_portal("quota", "set", cloud.email, "cyclades.disk", str(96 * MiB))
    try:
        done = add(cluster1, made, name, f"snf:owner:{cloud.uuid}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert cloud.quota_usage("cyclades.disk") == 64 * MiB
        refused = cluster1.gnt("gnt-instance", "modify", "--disk", "add:size=64M", name,
                               check=False)  # fmt: skip
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "hooks execution failed" in output, output
        over = (f"snf-quota: modify of {name} refused: cyclades.disk over quota for user "
                f"{cloud.uuid}: limit 96 MiB, usage 64 MiB, asked for 64 MiB")  # fmt: skip
        assert over in output
        assert "disk changes not counted" not in output  # it read them from the job
        assert disk_sizes(cluster1, name) == "64"
        assert cloud.quota_usage("cyclades.disk") == 64 * MiB
        done = cluster1.gnt("gnt-instance", "modify", "--disk", "add:size=32M", name,
                            check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert disk_sizes(cluster1, name) == "64,32"
        assert cloud.quota_usage("cyclades.disk") == 96 * MiB
        cluster1.gnt("gnt-instance", "shutdown", name)
        cluster1.gnt("gnt-instance", "modify", "--disk", "1:remove", name)
        assert disk_sizes(cluster1, name) == "64"
        assert cloud.quota_usage("cyclades.disk") == 64 * MiB
    finally:
        portal.snf_portal("quota", "set", cloud.email, "cyclades.disk", str(40 * GiB))
    cluster1.gnt("gnt-instance", "remove", "-f", name)
    assert usage(cloud) == NOTHING


def test_dry_runs_charge_nothing(
    cloud: Cloud, cluster1: Cluster, portal: Any, made: list[str]
) -> None:
    """With room for one 64 MiB disk and 32 MiB more: a dry-run add charges nothing; after
    the real add, dry-run modifies that fit (32 MiB) or not (64 MiB), a dry-run add of a
    second instance, and dry-run shutdown and remove change nothing; over quota they are
    refused with the line a real run gets."""
    name, other = "qh-dry.snf.test", "qh-dry2.snf.test"
    portal.snf_portal("quota", "set", cloud.email, "cyclades.disk", str(96 * MiB))
    try:
        dry = add(cluster1, made, name, f"snf:owner:{cloud.uuid}", dry_run=True)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert name not in instances(cluster1) and usage(cloud) == NOTHING
        done = add(cluster1, made, name, f"snf:owner:{cloud.uuid}")
        assert done.returncode == 0, done.stdout + done.stderr
        held = {"cyclades.vm": 1, "cyclades.ram": 64 * MiB, "cyclades.disk": 64 * MiB}
        assert usage(cloud) == held
        fits = cluster1.gnt("gnt-instance", "modify", "--dry-run", "--disk", "add:size=32M",
                            name, check=False)  # fmt: skip
        assert fits.returncode == 0, fits.stdout + fits.stderr
        assert disk_sizes(cluster1, name) == "64" and usage(cloud) == held
        over = (f"cyclades.disk over quota for user {cloud.uuid}: limit 96 MiB, usage 64 MiB, "
                "asked for 64 MiB")  # fmt: skip
        refused = cluster1.gnt("gnt-instance", "modify", "--dry-run", "--disk", "add:size=64M",
                               name, check=False)  # fmt: skip
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "hooks execution failed" in output, output
        assert f"snf-quota: modify of {name} refused: {over}" in output
        refused = add(cluster1, made, other, f"snf:owner:{cloud.uuid}", dry_run=True)
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0 and f"snf-quota: add of {other} refused: {over}" in output
        for action in ("shutdown", "remove"):
            extra = ["-f"] if action == "remove" else []
            done = cluster1.gnt("gnt-instance", action, "--dry-run", *extra, name, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            assert usage(cloud) == held and cloud.quota_usage("cyclades.cpu") == 1
        assert name in instances(cluster1) and usage(cloud) == held
    finally:
        portal.snf_portal("quota", "set", cloud.email, "cyclades.disk", str(40 * GiB))
    cluster1.gnt("gnt-instance", "remove", "-f", name)
    assert usage(cloud) == NOTHING
