"""API tokens for the web pages whose scripts call an API: the file browser (the object
store) and the servers page (the compute API).  Issued to a logged-in web session,
short-lived, and good for their own API only.

Why a token and not the session cookie: the APIs authenticate only with ``X-Auth-Token``.
Letting them also accept the web session's cookie would give every same-site page ambient
authority over the user's files and servers, so each state-changing request would need
CSRF checks (and clients like kamaki would have to be told apart from browsers).  A bearer
token that the page's JavaScript asks for (a POST with the session's CSRF token, answered
``no-store``) and keeps in a variable is never sent by the browser on its own: a cross-site
page can neither obtain one nor make the browser use it.  The pages never write it to
localStorage, a cookie or a URL.

What bounds a leaked token:

* it lives :data:`HOURS` (the page asks for a fresh one before it expires, or on a 401);
* :func:`confine` refuses it outside its own API (a file-browser token cannot reach
  compute, quotas or projects; a servers-page token cannot reach files);
* logging out, "log out everywhere" (password change, API-token renewal) and deactivation
  end them (:func:`revoke`), and a user holds at most :data:`MOST_LIVE` of each kind.

``tokens.kind`` is a free ``String(16)`` without a CHECK constraint: the kinds ``web`` and
``web-compute`` need no migration, and ``api`` tokens are untouched (issuing one of these
does not replace the user's API token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, Response, jsonify, request
from sqlalchemy import delete, select

from ..errors import fault
from ..extensions import db
from ..identity import accounts
from ..identity import secrets as sec
from ..identity.models import Token, User
from ..jsonapi import request_token

HOURS = 1
#: Live tokens of one kind a user may hold (one per open tab, roughly); older ones go.
MOST_LIVE = 10


@dataclass(frozen=True)
class PageToken:
    kind: str
    #: Whose token it is and what it is for, as error messages name them.
    page: str
    api: str
    prefixes: tuple[str, ...]
    paths: frozenset[str] = frozenset()

    def allows(self, path: str) -> bool:
        return path.startswith(self.prefixes) or path in self.paths


#: The object store (and its public URLs, which need no token) and the Astakos user catalog
#: (UUIDs to emails for the sharing column).
FILES = PageToken("web", "the file browser's", "the object store",
                  ("/object-store/", "/public/"),
                  frozenset({"/account/v1.0/user_catalogs",
                             "/account/v1.0/service/user_catalogs"}))  # fmt: skip
#: The compute API: servers, flavors, and the compute view of images the create form lists.
SERVERS = PageToken("web-compute", "the servers page's", "the compute API", ("/compute/",))
KINDS = {page.kind: page for page in (FILES, SERVERS)}


def issue(page: PageToken, user: User) -> tuple[str, Token]:
    """A new token of ``page``'s kind for ``user``'s web session (the caller commits)."""
    token, row = accounts.issue_user_token(db.session, user, kind=page.kind, hours=HOURS)
    older = db.session.scalars(
        select(Token.digest)
        .where(Token.user_uuid == user.uuid, Token.kind == page.kind)
        .order_by(Token.created.desc(), Token.digest)
        .offset(MOST_LIVE)
    ).all()
    if older:
        db.session.execute(delete(Token).where(Token.digest.in_(older)))
    return token, row


def answer(page: PageToken, user: User) -> Response:
    """Issue a token and answer it as JSON, never cached (commits)."""
    token, row = issue(page, user)
    db.session.commit()
    assert row.expires is not None
    expires = row.expires.astimezone(UTC)
    body = jsonify(
        {
            "token": token,
            "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires_in": max(0, int((expires - datetime.now(UTC)).total_seconds())),
            "account": str(user.uuid),
        }
    )
    body.headers["Cache-Control"] = "no-store"
    body.headers["Pragma"] = "no-cache"
    return body


def revoke(user: User) -> int:
    """End every page token of ``user`` (the caller commits)."""
    query = delete(Token).where(Token.user_uuid == user.uuid, Token.kind.in_(list(KINDS)))
    return db.session.execute(query).rowcount or 0


def confine() -> Response | None:
    """Refuse (401) a page token outside its own API (a before_request hook)."""
    token = request_token()
    if not token:
        return None
    row = db.session.get(Token, sec.digest(token))  # authenticate() finds it in the session
    page = KINDS.get(row.kind) if row is not None else None
    if page is None or page.allows(request.path):
        return None
    message = f"this token is {page.page}: it works with {page.api} only"
    return fault(401, message, "unauthorized")


def init_app(app: Flask) -> None:
    app.before_request(confine)
