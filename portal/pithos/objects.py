"""Objects and their versions: creating a version from stored blocks, reading, copying,
deleting.  Blocks go to the store first; then one transaction adds the version, writes its
read-only map, charges the quota and commits, so no committed version ever names a block
that is not stored.  A crash between the map and the commit leaves a map without a row,
removed by :func:`reconcile.orphan_maps`; maps of dropped versions are deleted after the
commit that drops them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snf.archipelago.hashing import top_hash
from snf.archipelago.store import Store
from snf.common.errors import Conflict

from . import accounting, content
from .errors import BadRequest, ItemNotFound
from .models import Container, Object, Version

log = logging.getLogger("snf.portal.pithos")


@dataclass
class NewVersion:
    """What a write puts into a new version (everything but where it goes)."""

    hashes: list[str]
    size: int
    md5: str | None
    content_type: str
    meta: dict[str, str] = field(default_factory=dict)
    kind: str = "data"
    manifest: str | None = None
    #: Keep this UUID (a move, a partial update); None: the existing object's or a new one.
    uuid: uuid.UUID | None = None
    sharing: dict[str, Any] | None = None
    #: For a change computed from the current version: the version it was computed from
    #: (a concurrent write in between is a Conflict, not a lost update).
    based_on: int | None = None


def find(session: Session, container: Container, name: str, *, lock: bool = False) -> Object:
    query = select(Object).where(Object.container_id == container.id, Object.name == name)
    if lock:
        query = query.with_for_update()
    obj = session.scalars(query).first()
    if obj is None or obj.version_id is None:
        raise ItemNotFound(f"object {container.name}/{name} does not exist")
    return obj


def current(session: Session, obj: Object) -> Version:
    version = session.get(Version, obj.version_id)
    if version is None:
        raise ItemNotFound(f"object {obj.name} has no current version")
    return version


def version_of(session: Session, obj: Object, version_id: str | None) -> Version:
    """The current version, or the one named by ``?version=``."""
    if version_id is None:
        return current(session, obj)
    try:
        vid = int(version_id)
    except ValueError:
        raise BadRequest(f"version must be a version number, not {version_id!r}") from None
    version = session.get(Version, vid)
    if version is None or version.object_id != obj.id:
        raise ItemNotFound(f"object {obj.name} has no version {version_id}")
    return version


def hashes(store: Store, version: Version) -> list[str]:
    return content.read_map(store, version.map_name)


def charged(version: Version) -> int:
    """Bytes a version is charged for (manifests hold no blocks of their own)."""
    return version.size if version.kind == "data" else 0


def put(
    session: Session,
    store: Store,
    container: Container,
    name: str,
    new: NewVersion,
    user: uuid.UUID,
) -> Version:
    """Make ``new`` the current version of ``container/name`` and commit."""
    dropped: list[str] = []
    written: str | None = None
    try:
        obj = _object_for_write(session, container, name, new)
        if new.based_on is not None and obj.version_id != new.based_on:
            raise Conflict(f"{container.name}/{name} changed while this update was prepared")
        previous = session.get(Version, obj.version_id) if obj.version_id else None
        delta = new.size if new.kind == "data" else 0
        if previous is not None:
            previous.current = False
            if container.versioning == "none":
                delta -= charged(previous)
                dropped.append(previous.map_name)
                session.delete(previous)
        version = Version(
            object_id=obj.id,
            container_id=container.id,
            current=True,
            size=new.size,
            hash=top_hash(new.hashes),
            md5=new.md5,
            content_type=new.content_type,
            meta=new.meta,
            mtime=time.time(),
            modified_by=user,
            kind=new.kind,
            manifest=new.manifest,
            map_name="-",
        )
        session.add(version)
        session.flush()
        version.map_name = content.map_name(str(obj.uuid), version.id)
        if new.kind == "data":
            content.write_map(store, version.map_name, new.hashes, new.size)
        else:  # a manifest: its segments have maps of their own
            content.write_map(store, version.map_name, [], 0)
        written = version.map_name
        obj.version_id = version.id
        accounting.charge(session, container, delta, name=f"pithos put {container.name}/{name}")
        session.commit()
    except BaseException:
        session.rollback()
        if written is not None:
            _delete_maps(store, [written])
        raise
    _delete_maps(store, dropped)
    return version


def _object_for_write(session: Session, container: Container, name: str, new: NewVersion) -> Object:
    """The object row to add a version to (created, or locked against concurrent writers)."""
    obj = session.scalars(
        select(Object)
        .where(Object.container_id == container.id, Object.name == name)
        .with_for_update()
    ).first()
    if obj is None:
        obj = Object(
            container_id=container.id,
            name=name,
            uuid=new.uuid or uuid.uuid4(),
            sharing=new.sharing or {},
            shared=bool(new.sharing),
        )
        try:
            with session.begin_nested():
                session.add(obj)
        except IntegrityError:  # created concurrently: add a version to that one
            obj = session.scalars(
                select(Object)
                .where(Object.container_id == container.id, Object.name == name)
                .with_for_update()
            ).one()
    elif new.uuid is not None:
        obj.uuid = new.uuid
    if new.sharing is not None and obj.sharing != new.sharing:
        obj.sharing, obj.shared = new.sharing, bool(new.sharing)
    return obj


def delete(session: Session, store: Store, container: Container, obj: Object) -> None:
    """Delete an object with all its versions and release their bytes."""
    versions = session.scalars(select(Version).where(Version.object_id == obj.id)).all()
    maps = [v.map_name for v in versions]
    try:
        freed = sum(charged(v) for v in versions)
        session.execute(sql_delete(Version).where(Version.object_id == obj.id))
        session.execute(sql_delete(Object).where(Object.id == obj.id))
        session.expunge(obj)
        accounting.charge(session, container, -freed, name=f"pithos delete {container.name}")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    _delete_maps(store, maps)


def _delete_maps(store: Store, names: Sequence[str]) -> None:
    for name in names:
        try:
            store.delete_map(name)
        except Exception:  # the reconciler removes what is left
            log.warning("could not delete map %s; `snf-portal pithos reconcile` will", name)


def versions(session: Session, obj: Object) -> list[list[Any]]:
    rows = session.execute(
        select(Version.id, Version.mtime).where(Version.object_id == obj.id).order_by(Version.id)
    )
    return [[vid, mtime] for vid, mtime in rows]


def new_public_token() -> str:
    return secrets.token_urlsafe(12)


def set_public(obj: Object, public: bool) -> None:
    if public and obj.public_token is None:
        obj.public_token = new_public_token()
    elif not public:
        obj.public_token = None


# --- content of a version, including manifests -----------------------------------------------


@dataclass(frozen=True)
class Segment:
    hashes: list[str]
    size: int


@dataclass(frozen=True)
class Content:
    """What a GET serves: the segments one after another (one for a plain object)."""

    segments: list[Segment]
    #: The MD5 Swift clients compare with (a manifest's: of its segments' MD5s).
    etag: str | None

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def read(self, store: Store, start: int, stop: int) -> Iterator[bytes]:
        offset = 0
        for seg in self.segments:
            lo, hi = max(start, offset), min(stop, offset + seg.size)
            if lo < hi:
                yield from content.iter_range(store, seg.hashes, lo - offset, hi - offset)
            offset += seg.size
            if offset >= stop:
                break


def open_content(session: Session, store: Store, container: Container, version: Version) -> Content:
    if version.kind == "data":
        return Content([Segment(hashes(store, version), version.size)], version.md5)
    parts = manifest_parts(session, container, version)
    segments = [Segment(hashes(store, v), v.size) for v in parts]
    digest = _md5_of_md5s(v.md5 or "" for v in parts)
    return Content(segments, digest)


def manifest_parts(session: Session, container: Container, version: Version) -> list[Version]:
    """The current versions of a manifest's segments, in order (in the owner's account)."""
    assert version.manifest is not None
    if version.kind == "dlo":
        cname, _, prefix = version.manifest.partition("/")
        seg_container = _sibling(session, container, cname)
        if seg_container is None:
            return []
        rows = session.execute(
            select(Version)
            .join(Object, Object.version_id == Version.id)
            .where(
                Object.container_id == seg_container.id,
                Object.name >= prefix,
                Object.name < prefix + "\U0010ffff",
            )
            .order_by(Object.name)
        )
        return [v for (v,) in rows]
    parts = []
    for item in json.loads(version.manifest):
        cname, _, oname = item["name"].lstrip("/").partition("/")
        seg_container = _sibling(session, container, cname)
        obj = (
            None
            if seg_container is None
            else session.scalars(
                select(Object).where(Object.container_id == seg_container.id, Object.name == oname)
            ).first()
        )
        if obj is None or obj.version_id is None:
            raise ItemNotFound(f"segment {item['name']} of this manifest is gone")
        parts.append(current(session, obj))
    return parts


def _sibling(session: Session, container: Container, name: str) -> Container | None:
    return session.scalars(
        select(Container).where(Container.account == container.account, Container.name == name)
    ).first()


def _md5_of_md5s(md5s: Iterator[str]) -> str:
    digest = hashlib.md5()
    for value in md5s:
        digest.update(value.encode())
    return digest.hexdigest()


def etag_of(session: Session, container: Container, version: Version) -> str | None:
    """The ETag header's value (unquoted): the MD5, or for a manifest the MD5 of its parts'."""
    if version.kind == "data":
        return version.md5
    return _md5_of_md5s(v.md5 or "" for v in manifest_parts(session, container, version))
