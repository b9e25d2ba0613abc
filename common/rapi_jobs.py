"""Reading what Ganeti's RAPI answers, job results above all: the pure half of
:mod:`snf.common.rapi`.

Nothing here does I/O. The functions take what RAPI returned (error bodies, job ids, jobs from
``GET /2/jobs/<id>``, changes from ``GET /2/jobs/<id>/wait``) and either return typed values
or raise: :class:`~snf.common.errors.RapiError` ("unexpected RAPI response ...") when the
JSON does not have the shape Ganeti 3.0 gives it (``rlib2.R_2_jobs_id``,
``rlib2.R_2_jobs_id_wait``, ``http.server._SetError``), the job errors for failed jobs.

A failed opcode's result is Ganeti's encoded exception, ``[ErrClass, args]``:

- ``["OpPrereqError", ["Instance 'x' already exists", "already_exists"]]`` (message, ecode);
- ``["OpExecError", ["Could not start instance"]]`` (message only);
- ``["HooksAbort", [[[node, script, output], ...]]]`` (a pre-hook refused the operation).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypedDict, cast

from snf.common.errors import (
    JobCanceled,
    JobFailed,
    RapiAuthError,
    RapiError,
    RapiHttpError,
    RapiNotFound,
)

JobStatus = Literal["queued", "waiting", "running", "canceling", "canceled", "success", "error"]

#: Statuses after which a job never changes again.
FINAL_STATUSES: frozenset[str] = frozenset({"success", "error", "canceled"})

#: What an error message shows of an unexpected value.
_SHOW_CHARS = 200


class Job(TypedDict, total=False):
    """``GET /2/jobs/<id>`` (``rlib2.J_FIELDS``); only ``status`` is guaranteed here."""

    id: int
    status: JobStatus
    summary: list[str]
    ops: list[dict[str, Any]]
    opstatus: list[str]
    opresult: list[Any]
    oplog: list[list[Any]]
    received_ts: list[int] | None
    start_ts: list[int] | None
    end_ts: list[int] | None


class LogEntry(NamedTuple):
    """One job log entry: Ganeti sends ``[serial, [sec, usec], type, message]``."""

    serial: int
    message: str


class WaitAnswer(NamedTuple):
    """A changed job, as ``/2/jobs/<id>/wait`` reports it."""

    job_info: list[Any]
    status: str
    log_entries: list[LogEntry]


class HooksAborted(JobFailed):
    """A Ganeti hook refused the operation (``HooksAbort``).

    ``results`` keeps Ganeti's ``(node, script, output)`` triples as they came.
    """

    def __init__(self, job_id: int, results: list[tuple[str, str, str]]) -> None:
        super().__init__(job_id, "HooksAbort", format_hooks_failure(results))
        self.results = results


def show(value: Any) -> str:
    """A short, one-line rendering of ``value`` for error messages."""
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except ValueError:
        text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def unexpected(where: str, what: str) -> RapiError:
    """The error for a RAPI answer that does not have the shape Ganeti gives it."""
    return RapiError(f"unexpected RAPI response to {where}: {what}")


def http_error(where: str, status: int, reason: str, data: bytes) -> RapiHttpError:
    """The error for an HTTP error answer; Ganeti's body is ``{code, message, explain}``."""
    message, explain = reason or f"HTTP {status}", ""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("message"), str) and body["message"]:
            message = html.unescape(body["message"])  # ganeti-rapi HTML-escapes it
        if isinstance(body.get("explain"), str):
            explain = body["explain"]
    cls = {401: RapiAuthError, 403: RapiAuthError, 404: RapiNotFound}.get(status, RapiHttpError)
    return cls(status, f"{where}: {message}", explain)


def json_answer(where: str, status: int, data: bytes) -> Any:
    """The JSON value of a successful answer."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise unexpected(where, f"HTTP {status}, not JSON: {show(data[:100])}") from None


def checked(where: str, value: Any, kind: type, of: type | None = None) -> Any:
    """``value`` if it is a ``kind`` (of ``of`` items): RAPI answers are checked, not trusted."""
    if (
        not isinstance(value, kind)
        or (isinstance(value, bool) and kind is int)
        or (of is not None and not all(isinstance(v, of) for v in value))
    ):
        what = kind.__name__ + (f" of {of.__name__}" if of else "")
        raise unexpected(where, f"expected a {what}, got {show(value)}")
    return value


def job_id_answer(where: str, value: Any) -> int:
    """A job id from a job-submitting call (Ganeti sends it as a JSON string)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise unexpected(where, f"expected a job id, got {show(value)}")


