"""The file browser (``/ui/files``): the user's containers and objects, through the
object-store API, from the browser.

Flask renders the page only; ``static/files.js`` does every file operation with ``fetch``
(and ``XMLHttpRequest`` for upload progress) against ``/object-store/v1/<uuid>/...``.  The
page gets its short-lived ``X-Auth-Token`` from :func:`issue_token` (``POST
/ui/files/token``, CSRF-protected like every form of the UI) and keeps it in a JavaScript
variable: page_tokens.py says why a token rather than the session cookie.

Downloads do not put the token in a URL (``?X-Auth-Token=`` would land in access logs,
the history and Referer headers): the page fetches the object with the token in a header,
wraps the bytes in a Blob typed ``application/octet-stream`` (so an HTML object is saved,
never rendered in the portal's origin) and clicks a temporary ``blob:`` link with a
``download`` name.  The whole object passes through the browser's memory, which suits the
file sizes a browser uploads; kamaki is the tool for huge ones.  A public object can also
be fetched by its public URL, which needs no token.

The page sends a strict Content-Security-Policy (scripts from this origin only), and the
script builds every row with ``textContent``: object names may hold any character."""

from __future__ import annotations

import logging

from flask import render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from ..errors import fault
from ..identity.models import User
from . import csrf, page_tokens
from .blueprint import bp

log = logging.getLogger("snf.portal.ui")

#: The page's policy: its own script and the base layout's inline <style> only; it talks
#: to this origin only, and nothing may frame it.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")  # fmt: skip


def _me() -> User:
    return current_user.user  # type: ignore[no-any-return]


@bp.get("/files")
@login_required
def files() -> Response:
    user = _me()
    body = render_template(
        "files.html",
        user=user,
        storage_url=url_for("pithos.account_get", account=str(user.uuid)),
        catalog_url=url_for("account.user_catalogs"),
        token_url=url_for("ui.files_token"),
        csrf_token=csrf.token(),
    )
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/files/token", endpoint="files_token")
def issue_token() -> Response:
    """A new object-store token for this session, as JSON (never cached)."""
    if not current_user.is_authenticated:
        return fault(401, "your session has ended: log in again", "unauthorized")
    user = _me()
    log.info("%s got a file-browser token", user.email)
    return page_tokens.answer(page_tokens.FILES, user)
