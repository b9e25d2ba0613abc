"""The event the node side sends to the portal when a Ganeti opcode on a server ends.

Pure: no I/O.  Both sides use it: the post-hooks and ``snf-eventd`` build events, the
portal (``POST /internal/events``) parses them.  One event per opcode, as JSON::

    {"version": 1, "id": "c1.example.test:17:0", "cluster": "c1.example.test",
     "job_id": 17, "opcode": "OP_INSTANCE_CREATE", "instance": "snf-42",
     "status": "success", "message": "", "end_ts": 1716199200.5, "source": "eventd"}

``id`` is ``<cluster>:<job id>:<opcode index>``: the hook and the daemon report the same
opcode under the same id, so the receiver may drop the second.  ``status`` is the opcode's
(a post-hook runs only on success); ``message`` says why it failed.  A receiver refuses a
``version`` it does not know (400) rather than guess.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypedDict

VERSION = 1
STATUSES = ("success", "error", "canceled")
SOURCES = ("eventd", "hook")
#: Server instances are named so by the portal; only they produce events.
INSTANCE = re.compile(r"snf-[0-9]{1,18}")
OPCODE = re.compile(r"OP_[A-Z0-9_]{1,60}")
CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
MAX_MESSAGE = 4000

Status = Literal["success", "error", "canceled"]


class Event(TypedDict):
    version: int
    id: str
    cluster: str
    job_id: int
    opcode: str
    instance: str
    status: Status
    message: str
    end_ts: float
    source: str


class BadEvent(ValueError):
    """The value is not a valid event (the message says which field and why)."""


def event_id(cluster: str, job_id: int, index: int) -> str:
    return f"{cluster}:{job_id}:{index}"


def build(
    *,
    cluster: str,
    job_id: int,
    index: int,
    opcode: str,
    instance: str,
    status: str,
    end_ts: float,
    source: str,
    message: str = "",
) -> Event:
    """A checked event (:class:`BadEvent` if a field is wrong)."""
    return validate({
        "version": VERSION, "id": event_id(cluster, job_id, index), "cluster": cluster,
        "job_id": job_id, "opcode": opcode, "instance": instance, "status": status,
        "message": message[:MAX_MESSAGE], "end_ts": end_ts, "source": source,
    })  # fmt: skip


def _field(value: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in value:
        raise BadEvent(f"event: missing field {name!r}")
    got = value[name]
    if isinstance(got, bool) or not isinstance(got, kind):
        raise BadEvent(f"event: {name} must be {_kind_name(kind)}, got {got!r:.80}")
    return got


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def validate(value: Any) -> Event:
    """Return ``value`` as an :class:`Event` if it is a valid one, else raise :class:`BadEvent`."""
    if not isinstance(value, dict):
        raise BadEvent("event: expected a JSON object")
    version = _field(value, "version", int)
    if version != VERSION:
        raise BadEvent(f"event: version {version} is not supported (this side speaks {VERSION})")
    unknown = sorted(set(value) - set(Event.__annotations__))
    if unknown:
        raise BadEvent(f"event: unknown field {unknown[0]!r}")
    cluster = _field(value, "cluster", str)
    if not CLUSTER.fullmatch(cluster):
        raise BadEvent(f"event: bad cluster name {cluster!r:.80}")
    job_id = _field(value, "job_id", int)
    if not 0 <= job_id < 1 << 62:
        raise BadEvent(f"event: bad job id {job_id}")
    if not OPCODE.fullmatch(_field(value, "opcode", str)):
        raise BadEvent(f"event: bad opcode {value['opcode']!r:.80}")
    if not INSTANCE.fullmatch(_field(value, "instance", str)):
        raise BadEvent(f"event: not a server instance: {value['instance']!r:.80}")
    if _field(value, "status", str) not in STATUSES:
        raise BadEvent(f"event: status must be one of {', '.join(STATUSES)}")
    if _field(value, "source", str) not in SOURCES:
        raise BadEvent(f"event: source must be one of {', '.join(SOURCES)}")
    if len(_field(value, "message", str)) > MAX_MESSAGE:
        raise BadEvent(f"event: message longer than {MAX_MESSAGE} characters")
    end_ts = _field(value, "end_ts", (int, float))
    if not 0 <= end_ts < 1e11:
        raise BadEvent(f"event: bad end_ts {end_ts}")
    ident = _field(value, "id", str)
    prefix = f"{cluster}:{job_id}:"
    if not (ident.startswith(prefix) and ident[len(prefix) :].isdigit()):
        raise BadEvent(f"event: id must be <cluster>:<job id>:<opcode index>, got {ident!r:.80}")
    return Event(**value)  # type: ignore[typeddict-item]


def index_of(event: Event) -> int:
    """The opcode's index in its job."""
    return int(event["id"].rsplit(":", 1)[1])


def dumps(event: Event) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


def loads(data: bytes) -> Event:
    """Parse and check one event (:class:`BadEvent` for anything else)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"event: malformed JSON: {exc}") from None
    return validate(value)


def parse_batch(body: Any) -> list[Event]:
    """A request body: one event, or ``{"events": [...]}`` (up to 1000)."""
    if isinstance(body, dict) and set(body) == {"events"}:
        items = body["events"]
        if not isinstance(items, list):
            raise BadEvent("events must be a list")
        if len(items) > 1000:
            raise BadEvent("at most 1000 events per request")
        return [validate(item) for item in items]
    return [validate(body)]
