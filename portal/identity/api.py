"""The token APIs: Astakos' ``POST /identity/v2.0/tokens`` (kamaki) and Keystone v3
(``/identity/v3``, OpenStack clients), with version discovery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from snf.common.errors import InvalidInput, NotFound

from ..errors import ApiError
from ..extensions import db
from ..jsonapi import json_body, request_token
from . import accounts, ratelimit
from .accounts import Unauthenticated
from .catalog import astakos_catalog, keystone_catalog
from .models import User

bp = Blueprint("identity", __name__, url_prefix="/identity")
DOMAIN = {"id": "default", "name": "Default"}


def _base_url() -> str:
    return current_app.config["SNF"].portal.base_url


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


# --- version discovery ---------------------------------------------------------------------------


def _version(vid: str, path: str) -> dict[str, Any]:
    return {"id": vid, "status": "stable", "updated": "2024-01-01T00:00:00Z",
            "links": [{"rel": "self", "href": f"{_base_url()}/identity/{path}/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}  # fmt: skip


@bp.get("")
@bp.get("/")
def versions() -> tuple[Response, int]:
    body = {"versions": {"values": [_version("v3.14", "v3"), _version("v2.0", "v2.0")]}}
    return jsonify(body), 300


@bp.get("/v3")
@bp.get("/v3/")
def v3_version() -> Response:
    return jsonify({"version": _version("v3.14", "v3")})


@bp.get("/v2.0")
@bp.get("/v2.0/")
def v2_version() -> Response:
    return jsonify({"version": _version("v2.0", "v2.0")})


# --- Astakos v2.0 --------------------------------------------------------------------------------


@bp.post("/v2.0/tokens")
def v2_tokens() -> Response:
    body = json_body(allow_empty=True)
    catalog = astakos_catalog(_base_url())
    if not body:
        return jsonify({"access": {"serviceCatalog": catalog}})
    auth = body.get("auth")
    if not isinstance(auth, dict):
        raise InvalidInput('the body must be {"auth": {...}}')
    if isinstance(auth.get("token"), dict):
        token = auth["token"].get("id")
    elif isinstance(auth.get("passwordCredentials"), dict):
        # Astakos: the user's UUID and, as the password, the token itself.
        token = auth["passwordCredentials"].get("password")
        username = auth["passwordCredentials"].get("username")
    else:
        raise InvalidInput("auth needs token.id or passwordCredentials")
    if not isinstance(token, str):
        raise InvalidInput("the token must be a string")
    who = accounts.authenticate(db.session, token)
    user = who.user
    if user is None:
        raise Unauthenticated("service tokens cannot use the identity API")
    if "passwordCredentials" in auth and username not in (str(user.uuid), user.email):
        raise Unauthenticated("the token does not belong to that user")
    tenant = auth.get("tenantName")
    if tenant is not None and tenant != str(user.uuid):
        raise InvalidInput("tenantName must be the user's UUID")
    access = {
        "token": {"id": token, "expires": _iso(who.token.expires),
                  "tenant": {"id": str(user.uuid), "name": user.display_name}},
        "user": {"id": str(user.uuid), "name": user.display_name,
                 "roles": [{"id": "1", "name": "default"}], "roles_links": [],
                 "projects": [str(user.uuid)]},
        "serviceCatalog": catalog,
    }  # fmt: skip
    return jsonify({"access": access})


# --- Keystone v3 ---------------------------------------------------------------------------------


def _v3_token_body(user: User, token_row: Any, methods: list[str], scoped: bool) -> dict:
    body: dict[str, Any] = {
        "methods": methods,
        "expires_at": _iso(token_row.expires),
        "issued_at": _iso(token_row.created),
        "audit_ids": [token_row.digest[:22]],
        "user": {"id": str(user.uuid), "name": user.email, "domain": DOMAIN},
    }
    if scoped:
        body["project"] = {"id": str(user.uuid), "name": user.email, "domain": DOMAIN}
        body["roles"] = [{"id": "member", "name": "member"}]
        body["catalog"] = keystone_catalog(_base_url(), str(user.uuid))
    return {"token": body}


def _scope_is_own_project(scope: Any, user: User) -> bool:
    """Scoped to the user's own (system) project, unscoped, or refused (401)."""
    if scope in (None, "unscoped"):
        return False
    project = scope.get("project") if isinstance(scope, dict) else None
    if not isinstance(project, dict):
        raise Unauthenticated("only project scopes (the user's own project) are supported")
    if project.get("id") in (str(user.uuid),) or project.get("name") in (
        user.email,
        str(user.uuid),
    ):
        return True
    raise Unauthenticated("the user has no role on that project")


@bp.post("/v3/auth/tokens")
def v3_issue() -> tuple[Response, int, dict[str, str]]:
    auth = json_body().get("auth")
    identity = auth.get("identity") if isinstance(auth, dict) else None
    if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list):
        raise InvalidInput("auth.identity.methods is required")
    methods = identity["methods"]
    config = current_app.config["SNF"].portal
    if "password" in methods:
        user_spec = (identity.get("password") or {}).get("user") or {}
        password = user_spec.get("password")
        name = user_spec.get("name") or user_spec.get("id")
        if not isinstance(password, str) or not isinstance(name, str):
            raise InvalidInput("password.user needs a name (or id) and a password")
        try:
            email = accounts.find_user(db.session, name).email
        except (NotFound, InvalidInput):
            email = name  # checked below, in the same time as a known one
        limits = current_app.config["SNF"].login
        keys = ratelimit.keys(request.remote_addr, email)
        if ratelimit.blocked(db.session, limits, keys):
            raise ApiError(429, "too many failed logins: wait and retry", fault="overLimit")
        user = accounts.check_local_password(db.session, email, password)
        if user is None:
            ratelimit.record_failure(db.session, limits, keys)
            db.session.commit()
            raise Unauthenticated("wrong user name or password")
        ratelimit.forget_account(db.session, keys[1])
        scoped = _scope_is_own_project(auth.get("scope"), user)
        token, row = accounts.issue_user_token(
            db.session, user, kind="keystone", hours=config.keystone_token_hours
        )
        db.session.commit()
    elif "token" in methods:
        token = (identity.get("token") or {}).get("id") or request_token()
        who = accounts.authenticate(db.session, token)
        if who.user is None:
            raise Unauthenticated("service tokens cannot use the identity API")
        user, row = who.user, who.token
        scoped = _scope_is_own_project(auth.get("scope"), user)
    else:
        raise InvalidInput(f"unsupported authentication methods {methods!r}")
    return jsonify(_v3_token_body(user, row, methods, scoped)), 201, {"X-Subject-Token": token}


@bp.route("/v3/auth/tokens", methods=["GET", "HEAD"])
def v3_validate() -> tuple[Response, int, dict[str, str]]:
    accounts.authenticate(db.session, request_token())
    subject = request.headers.get("X-Subject-Token")
    try:
        who = accounts.authenticate(db.session, subject)
    except Unauthenticated as exc:
        raise ApiError(404, f"the subject token is not valid: {exc}") from None
    if who.user is None:
        raise ApiError(404, "the subject token is a service token")
    body = _v3_token_body(who.user, who.token, ["token"], scoped=True)
    return jsonify(body), 200, {"X-Subject-Token": subject or ""}


@bp.delete("/v3/auth/tokens")
def v3_revoke() -> tuple[str, int]:
    accounts.authenticate(db.session, request_token())
    subject = request.headers.get("X-Subject-Token")
    if subject:
        accounts.revoke_token(db.session, subject)
        db.session.commit()
    return "", 204
