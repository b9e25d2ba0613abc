"""Logging in and out, signing up, verifying an email."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from snf.common.config import Config
from snf.common.errors import InvalidInput, SnfError

from .. import mail
from ..extensions import db
from ..identity import accounts, ratelimit, signup
from ..identity.external import PENDING_KEY, pending, refuse
from ..identity.models import User
from ..identity.policies import policy
from .blueprint import bp
from .safe_next import safe_next
from .session import end_session, start_session

log = logging.getLogger("snf.portal.login")


def _config() -> Config:
    return current_app.config["SNF"]


def _page(template: str, status: int = 200, **context: object) -> Response:
    return current_app.response_class(
        render_template(template, **context), status=status, mimetype="text/html"
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    target = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(target)
    config = _config()
    local = policy(config, "local")
    if request.method == "GET":
        return _page("login.html", next=target, local=local.login)
    if not local.login:
        return refuse("Password login is disabled.")
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    keys = ratelimit.keys(request.remote_addr, email)
    if ratelimit.blocked(db.session, config.login, keys):
        db.session.rollback()
        flash("Too many failed attempts: wait a few minutes and try again.", "error")
        return _page("login.html", 429, next=target, local=True, email=email)
    user = accounts.find_local_login(db.session, email, password)
    if user is None:
        ratelimit.record_failure(db.session, config.login, keys)
        db.session.commit()
        flash("Wrong email or password.", "error")
        return _page("login.html", 401, next=target, local=True, email=email)
    reason = signup.login_refusal(user)
    if reason:
        db.session.rollback()
        return refuse(reason)
    ratelimit.forget_account(db.session, keys[1])
    db.session.commit()
    start_session(user)
    log.info("%s logged in with a password from %s", user.email, request.remote_addr)
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    end_session()
    db.session.commit()
    flash("You are logged out.")
    return redirect(url_for("ui.login"))


@bp.route("/signup", methods=["GET", "POST"])
def signup_form() -> Response:
    config = _config()
    external = pending()
    if external is None and not policy(config, "local").signup:
        return refuse("Signing up is closed.")
    if request.method == "GET":
        return _page("signup.html", external=external,
                     email=(external or {}).get("email") or "",
                     name=(external or {}).get("display_name") or "")  # fmt: skip
    email = request.form.get("email", "")
    name = request.form.get("name", "")
    try:
        if external is not None:
            method = signup.NewMethod(external["method"], external["identifier"],
                                      info=external.get("info") or {})  # fmt: skip
            vouched = bool(external.get("email_verified")) and (
                accounts.check_email(email) == (external.get("email") or "").lower()
            )
        else:
            password = request.form.get("password", "")
            if password != request.form.get("password2", ""):
                raise InvalidInput("the two passwords differ")
            method = signup.NewMethod("local", email, password=password)
            vouched = False
        user, code = signup.signup(db.session, config, email=email, display_name=name,
                                   method=method, email_verified=vouched)  # fmt: skip
        if code is not None:
            _mail_verification(config, user.email, code)
        elif not user.is_active:
            _mail_admins(config, user.email)
        db.session.commit()
    except SnfError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _page("signup.html", 400, external=external, email=email, name=name)
    session.pop(PENDING_KEY, None)
    log.info("signup: %s (%s)", user.email, user.state)
    if user.is_active and external is not None:
        start_session(user)
        return redirect(safe_next(external.get("next")))
    return _page("message.html", title="Almost there", message=_next_step(user))


def _next_step(user: User) -> str:
    if not user.email_verified:
        return f"We sent a verification link to {user.email}. Follow it to continue."
    if not user.is_active:
        return "Your email is verified. An administrator will review your account."
    return "Your account is active: you can log in now."


def _mail_verification(config: Config, email: str, code: str) -> None:
    link = f"{config.portal.base_url.rstrip('/')}{url_for('ui.verify', code=code)}"
    body = (
        "Welcome to snf-cloud.\n\nTo verify your email address, open this link within "
        f"{config.login.verification_hours} hours:\n\n{link}\n\n"
        "If you did not sign up, ignore this message.\n"
    )
    mail.send(config.mail, email, "Verify your email address", body)


def _mail_admins(config: Config, email: str) -> None:
    for admin in config.mail.admins:
        mail.send(config.mail, admin, f"New account to review: {email}",
                  f"{email} has verified their email and waits for moderation:\n\n"
                  f"    snf-portal user activate {email}\n")  # fmt: skip


@bp.get("/verify")
def verify() -> Response:
    config = _config()
    try:
        user = signup.verify(db.session, config, request.args.get("code", ""))
    except signup.BadCode as exc:
        db.session.rollback()
        return refuse(str(exc), 400)
    if not user.is_active:
        _mail_admins(config, user.email)
    db.session.commit()
    log.info("%s verified their email (%s)", user.email, user.state)
    return _page("message.html", title="Email verified", message=_next_step(user),
                 login_link=user.is_active)  # fmt: skip
