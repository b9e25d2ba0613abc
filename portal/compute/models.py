"""Compute's tables: the Ganeti clusters (backends), flavors and servers.

A server row is the portal's view of one Ganeti instance (``snf-<id>`` on its backend).
``operstate`` is what the instance last was (BUILD until the create job ends, then STARTED,
STOPPED or ERROR; DESTROYED once removed: the row stays, readable as DELETED).  At most one
action is in flight per server: ``action`` with its Ganeti ``job_id`` and the quota
commission (``serial``) issued before the job was submitted, accepted when the job succeeds
and rejected when it fails.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from snf.common.db import Base

OPERSTATES = ("BUILD", "STARTED", "STOPPED", "ERROR", "DESTROYED")
ACTIONS = ("CREATE", "START", "STOP", "REBOOT", "RESIZE", "DESTROY")


class Backend(Base):
    """A Ganeti cluster reached through its RAPI."""

    __tablename__ = "compute_backends"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    rapi_host: Mapped[str] = mapped_column(String(255))
    rapi_port: Mapped[int] = mapped_column(default=5080)
    username: Mapped[str] = mapped_column(String(64))
    #: A root-only file holding the RAPI password (never the database).
    password_file: Mapped[str] = mapped_column(String(4096))
    #: The SHA-256 fingerprint of the RAPI certificate; None: verify against the system CAs.
    pin: Mapped[str | None] = mapped_column(String(128))
    #: The hypervisor new instances get; None: the cluster's default.
    hypervisor: Mapped[str | None] = mapped_column(String(16))
    drained: Mapped[bool] = mapped_column(default=False)
    #: Room for new servers as last read from RAPI (summed over the online nodes).
    free_memory_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    free_disk_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity_updated: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[float] = mapped_column(Float)


class Flavor(Base):
    __tablename__ = "compute_flavors"
    __table_args__ = (UniqueConstraint("vcpus", "ram", "disk", "disk_template"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    vcpus: Mapped[int]
    #: MiB
    ram: Mapped[int]
    #: GiB
    disk: Mapped[int]
    #: ``ext_archipelago`` (a thin clone of the image) or a Ganeti template (``file``, ...).
    disk_template: Mapped[str] = mapped_column(String(64), default="ext_archipelago")
    allow_create: Mapped[bool] = mapped_column(default=True)
    deleted: Mapped[bool] = mapped_column(default=False)


class Server(Base):
    __tablename__ = "compute_servers"
    __table_args__ = (Index(None, "user_uuid", "deleted"), Index(None, "operstate"))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    user_uuid: Mapped[uuid.UUID]
    project: Mapped[uuid.UUID]
    flavor_id: Mapped[int] = mapped_column(ForeignKey("compute_flavors.id"))
    image_id: Mapped[str] = mapped_column(String(64))
    backend_id: Mapped[int | None] = mapped_column(ForeignKey("compute_backends.id"))
    operstate: Mapped[str] = mapped_column(String(16), default="BUILD")
    action: Mapped[str | None] = mapped_column(String(16))
    #: What the action needs to finish (the target flavor of a resize, ...).
    action_args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    serial: Mapped[int | None] = mapped_column(BigInteger)
    action_started: Mapped[float | None] = mapped_column(Float)
    #: The quota this server holds now (resource -> quantity, from accepted commissions):
    #: what deleting it releases.
    charges: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    key_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The last failure shown to the user: ``{"code", "message", "details", "created"}``.
    fault: Mapped[dict[str, Any] | None]
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    deleted: Mapped[bool] = mapped_column(default=False)

    @property
    def instance_name(self) -> str:
        return f"snf-{self.id}"
