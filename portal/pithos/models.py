"""The object store's tables: accounts, containers, objects and their versions.

An account is a user (its UUID); a container belongs to one account; an object has a name
in its container, a UUID that stays the same across its versions (a copy gets a new one),
its sharing and its public token, and points at its current version.  A version holds the
content's description: size, top hash, MD5 (None until known: objects assembled from a
hashmap get it later), content type, metadata, and the name of the read-only archipelago
map that lists its blocks.  The blocks themselves are in the shared block store, never here.

With versioning ``auto`` a container keeps superseded versions (``current`` False) until the
object is deleted; with ``none`` a write removes the version it replaces.  Every stored
version counts towards the owner's ``pithos.diskspace``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from snf.common.db import Base

#: Names compare byte by byte (UTF-8) on both databases: listings, markers and prefixes
#: follow Swift's order whatever the PostgreSQL cluster's locale is.
NAME_CONTAINER = String(256).with_variant(String(256, collation="C"), "postgresql")
NAME_OBJECT = String(1024).with_variant(String(1024, collation="C"), "postgresql")

VERSIONING = ("auto", "none")
#: What a version's content is: its own blocks, or a manifest naming other objects
#: (``dlo``: X-Object-Manifest ``container/prefix``; ``slo``: a static large object's
#: segment list as JSON).
KINDS = ("data", "dlo", "slo")


class Account(Base):
    __tablename__ = "pithos_accounts"

    uuid: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``{group name: [member UUID, ...]}``, what ``owner:group`` in a sharing names.
    groups: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mtime: Mapped[float] = mapped_column(Float)


class Container(Base):
    __tablename__ = "pithos_containers"
    __table_args__ = (
        CheckConstraint(
            f"versioning IN ({', '.join(repr(v) for v in VERSIONING)})", name="versioning"
        ),
        Index(None, "account", "name", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pithos_accounts.uuid", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(NAME_CONTAINER)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Bytes this container may hold (all versions); 0: no limit of its own.
    quota: Mapped[int] = mapped_column(BigInteger, default=0)
    versioning: Mapped[str] = mapped_column(String(8), default="auto")
    #: The project charged for the container's bytes (None: the owner's base project).
    project: Mapped[uuid.UUID | None]
    mtime: Mapped[float] = mapped_column(Float)


class Object(Base):
    __tablename__ = "pithos_objects"
    __table_args__ = (
        Index(None, "container_id", "name", unique=True),
        Index(None, "uuid"),
        Index(None, "shared"),
        Index(None, "public_token", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    container_id: Mapped[int] = mapped_column(
        ForeignKey("pithos_containers.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(NAME_OBJECT)
    uuid: Mapped[uuid.UUID]
    #: The current version (set in the same transaction that creates the object; no foreign
    #: key, which would make the two tables refer to each other).
    version_id: Mapped[int | None]
    #: ``{"read": [...], "write": [...]}``: UUIDs, ``owner:group`` or ``*``; {} = private.
    sharing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: True when sharing is not empty (what ``shared`` listings and other users look for).
    shared: Mapped[bool] = mapped_column(default=False)
    public_token: Mapped[str | None] = mapped_column(String(64))


class Version(Base):
    __tablename__ = "pithos_versions"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="kind"),
        Index(None, "object_id"),
        Index(None, "container_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("pithos_objects.id", ondelete="CASCADE"))
    #: Denormalized from the object, so usage sums need no join.
    container_id: Mapped[int] = mapped_column(
        ForeignKey("pithos_containers.id", ondelete="CASCADE")
    )
    current: Mapped[bool] = mapped_column(default=True)
    size: Mapped[int] = mapped_column(BigInteger)
    #: Pithos' Merkle top hash of the blocks (X-Object-Hash).
    hash: Mapped[str] = mapped_column(String(64))
    #: MD5 of the content (the Swift ETag); None until computed.
    md5: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(256))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mtime: Mapped[float] = mapped_column(Float)
    modified_by: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(4), default="data")
    manifest: Mapped[str | None] = mapped_column(Text)
    #: The archipelago map (in the shared store) listing this version's blocks.
    map_name: Mapped[str] = mapped_column(String(200))
