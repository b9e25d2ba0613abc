"""The quota engine's public API: pure functions of a SQLAlchemy ``Session`` (no Flask).

========================  =====================================================
``ensure_user``           a user's system project, membership and base holdings
``create_project``        an ordinary project and its grants
``set_grants``            change a project's grants (a user's base quota, too)
``set_project_state``     activate, suspend, terminate a project
``add_member``            grant the project's member capacity to a user
``remove_member``         withdraw it (limits 0, usage kept)
``quotas``                ``GET /quotas`` for a user
``project_quotas``        a project's own holdings
``issue_commission``      check and charge provisions; returns the serial
``accept`` / ``reject``   settle or undo a pending commission
``resolve``               both, in bulk: ``{accepted, rejected, failed}``
``pending_commissions``   pending serials
``commission_info``       one commission and its provisions
========================  =====================================================

**Transaction rule: the caller owns the transaction.** No function here begins, commits or
rolls back the caller's transaction (the session autobegins one when needed); a function
that may fail halfway (issuing, every project change) runs inside a SAVEPOINT, so when it
raises a :class:`QuotaError` it has changed nothing and the caller may still commit other
work. Its changes take effect when the caller commits::

    with Session(engine) as session, session.begin():
        serial = engine.issue_commission(session, provisions, name="create vm1")

Commit soon after a commission: on PostgreSQL the holdings it changed stay locked until
then, and other commissions on them wait.

**Race-freedom.** Each holding changes by one conditional UPDATE whose WHERE clause is the
limit check (``usage_max + q <= limit``, ``usage_min + q >= 0``); when it matches no row,
the commission is refused (and a read tells NoHolding from NoCapacity). A check and its
change are therefore one atomic statement: on PostgreSQL (READ COMMITTED, its default) an
UPDATE that meets a row locked by another transaction waits for it and re-evaluates its
WHERE clause against the committed row; on SQLite writers never interleave, and
:func:`snf.quota.database.configure` begins every transaction IMMEDIATE so they queue
for the lock instead of failing. Every operation updates holdings in one global order
(:func:`snf.quota.provisions.lock_order`), so commissions do not deadlock each other; a
caller that makes several commissions in one transaction can still meet a deadlock on
PostgreSQL (it aborts one transaction, which the caller may retry). Resolving changes the
commission's state first, with a conditional UPDATE from ``pending``: of two concurrent
resolutions of one serial only one settles the holdings. A client key is unique per
service; of two concurrent issues with one key the second waits for the first and then
returns its serial.
"""

from __future__ import annotations

from .commissions import (
    accept,
    commission_info,
    issue_commission,
    pending_commissions,
    reject,
    resolve,
)
from .errors import (
    CommissionConflict,
    CommissionNotFound,
    InvalidData,
    NoCapacity,
    NoHolding,
    NoQuantity,
    ProjectConflict,
    ProjectNotFound,
    QuotaError,
)
from .projects import (
    add_member,
    create_project,
    ensure_user,
    remove_member,
    set_grants,
    set_project_state,
    sync_project,
)
from .usage import project_quotas, quotas

__all__ = [
    "CommissionConflict",
    "CommissionNotFound",
    "InvalidData",
    "NoCapacity",
    "NoHolding",
    "NoQuantity",
    "ProjectConflict",
    "ProjectNotFound",
    "QuotaError",
    "accept",
    "add_member",
    "commission_info",
    "create_project",
    "ensure_user",
    "issue_commission",
    "pending_commissions",
    "project_quotas",
    "quotas",
    "reject",
    "remove_member",
    "resolve",
    "set_grants",
    "set_project_state",
    "sync_project",
]
