"""The servers page (``/ui/servers``): the user's servers with their live status, a create
form (image and flavor) and the start / stop / reboot / delete buttons, through the compute
API, from the browser.

Flask renders the page only; ``static/servers.js`` lists flavors, images and servers with
``fetch`` against ``/compute/v2.0`` and polls ``/servers/detail`` every few seconds (no page
reload).  Its ``X-Auth-Token`` comes from :func:`issue_token` (``POST /ui/servers/token``,
CSRF-protected like every form of the UI), a token that works with the compute API only
(page_tokens.py).  The password a create returns is shown once, by the script, and kept
nowhere.  API errors are shown as the OpenStack error body's message.

The page sends the file browser's strict Content-Security-Policy (scripts from this origin
only), and the script builds every row with ``textContent``: server and image names may hold
any printable character."""

from __future__ import annotations

import logging

from flask import render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from ..errors import fault
from ..identity.models import User
from . import csrf, page_tokens
from .blueprint import bp
from .files import CSP

log = logging.getLogger("snf.portal.ui")

#: How often the page asks for the servers' status (milliseconds).
POLL_MS = 3000


def _me() -> User:
    return current_user.user  # type: ignore[no-any-return]


@bp.get("/servers")
@login_required
def servers() -> Response:
    body = render_template(
        "servers.html",
        user=_me(),
        compute_url=url_for("compute_v2_0_doc"),
        token_url=url_for("ui.servers_token"),
        csrf_token=csrf.token(),
        poll_ms=POLL_MS,
    )
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/servers/token", endpoint="servers_token")
def issue_token() -> Response:
    """A new compute token for this session, as JSON (never cached)."""
    if not current_user.is_authenticated:
        return fault(401, "your session has ended: log in again", "unauthorized")
    user = _me()
    log.info("%s got a servers-page token", user.email)
    return page_tokens.answer(page_tokens.SERVERS, user)
