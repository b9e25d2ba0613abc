"""Helpers for driving the web UI through Flask's test client, as a browser would."""

from __future__ import annotations

import re
from email import message_from_bytes
from pathlib import Path

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/ui/login") -> str:
    page = client.get(path)
    match = _CSRF.search(page.text)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def post_form(client: FlaskClient, path: str, data: dict[str, str], *,
              form_page: str | None = None) -> TestResponse:  # fmt: skip
    """POST a form with the CSRF token of the page it is on."""
    token = csrf(client, form_page or path)
    return client.post(path, data={"csrf_token": token, **data})


def outbox(tmp_path: Path) -> list[dict[str, str]]:
    """Every message the portal has sent, oldest first."""
    out = []
    for path in sorted((tmp_path / "outbox").glob("*.eml")):
        message = message_from_bytes(path.read_bytes())
        body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
        out.append({"to": message["To"], "subject": message["Subject"], "body": body})
    return out


def link_in(body: str) -> str:
    """The path of the link a message carries."""
    match = re.search(r"https://cloud\.example\.test(/\S+)", body)
    assert match, body
    return match.group(1)


def signup(client: FlaskClient, email: str, password: str = "password one",
           name: str = "Test User") -> TestResponse:  # fmt: skip
    return post_form(client, "/ui/signup", {"email": email, "name": name,
                     "password": password, "password2": password})  # fmt: skip


def login(client: FlaskClient, email: str, password: str, next: str = "") -> TestResponse:
    return post_form(client, "/ui/login", {"email": email, "password": password, "next": next})
