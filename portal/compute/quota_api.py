"""``POST /internal/quota/instance``: the quota pre-hooks charge administrators' instances.

An administrator's ``gnt-instance add/modify/startup`` of an instance tagged
``snf:owner:<uuid>`` (and not made by the portal: no ``snf:commission:`` tag) runs the
quota pre-hook on the master, which asks here, with the node's service token, before
Ganeti does anything.  The answer is final: the commission for the difference between what
the instance should hold and what it holds is issued **and accepted** at once (200), or
refused (413 overLimit naming the resource, its limit and usage; the hook then aborts the
operation).  Accepting at once keeps nothing pending: a pre-hook cannot know whether the
operation will succeed, and no one else would resolve a pending commission for an
instance the portal does not manage.  If the operation then fails, the instance holds what
it asked for until its next hook call, which charges only the difference (a retried add
charges nothing more); a remove releases everything.

**Dry runs.** Ganeti runs the pre-hooks of ``gnt-instance ... --dry-run`` too, and then
does nothing; the hook then sends ``"dry_run": true``.  Such a request goes the same way,
inside a SAVEPOINT that is rolled back at the end: the very statements that would charge
check the limits (413 as for a real run), and nothing stays.  The answer says
``"dry_run": true``, ``"charged": {}``, what a real run would charge (``would_charge``) and
what the instance still holds.

**The ledger.** What an instance holds is the sum of its accepted commissions: each one is
issued by service :data:`SERVICE` under the instance's name (``instance <cluster>/<name>``),
so the quota tables themselves are the durable record, in the same transaction as the
charge, and no table of our own is needed.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from snf.quota import engine as quota
from snf.quota.errors import NoCapacity, NoHolding, NoQuantity
from snf.quota.models import COMMISSION_ACCEPTED, Commission, Holding, Provision

from ..errors import ApiError
from ..extensions import db
from ..identity.models import User
from ..jsonapi import json_body, principal
from . import instance_charges as ic

bp = Blueprint("internal_quota", __name__)
#: The commissions of administrators' instances (the portal's own servers use "cyclades").
SERVICE = "ganeti-hooks"


@bp.post("/internal/quota/instance")
def charge_instance() -> Response:
    if not principal().is_service:
        raise ApiError(403, "only services may charge instances")
    request = ic.parse(json_body())
    result = charge(db.session, request)
    db.session.commit()
    return jsonify(result)


def charge(session: Session, request: ic.InstanceRequest) -> dict[str, object]:
    """Charge (or release) the difference; the caller commits.  ApiError 404 for an unknown
    owner, 403 for a project the owner has no quota in, 413 over a limit.  A dry run does
    all of it inside a SAVEPOINT that it rolls back: it fails alike and changes nothing."""
    if session.get(User, request.owner) is None:
        raise ApiError(404, f"user {request.owner} not found")
    trial = session.begin_nested() if request.dry_run else None
    try:
        if request.project == request.owner:
            quota.ensure_user(session, request.owner)
        before = held(session, request.ledger)
        delta = ic.difference(ic.target(request), before)
        serial = None
        if delta:
            try:
                serial = quota.issue_commission(session, ic.provisions(delta),
                                                name=request.ledger, auto_accept=True,
                                                service=SERVICE)  # fmt: skip
            except NoCapacity as exc:
                raise ApiError(413, over_limit(exc, request), fault="overLimit") from None
            except NoHolding:
                raise ApiError(403, f"user {request.owner} has no quota in project "
                                    f"{request.project}") from None  # fmt: skip
    finally:
        if trial is not None:
            trial.rollback()
    head = {"instance": request.instance, "cluster": request.cluster}
    if request.dry_run:  # nothing charged: what a real run would charge, what it still holds
        return head | {"dry_run": True, "serial": None, "charged": {}, "would_charge":
                       ic.by_resource(delta), "holds": ic.by_resource(before)}  # fmt: skip
    return head | {"serial": serial, "charged": ic.by_resource(delta),
                   "holds": ic.by_resource(ic.target(request))}  # fmt: skip


def held(session: Session, ledger: str) -> ic.Charges:
    """What the instance named ``ledger`` holds: its accepted commissions, summed."""
    rows = session.execute(
        select(Holding.holder, Holding.source, Holding.resource, func.sum(Provision.quantity))
        .join(Provision, Provision.holding_id == Holding.id)
        .join(Commission, Commission.serial == Provision.commission_serial)
        .where(Commission.service == SERVICE, Commission.name == ledger,
               Commission.state == COMMISSION_ACCEPTED, Holding.holder.startswith("user:"))
        .group_by(Holding.holder, Holding.source, Holding.resource)
    )  # fmt: skip
    out: ic.Charges = {}
    for holder, source, resource, total in rows:
        if total and source and source.startswith("project:"):
            key = (uuid.UUID(holder[5:]), uuid.UUID(source[8:]), resource)
            out[key] = int(total)
    return out


def over_limit(exc: NoCapacity, request: ic.InstanceRequest) -> str:
    if isinstance(exc, NoQuantity):
        return str(exc)
    asked = exc.provision["quantity"]
    unit = (lambda n: f"{n / ic.MiB:g} MiB") if exc.resource.endswith(("ram", "disk")) else str
    return (f"{exc.resource} over quota for user {request.owner}: limit {unit(exc.limit)}, "
            f"usage {unit(exc.usage)}, asked for {unit(asked)}")  # fmt: skip


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
