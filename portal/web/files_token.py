"""The file browser's object-store tokens: issued to a logged-in web session, short-lived,
and good for the object store only.

Why a token and not the session cookie: the object-store API authenticates only with
``X-Auth-Token``.  Letting it also accept the web session's cookie would give every
same-site page ambient authority over the user's files, so each of the API's ~20
state-changing requests would need CSRF checks (and clients like kamaki would have to be
told apart from browsers).  A bearer token that the page's JavaScript asks for (a POST with
the session's CSRF token, answered ``no-store``) and keeps in a variable is never sent by
the browser on its own: a cross-site page can neither obtain one nor make the browser use
it.  The page never writes it to localStorage, a cookie or a URL.

What bounds a leaked token:

* it lives :data:`HOURS` (the page asks for a fresh one before it expires, or on a 401);
* :func:`confine` refuses it everywhere but the object store and the user-catalog lookup
  the page uses to show emails (so it cannot reach compute, quotas or projects);
* logging out, "log out everywhere" (password change, API-token renewal) and deactivation
  end it (:func:`revoke`), and a user holds at most :data:`MOST_LIVE` at a time.

The kind ``web`` is new, but ``tokens.kind`` is a free ``String(16)`` without a CHECK
constraint, so no migration is needed; ``api`` tokens are untouched (issuing one does not
replace the user's API token)."""

from __future__ import annotations

from flask import Flask, Response, request
from sqlalchemy import delete, select

from ..errors import fault
from ..extensions import db
from ..identity import accounts
from ..identity import secrets as sec
from ..identity.models import Token, User
from ..jsonapi import request_token

KIND = "web"
HOURS = 1
#: Live file-browser tokens a user may hold (one per open tab, roughly); older ones go.
MOST_LIVE = 10
#: Where a ``web`` token is accepted: the object store (and its public URLs, which need no
#: token) and the Astakos user catalog (UUIDs to emails for the sharing column).
ALLOWED_PREFIXES = ("/object-store/", "/public/")
ALLOWED_PATHS = frozenset({"/account/v1.0/user_catalogs", "/account/v1.0/service/user_catalogs"})


def issue(user: User) -> tuple[str, Token]:
    """A new object-store token for ``user``'s web session (the caller commits)."""
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
    """End every file-browser token of ``user`` (the caller commits)."""
    query = delete(Token).where(Token.user_uuid == user.uuid, Token.kind == KIND)
    return db.session.execute(query).rowcount or 0


def confine() -> Response | None:
    """Refuse (401) a file-browser token outside the object store (a before_request hook)."""
    path = request.path
    if path.startswith(ALLOWED_PREFIXES) or path in ALLOWED_PATHS:
        return None
    token = request_token()
    if not token:
        return None
    row = db.session.get(Token, sec.digest(token))  # authenticate() finds it in the session
    if row is None or row.kind != KIND:
        return None
    return fault(401, "this token is the file browser's: it works with the object store only",
                 "unauthorized")  # fmt: skip


def init_app(app: Flask) -> None:
    app.before_request(confine)
