"""The Astakos account API (``/account/v1.0``): quotas and resources for users, commissions
for services (service tokens only), user catalogs.  The quota engine does the work; this
module checks who may call what and maps shapes and errors."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from snf.common.errors import InvalidInput
from snf.quota import engine as quota
from snf.quota import resources

from .errors import ApiError
from .extensions import db
from .identity.accounts import Principal
from .identity.models import User
from .jsonapi import json_body, principal

bp = Blueprint("account", __name__, url_prefix="/account/v1.0")


def _user() -> User:
    who = principal()
    if who.user is None:
        raise ApiError(403, "this call needs a user's token")
    return who.user


def _service() -> Principal:
    who = principal()
    if who.service is None:
        raise ApiError(403, "this call needs a service token")
    return who


@bp.get("/resources")
def list_resources() -> Response:
    return jsonify(resources.api_catalog())


@bp.get("/quotas")
def user_quotas() -> Response:
    user = _user()
    quota.ensure_user(db.session, user.uuid)
    body = quota.quotas(db.session, user.uuid)
    db.session.commit()
    return jsonify(body)


@bp.post("/commissions")
def issue() -> tuple[Response, int]:
    service = _service().service
    body = json_body()
    provisions = body.get("provisions")
    if not isinstance(provisions, list):
        raise InvalidInput("provisions must be a list")
    for item in provisions:
        holder = item.get("holder") if isinstance(item, dict) else None
        if isinstance(holder, str) and holder.startswith("user:"):
            quota.ensure_user(db.session, holder.removeprefix("user:"))
    serial = quota.issue_commission(
        db.session, provisions, name=str(body.get("name", "")), force=bool(body.get("force")),
        auto_accept=bool(body.get("auto_accept")), client_key=body.get("client_key"),
        service=service.name,
    )  # fmt: skip
    db.session.commit()
    return jsonify({"serial": serial}), 201


@bp.get("/commissions")
def pending() -> Response:
    return jsonify(quota.pending_commissions(db.session, service=_service().service.name))


@bp.get("/commissions/<int:serial>")
def info(serial: int) -> Response:
    return jsonify(quota.commission_info(db.session, serial, service=_service().service.name))


@bp.post("/commissions/<int:serial>/action")
def action(serial: int) -> Response:
    name = _service().service.name
    body = json_body()
    if "accept" in body:
        quota.accept(db.session, serial, service=name)
    elif "reject" in body:
        quota.reject(db.session, serial, service=name)
    else:
        raise InvalidInput('the body must be {"accept": ""} or {"reject": ""}')
    db.session.commit()
    return jsonify({})


@bp.post("/commissions/action")
def resolve() -> Response:
    name = _service().service.name
    body = json_body()
    accept, reject = body.get("accept", []), body.get("reject", [])
    if not isinstance(accept, list) or not isinstance(reject, list):
        raise InvalidInput("accept and reject must be lists of serials")
    result = quota.resolve(db.session, accept, reject, service=name)
    db.session.commit()
    failed = [[serial, _fault(exc)] for serial, exc in result["failed"]]
    return jsonify({"accepted": result["accepted"], "rejected": result["rejected"],
                    "failed": failed})  # fmt: skip


def _fault(exc: Any) -> dict[str, Any]:
    status = getattr(exc, "http_status", 500)
    name = getattr(exc, "openstack_name", "computeFault")
    return {name: {"code": status, "message": str(exc)}}


@bp.post("/user_catalogs")
@bp.post("/service/user_catalogs")
def user_catalogs() -> Response:
    principal()
    body = json_body()
    uuids, names = body.get("uuids") or [], body.get("displaynames") or []
    if not isinstance(uuids, list) or not isinstance(names, list):
        raise InvalidInput("uuids and displaynames must be lists")
    users = db.session.scalars(select(User).where(User.email.in_([str(n) for n in names])))
    by_uuid = {}
    for key in uuids:
        try:
            found = db.session.get(User, UUID(str(key)))
        except ValueError:
            found = None
        if found is not None:
            by_uuid[str(found.uuid)] = found.email
    return jsonify({"uuid_catalog": by_uuid,
                    "displayname_catalog": {u.email: str(u.uuid) for u in users}})  # fmt: skip


from . import projects_api  # noqa: E402, F401  (its views join this blueprint)
