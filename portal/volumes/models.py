"""Volumes and their snapshots.

Every server has a root volume (created and removed with it); extra volumes are archipelago
disks added to a server's instance (Ganeti disk name ``vol-<id>``).  While a volume is
attached its data is the Ganeti disk's archipelago volume and its quota is held by the
server (removing the instance removes the disk); a detached volume's data is a frozen,
read-only archipelago map (``map_name``) that the next attach clones, and it holds its own
quota (``charges``) until it is deleted.

A snapshot freezes a volume (O(map), live) and becomes a file in the owner's ``snapshots``
container (an object version, with its own map): it can be registered as an image, or give
new volumes.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from snf.common.db import Base

#: What the API shows (lower case, as Cinder).
STATUSES = ("creating", "in-use", "available", "attaching", "detaching", "deleting",
            "deleted", "error")  # fmt: skip
SNAPSHOT_STATUSES = ("creating", "available", "error", "deleted")


class Volume(Base):
    __tablename__ = "volumes"
    __table_args__ = (Index(None, "user_uuid", "deleted"), Index(None, "server_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_uuid: Mapped[uuid.UUID]
    project: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    #: GiB
    size: Mapped[int]
    #: The flavor's disk template for root volumes; ``ext_archipelago`` for extra ones.
    volume_type: Mapped[str] = mapped_column(String(64), default="ext_archipelago")
    status: Mapped[str] = mapped_column(String(16), default="creating")
    #: The server it is attached to (root volumes: always theirs), None when detached.
    server_id: Mapped[int | None] = mapped_column(ForeignKey("compute_servers.id"))
    root: Mapped[bool] = mapped_column(default=False)
    #: When it was last attached (orders the server's disks: /dev/vda, vdb, ...).
    attached: Mapped[float | None] = mapped_column(Float)
    #: What it was made from: an image, a snapshot or a volume id (at most one).
    image_id: Mapped[str | None] = mapped_column(String(64))
    snapshot_id: Mapped[uuid.UUID | None]
    source_volume_id: Mapped[int | None]
    #: The frozen map that holds a detached volume's data.
    map_name: Mapped[str | None] = mapped_column(String(200))
    #: Quota the volume holds itself (only while detached; the server holds it otherwise).
    charges: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The last failure: ``{"message", "created"}``.
    fault: Mapped[dict[str, Any] | None]
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    deleted: Mapped[bool] = mapped_column(default=False)

    @property
    def disk_name(self) -> str:
        """The Ganeti disk's name while attached."""
        return f"vol-{self.id}"


class Snapshot(Base):
    __tablename__ = "volume_snapshots"
    __table_args__ = (Index(None, "user_uuid", "deleted"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_uuid: Mapped[uuid.UUID]
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id"))
    name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(String(1024), default="")
    #: GiB (the volume's size when it was taken)
    size: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="creating")
    #: The frozen map, until its blocks are hashed into the file's version.
    frozen_map: Mapped[str | None] = mapped_column(String(200))
    #: ``snapshots/<file>`` in the owner's account, and its version once written.
    file_name: Mapped[str] = mapped_column(String(1024))
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("pithos_versions.id", ondelete="SET NULL")
    )
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fault: Mapped[str | None] = mapped_column(String(1024))
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    deleted: Mapped[bool] = mapped_column(default=False)
