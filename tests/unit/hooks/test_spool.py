"""The durable spool (snf.hooks.spool) against a real local HTTP server: order, retries,
refusals, and what survives a crash."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.hooks import events
from snf.hooks.spool import Backoff, Spool

from .helpers import PortalStub


def event(job: int, instance: str = "snf-1", index: int = 0) -> events.Event:
    return events.build(cluster="c1", job_id=job, index=index, opcode="OP_INSTANCE_STARTUP",
                        instance=instance, status="success", end_ts=1.0, source="hook")  # fmt: skip


@pytest.fixture
def portal() -> Iterator[PortalStub]:
    stub = PortalStub()
    yield stub
    stub.close()


@pytest.fixture
def spool(tmp_path: Path, portal: PortalStub) -> Spool:
    (tmp_path / "token").write_text("svc-token\n")
    return Spool(tmp_path / "spool", portal.url, tmp_path / "token", timeout=2)


def test_events_are_delivered_in_the_order_they_were_spooled(
    spool: Spool, portal: PortalStub
) -> None:
    order = [(5, "snf-2"), (3, "snf-1"), (9, "snf-2"), (4, "snf-1")]
    for job, instance in order:
        spool.put(event(job, instance))
    assert [events.loads(p.read_bytes())["job_id"] for p in spool.pending()] == [5, 3, 9, 4]
    result = spool.deliver()
    assert (result.sent, result.left, result.error) == (4, 0, "")
    assert [(e["job_id"], e["instance"]) for e in portal.received] == order
    assert spool.pending() == []


def test_a_spooled_file_is_complete_and_private(spool: Spool) -> None:
    path = spool.put(event(1))
    assert events.loads(path.read_bytes()) == event(1)
    assert path.stat().st_mode & 0o777 == 0o600
    assert spool.directory.stat().st_mode & 0o777 == 0o700


def test_the_portal_down_keeps_everything_and_a_retry_sends_it_once(
    spool: Spool, portal: PortalStub
) -> None:
    for job in range(1, 4):
        spool.put(event(job))
    portal.answers = [503]
    result = spool.deliver()
    assert (result.sent, result.left) == (0, 3) and "HTTP 503" in result.error
    portal.default = 401
    assert "HTTP 403" in spool.deliver().error or "HTTP 401" in spool.deliver().error
    portal.default = 200
    result = spool.deliver()
    assert (result.sent, result.left) == (3, 0)
    assert [e["job_id"] for e in portal.received] == [1, 2, 3]


def test_no_portal_at_all(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    spool = Spool(tmp_path / "spool", "http://127.0.0.1:9", tmp_path / "token", timeout=1)
    spool.put(event(1))
    result = spool.deliver()
    assert result.left == 1 and "refused" in result.error.lower()


def test_no_token_is_an_error_that_keeps_the_events(tmp_path: Path, portal: PortalStub) -> None:
    spool = Spool(tmp_path / "spool", portal.url, tmp_path / "missing", timeout=1)
    spool.put(event(1))
    result = spool.deliver()
    assert result.left == 1 and "service token" in result.error and portal.requests == 0


def test_a_refused_event_is_set_aside_and_the_rest_go_on(spool: Spool, portal: PortalStub) -> None:
    for job in range(1, 4):
        spool.put(event(job))
    portal.refuse = {"c1:2:0"}
    result = spool.deliver()
    assert (result.sent, result.rejected, result.left) == (2, 1, 0)
    assert [e["job_id"] for e in portal.received] == [1, 3]
    assert len(list((spool.directory / "rejected").iterdir())) == 1


def test_a_corrupt_file_is_set_aside(spool: Spool, portal: PortalStub) -> None:
    (spool.directory / "00000000000000000001-1-000000.json").write_bytes(b"{not json")
    spool.put(event(7))
    result = spool.deliver()
    assert (result.sent, result.rejected) == (1, 1)
    assert [e["job_id"] for e in portal.received] == [7]


def test_a_crash_leaves_no_half_event_and_loses_no_whole_one(
    tmp_path: Path, spool: Spool, portal: PortalStub
) -> None:
    spool.put(event(1))
    # A writer that died before its rename left a temporary: never delivered.
    half = spool.directory / ".00000000000000000002-99-000000.json.tmp"
    half.write_bytes(b'{"version": 1, "id"')
    # "Restart": a new Spool on the same directory sees what was spooled.
    again = Spool(spool.directory, portal.url, tmp_path / "token")
    assert [p.name[0] for p in again.pending()] == ["0"]
    assert again.deliver().sent == 1 and portal.ids() == ["c1:1:0"]
    assert half.exists() and again.clean(older_than=3600) == 0
    old = time.time() - 7200
    os.utime(half, (old, old))
    assert again.clean(older_than=3600) == 1 and not half.exists()


def test_a_second_deliverer_waits_for_the_lock(spool: Spool, portal: PortalStub) -> None:
    spool.put(event(1))
    with spool._locked(0) as locked:
        assert locked
        busy = spool.deliver(lock_wait=0.2)
        assert busy.busy and busy.left == 1 and portal.requests == 0
    assert spool.deliver().sent == 1


def test_a_deadline_stops_between_batches(spool: Spool, portal: PortalStub) -> None:
    spool.put(event(1))
    result = spool.deliver(deadline=time.monotonic() - 1)
    assert (result.sent, result.left) == (0, 1)


def test_backoff() -> None:
    backoff = Backoff(1.0, 8.0)
    assert backoff.due(0)
    assert [backoff.failed(100) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert not backoff.due(107) and backoff.due(108)
    backoff.succeeded()
    assert backoff.due(0) and backoff.failed(0) == 1
