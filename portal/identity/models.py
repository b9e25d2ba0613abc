"""Identity records: users, their login methods, tokens, and service accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from snf.common.db import Base, utcnow


class User(Base):
    __tablename__ = "users"

    uuid: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email_verified: Mapped[bool] = mapped_column(default=False)
    moderated: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    #: Part of every web session's id: bumping it ends all of the user's web sessions.
    session_epoch: Mapped[int] = mapped_column(default=0)
    #: SHA-256 of the one-time email verification code, and when it stops working.
    verification_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    verification_expires: Mapped[datetime | None] = mapped_column()

    login_methods: Mapped[list[LoginMethod]] = relationship(
        back_populates="user", lazy="select", cascade="all, delete-orphan"
    )

    @property
    def state(self) -> str:
        if self.rejected_reason:
            return "rejected"
        if not self.email_verified:
            return "pending verification"
        if not self.moderated:
            return "pending moderation"
        return "active" if self.is_active else "inactive"


class LoginMethod(Base):
    """One way a user logs in: ``local`` (identifier = email, with a password hash), ``saml``
    (identifier = the IdP-qualified persistent id, pairwise id or eppn), ``oidc``
    (identifier = ``"<issuer> <sub>"``)."""

    __tablename__ = "login_methods"
    __table_args__ = (UniqueConstraint("provider", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_uuid: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.uuid", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    identifier: Mapped[str] = mapped_column(String(512))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    info: Mapped[dict[str, Any] | None] = mapped_column()
    created: Mapped[datetime] = mapped_column(default=utcnow)
    last_login: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="login_methods", lazy="raise")


class Service(Base):
    """A service account: a node, the hooks, the event daemon.  It authenticates with a
    token, like a user, and may call the service-only APIs (commissions, events)."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    uuid: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4, unique=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)


class Token(Base):
    """A token, kept only as its SHA-256: the token itself is shown once, when issued.

    kind: ``api`` (the user's API token: one at a time, renewing replaces it), ``keystone``
    (issued by Keystone's password method, short-lived), ``service`` (a service account's).
    """

    __tablename__ = "tokens"
    __table_args__ = (Index(None, "user_uuid", "kind"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_uuid: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.uuid", ondelete="CASCADE")
    )
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires: Mapped[datetime | None] = mapped_column()

    user: Mapped[User | None] = relationship(lazy="joined")
    service: Mapped[Service | None] = relationship(lazy="joined")


class LoginAttempt(Base):
    """A failed login, counted per account and per client address for rate limiting."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index(None, "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SeenAssertion(Base):
    """A SAML assertion already used to log in, kept until it expires (replay cache)."""

    __tablename__ = "saml_seen_assertions"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires: Mapped[datetime] = mapped_column()
