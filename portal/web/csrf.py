"""CSRF protection for the web forms: a random token per session, sent back in every form
(``csrf_token`` field or ``X-CSRF-Token`` header) and compared in constant time.

:func:`protect` guards every state-changing request of a blueprint; :func:`exempt` marks a
view that is cross-site by design (the SAML ACS, protected by its own checks)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, abort, current_app, request, session
from markupsafe import Markup

_KEY = "_csrf"
_EXEMPT: set[str] = set()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., object])


def token() -> str:
    value = session.get(_KEY)
    if not isinstance(value, str):
        value = session[_KEY] = secrets.token_urlsafe(32)
    return value


def field() -> Markup:
    """The hidden form field (a Jinja global)."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token())


def exempt(view: F) -> F:
    _EXEMPT.add(f"{view.__module__}.{view.__name__}")
    return view


def check() -> None:
    if request.method in SAFE_METHODS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and f"{view.__module__}.{view.__name__}" in _EXEMPT:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(_KEY)
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        abort(400, "the form has expired or did not come from this site: reload and retry")


def protect(bp: Blueprint) -> None:
    bp.before_request(check)