def cancel_answer(where: str, value: Any) -> bool:
    """Whether Ganeti accepted to cancel a job: it answers ``[accepted, message]``."""
    if isinstance(value, list) and value and isinstance(value[0], bool):
        return value[0]
    if isinstance(value, bool):
        return value
    raise unexpected(where, f"expected [accepted, message], got {show(value)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_hooks_failure(results: Sequence[tuple[str, str, str]]) -> str:
    """Render hook failures on one line, the way ``gnt-instance`` reports them."""
    parts = []
    for node, script, output in results:
        out = _one_line(output)
        if out:
            parts.append(f"node {node}, script {script}: {out}")
        else:
            parts.append(f"node {node}, script {script} (no output)")
    return "hooks failed: " + "; ".join(parts)


def _hooks_results(args: Any) -> list[tuple[str, str, str]] | None:
    """The triples of a ``HooksAbort`` result's args, or None if they are not triples."""
    if not (isinstance(args, list) and len(args) == 1 and isinstance(args[0], list)):
        return None
    triples = []
    for item in args[0]:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        node, script, output = item
        triples.append((str(node), str(script), "" if output is None else str(output)))
    return triples


def _is_error_result(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _failed_result(job: Mapping[str, Any]) -> Any:
    """The result of the first failed opcode of a job (None if none can be found)."""
    opresult = job.get("opresult")
    if not isinstance(opresult, list):
        return None
    opstatus = job.get("opstatus")
    if isinstance(opstatus, list):
        for status, result in zip(opstatus, opresult, strict=False):
            if status == "error":
                return result
    for result in opresult:
        if _is_error_result(result):
            return result
    return None


def job_failure(job_id: int, job: Mapping[str, Any]) -> JobFailed:
    """The exception for a job that ended in status ``error``."""
    result = _failed_result(job)
    if not _is_error_result(result):
        return JobFailed(job_id, "UnknownError", f"no error result in job: {show(result)}")
    error_class, args = result
    if error_class == "HooksAbort":
        triples = _hooks_results(args)
        if triples is not None:
            return HooksAborted(job_id, triples)
    if isinstance(args, list) and args and isinstance(args[0], str):
        ecode = args[1] if len(args) == 2 and isinstance(args[1], str) else None
        extra = args[1:] if ecode is None else []
        detail = "; ".join([args[0], *(show(a) for a in extra)])
        return JobFailed(job_id, error_class, detail, ecode)
    return JobFailed(job_id, error_class, show(args))


def parse_job(where: str, value: Any) -> Job:
    """Check that ``value`` is a job as ``GET /2/jobs/<id>`` returns it."""
    if not isinstance(value, dict) or not isinstance(value.get("status"), str):
        raise unexpected(where, f"expected a job with a status, got {show(value)}")
    return cast(Job, value)


def job_outcome(job_id: int, job: Job) -> list[Any]:
    """The ``opresult`` list of a successful job; raise for a failed or canceled one."""
    status = job["status"]
    if status == "error":
        raise job_failure(job_id, job)
    if status == "canceled":
        raise JobCanceled(job_id, f"job {job_id} was canceled")
    results = job.get("opresult")
    if status != "success" or not isinstance(results, list):
        raise unexpected(f"GET /2/jobs/{job_id}", f"job ended as {status!r}: {show(results)}")
    return results


def _log_entry(where: str, value: Any) -> LogEntry:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
    ):
        raise unexpected(
            where, f"expected a log entry [serial, time, type, text], not {show(value)}"
        )
    message = value[3]
    return LogEntry(value[0], message if isinstance(message, str) else show(message))


def parse_wait_answer(where: str, value: Any) -> WaitAnswer | None:
    """Read an answer of ``/2/jobs/<id>/wait``: None when nothing changed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise unexpected(where, f"expected job_info and log_entries, got {show(value)}")
    job_info = value.get("job_info")
    entries = value.get("log_entries")
    if not isinstance(job_info, list) or not job_info or not isinstance(job_info[0], str):
        raise unexpected(where, f"expected job_info [status], got {show(job_info)}")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise unexpected(where, f"expected a list of log entries, got {show(entries)}")
    return WaitAnswer(job_info, job_info[0], [_log_entry(where, e) for e in entries])


class JobWatch:
    """What a waiter has seen of one job, as ``/2/jobs/<id>/wait`` wants it back."""

    def __init__(self) -> None:
        self.job_info: list[Any] | None = None
        self.serial: int | None = None
        self.status = "unknown"

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def wait_body(self) -> dict[str, Any]:
        """The body of the next wait request (the fields are Ganeti's names)."""
        return {
            "fields": ["status"],
            "previous_job_info": self.job_info,
            "previous_log_serial": self.serial,
        }

    def update(self, answer: WaitAnswer) -> list[LogEntry]:
        """Take in a changed job; return the log entries not seen before, in order."""
        self.job_info, self.status = answer.job_info, answer.status
        new = []
        for entry in answer.log_entries:
            if self.serial is None or entry.serial > self.serial:
                self.serial = entry.serial
                new.append(entry)
        return new
