"""The dashboard: profile, login methods, API token, quotas (all behind a login)."""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from snf.common.errors import SnfError
from snf.quota import engine as quota
from snf.quota import resources

from ..extensions import db
from ..identity import accounts
from ..identity.models import User
from ..identity.policies import enabled, policy
from .blueprint import bp
from .session import end_all_sessions, start_session

log = logging.getLogger("snf.portal.ui")


def _me() -> User:
    return current_user.user  # type: ignore[no-any-return]


@bp.get("/")
@login_required
def index() -> str:
    user = _me()
    token = accounts.current_api_token(db.session, user)
    return render_template("dashboard.html", user=user, token=token, quotas=_quota_rows(user))


def _quota_rows(user: User) -> list[dict[str, object]]:
    """One row per resource: the user's limit, usage and pending, summed over projects."""
    quota.ensure_user(db.session, user.uuid)
    per_project = quota.quotas(db.session, user.uuid)
    db.session.commit()
    rows = []
    for name, spec in resources.api_catalog().items():
        limit = usage = pending = 0
        for holdings in per_project.values():
            if name in holdings:
                limit += holdings[name]["limit"]
                usage += holdings[name]["usage"]
                pending += holdings[name]["pending"]
        percent = 100 if limit <= 0 and usage else (100 * usage // limit if limit else 0)
        rows.append({"name": name, "description": spec.get("desc", ""), "unit": spec.get("unit"),
                     "limit": limit, "usage": usage, "pending": pending,
                     "percent": min(percent, 100)})  # fmt: skip
    return rows


@bp.post("/token")
@login_required
def renew_token() -> str:
    """A new API token; the old one stops working and every other web session ends."""
    user = _me()
    hours = current_app.config["SNF"].portal.api_token_hours
    token, row = accounts.issue_user_token(db.session, user, kind="api", hours=hours)
    end_all_sessions(user)
    db.session.commit()
    start_session(user)  # this browser stays logged in, with the new epoch
    log.info("%s renewed their API token", user.email)
    return render_template("token.html", user=user, token=token, row=row)


@bp.post("/token/revoke")
@login_required
def revoke_token() -> Response:
    """End the API token now (clients using it get 401); a new one can be made later."""
    user = _me()
    accounts.revoke_api_tokens(db.session, user)
    db.session.commit()
    log.info("%s revoked their API token", user.email)
    flash("Your API token was revoked.")
    return redirect(url_for("ui.index"))


@bp.get("/quotas")
@login_required
def quotas() -> str:
    return render_template("quotas.html", rows=_quota_rows(_me()))


@bp.get("/methods")
@login_required
def methods() -> str:
    config = current_app.config["SNF"]
    user = _me()
    have = {m.provider for m in user.login_methods}
    addable = [
        (policy(config, m).name, url_for(f"{m}.login"))
        for m in enabled(config)
        if m != "local" and policy(config, m).add and f"{m}.login" in current_app.view_functions
    ]
    return render_template(
        "methods.html",
        user=user,
        names={m: policy(config, m).name for m in ("local", "saml", "oidc")},
        addable=addable,
        can_set_password="local" not in have and policy(config, "local").add,
    )


@bp.post("/methods/<int:method_id>/remove")
@login_required
def remove_method(method_id: int) -> Response:
    user = _me()
    try:
        accounts.remove_login_method(user, method_id)
        db.session.commit()
        flash("The login method was removed.")
    except SnfError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("ui.methods"))


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> Response | str:
    user = _me()
    if request.method == "GET":
        return render_template("profile.html", user=user)
    try:
        name = request.form.get("name", "").strip()
        if not 0 < len(name) <= 200:
            raise accounts.InvalidInput("give a display name of at most 200 characters")
        user.display_name = name
        password = request.form.get("password", "")
        if password:
            if password != request.form.get("password2", ""):
                raise accounts.InvalidInput("the two passwords differ")
            if not policy(current_app.config["SNF"], "local").add and not any(
                m.provider == "local" for m in user.login_methods
            ):
                raise accounts.InvalidInput("password login cannot be added")
            accounts.set_password(user, password)
            end_all_sessions(user)
        db.session.commit()
    except SnfError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return render_template("profile.html", user=user), 400  # type: ignore[return-value]
    if password:
        start_session(user)
    flash("Your profile was saved.")
    return redirect(url_for("ui.profile"))
