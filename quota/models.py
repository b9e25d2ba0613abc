"""The quota engine's tables: projects, their grants and members, holdings, commissions.

Astakos' model (``astakos/quotaholder_app/models.py`` and ``astakos/im/models.py``):

- Every user has a **system project** whose id is the user's UUID; ordinary projects grant
  extra quota to their members. A project grants, per resource, a ``project_capacity``
  (what all members together may use) and a ``member_capacity`` (what each member may use).
- A **holding** is one counter: ``holder`` ``"user:<uuid>"`` with ``source``
  ``"project:<uuid>"`` (what a member uses of a project's grant; limit = member_capacity),
  or ``holder`` ``"project:<uuid>"`` with no source (what all members use; limit =
  project_capacity). ``usage_min`` counts what is settled, ``usage_max`` what is settled
  plus pending increases; pending = usage_max - usage_min.
- A **commission** is a two-phase change to holdings (issued, then accepted or rejected);
  its **provisions** are the per-holding quantities. ``client_key`` makes issuing
  idempotent (unique per ``service``).

Every table starts with ``quota_``, so the portal's own tables cannot collide with them.
Nullability comes from ``Mapped[... | None]``; every relationship names its loading
strategy; states are short strings with CHECK constraints (the same on both databases).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from snf.common.db import Base, utcnow

#: bigint on PostgreSQL; plain INTEGER on SQLite, whose INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# --- states -----------------------------------------------------------------------------------

PROJECT_UNINITIALIZED = "uninitialized"
PROJECT_ACTIVE = "active"
PROJECT_SUSPENDED = "suspended"
PROJECT_TERMINATED = "terminated"
PROJECT_DELETED = "deleted"
PROJECT_STATES = (
    PROJECT_UNINITIALIZED,
    PROJECT_ACTIVE,
    PROJECT_SUSPENDED,
    PROJECT_TERMINATED,
    PROJECT_DELETED,
)

MEMBER_REQUESTED = "requested"
MEMBER_ACCEPTED = "accepted"
MEMBER_LEAVE_REQUESTED = "leave_requested"
MEMBER_SUSPENDED = "suspended"
MEMBER_REJECTED = "rejected"
MEMBER_CANCELLED = "cancelled"
MEMBER_REMOVED = "removed"
MEMBER_STATES = (
    MEMBER_REQUESTED,
    MEMBER_ACCEPTED,
    MEMBER_LEAVE_REQUESTED,
    MEMBER_SUSPENDED,
    MEMBER_REJECTED,
    MEMBER_CANCELLED,
    MEMBER_REMOVED,
)
#: Memberships that draw on the project's grant (Astakos' ACTUALLY_ACCEPTED).
MEMBER_ACTIVE_STATES = (MEMBER_ACCEPTED, MEMBER_LEAVE_REQUESTED)

POLICY_AUTO = "auto"
POLICY_MODERATED = "moderated"
POLICY_CLOSED = "closed"
POLICIES = (POLICY_AUTO, POLICY_MODERATED, POLICY_CLOSED)

COMMISSION_PENDING = "pending"
COMMISSION_ACCEPTED = "accepted"
COMMISSION_REJECTED = "rejected"
COMMISSION_STATES = (COMMISSION_PENDING, COMMISSION_ACCEPTED, COMMISSION_REJECTED)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# --- projects ---------------------------------------------------------------------------------


class Project(Base):
    """A project: a user's system project (``is_base``, id = the user's UUID) or an ordinary
    one. The account API's applications (modification requests) live with the portal."""

    __tablename__ = "quota_projects"
    __table_args__ = (
        CheckConstraint(_one_of("state", PROJECT_STATES), name="state"),
        CheckConstraint(_one_of("join_policy", POLICIES), name="join_policy"),
        CheckConstraint(_one_of("leave_policy", POLICIES), name="leave_policy"),
        Index("ix_quota_projects_owner", "owner"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    is_base: Mapped[bool] = mapped_column(default=False)
    #: The owner's UUID; None for system projects, as in Astakos.
    owner: Mapped[uuid.UUID | None]
    description: Mapped[str] = mapped_column(Text, default="")
    homepage: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default=PROJECT_ACTIVE)
    join_policy: Mapped[str] = mapped_column(String(16), default=POLICY_MODERATED)
    leave_policy: Mapped[str] = mapped_column(String(16), default=POLICY_AUTO)
    max_members: Mapped[int | None] = mapped_column(BigInteger)
    private: Mapped[bool] = mapped_column(default=False)
    start_date: Mapped[datetime | None]
    end_date: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    grants: Mapped[list[ProjectResource]] = relationship(
        back_populates="project",
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="project",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ProjectResource(Base):
    """What a project grants of one resource (Astakos' ProjectResourceQuota)."""

    __tablename__ = "quota_project_resources"
    __table_args__ = (
        CheckConstraint("project_capacity >= 0", name="project_capacity"),
        CheckConstraint("member_capacity >= 0", name="member_capacity"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quota_projects.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_capacity: Mapped[int] = mapped_column(BigInteger)
    member_capacity: Mapped[int] = mapped_column(BigInteger)

    project: Mapped[Project] = relationship(back_populates="grants", lazy="raise")


class Membership(Base):
    """A user's membership of a project, in one of MEMBER_STATES."""

    __tablename__ = "quota_memberships"
    __table_args__ = (
        UniqueConstraint("project_id", "user_uuid"),
        Index("ix_quota_memberships_user_uuid", "user_uuid"),
        CheckConstraint(_one_of("state", MEMBER_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quota_projects.id", ondelete="CASCADE")
    )
    user_uuid: Mapped[uuid.UUID]
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(back_populates="memberships", lazy="raise")


# --- holdings and commissions -----------------------------------------------------------------


class Holding(Base):
    """One counter: ``holder`` draws ``resource`` from ``source`` up to ``limit``.

    Unique per (holder, source, resource); a unique partial index covers the rows without a
    source, whose NULLs a plain unique constraint would let repeat (on both databases).
    """

    __tablename__ = "quota_holdings"
    __table_args__ = (
        UniqueConstraint("holder", "source", "resource"),
        Index(
            "uq_quota_holdings_holder_resource_nosource",
            "holder",
            "resource",
            unique=True,
            sqlite_where=text("source IS NULL"),
            postgresql_where=text("source IS NULL"),
        ),
        Index("ix_quota_holdings_source", "source"),
        CheckConstraint('"limit" >= 0', name="limit"),
        CheckConstraint("usage_min >= 0", name="usage_min"),
        CheckConstraint("usage_min <= usage_max", name="usage_order"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    holder: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(64))
    limit: Mapped[int] = mapped_column("limit", BigInteger)
    usage_min: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_max: Mapped[int] = mapped_column(BigInteger, default=0)


class Commission(Base):
    """A two-phase change to holdings: issued (pending), then accepted or rejected."""

    __tablename__ = "quota_commissions"
    __table_args__ = (
        UniqueConstraint("service", "client_key"),
        Index("ix_quota_commissions_service_state", "service", "state"),
        CheckConstraint(_one_of("state", COMMISSION_STATES), name="state"),
    )

    serial: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: The issuing service (Astakos' ``clientkey``): pending lists and client keys are per
    #: service, so one service's reconciler never resolves another's commissions.
    service: Mapped[str] = mapped_column(String(64), default="")
    #: The caller's idempotency key: issuing again with it returns this commission.
    client_key: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    issue_time: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=COMMISSION_PENDING)
    resolved_at: Mapped[datetime | None]

    provisions: Mapped[list[Provision]] = relationship(
        back_populates="commission",
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Provision(Base):
    """One holding's quantity in a commission; the holding gives holder, source, resource."""

    __tablename__ = "quota_provisions"
    __table_args__ = (
        Index("ix_quota_provisions_commission_serial", "commission_serial"),
        Index("ix_quota_provisions_holding_id", "holding_id"),
        CheckConstraint("quantity <> 0", name="quantity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    commission_serial: Mapped[int] = mapped_column(
        BigId, ForeignKey("quota_commissions.serial", ondelete="CASCADE")
    )
    holding_id: Mapped[int] = mapped_column(BigId, ForeignKey("quota_holdings.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)

    commission: Mapped[Commission] = relationship(back_populates="provisions", lazy="raise")
    holding: Mapped[Holding] = relationship(lazy="joined", innerjoin=True)


#: The engine's tables, for ``Base.metadata.create_all(engine, tables=TABLES)`` in tests
#: (the portal's Alembic history creates them in production).
TABLES: list[Table] = [
    cast(Table, m.__table__)
    for m in (Project, ProjectResource, Membership, Holding, Commission, Provision)
]
