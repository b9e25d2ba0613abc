"""What a server costs in quota, and the commissions that charge it.

Every server holds ``cyclades.vm`` 1, ``total_cpu``/``total_ram`` for its flavor and
``disk`` for its root volume; a running one also holds ``cyclades.cpu``/``ram``.  An action
changes holdings by a delta: issued (checked against the limits) before the Ganeti job is
submitted, accepted when the job succeeds, rejected when it fails.  The server records what
it holds (``Server.charges``), so removing it releases exactly that.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.orm import Session

from snf.quota import engine as quota
from snf.quota.errors import NoCapacity, NoHolding

from ..errors import ApiError
from .models import Flavor, Server

SERVICE = "cyclades"


class Holder(Protocol):
    """What holds quota: a server, or a detached volume."""

    user_uuid: uuid.UUID
    project: uuid.UUID


MiB, GiB = 1 << 20, 1 << 30


def totals(flavor: Flavor) -> dict[str, int]:
    """What any server of ``flavor`` holds, running or not."""
    return {
        "cyclades.vm": 1,
        "cyclades.total_cpu": flavor.vcpus,
        "cyclades.total_ram": flavor.ram * MiB,
        "cyclades.disk": flavor.disk * GiB,
    }


def running(flavor: Flavor) -> dict[str, int]:
    """What a server holds while it runs, on top of its totals."""
    return {"cyclades.cpu": flavor.vcpus, "cyclades.ram": flavor.ram * MiB}


def difference(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int]:
    keys = sorted(set(new) | set(old))
    delta = {key: new.get(key, 0) - old.get(key, 0) for key in keys}
    return {key: value for key, value in delta.items() if value}


def add(held: Mapping[str, int], delta: Mapping[str, int]) -> dict[str, int]:
    out = dict(held)
    for key, value in delta.items():
        out[key] = out.get(key, 0) + value
    return {key: value for key, value in out.items() if value}


def provisions(user: uuid.UUID, project: uuid.UUID, delta: Mapping[str, int]) -> list[dict]:
    out: list[dict] = []
    for resource, quantity in sorted(delta.items()):
        out.append({"holder": f"user:{user}", "source": f"project:{project}",
                    "resource": resource, "quantity": quantity})  # fmt: skip
        out.append({"holder": f"project:{project}", "source": None,
                    "resource": resource, "quantity": quantity})  # fmt: skip
    return out


def issue(
    session: Session,
    server: Holder,
    delta: Mapping[str, int],
    *,
    name: str,
    force: bool = False,
    auto_accept: bool = False,
) -> int | None:
    """Issue the commission for ``delta`` (None when there is nothing to charge).  Over a
    limit: 413 overLimit naming the resource; no holding in the project: 403."""
    if not delta:
        return None
    try:
        return quota.issue_commission(
            session, provisions(server.user_uuid, server.project, delta), name=name[:200],
            force=force, auto_accept=auto_accept, service=SERVICE,
        )  # fmt: skip
    except NoCapacity as exc:
        raise ApiError(413, f"quota exceeded: {exc}", fault="overLimit") from None
    except NoHolding:
        raise ApiError(403, f"no quota in project {server.project} for this user") from None


def accept(session: Session, server: Server, delta: Mapping[str, int]) -> None:
    """Accept the server's pending commission; it now holds ``delta`` more."""
    if server.serial is not None:
        quota.accept(session, server.serial, service=SERVICE)
    server.charges = add(server.charges, delta)
    server.serial = None


def reject(session: Session, server: Server) -> None:
    if server.serial is not None:
        quota.reject(session, server.serial, service=SERVICE)
    server.serial = None
