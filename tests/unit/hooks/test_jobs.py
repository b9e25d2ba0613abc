"""Reading Ganeti 3.0 job files (snf.hooks.jobs): files as the testbed's cluster wrote them,
and built ones for the other shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from snf.hooks import jobs

from .helpers import FAILED_CREATE, job_file

DATA = Path(__file__).parent / "data"


def test_a_failed_create_as_ganeti_wrote_it() -> None:
    job = jobs.parse((DATA / "job-9").read_bytes())
    assert jobs.finished(job) and jobs.status(job) == "error"
    (event,) = jobs.job_events(job, "c1.snf.test")
    assert event["id"] == "c1.snf.test:9:0" and event["job_id"] == 9
    assert (event["opcode"], event["instance"], event["status"], event["source"]) == (
        "OP_INSTANCE_CREATE", "snf-3", "error", "eventd")  # fmt: skip
    assert event["message"].startswith("job 9 failed: OpExecError: Could not add os")
    assert "OSFAMILY windows" in event["message"]
    assert event["end_ts"] == pytest.approx(1795570895.62185)


def test_a_successful_create_as_ganeti_wrote_it() -> None:
    job = jobs.parse((DATA / "job-3").read_bytes())
    (event,) = jobs.job_events(job, "c1.snf.test")
    assert (event["opcode"], event["status"], event["message"]) == (
        "OP_INSTANCE_CREATE", "success", "")  # fmt: skip


def test_running_and_foreign_jobs_give_no_events() -> None:
    running = job_file(12, [("OP_INSTANCE_CREATE", "snf-5", "running")])
    assert not jobs.finished(running) and jobs.status(running) == "running"
    assert jobs.job_events(running, "c") == []
    assert jobs.running_op(running, "OP_INSTANCE_CREATE", "snf-5") == 0
    assert jobs.running_op(running, "OP_INSTANCE_CREATE", "snf-6") is None
    assert jobs.running_op(running, "OP_INSTANCE_REMOVE", "snf-5") is None
    cluster = job_file(1, [("OP_CLUSTER_POST_INIT", None, "success")])
    assert jobs.job_events(cluster, "c") == []
    other = job_file(2, [("OP_INSTANCE_CREATE", "vm1.example.test", "success")])
    assert jobs.job_events(other, "c") == []
    node = job_file(3, [("OP_NODE_SET_PARAMS", "snf-1", "success")])
    assert jobs.job_events(node, "c") == []


def test_a_job_of_several_ops_reports_each_server_op() -> None:
    job = job_file(20, [("OP_INSTANCE_SHUTDOWN", "snf-7", "success"),
                        ("OP_INSTANCE_STARTUP", "snf-7", "error", FAILED_CREATE),
                        ("OP_INSTANCE_REBOOT", "snf-7", "canceled")])  # fmt: skip
    assert jobs.status(job) == "error"
    found = jobs.job_events(job, "c")
    assert [(e["id"], e["status"]) for e in found] == [
        ("c:20:0", "success"), ("c:20:1", "error"), ("c:20:2", "canceled")]  # fmt: skip
    assert found[2]["message"] == "job 20 was canceled"


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b'{"id": 3}', b'{"id": 3, "ops": [1]}'])
def test_bad_job_files(data: bytes) -> None:
    with pytest.raises(jobs.BadJob):
        jobs.parse(data)


def test_job_numbers() -> None:
    assert jobs.job_number("job-17") == 17
    for name in ("job-", "job-x", ".job-1.tmp", "serial", "lock", "archive"):
        assert jobs.job_number(name) is None


def test_find_the_running_job_in_a_captured_queue(tmp_path: Path) -> None:
    """The queue as a testbed cluster's instance-modify pre-hook saw it: the job running the
    hook's opcode, on any instance (an administrator's ``cap1.snf.test`` here), is found
    among finished ones; its file already holds the opcode's input."""
    queue = DATA / "set-params" / "add" / "queue"
    found = jobs.find_job(queue, "OP_INSTANCE_SET_PARAMS", "cap1.snf.test")
    assert found is not None
    job, index = found
    assert (job["id"], index, jobs.status(job)) == (3, 0, "running")
    assert job["ops"][index]["input"]["disks"] == [["add", -1, {"size": 32, "name": "data1"}]]
    assert jobs.find_job(queue, "OP_INSTANCE_CREATE", "cap1.snf.test") is None  # it ended
    assert jobs.find_job(queue, "OP_INSTANCE_SET_PARAMS", "cap2.snf.test") is None
    assert jobs.find_job(tmp_path / "none", "OP_INSTANCE_SET_PARAMS", "cap1.snf.test") is None
    # Not a server: the finished create is no event.
    assert jobs.job_events(jobs.parse((queue / "job-2").read_bytes()), "c1.snf.test") == []
    broken = tmp_path / "queue"
    shutil.copytree(queue, broken)
    (broken / "job-3").write_text("{")
    assert jobs.find_job(broken, "OP_INSTANCE_SET_PARAMS", "cap1.snf.test") is None
