"""Two-phase commissions: issue, then accept or reject (one by one or in bulk).

Astakos' semantics (``astakos/quotaholder_app/callpoint.py``, ``commission.py``):

- **Issue** checks and charges every provision's holding: a positive quantity raises
  ``usage_max`` (refused with :class:`NoCapacity` if ``usage_max + quantity > limit``,
  unless ``force``); a negative one lowers ``usage_min`` (refused with :class:`NoQuantity`
  if ``usage_min + quantity < 0``, even with ``force``).
- **Accept** moves the other end too (``usage_min`` up, or ``usage_max`` down): both ends
  reach the final value. **Reject** undoes the issue. ``auto_accept`` does both at once.
- A ``client_key`` makes issuing idempotent: issuing again with the same key (for the same
  service) returns the first commission's serial and charges nothing, whether that one is
  still pending or already resolved; the same key with other provisions is a
  :class:`CommissionConflict`.

Unlike Astakos, resolved commissions are kept (state accepted/rejected), so accepting an
accepted commission again succeeds without doing anything (a retried request), and
rejecting an accepted one is a :class:`CommissionConflict`.

Race-freedom: every holding is changed by one conditional UPDATE whose WHERE clause is the
check (``usage_max + q <= limit``), so the check and the change are one atomic statement on
both databases; a commission's holdings are updated in lock order; see
:mod:`snf.quota.engine` for the transaction rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snf.common.db import utcnow

from .errors import (
    CommissionConflict,
    CommissionNotFound,
    InvalidData,
    NoCapacity,
    NoHolding,
    NoQuantity,
    ProvisionDict,
)
from .models import (
    COMMISSION_ACCEPTED,
    COMMISSION_PENDING,
    COMMISSION_REJECTED,
    Commission,
    Holding,
    Provision,
)
from .provisions import (
    HoldingKey,
    Item,
    check_text,
    lock_order,
    parse_provisions,
    parse_serials,
    same_provisions,
)


def _core(session: Session) -> Connection:
    """The session's connection: the hot statements run as plain Core there, without the
    ORM's per-statement work (they touch no loaded objects)."""
    return session.connection()


def issue_commission(
    session: Session,
    provisions: Sequence[ProvisionDict],
    *,
    name: str = "",
    client_key: str | None = None,
    force: bool = False,
    auto_accept: bool = False,
    service: str = "",
) -> int:
    """Issue a commission; return its serial.

    Raises InvalidData (bad input), NoHolding, NoCapacity / NoQuantity; then nothing has
    changed. ``service`` names the issuing service (Astakos' client): pending lists and
    client keys are per service.
    """
    items = parse_provisions(provisions)
    check_text(name, "name")
    check_text(service, "service")
    check_text(client_key, "client_key", optional=True)
    if type(force) is not bool or type(auto_accept) is not bool:
        raise InvalidData("force and auto_accept must be booleans")
    if client_key is not None:
        serial = _replay(session, service, client_key, items)
        if serial is not None:
            return serial
    try:
        with session.begin_nested():  # a refused provision undoes the ones before it
            return _issue(session, items, name, client_key, service, force, auto_accept)
    except IntegrityError:
        # A concurrent issue with the same client key committed first (PostgreSQL made our
        # INSERT wait for it): that commission is the answer.
        serial = None if client_key is None else _replay(session, service, client_key, items)
        if serial is None:
            raise
        return serial


def accept(session: Session, serial: int, *, service: str | None = None) -> None:
    """Accept a pending commission (a no-op for an accepted one)."""
    _resolve_one(session, _serial(serial), accept=True, service=service)


def reject(session: Session, serial: int, *, service: str | None = None) -> None:
    """Reject a pending commission: undo its charges (a no-op for a rejected one)."""
    _resolve_one(session, _serial(serial), accept=False, service=service)


def resolve(
    session: Session,
    accept: Iterable[int] = (),
    reject: Iterable[int] = (),
    *,
    service: str | None = None,
) -> dict[str, Any]:
    """Accept and reject commissions in bulk.

    Returns ``{"accepted": [...], "rejected": [...], "failed": [(serial, error), ...]}``:
    a serial that does not exist fails with CommissionNotFound, one resolved the other way
    with CommissionConflict, one named in both lists with InvalidData (as Astakos'
    "cannot both accept and reject"). The others are resolved in serial order.
    """
    to_accept = parse_serials(accept, "accept")
    to_reject = parse_serials(reject, "reject")
    both = set(to_accept) & set(to_reject)
    actions = {s: True for s in to_accept if s not in both}
    actions.update({s: False for s in to_reject if s not in both})
    result: dict[str, Any] = {"accepted": [], "rejected": [], "failed": []}
    for serial in sorted(actions):
        try:
            _resolve_one(session, serial, accept=actions[serial], service=service)
        except (CommissionNotFound, CommissionConflict) as exc:
            result["failed"].append((serial, exc))
        else:
            result["accepted" if actions[serial] else "rejected"].append(serial)
    for serial in sorted(both):
        error = InvalidData(f"cannot both accept and reject serial {serial}")
        result["failed"].append((serial, error))
    return result


def pending_commissions(session: Session, *, service: str | None = None) -> list[int]:
    """The serials of pending commissions (of one service, if given), oldest first."""
    query = select(Commission.serial).where(Commission.state == COMMISSION_PENDING)
    if service is not None:
        query = query.where(Commission.service == service)
    return list(session.scalars(query.order_by(Commission.serial)))


