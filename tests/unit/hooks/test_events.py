"""The event format (snf.hooks.events): built, checked, parsed alike on both sides."""

from __future__ import annotations

from typing import Any

import pytest

from snf.hooks import events


def event(**fields: Any) -> events.Event:
    base = dict(cluster="c1.example.test", job_id=17, index=0, opcode="OP_INSTANCE_CREATE",
                instance="snf-42", status="success", end_ts=1716199200.5,
                source="eventd")  # fmt: skip
    return events.build(**(base | fields))


def test_build_round_trip() -> None:
    built = event(status="error", message="job 17 failed: OpExecError: no room")
    assert built["id"] == "c1.example.test:17:0" and built["version"] == 1
    assert events.loads(events.dumps(built)) == built
    assert events.index_of(event(index=3)) == 3
    assert events.parse_batch(built) == [built]
    assert events.parse_batch({"events": [built, built]}) == [built, built]


def test_long_messages_are_cut() -> None:
    assert len(event(message="x" * 10_000)["message"]) == events.MAX_MESSAGE


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"version": 2}, "version 2"),
        ({"version": True}, "version must be int"),
        ({"instance": "vm1.example.test"}, "not a server instance"),
        ({"instance": "snf-1; rm -rf /"}, "not a server instance"),
        ({"status": "running"}, "status must be"),
        ({"source": "someone"}, "source must be"),
        ({"job_id": -1}, "bad job id"),
        ({"job_id": "17"}, "job_id must be int"),
        ({"opcode": "op_instance_create"}, "bad opcode"),
        ({"cluster": "c1 example"}, "bad cluster"),
        ({"id": "c1.example.test:18:0"}, "id must be"),
        ({"end_ts": "yesterday"}, "end_ts must be"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_bad_events_are_refused(change: dict[str, Any], why: str) -> None:
    value = dict(event()) | change
    with pytest.raises(events.BadEvent, match=why):
        events.validate(value)


def test_missing_fields_and_bad_bodies() -> None:
    value = dict(event())
    del value["message"]
    with pytest.raises(events.BadEvent, match="missing field 'message'"):
        events.validate(value)
    for body in ([], "x", {"events": "x"}, {"events": [{}]}):
        with pytest.raises(events.BadEvent):
            events.parse_batch(body)
    with pytest.raises(events.BadEvent, match="malformed JSON"):
        events.loads(b"{")
