"""Accounts and tokens: the operations the CLI, the APIs and the dashboard share.

Every function takes the SQLAlchemy session and leaves committing to its caller.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from snf.common.db import utcnow
from snf.common.errors import Conflict, InvalidInput, NotFound
from snf.quota import engine as quota

from . import secrets as sec
from .models import LoginMethod, Service, Token, User

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,252}")


class Unauthenticated(InvalidInput):
    """A missing, wrong or expired token, or an inactive account (401)."""

    http_status = 401
    openstack_name = "unauthorized"


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: a user or a service account."""

    token: Token
    user: User | None
    service: Service | None

    @property
    def is_service(self) -> bool:
        return self.service is not None


def check_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.fullmatch(email):
        raise InvalidInput(f"not an email address: {email!r}")
    return email.lower()


def create_user(
    session: Session,
    email: str,
    display_name: str,
    *,
    password: str | None = None,
    active: bool = False,
    admin: bool = False,
) -> User:
    email = check_email(email)
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} exists")
    user = User(email=email, display_name=display_name.strip() or email, is_admin=admin,
                email_verified=active, moderated=active, is_active=active)  # fmt: skip
    if password is not None:
        user.login_methods.append(
            LoginMethod(
                provider="local", identifier=email, password_hash=sec.hash_password(password)
            )
        )
    session.add(user)
    session.flush()
    quota.ensure_user(session, user.uuid)  # the system project and base quota
    return user


def find_user(session: Session, key: str) -> User:
    """By UUID or email."""
    try:
        user = session.get(User, uuid.UUID(key))
    except ValueError:
        user = session.scalar(select(User).where(User.email == key.strip().lower()))
    if user is None:
        raise NotFound(f"no user {key}")
    return user


def activate(user: User) -> None:
    user.email_verified = user.moderated = user.is_active = True
    user.rejected_reason = None


def check_password_strength(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters")
    if len(password) > 1024:
        raise InvalidInput("a password has at most 1024 characters")


def set_password(user: User, password: str) -> None:
    check_password_strength(password)
    for method in user.login_methods:
        if method.provider == "local":
            method.password_hash = sec.hash_password(password)
            return
    user.login_methods.append(
        LoginMethod(
            provider="local", identifier=user.email, password_hash=sec.hash_password(password)
        )
    )


def find_local_login(session: Session, email: str, password: str) -> User | None:
    """The user whose local password this is, whatever their state (None: wrong)."""
    method = session.scalar(
        select(LoginMethod).where(
            LoginMethod.provider == "local", LoginMethod.identifier == email.strip().lower()
        )
    )
    if not sec.check_password(password, method.password_hash if method else None):
        return None
    return session.get(User, method.user_uuid) if method else None


def check_local_password(session: Session, email: str, password: str) -> User | None:
    """The active user whose local password this is (None: wrong, or not active)."""
    user = find_local_login(session, email, password)
    return user if user is not None and user.is_active else None


# --- tokens ----------------------------------------------------------------------------------


def issue_user_token(session: Session, user: User, *, kind: str, hours: int) -> tuple[str, Token]:
    """A new token for ``user``.  A new ``api`` token replaces the user's previous one."""
    now = utcnow()
    stale = delete(Token).where(Token.user_uuid == user.uuid)
    if kind == "api":
        session.execute(stale.where(Token.kind == "api"))
    session.execute(stale.where(Token.expires < now))
    token = sec.new_token()
    row = Token(digest=sec.digest(token), kind=kind, user_uuid=user.uuid, created=now,
                expires=now + timedelta(hours=hours))  # fmt: skip
    session.add(row)
    session.flush()
    return token, row


def revoke_user_tokens(session: Session, user: User) -> int:
    return session.execute(delete(Token).where(Token.user_uuid == user.uuid)).rowcount or 0


def revoke_api_tokens(session: Session, user: User) -> int:
    query = delete(Token).where(Token.user_uuid == user.uuid, Token.kind == "api")
    return session.execute(query).rowcount or 0


def revoke_token(session: Session, token: str) -> None:
    session.execute(delete(Token).where(Token.digest == sec.digest(token)))


def add_service(session: Session, name: str) -> tuple[str, Service]:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}", name):
        raise InvalidInput(f"bad service name {name!r}")
    if session.scalar(select(Service).where(Service.name == name)) is not None:
        raise Conflict(f"service {name} exists")
    service = Service(name=name)
    session.add(service)
    session.flush()
    token = sec.new_token()
    session.add(Token(digest=sec.digest(token), kind="service", service_id=service.id))
    session.flush()
    return token, service


def revoke_service(session: Session, name: str) -> Service:
    service = session.scalar(select(Service).where(Service.name == name))
    if service is None:
        raise NotFound(f"no service {name}")
    service.revoked = True
    session.execute(delete(Token).where(Token.service_id == service.id))
    return service


def authenticate(session: Session, token: str | None) -> Principal:
    """The user or service a token belongs to; Unauthenticated (401) otherwise."""
    if not token:
        raise Unauthenticated("no token: send X-Auth-Token")
    row = session.get(Token, sec.digest(token))
    if row is None:
        raise Unauthenticated("invalid token")
    if row.expires is not None and row.expires <= utcnow():
        raise Unauthenticated("the token has expired")
    if row.service is not None:
        if row.service.revoked:
            raise Unauthenticated("the service account is revoked")
        return Principal(row, None, row.service)
    if row.user is None or not row.user.is_active:
        raise Unauthenticated("the account is not active")
    return Principal(row, row.user, None)


def current_api_token(session: Session, user: User) -> Token | None:
    """The user's API token row (its digest and expiry; the token itself is not kept)."""
    return session.scalar(
        select(Token)
        .where(Token.user_uuid == user.uuid, Token.kind == "api")
        .order_by(Token.created.desc())
        .limit(1)
    )


def remove_login_method(user: User, method_id: int) -> LoginMethod:
    """Unlink one of the user's login methods; never the last one.  Removing ``local``
    removes the password with it."""
    method = next((m for m in user.login_methods if m.id == method_id), None)
    if method is None:
        raise NotFound(f"no login method {method_id}")
    if len(user.login_methods) < 2:
        raise Conflict("this is your only login method: add another one first")
    user.login_methods.remove(method)
    return method
