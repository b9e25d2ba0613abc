"""Web sessions with Flask-Login.

A session's id is ``<user uuid>:<epoch>``: bumping the user's ``session_epoch`` (logout
everywhere, token renewal, password change, deactivation) ends every session at once, since
Flask's signed cookies cannot be revoked one by one.  Logging in first clears the cookie
store (no session fixation).  Ending a session, or all of them, also ends the user's file
browser and servers-page tokens (page_tokens.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import Flask, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.wrappers import Response

from ..extensions import db
from ..identity.models import User
from . import page_tokens

login_manager = LoginManager()


class WebUser(UserMixin):
    """The logged-in user as Flask-Login sees it."""

    def __init__(self, user: User) -> None:
        self.user = user

    def get_id(self) -> str:
        return f"{self.user.uuid}:{self.user.session_epoch}"

    @property
    def is_active(self) -> bool:
        return self.user.is_active


@login_manager.user_loader
def _load(session_id: str) -> WebUser | None:
    user_id, _, epoch = session_id.partition(":")
    try:
        user = db.session.get(User, uuid.UUID(user_id))
    except ValueError:
        return None
    if user is None or not user.is_active or str(user.session_epoch) != epoch:
        return None
    return WebUser(user)


@login_manager.unauthorized_handler
def _login_first() -> Response:
    return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    config = app.config["SNF"]
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.portal.base_url.startswith("https:"),
        REMEMBER_COOKIE_SECURE=config.portal.base_url.startswith("https:"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=config.login.session_hours),
    )
    login_manager.init_app(app)


def start_session(user: User) -> None:
    """Log ``user`` in, in a fresh cookie store."""
    session.clear()
    session.permanent = True
    login_user(WebUser(user))


def end_session() -> None:
    """Log out this browser (the caller commits: the file-browser tokens end with it)."""
    if current_user.is_authenticated:
        page_tokens.revoke(current_user.user)
    logout_user()
    session.clear()


def end_all_sessions(user: User) -> None:
    """End every web session of ``user`` (the caller commits)."""
    user.session_epoch += 1
    page_tokens.revoke(user)
