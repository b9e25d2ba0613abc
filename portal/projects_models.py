"""Project applications: what a user asked for (a new project, or a change to one) and
what became of it (Astakos' ``ProjectApplication``).

The project itself, its grants and its members are the quota engine's
(:mod:`snf.quota.models`); an application only records a request. For a new project the
request's values are on the project row already (it waits, ``uninitialized``, until an
administrator approves); for a modification they are applied on approval, and a column
left None means "leave this as it is". ``resources`` holds the requested grants,
``{resource: {"project_capacity": n, "member_capacity": m}}``, checked when submitted.

A project's last application is the one with the highest id; submitting a modification
replaces (state ``replaced``) the project's pending one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from snf.common.db import Base, utcnow

APP_PENDING = "pending"
APP_APPROVED = "approved"
APP_REPLACED = "replaced"
APP_DENIED = "denied"
APP_DISMISSED = "dismissed"
APP_CANCELLED = "cancelled"
APP_STATES = (APP_PENDING, APP_APPROVED, APP_REPLACED, APP_DENIED, APP_DISMISSED, APP_CANCELLED)


class ProjectApplication(Base):
    """One application, in one of APP_STATES."""

    __tablename__ = "project_applications"
    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in APP_STATES)})", name="state"),
        Index(None, "project_id"),
        Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quota_projects.id", ondelete="CASCADE")
    )
    applicant: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.uuid", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=APP_PENDING)
    #: False for the application that created the project.
    is_modification: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str | None] = mapped_column(String(255))
    owner: Mapped[uuid.UUID | None]
    homepage: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    #: The applicant's note to the administrators.
    comments: Mapped[str | None] = mapped_column(Text)
    start_date: Mapped[datetime | None]
    end_date: Mapped[datetime | None]
    join_policy: Mapped[str | None] = mapped_column(String(16))
    leave_policy: Mapped[str | None] = mapped_column(String(16))
    max_members: Mapped[int | None] = mapped_column(BigInteger)
    private: Mapped[bool | None]
    resources: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When, by whom (None: the operator at the command line) and why it was decided.
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[uuid.UUID | None]
    reason: Mapped[str] = mapped_column(Text, default="")
