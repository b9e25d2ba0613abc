"""Who may read or write what.

The owner of an account may do anything in it.  Anyone else may read (or write) an object
whose sharing, or the sharing of the nearest ancestor "directory" object that has one
(``a/b`` for ``a/b/c``), names them: their UUID, a group of the owner's that holds them
(``owner:group``), or ``*`` (every user).  Write implies read.  Public objects are read
through their own URL only.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import Forbidden
from .models import Account, Container, Object
from .sharing import allows


def _groups(session: Session) -> object:
    """A lookup of ``owner:group`` members for one request (each account read once)."""

    @cache
    def members(owner: str, group: str) -> Collection[str]:
        try:
            account = session.get(Account, uuid.UUID(owner))
        except ValueError:
            return ()
        if account is None:
            return ()
        return frozenset(account.groups.get(group, ()))

    return members


def governing(session: Session, container: Container, name: str) -> Object | None:
    """The object whose sharing applies to ``name``: itself or its nearest shared ancestor."""
    paths = [name]
    parts = name.rstrip("/").split("/")
    paths += ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
    rows = session.scalars(
        select(Object).where(
            Object.container_id == container.id, Object.name.in_(paths), Object.shared.is_(True)
        )
    ).all()
    by_name = {o.name: o for o in rows}
    return next((by_name[p] for p in paths if p in by_name), None)


def may(
    session: Session, user: uuid.UUID | None, container: Container, name: str, action: str
) -> bool:
    """May ``user`` read or write object ``name`` of ``container``?"""
    if user is not None and user == container.account:
        return True
    if user is None:
        return False
    source = governing(session, container, name)
    if source is None:
        return False
    return allows(source.sharing, str(user), _groups(session), action)  # type: ignore[arg-type]


def check(
    session: Session, user: uuid.UUID | None, container: Container, name: str, action: str
) -> None:
    if not may(session, user, container, name, action):
        raise Forbidden(f"you may not {action} {container.name}/{name}")


def readable_names(session: Session, user: uuid.UUID, container: Container) -> list[str]:
    """The shared paths of another account's container that ``user`` may read (an object
    name, or a directory whose objects are readable)."""
    groups = _groups(session)
    rows = session.execute(
        select(Object.name, Object.sharing).where(
            Object.container_id == container.id, Object.shared.is_(True)
        )
    )
    return [name for name, perms in rows if allows(perms, str(user), groups, "read")]  # type: ignore[arg-type]


def is_readable(name: str, shared_paths: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p.rstrip("/") + "/") for p in shared_paths)


def sharing_accounts(session: Session, user: uuid.UUID) -> list[uuid.UUID]:
    """Accounts that share at least one object with ``user``, in UUID order."""
    groups = _groups(session)
    rows = session.execute(
        select(Container.account, Object.sharing)
        .join(Object, Object.container_id == Container.id)
        .where(Object.shared.is_(True), Container.account != user)
    )
    found = {acct for acct, perms in rows if allows(perms, str(user), groups, "read")}  # type: ignore[arg-type]
    return sorted(found, key=str)


def shared_containers(session: Session, user: uuid.UUID, account: uuid.UUID) -> list[Container]:
    """``account``'s containers holding something ``user`` may read."""
    containers = session.scalars(
        select(Container).where(Container.account == account).order_by(Container.name)
    ).all()
    return [c for c in containers if readable_names(session, user, c)]