def commission_info(session: Session, serial: int, *, service: str | None = None) -> dict[str, Any]:
    """``GET /commissions/<serial>``: serial, name, issue_time (ISO 8601), state, provisions."""
    serial = _serial(serial)
    c = Commission
    query = select(c.serial, c.name, c.issue_time, c.state).where(c.serial == serial)
    if service is not None:
        query = query.where(c.service == service)
    row = session.execute(query).first()
    if row is None:
        raise CommissionNotFound(serial)
    return {
        "serial": row.serial,
        "name": row.name,
        "issue_time": row.issue_time.isoformat(),
        "state": row.state,
        "provisions": _provisions(session, serial),
    }


# --- issuing ----------------------------------------------------------------------------------


def _issue(
    session: Session,
    items: list[Item],
    name: str,
    client_key: str | None,
    service: str,
    force: bool,
    settle: bool,
) -> int:
    now = utcnow()
    serial = (
        _core(session)
        .execute(
            insert(Commission)
            .values(
                service=service,
                client_key=client_key,
                name=name,
                issue_time=now,
                state=COMMISSION_ACCEPTED if settle else COMMISSION_PENDING,
                resolved_at=now if settle else None,
            )
            .returning(Commission.serial)
        )
        .scalar_one()
    )
    rows = [
        {
            "commission_serial": serial,
            "holding_id": _charge(session, item, force, settle),
            "quantity": item.quantity,
        }
        for item in items  # already in lock order
    ]
    _core(session).execute(insert(Provision), rows)
    return serial


def _charge(session: Session, item: Item, force: bool, settle: bool) -> int:
    """Charge one holding with one conditional UPDATE; return the holding's id."""
    h, q = Holding, item.quantity
    where = _key_clause(item.key)
    if q > 0:
        values = {h.usage_max: h.usage_max + q}
        if settle:
            values[h.usage_min] = h.usage_min + q
        if not force:
            where.append(h.usage_max + q <= h.limit)
    else:
        values = {h.usage_min: h.usage_min + q}
        if settle:
            values[h.usage_max] = h.usage_max + q
        where.append(h.usage_min + q >= 0)
    holding_id = (
        _core(session).execute(update(h).where(*where).values(values).returning(h.id)).scalar()
    )
    if holding_id is not None:
        return holding_id
    row = session.execute(
        select(h.limit, h.usage_min, h.usage_max).where(*_key_clause(item.key))
    ).first()
    if row is None:
        raise NoHolding(item.to_dict())
    if q > 0:
        raise NoCapacity(item.to_dict(), row.limit, row.usage_max)
    raise NoQuantity(item.to_dict(), row.limit, row.usage_min)


def _key_clause(key: HoldingKey) -> list[ColumnElement[bool]]:
    holder, source, resource = key
    h = Holding
    same_source = h.source.is_(None) if source is None else h.source == source
    return [h.holder == holder, same_source, h.resource == resource]


def _replay(session: Session, service: str, client_key: str, items: list[Item]) -> int | None:
    """The serial of the commission issued with this key, if any."""
    serial = session.scalar(
        select(Commission.serial).where(
            Commission.service == service, Commission.client_key == client_key
        )
    )
    if serial is not None and not same_provisions(items, _provisions(session, serial)):
        raise CommissionConflict(
            f"client key {client_key!r} was used for other provisions (serial {serial})"
        )
    return serial


# --- resolving --------------------------------------------------------------------------------


def _resolve_one(session: Session, serial: int, *, accept: bool, service: str | None) -> None:
    """Accept or reject one commission.

    The state change comes first, as a conditional UPDATE (pending → accepted/rejected): of
    two concurrent resolutions of one serial only one matches, so a commission is settled
    at most once. Then each holding is settled, in lock order.
    """
    target = COMMISSION_ACCEPTED if accept else COMMISSION_REJECTED
    c = Commission
    this = [c.serial == serial] if service is None else [c.serial == serial, c.service == service]
    changed = cast(
        CursorResult[Any],
        _core(session).execute(
            update(c)
            .where(*this, c.state == COMMISSION_PENDING)
            .values(state=target, resolved_at=utcnow())
        ),
    ).rowcount
    if not changed:
        state = session.scalar(select(c.state).where(*this))
        if state is None:
            raise CommissionNotFound(serial)
        if state != target:
            raise CommissionConflict(f"commission {serial} is already {state}")
        return  # resolved this way before: a retry
    h, p = Holding, Provision
    rows = (
        _core(session)
        .execute(
            select(p.holding_id, p.quantity, h.holder, h.source, h.resource)
            .join(h, p.holding_id == h.id)
            .where(p.commission_serial == serial)
        )
        .all()
    )
    for row in sorted(rows, key=lambda r: lock_order((r.holder, r.source, r.resource))):
        q = row.quantity
        if accept:  # the other end reaches the final value
            values = {h.usage_min: h.usage_min + q} if q > 0 else {h.usage_max: h.usage_max + q}
        else:  # the charged end goes back
            values = {h.usage_max: h.usage_max - q} if q > 0 else {h.usage_min: h.usage_min - q}
        _core(session).execute(update(h).where(h.id == row.holding_id).values(values))


def _provisions(session: Session, serial: int) -> list[ProvisionDict]:
    h, p = Holding, Provision
    rows = session.execute(
        select(h.holder, h.source, h.resource, p.quantity)
        .join(h, p.holding_id == h.id)
        .where(p.commission_serial == serial)
        .order_by(p.id)
    )
    return [
        {"holder": r.holder, "source": r.source, "resource": r.resource, "quantity": r.quantity}
        for r in rows
    ]


def _serial(value: object) -> int:
    if type(value) is not int:
        raise InvalidData(f"a serial must be an integer, not {value!r}")
    return value
