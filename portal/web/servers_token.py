"""The servers page's compute tokens: issued to a logged-in web session, short-lived, and
good for the compute API only.

The same design as the file browser's tokens (files_token.py says why a bearer token that
the page's script asks for, rather than the session cookie): a POST with the session's CSRF
token, answered ``no-store``, kept in a JavaScript variable, never in storage, a cookie or a
URL.  What bounds a leaked one:

* it lives :data:`HOURS` (the page asks for a fresh one before it expires, or on a 401);
* :func:`confine` refuses it outside ``/compute/`` (so it cannot reach files, quotas,
  projects or the identity API), and files_token.confine refuses the file browser's token
  in the compute API;
* logging out, "log out everywhere" and deactivation end it (:func:`revoke`, called from
  session.py beside the file browser's), and a user holds at most :data:`MOST_LIVE`.

``tokens.kind`` is a free ``String(16)``: the kind ``web-compute`` needs no migration."""

from __future__ import annotations

from flask import Flask, Response, request
from sqlalchemy import delete, select

from ..errors import fault
from ..extensions import db
from ..identity import accounts
from ..identity import secrets as sec
from ..identity.models import Token, User
from ..jsonapi import request_token

KIND = "web-compute"
HOURS = 1
#: Live servers-page tokens a user may hold (one per open tab, roughly); older ones go.
MOST_LIVE = 10
#: Where a ``web-compute`` token is accepted: the compute API (servers, flavors, and the
#: compute view of images, which the create form lists).
ALLOWED_PREFIXES = ("/compute/",)


def issue(user: User) -> tuple[str, Token]:
    """A new compute token for ``user``'s web session (the caller commits)."""
    token, row = accounts.issue_user_token(db.session, user, kind=KIND, hours=HOURS)
    older = db.session.scalars(
        select(Token.digest)
        .where(Token.user_uuid == user.uuid, Token.kind == KIND)
        .order_by(Token.created.desc(), Token.digest)
        .offset(MOST_LIVE)
    ).all()
    if older:
        db.session.execute(delete(Token).where(Token.digest.in_(older)))
    return token, row


def revoke(user: User) -> int:
    """End every servers-page token of ``user`` (the caller commits)."""
    query = delete(Token).where(Token.user_uuid == user.uuid, Token.kind == KIND)
    return db.session.execute(query).rowcount or 0


def confine() -> Response | None:
    """Refuse (401) a servers-page token outside the compute API (a before_request hook)."""
    if request.path.startswith(ALLOWED_PREFIXES):
        return None
    token = request_token()
    if not token:
        return None
    row = db.session.get(Token, sec.digest(token))
    if row is None or row.kind != KIND:
        return None
    return fault(401, "this token is the servers page's: it works with the compute API only",
                 "unauthorized")  # fmt: skip


def init_app(app: Flask) -> None:
    app.before_request(confine)
