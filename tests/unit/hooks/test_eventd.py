"""snf-eventd (snf.hooks.eventd) on a queue directory laid out as Ganeti's: finished jobs
on servers become events, failed ones too, each reported once (across restarts), only on
the master; inotify wakes it as Ganeti renames a job file into place."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.common.config import HooksConfig
from snf.hooks.eventd import EventDaemon

from .helpers import FAILED_CREATE, PortalStub, job_file, write_job


@pytest.fixture
def portal() -> Iterator[PortalStub]:
    stub = PortalStub()
    yield stub
    stub.close()


def config(tmp_path: Path, portal: PortalStub, master: str | None = None) -> HooksConfig:
    data = tmp_path / "ganeti"
    (data / "queue").mkdir(parents=True, exist_ok=True)
    (data / "ssconf_master_node").write_text((master or socket.getfqdn()) + "\n")
    (data / "ssconf_cluster_name").write_text("c1.example.test\n")
    (tmp_path / "token").write_text("svc-token\n")
    return HooksConfig(portal_url=portal.url, service_token_file=tmp_path / "token",
                       spool_dir=tmp_path / "spool", timeout=2, ganeti_data_dir=data,
                       eventd_state_file=tmp_path / "state" / "eventd.state")  # fmt: skip


def test_finished_server_jobs_are_reported_once(tmp_path: Path, portal: PortalStub) -> None:
    cfg = config(tmp_path, portal)
    queue = cfg.ganeti_data_dir / "queue"
    write_job(queue, job_file(1, [("OP_CLUSTER_POST_INIT", None, "success")]))
    write_job(queue, job_file(2, [("OP_INSTANCE_CREATE", "snf-1", "success")]))
    write_job(queue, job_file(3, [("OP_INSTANCE_CREATE", "snf-2", "error", FAILED_CREATE)]))
    write_job(queue, job_file(4, [("OP_INSTANCE_SHUTDOWN", "snf-1", "running")]))
    (queue / "job-5").write_text("{garbage")
    daemon = EventDaemon(cfg, poll=True)
    assert daemon.once() == 0
    assert portal.ids() == ["c1.example.test:2:0", "c1.example.test:3:0"]
    assert portal.received[1]["status"] == "error"
    assert "OSFAMILY windows" in portal.received[1]["message"]
    # The same queue read again, by a restarted daemon: nothing new.
    assert EventDaemon(cfg, poll=True).once() == 0
    assert len(portal.received) == 2
    # Job 4 ends; job 2 is archived (and forgotten).
    write_job(queue, job_file(4, [("OP_INSTANCE_SHUTDOWN", "snf-1", "success")]))
    (queue / "job-2").rename(tmp_path / "archived")
    restarted = EventDaemon(cfg, poll=True)
    assert restarted.once() == 0
    assert portal.ids()[2:] == ["c1.example.test:4:0"]
    assert restarted.seen.ids == {1, 3, 4, 5}


def test_the_portal_down_keeps_events_for_later(tmp_path: Path, portal: PortalStub) -> None:
    cfg = config(tmp_path, portal)
    write_job(cfg.ganeti_data_dir / "queue", job_file(7, [("OP_INSTANCE_REMOVE", "snf-3",
                                                           "success")]))  # fmt: skip
    portal.default = 503
    assert EventDaemon(cfg, poll=True).once() == 1
    portal.default = 200
    assert EventDaemon(cfg, poll=True).once() == 0
    assert portal.ids() == ["c1.example.test:7:0"]


def test_only_the_master_reports(tmp_path: Path, portal: PortalStub) -> None:
    cfg = config(tmp_path, portal, master="other.example.test")
    write_job(cfg.ganeti_data_dir / "queue", job_file(2, [("OP_INSTANCE_CREATE", "snf-1",
                                                           "success")]))  # fmt: skip
    daemon = EventDaemon(cfg, poll=True)
    assert daemon.once() == 0 and portal.received == [] and not daemon.master


def test_inotify_wakes_the_daemon(tmp_path: Path, portal: PortalStub) -> None:
    cfg = config(tmp_path, portal)
    queue = cfg.ganeti_data_dir / "queue"
    daemon = EventDaemon(cfg, rescan=3600)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while daemon.watch is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert daemon.watch is not None
        time.sleep(0.1)  # the first scan is done
        write_job(queue, job_file(8, [("OP_INSTANCE_STARTUP", "snf-4", "running")]))
        started = time.monotonic()
        write_job(queue, job_file(8, [("OP_INSTANCE_STARTUP", "snf-4", "success")]))
        while not portal.received and time.monotonic() < started + 5:
            time.sleep(0.01)
        assert portal.ids() == ["c1.example.test:8:0"]
        assert time.monotonic() - started < 1.5  # no rescan: inotify woke it
    finally:
        daemon.stop()
        thread.join(5)
    assert not thread.is_alive()
