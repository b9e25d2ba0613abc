"""Login rate limiting: failed attempts counted in the database, per client address and per
account, so that every gunicorn worker sees the same counts.  Past the limit an attempt is
refused (429) before the password is even checked, right or wrong."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from snf.common.config import LoginConfig
from snf.common.db import utcnow

from .models import LoginAttempt


def keys(address: str | None, account: str) -> list[str]:
    return [f"ip:{address or '-'}", f"account:{account.strip().lower()[:280]}"]


def blocked(session: Session, config: LoginConfig, keys: list[str]) -> bool:
    since = utcnow() - timedelta(seconds=config.attempt_window_seconds)
    counts = session.execute(
        select(LoginAttempt.key, func.count())
        .where(LoginAttempt.key.in_(keys), LoginAttempt.at > since)
        .group_by(LoginAttempt.key)
    )
    return any(n >= config.max_attempts for _, n in counts)


def record_failure(session: Session, config: LoginConfig, keys: list[str]) -> None:
    now = utcnow()
    session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.at < now - timedelta(seconds=config.attempt_window_seconds)
        )
    )
    session.add_all(LoginAttempt(key=key, at=now) for key in keys)


def forget_account(session: Session, key: str) -> None:
    """After a successful login, the account's own count starts over."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.key == key))
