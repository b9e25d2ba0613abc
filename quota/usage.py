"""What users and projects hold: the account API's quota views, read from holdings.

As Astakos reports them (``astakos/im/quotas.py``): ``usage`` is ``usage_max`` (settled plus
pending increases, so a client sees what it may still ask for as ``limit - usage``) and
``pending`` is ``usage_max - usage_min``; the ``project_*`` keys are the project's own
holding, shared by all its members.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import resources
from .models import MEMBER_ACTIVE_STATES, Holding, Membership
from .provisions import PROJECT, parse_uuid, project_ref, user_ref

#: ``{project_uuid: {resource: {limit, usage, pending, project_limit, ...}}}``
Quotas = dict[str, dict[str, dict[str, int]]]

_FIELDS = ("limit", "usage", "pending")


def quotas(session: Session, user_uuid: uuid.UUID | str, *, visible_only: bool = True) -> Quotas:
    """``GET /quotas`` for one user: every project they are an active member of (their
    system project included), every resource (API-visible ones only, unless told).

    A user the engine does not know gets ``{}``.
    """
    uid = parse_uuid(user_uuid, "user")
    projects = list(
        session.scalars(
            select(Membership.project_id)
            .where(Membership.user_uuid == uid, Membership.state.in_(MEMBER_ACTIVE_STATES))
            .order_by(Membership.id)
        )
    )
    if not projects:
        return {}
    names = _resource_names(visible_only)
    refs = [project_ref(p) for p in projects]
    h = Holding
    mine = session.execute(
        select(h.source, h.resource, h.limit, h.usage_min, h.usage_max).where(
            h.holder == user_ref(uid), h.source.in_(refs), h.resource.in_(names)
        )
    )
    shared = session.execute(
        select(h.holder, h.resource, h.limit, h.usage_min, h.usage_max).where(
            h.holder.in_(refs), h.source.is_(None), h.resource.in_(names)
        )
    )
    member = {(r.source, r.resource): r for r in mine}
    project = {(r.holder, r.resource): r for r in shared}
    result: Quotas = {}
    for ref in refs:
        entry = {}
        for name in names:
            m, p = member.get((ref, name)), project.get((ref, name))
            if m is not None or p is not None:
                entry[name] = {**_view(m, ""), **_view(p, "project_")}
        result[ref[len(PROJECT) :]] = entry
    return result


def project_quotas(
    session: Session, project_id: uuid.UUID | str, *, visible_only: bool = True
) -> Quotas:
    """``GET /service_project_quotas?project=``: the project's own holdings,
    ``{project_uuid: {resource: {project_limit, project_usage, project_pending}}}``;
    ``{}`` for a project without holdings."""
    pid = parse_uuid(project_id, "project")
    names = _resource_names(visible_only)
    h = Holding
    rows = {
        r.resource: r
        for r in session.execute(
            select(h.resource, h.limit, h.usage_min, h.usage_max).where(
                h.holder == project_ref(pid), h.source.is_(None), h.resource.in_(names)
            )
        )
    }
    if not rows:
        return {}
    return {str(pid): {name: _view(rows[name], "project_") for name in names if name in rows}}


def _resource_names(visible_only: bool) -> list[str]:
    return resources.api_visible_names() if visible_only else list(resources.RESOURCES)


def _view(row: Any, prefix: str) -> dict[str, int]:
    if row is None:
        return {prefix + field: 0 for field in _FIELDS}
    return {
        prefix + "limit": row.limit,
        prefix + "usage": row.usage_max,
        prefix + "pending": row.usage_max - row.usage_min,
    }
