"""Signup, email verification and moderation (Astakos' activation flow).

signup → pending verification (a one-time code mailed as a link; skipped when the login
method vouches for the email) → moderation (automatic when [login] moderation is off or the
email matches auto_moderate; otherwise an administrator accepts or rejects) → active.

An email is taken only by a verified account: signing up again with the email of an
unverified one replaces it.  Functions take the session and leave committing to the caller.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from snf.common.config import Config
from snf.common.db import utcnow
from snf.common.errors import Conflict, InvalidInput

from . import accounts
from . import secrets as sec
from .models import LoginMethod, User


class BadCode(InvalidInput):
    """An unknown, used or expired verification code."""


@dataclass(frozen=True)
class NewMethod:
    """The login method a signup comes with: a local password, or an external identity."""

    provider: str
    identifier: str
    password: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def signup(
    session: Session,
    config: Config,
    *,
    email: str,
    display_name: str,
    method: NewMethod,
    email_verified: bool = False,
) -> tuple[User, str | None]:
    """Create a pending account; return it and the verification code to mail (None when
    the email needs no verification)."""
    email = accounts.check_email(email)
    display_name = display_name.strip()
    if not 0 < len(display_name) <= 200:
        raise InvalidInput("give a display name of at most 200 characters")
    if method.password is not None:
        accounts.check_password_strength(method.password)
    existing = session.scalar(select(User).where(User.email == email))
    if existing is not None:
        if existing.email_verified:
            raise Conflict(f"an account with email {email} exists: log in and add this method")
        session.delete(existing)  # an abandoned, unverified signup
        session.flush()
    if method.provider != "local":
        release_identifier(session, method.provider, method.identifier)
    user = accounts.create_user(session, email, display_name)
    user.login_methods.append(
        LoginMethod(
            provider=method.provider,
            identifier=email if method.provider == "local" else method.identifier,
            password_hash=sec.hash_password(method.password) if method.password else None,
            info=method.info or None,
        )
    )
    code = None
    if email_verified:
        mark_verified(config, user)
    else:
        code = new_verification_code(config, user)
    session.flush()
    return user, code


def release_identifier(session: Session, provider: str, identifier: str) -> None:
    """Free an external identity for a new owner: one held by an unverified (abandoned)
    account is released with that account; a verified account's is never taken over."""
    held = session.scalar(
        select(LoginMethod).where(
            LoginMethod.provider == provider, LoginMethod.identifier == identifier
        )
    )
    if held is None:
        return
    owner = session.get(User, held.user_uuid)
    if owner is not None and owner.email_verified:
        raise Conflict("this login already belongs to an account")
    if owner is not None:
        session.delete(owner)
    session.flush()


def new_verification_code(config: Config, user: User) -> str:
    code = secrets.token_urlsafe(32)
    user.verification_digest = sec.digest(code)
    user.verification_expires = utcnow() + timedelta(hours=config.login.verification_hours)
    return code


def verify(session: Session, config: Config, code: str) -> User:
    """Verify the email the code was sent to (the code works once)."""
    user = session.scalar(select(User).where(User.verification_digest == sec.digest(code)))
    if user is None or user.verification_expires is None or user.verification_expires <= utcnow():
        raise BadCode("this verification link is unknown, used or expired")
    mark_verified(config, user)
    return user


def mark_verified(config: Config, user: User) -> None:
    user.email_verified = True
    user.verification_digest = None
    user.verification_expires = None
    if auto_moderated(config, user.email):
        accept(user)


def auto_moderated(config: Config, email: str) -> bool:
    if not config.login.moderation:
        return True
    return any(re.fullmatch(pattern, email) for pattern in config.login.auto_moderate)


def accept(user: User) -> None:
    if not user.email_verified:
        raise Conflict(f"{user.email} has not verified their email yet")
    accounts.activate(user)


def reject(user: User, reason: str) -> None:
    reason = reason.strip() or "rejected by an administrator"
    user.moderated = False
    user.is_active = False
    user.rejected_reason = reason[:500]
    user.session_epoch += 1


def login_refusal(user: User) -> str | None:
    """Why ``user`` may not log in (None: they may)."""
    if user.rejected_reason:
        return "This account has been rejected."
    if not user.email_verified:
        return "Verify your email first: follow the link we sent you."
    if not user.moderated:
        return "Your account waits for an administrator's approval."
    if not user.is_active:
        return "This account is inactive."
    return None
