"""Charging stored bytes to ``pithos.diskspace``, and the container quota policy.

Every change in the bytes an account stores (a new version, a version dropped, an object
deleted) is one commission, issued and accepted in the transaction that makes the change:
either both commit or neither does, so usage always equals what is stored.  The container
owner pays, in the container's project (by default the owner's base project), whoever
wrote the object.  Each account is charged for its own logical bytes, however many
accounts store the same blocks.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from snf.quota import engine as quota
from snf.quota.errors import NoCapacity

from .errors import OverQuota
from .models import Container, Version

RESOURCE = "pithos.diskspace"
SERVICE = "pithos"


def container_bytes(session: Session, container_id: int) -> int:
    """Bytes stored in a container, every kept version included."""
    total = session.scalar(
        select(func.coalesce(func.sum(Version.size), 0)).where(Version.container_id == container_id)
    )
    return int(total or 0)


def charge(session: Session, container: Container, delta: int, *, name: str) -> None:
    """Charge (or, negative, release) ``delta`` bytes; OverQuota if it does not fit."""
    if delta == 0:
        return
    if delta > 0 and container.quota:
        used = container_bytes(session, container.id)
        if used + delta > container.quota:
            raise OverQuota(
                f"container {container.name} holds {used} of its {container.quota} bytes: "
                f"no room for {delta} more"
            )
    owner = str(container.account)
    project = str(container.project or owner)
    provisions = [
        {
            "holder": f"user:{owner}",
            "source": f"project:{project}",
            "resource": RESOURCE,
            "quantity": delta,
        },
        {"holder": f"project:{project}", "source": None, "resource": RESOURCE, "quantity": delta},
    ]
    try:
        quota.issue_commission(
            session, provisions, name=name[:200], auto_accept=True, service=SERVICE
        )
    except NoCapacity as exc:
        if delta < 0:
            raise
        raise OverQuota(
            f"over quota: {RESOURCE} limit {exc.limit}, usage {exc.usage}, "
            f"this needs {delta} more bytes"
        ) from None


def room(session: Session, owner: uuid.UUID, container: Container) -> int | None:
    """How many more bytes the container may take now (None: no limit known), for refusing
    an upload with a known length before storing anything."""
    project = str(container.project or owner)
    quotas = quota.quotas(session, owner)
    holding = quotas.get(project, {}).get(RESOURCE)
    left: int | None = None
    if holding is not None:
        # usage already counts pending charges (it is the holding's upper bound)
        left = max(
            0,
            min(
                holding["limit"] - holding["usage"],
                holding["project_limit"] - holding["project_usage"],
            ),
        )
    if container.quota:
        own = max(0, container.quota - container_bytes(session, container.id))
        left = own if left is None else min(left, own)
    return left
