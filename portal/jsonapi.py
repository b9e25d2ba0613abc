"""Request helpers shared by the JSON APIs: the token, the body."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import current_app, g, request

from snf.common.errors import InvalidInput

from .errors import ApiError
from .extensions import db
from .identity.accounts import Principal, authenticate

MAX_JSON = 1 << 20


def json_body(*, allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else (type, size, syntax, shape)."""
    data = request.get_data(cache=True)
    if not data and allow_empty:
        return {}
    if request.mimetype != "application/json":
        raise InvalidInput("send the body as Content-Type: application/json")
    if len(data) > MAX_JSON:
        raise InvalidInput(f"the body is larger than {MAX_JSON} bytes")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def request_token() -> str | None:
    return request.headers.get("X-Auth-Token") or request.args.get("X-Auth-Token")


def principal() -> Principal:
    """The caller, authenticated by X-Auth-Token (once per request)."""
    if "principal" not in g:
        g.principal = authenticate(db.session, request_token())
    return g.principal


def user_uuid(api: str) -> uuid.UUID:
    """The calling user's UUID; 403 for a service token (``api`` names the API)."""
    who = principal().user
    if who is None:
        raise ApiError(403, f"the {api} API is for users, not services")
    return who.uuid


def version_entry(path: str, ident: str, version: str, min_version: str) -> dict[str, Any]:
    """One entry of a discovery document (OpenStack's shape) for the API at ``path``."""
    root = current_app.config["SNF"].portal.base_url.rstrip("/")
    return {"id": ident, "status": "CURRENT", "version": version, "min_version": min_version,
            "updated": "2026-11-25T00:00:00Z",
            "links": [{"rel": "self", "href": f"{root}{path}/"}]}  # fmt: skip
