"""Accounts and containers, their statistics, and listings (prefix, delimiter, marker,
limit, path and meta filters) in Swift's byte order of names."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from snf.quota import engine as quota

from .errors import BadRequest, ContainerNotEmpty, ItemNotFound
from .models import Account, Container, Object, Version

#: Sorts after every other character: ``name < prefix + TOP`` selects names with ``prefix``.
TOP = "\U0010ffff"


def account(session: Session, owner: uuid.UUID, *, create: bool = False) -> Account | None:
    """The account (created for its owner on first use, with the owner's quota holdings)."""
    found = session.get(Account, owner)
    if found is None and create:
        quota.ensure_user(session, owner)
        found = Account(uuid=owner, meta={}, groups={}, mtime=time.time())
        session.add(found)
        session.flush()
    return found


def get(session: Session, owner: uuid.UUID, name: str) -> Container:
    found = session.scalars(
        select(Container).where(Container.account == owner, Container.name == name)
    ).first()
    if found is None:
        raise ItemNotFound(f"container {name} does not exist")
    return found


def create(
    session: Session,
    owner: uuid.UUID,
    name: str,
    *,
    versioning: str,
    quota_bytes: int = 0,
    project: uuid.UUID | None = None,
    meta: dict[str, str] | None = None,
) -> Container:
    account(session, owner, create=True)
    found = Container(
        account=owner,
        name=name,
        meta=meta or {},
        quota=quota_bytes,
        versioning=versioning,
        project=project,
        mtime=time.time(),
    )
    session.add(found)
    session.flush()
    return found


def list_containers(session: Session, owner: uuid.UUID) -> list[Container]:
    return list(
        session.scalars(
            select(Container).where(Container.account == owner).order_by(Container.name)
        )
    )


@dataclass(frozen=True)
class Stats:
    objects: int
    bytes: int
    mtime: float


def container_stats(session: Session, container: Container) -> Stats:
    """Current objects and the bytes all kept versions take (what the owner is charged)."""
    count = session.scalar(
        select(func.count())
        .select_from(Object)
        .where(Object.container_id == container.id, Object.version_id.is_not(None))
    )
    size, latest = session.execute(
        select(func.coalesce(func.sum(Version.size), 0), func.max(Version.mtime)).where(
            Version.container_id == container.id, Version.kind == "data"
        )
    ).one()
    return Stats(int(count or 0), int(size or 0), max(container.mtime, latest or 0.0))


def account_stats(session: Session, owner: uuid.UUID) -> tuple[int, int, int]:
    """(containers, objects, bytes) of an account."""
    containers = session.scalar(
        select(func.count()).select_from(Container).where(Container.account == owner)
    )
    objects = session.scalar(
        select(func.count())
        .select_from(Object)
        .join(Container, Container.id == Object.container_id)
        .where(Container.account == owner, Object.version_id.is_not(None))
    )
    size = session.scalar(
        select(func.coalesce(func.sum(Version.size), 0))
        .join(Container, Container.id == Version.container_id)
        .where(Container.account == owner, Version.kind == "data")
    )
    return int(containers or 0), int(objects or 0), int(size or 0)


def delete(session: Session, container: Container) -> None:
    has = session.scalar(select(Object.id).where(Object.container_id == container.id).limit(1))
    if has is not None:
        raise ContainerNotEmpty(f"container {container.name} is not empty")
    session.delete(container)


# --- listings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One listing entry: an object (with its current version) or a ``subdir``."""

    name: str
    obj: Object | None = None
    version: Version | None = None

    @property
    def is_subdir(self) -> bool:
        return self.obj is None


def list_objects(
    session: Session,
    container: Container,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    marker: str | None = None,
    end_marker: str | None = None,
    limit: int,
    keep: Callable[[Object, Version], bool] | None = None,
) -> list[Listed]:
    """Up to ``limit`` entries after ``marker``: objects whose name starts with ``prefix``;
    with a ``delimiter``, names continuing past it after the prefix are rolled up into one
    ``subdir`` entry each.  ``keep`` filters objects (meta filters, shared, readable)."""
    if delimiter is not None and len(delimiter) != 1:
        raise BadRequest("delimiter must be one character")
    out: list[Listed] = []
    after = marker or ""
    for obj, version in _scan(session, container, prefix, after, end_marker):
        if len(out) >= limit:
            break
        if delimiter is not None:
            cut = obj.name.find(delimiter, len(prefix))
            if cut >= 0:
                subdir = obj.name[: cut + 1]
                if subdir > after and (not out or out[-1].name != subdir):
                    out.append(Listed(subdir))
                continue
        if keep is None or keep(obj, version):
            out.append(Listed(obj.name, obj, version))
    return out


def _scan(
    session: Session,
    container: Container,
    prefix: str,
    after: str,
    end_marker: str | None,
    batch: int = 1000,
) -> Iterator[tuple[Object, Version]]:
    while True:
        query = (
            select(Object, Version)
            .join(Version, Version.id == Object.version_id)
            .where(Object.container_id == container.id, Object.name > after)
            .order_by(Object.name)
            .limit(batch)
        )
        if prefix:
            query = query.where(Object.name >= prefix, Object.name < prefix + TOP)
        if end_marker:
            query = query.where(Object.name < end_marker)
        rows = session.execute(query).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0].name


# --- meta filters --------------------------------------------------------------------------------

_OPS = ("!=", "<=", ">=", "=", "<", ">")


def parse_meta_filter(value: str) -> list[tuple[str, str | None, str | None]]:
    """``K1,!K2,K=v,K>=v``: (key, operator or None, value) conditions, all of which must hold;
    ``!K`` is (K, "!", None): K must be absent."""
    conds: list[tuple[str, str | None, str | None]] = []
    for term in (t.strip() for t in value.split(",")):
        if not term:
            continue
        if term.startswith("!"):
            conds.append((term[1:].strip().lower(), "!", None))
            continue
        for op in _OPS:
            key, sep, want = term.partition(op)
            if sep:
                conds.append((key.strip().lower(), op, want.strip()))
                break
        else:
            conds.append((term.lower(), None, None))
    if any(not key for key, _, _ in conds):
        raise BadRequest(f"bad meta filter {value!r}")
    return conds


def meta_matches(conds: list[tuple[str, str | None, str | None]], meta: dict[str, Any]) -> bool:
    for key, op, want in conds:
        have = meta.get(key)
        if op == "!":
            if have is not None:
                return False
            continue
        if have is None:
            return False
        if op is None or want is None:
            continue
        if not {
            "=": have == want,
            "!=": have != want,
            "<": have < want,
            ">": have > want,
            "<=": have <= want,
            ">=": have >= want,
        }[op]:
            return False
    return True
