"""The end of every external login (SAML2, OpenID Connect), whatever the protocol.

The protocol modules check the response and reduce it to an :class:`ExternalIdentity`, then
call :func:`finish_login`, which follows Astakos' rules:

- someone logged in → the identity is added to their account (``add`` policy; never one
  that belongs to another verified account);
- a known identity of an active account → that user is logged in (``login`` policy);
- a known identity of an account that may not log in → why not;
- an unknown identity → the signup form, prefilled (``signup`` policy).  It is never linked
  to an existing account by email: its owner logs in and adds it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import current_app, flash, redirect, render_template, session, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from snf.common.db import utcnow

from ..extensions import db
from ..web.safe_next import safe_next
from ..web.session import start_session
from .models import LoginMethod, User
from .policies import policy
from .signup import login_refusal, release_identifier

log = logging.getLogger("snf.portal.login")

PENDING_KEY = "pending_external"


@dataclass(frozen=True)
class ExternalIdentity:
    """A checked external login.

    method: "saml" or "oidc"; identifier: the IdP-qualified, stable id (never an email);
    email/display_name: what the provider says, to prefill the signup form; email_verified:
    the provider vouches for the email (its policy allows trusting it); info: attributes
    kept with the login method.
    """

    method: str
    identifier: str
    email: str | None = None
    email_verified: bool = False
    display_name: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def finish_login(identity: ExternalIdentity, next_url: str | None = None) -> Response:
    config = current_app.config["SNF"]
    rules = policy(config, identity.method)
    target = safe_next(next_url)
    method = db.session.scalar(
        select(LoginMethod).where(
            LoginMethod.provider == identity.method,
            LoginMethod.identifier == identity.identifier,
        )
    )
    owner = db.session.get(User, method.user_uuid) if method is not None else None

    if current_user.is_authenticated:
        return _add_to(current_user.user, identity, owner, rules.add)

    if owner is not None and owner.email_verified:
        if not rules.login:
            return refuse(f"Logging in with {rules.name} is disabled.")
        reason = login_refusal(owner)
        if reason:
            return refuse(reason)
        assert method is not None
        method.last_login = utcnow()
        method.info = identity.info or method.info
        db.session.commit()
        start_session(owner)
        log.info("%s logged in with %s", owner.email, identity.method)
        return redirect(target)

    if not rules.signup:
        return refuse(f"No account uses this {rules.name} login, and signing up with it is closed.")
    session[PENDING_KEY] = {**asdict(identity), "next": target}
    return redirect(url_for("ui.signup_form"))


def _add_to(user: User, identity: ExternalIdentity, owner: User | None, allowed: bool) -> Response:
    if owner is not None and owner.uuid == user.uuid:
        flash("This login is already linked to your account.")
    elif not allowed:
        flash("This login method cannot be added to an account.", "error")
    elif owner is not None and owner.email_verified:
        flash("This login belongs to another account.", "error")
    else:
        release_identifier(db.session, identity.method, identity.identifier)
        user.login_methods.append(
            LoginMethod(
                provider=identity.method,
                identifier=identity.identifier,
                info=identity.info or None,
                last_login=utcnow(),
            )
        )
        db.session.commit()
        log.info("%s added a %s login", user.email, identity.method)
        flash("The login method was added.")
    return redirect(url_for("ui.methods"))


def refuse(message: str, status: int = 403) -> Response:
    """An error page for a login that cannot go on."""
    body = render_template("message.html", title="Login failed", message=message)
    return current_app.response_class(body, status=status, mimetype="text/html")


def pending() -> dict[str, Any] | None:
    """The external identity waiting for the signup form, if any."""
    value = session.get(PENDING_KEY)
    return value if isinstance(value, dict) else None
