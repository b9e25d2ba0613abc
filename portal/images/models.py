"""The image registry (Plankton): an image is an object-store file registered with metadata.

As in Synnefo, an image's id is its object's UUID.  Registration pins the object's current
version, whose read-only archipelago map is what servers are cloned from (``map_name``,
denormalized so that a server create needs no join), so overwriting the file later does not
change the image.  Deleting the pinned version (the object removed) removes the image.
``is_public`` and the members decide who else may list, read and boot it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from snf.common.db import Base

#: Plankton's statuses (what the API shows, upper case as Synnefo does).
STATUSES = ("AVAILABLE", "UNAVAILABLE", "ERROR")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (Index(None, "owner"),)

    #: The object's UUID (Plankton's image id).
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    owner: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(256))
    #: ``pithos://<owner uuid>/<container>/<object>`` as registered.
    location: Mapped[str] = mapped_column(String(1400))
    version_id: Mapped[int] = mapped_column(ForeignKey("pithos_versions.id", ondelete="CASCADE"))
    map_name: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    #: The version's Merkle top hash (Pithos' ETag and X-Object-Hash).
    checksum: Mapped[str] = mapped_column(String(64))
    disk_format: Mapped[str] = mapped_column(String(32), default="diskdump")
    container_format: Mapped[str] = mapped_column(String(32), default="bare")
    status: Mapped[str] = mapped_column(String(16), default="AVAILABLE")
    is_public: Mapped[bool] = mapped_column(default=False)
    #: Free-form ``{KEY: value}`` (OSFAMILY, ROOT_PARTITION, USERS, EXCLUDE_TASK_*, ...).
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class ImageMember(Base):
    """A user (besides the owner) the image is shared with."""

    __tablename__ = "image_members"

    image_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[uuid.UUID] = mapped_column(primary_key=True)
