"""``POST /internal/events``: the end of Ganeti opcodes on servers, reported by the nodes
(the post-hooks and ``snf-eventd``, through their spool; :mod:`snf.hooks.events` is the
format).  Service tokens only.

The body is one event or ``{"events": [...]}``; the answer is 200 with an outcome per event
(``applied``, ``stale``, ``unknown``).  An event ends its server's action through
:func:`.lifecycle.finish` when its job is the action's job; anything else changes nothing:
a duplicate (the hook and the daemon report each opcode; the spool may send twice), an event
for an older job (the server's job id only grows, so a late event never undoes a newer state),
or one for an instance the portal does not know.  Events are applied in job order, and the
server's row is locked first (an UPDATE, then the read), so two deliveries of the same event
at once finish the action once.  The reconciler stays the safety net for lost events.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy import update
from sqlalchemy.orm import Session

from snf.hooks import events
from snf.hooks.events import Event

from ..errors import ApiError
from ..extensions import db
from ..jsonapi import json_body, principal
from . import lifecycle
from .models import Server

log = logging.getLogger(__name__)
bp = Blueprint("internal_events", __name__)


def apply(session: Session, event: Event) -> str:
    """Apply one event; its outcome.  The caller commits."""
    server_id = int(event["instance"].removeprefix("snf-"))
    # Take the row's write lock before reading it (SQLite and PostgreSQL alike).
    session.execute(update(Server).where(Server.id == server_id).values(updated=Server.updated))
    server = session.get(Server, server_id, populate_existing=True)
    where = f"{event['cluster']} job {event['job_id']} {event['opcode']} {event['instance']}"
    if server is None:
        log.warning("event %s (%s): no such server: ignored", event["id"], where)
        return "unknown"
    if not lifecycle.finish(session, server, event["job_id"], event["status"], event["message"]):
        log.debug("event %s (%s, %s): stale or duplicate", event["id"], where, event["source"])
        return "stale"
    log.info("event %s (%s, %s): server %s is %s", event["id"], where, event["source"],
             server.id, server.operstate)  # fmt: skip
    return "applied"


@bp.post("/internal/events")
def receive() -> Response:
    if not principal().is_service:
        raise ApiError(403, "events are for service accounts (the Ganeti nodes) only")
    try:
        batch = events.parse_batch(json_body())
    except events.BadEvent as exc:
        raise ApiError(400, str(exc)) from None
    ordered = sorted(batch, key=lambda e: (e["job_id"], events.index_of(e)))
    outcomes = {}
    for event in ordered:
        outcomes[event["id"]] = apply(db.session, event)
        db.session.commit()
    return jsonify(results=[{"id": e["id"], "outcome": outcomes[e["id"]]} for e in batch])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
