"""Request helpers shared by the JSON APIs: the token, the body."""

from __future__ import annotations

import json
from typing import Any

from flask import g, request

from snf.common.errors import InvalidInput

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
