"""Ganeti's job files, read as JSON: which opcodes on servers ended, and how, and which job
runs a hook's opcode.  Pure, but for :func:`find_job`, which reads the queue directory.

A job file (``/var/lib/ganeti/queue/job-<id>``, Ganeti 3.0) holds ``id``, ``ops`` and the
job's timestamps; each op has ``input`` (the opcode's parameters, with ``OP_ID``,
``dry_run`` (true, false or null) and, for instance opcodes, ``instance_name``), ``status``
(queued, waiting, running, canceling, canceled, success, error), ``result`` (a failed op's
``[ErrClass, args]``) and its own ``end_timestamp`` (``[seconds, microseconds]``).  A job
has ended when every op has a final status; Ganeti then also sets the job's
``end_timestamp``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from snf.common.rapi_jobs import job_failure

from . import events
from .events import Event

JOB_FILE = re.compile(r"job-([0-9]{1,18})")
FINAL = ("success", "error", "canceled")
#: The opcodes that change a server (and that the portal's actions submit).
PREFIX = "OP_INSTANCE_"
#: How many of the newest job files :func:`find_job` looks through for the running job.
NEWEST_JOBS = 200


class BadJob(ValueError):
    """The file is not a Ganeti job as 3.0 writes it."""


def job_number(name: str) -> int | None:
    """The id in a job file's name (None for other files)."""
    match = JOB_FILE.fullmatch(name)
    return int(match.group(1)) if match else None


def parse(data: bytes) -> dict[str, Any]:
    try:
        job = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJob(f"not JSON: {exc}") from None
    if not isinstance(job, dict) or not isinstance(job.get("id"), int):
        raise BadJob("no job id")
    ops = job.get("ops")
    if not isinstance(ops, list) or not all(
        isinstance(op, dict) and isinstance(op.get("input"), dict) for op in ops
    ):
        raise BadJob(f"job {job['id']}: no list of ops")
    return job


def _ts(value: Any) -> float | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0] + value[1] / 1e6
    return None


def finished(job: dict[str, Any]) -> bool:
    return bool(job["ops"]) and all(op.get("status") in FINAL for op in job["ops"])


def status(job: dict[str, Any]) -> str:
    """The job's status as Ganeti computes it (``_QueuedJob.CalcStatus``)."""
    statuses = [op.get("status") for op in job["ops"]]
    for final in ("error", "canceled"):
        if final in statuses:
            return final
    if statuses and all(s == "success" for s in statuses):
        return "success"
    for busy in ("canceling", "running", "waiting"):
        if busy in statuses:
            return busy
    return "queued"


def instance_ops(job: dict[str, Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    """(index, op) for the job's instance opcodes, on any instance."""
    for index, op in enumerate(job["ops"]):
        opcode, name = op["input"].get("OP_ID"), op["input"].get("instance_name")
        if isinstance(opcode, str) and opcode.startswith(PREFIX) and isinstance(name, str):
            yield index, op


def server_ops(job: dict[str, Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    """(index, op) for the job's instance opcodes on server instances."""
    for index, op in instance_ops(job):
        if events.INSTANCE.fullmatch(op["input"]["instance_name"]):
            yield index, op


def message(job_id: int, op: dict[str, Any]) -> str:
    if op.get("status") == "error":
        return str(job_failure(job_id, {"opstatus": ["error"], "opresult": [op.get("result")]}))
    if op.get("status") == "canceled":
        return f"job {job_id} was canceled"
    return ""


def job_events(job: dict[str, Any], cluster: str, source: str = "eventd") -> list[Event]:
    """The events of a finished job (none for a job still running, or one not on servers)."""
    if not finished(job):
        return []
    job_id = job["id"]
    job_end = _ts(job.get("end_timestamp")) or 0.0
    out = []
    for index, op in server_ops(job):
        out.append(events.build(
            cluster=cluster, job_id=job_id, index=index, opcode=op["input"]["OP_ID"],
            instance=op["input"]["instance_name"], status=op["status"],
            end_ts=_ts(op.get("end_timestamp")) or job_end, source=source,
            message=message(job_id, op),
        ))  # fmt: skip
    return out


def running_op(job: dict[str, Any], opcode: str, instance: str) -> int | None:
    """The index of ``opcode`` on ``instance`` if it is running in ``job`` (a hook asks
    which job it runs in: Ganeti does not tell hooks).  ``instance_name`` in the file is the
    name the hooks get as ``GANETI_INSTANCE_NAME``: Ganeti writes the file when the op starts
    running, after the LU's ``CheckArguments``, which for a create lower-cases the name and,
    with the name check, resolves it (``vm1`` becomes ``vm1.example.org``)."""
    for index, op in instance_ops(job):
        if (
            op.get("status") == "running"
            and op["input"]["OP_ID"] == opcode
            and op["input"]["instance_name"] == instance
        ):
            return index
    return None


def find_job(queue: Path, opcode: str, instance: str) -> tuple[dict[str, Any], int] | None:
    """(job, opcode index) of the running ``opcode`` on ``instance``, looked for among the
    :data:`NEWEST_JOBS` newest files in ``queue`` (the job's own file, as Ganeti wrote it
    when the opcode started: its input as the LU's ``CheckArguments`` left it); None when
    no job there runs it.  Unreadable and malformed files are skipped."""
    try:
        names = os.listdir(queue)
    except OSError:
        return None
    numbers = sorted((n for name in names if (n := job_number(name)) is not None),
                     reverse=True)[:NEWEST_JOBS]  # fmt: skip
    for number in numbers:
        try:
            job = parse((queue / f"job-{number}").read_bytes())
        except (OSError, BadJob):
            continue
        index = running_op(job, opcode, instance)
        if index is not None:
            return job, index
    return None
