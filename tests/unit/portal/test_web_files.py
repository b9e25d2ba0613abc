"""The file browser's page (/ui/files) and its object-store token (/ui/files/token): who
gets one, what it opens, when it ends."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from snf.common.db import utcnow
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity import secrets as sec
from snf.portal.identity.models import Token
from snf.portal.web import page_tokens

from .web_client import csrf, login, post_form

STATIC = Path(__file__).resolve().parents[3] / "portal" / "web" / "static"


def _csrf_of(page: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def _files_token(browser: FlaskClient) -> str:
    page = browser.get("/ui/files")
    r = browser.post("/ui/files/token", headers={"X-CSRF-Token": _csrf_of(page.text)})
    assert r.status_code == 200, r.text
    return str(r.json["token"])  # type: ignore[index]


def test_the_page_needs_a_login(browser: FlaskClient) -> None:
    r = browser.get("/ui/files")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/login?next=/ui/files"


def test_the_page_renders_for_a_logged_in_user(browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    r = browser.get("/ui/files")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert f'data-storage="/object-store/v1/{alice["uuid"]}"' in r.text
    assert 'data-token-url="/ui/files/token"' in r.text
    assert '<script src="/ui/static/files.js"></script>' in r.text
    assert 'id="upload-progress"' in r.text and 'id="share-panel"' in r.text
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"].split("style-src")[0]
    assert r.headers["Cache-Control"] == "no-store"
    # the token is asked for by the script, never rendered into the page
    with browser.application.app_context():
        assert db.session.scalars(select(Token).where(Token.kind == "web")).all() == []
    assert 'href="/ui/files"' in browser.get("/ui/").text  # the navigation links it
    script = browser.get("/ui/static/files.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    script.close()


def test_the_script_never_writes_html_nor_stores_the_token() -> None:
    text = (STATIC / "files.js").read_text()
    risky = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
             "localStorage", "sessionStorage", "document.cookie", "X-Auth-Token=")  # fmt: skip
    for word in risky:
        assert word not in text, word


def test_the_token_endpoint_needs_the_csrf_token(browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    assert browser.post("/ui/files/token").status_code == 400
    assert browser.post("/ui/files/token", headers={"X-CSRF-Token": "forged"}).status_code == 400
    assert browser.get("/ui/files/token").status_code == 405
    token = csrf(browser, "/ui/files")
    r = browser.post("/ui/files/token", headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert body is not None and body["account"] == alice["uuid"]
    assert 3000 < body["expires_in"] <= 3600 and body["expires"].endswith("Z")


def test_the_token_endpoint_needs_a_session(browser: FlaskClient, alice: dict) -> None:
    token = csrf(browser)  # a CSRF token from the login page, but nobody logged in
    r = browser.post("/ui/files/token", headers={"X-CSRF-Token": token})
    assert r.status_code == 401 and r.json["unauthorized"]["code"] == 401  # type: ignore[index]
    # an API token is no session either
    r = browser.post("/ui/files/token", headers={"X-CSRF-Token": token,
                     "X-Auth-Token": alice["token"]})  # fmt: skip
    assert r.status_code == 401


def test_the_token_works_with_the_object_store(
    browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    headers = {"X-Auth-Token": _files_token(browser)}
    catalog = re.search(r'data-catalog="([^"]+)"', browser.get("/ui/files").text)
    assert catalog is not None
    base = f"/object-store/v1/{alice['uuid']}"
    assert client.put(f"{base}/photos", headers=headers).status_code == 201
    name = "a <b> & 'c' \"d\" ωμέγα.txt"
    r = client.put(f"{base}/photos/dir/{name}", data=b"hello", headers=headers)
    assert r.status_code == 201
    r = client.get(f"{base}/photos", query_string={"format": "json", "delimiter": "/",
                   "prefix": "dir/"}, headers=headers)  # fmt: skip
    assert [o["name"] for o in r.json] == [f"dir/{name}"]  # type: ignore[union-attr]
    assert client.get(f"{base}/photos/dir/{name}", headers=headers).data == b"hello"
    # the user catalog, for the sharing column's emails
    for url in (catalog.group(1), "/account/v1.0/user_catalogs"):
        r = client.post(url, json={"uuids": [alice["uuid"]]}, headers=headers)
        assert r.status_code == 200, url
        assert r.json["uuid_catalog"] == {alice["uuid"]: alice["email"]}  # type: ignore[index]
    # ... but nothing else: not quotas, not compute, not the identity API
    for path in ("/account/v1.0/quotas", "/identity/v2.0/tenants", "/compute/v2.0/servers"):
        r = client.get(path, headers=headers)
        assert r.status_code == 401 and "file browser" in r.text, path
    assert client.get("/account/v1.0/quotas", query_string=headers).status_code == 401
    # the user's API token is untouched by it
    api = {"X-Auth-Token": alice["token"]}
    assert client.get("/account/v1.0/quotas", headers=api).status_code == 200


def test_the_token_expires(
    app: Flask, browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    token = _files_token(browser)
    url = f"/object-store/v1/{alice['uuid']}"
    assert client.head(url, headers={"X-Auth-Token": token}).status_code == 204
    with app.app_context():
        row = db.session.get(Token, sec.digest(token))
        assert row is not None and row.kind == "web" and row.expires is not None
        assert timedelta(minutes=59) < row.expires - utcnow() <= timedelta(hours=1)
        row.expires = utcnow() - timedelta(seconds=1)
        db.session.commit()
    r = client.head(url, headers={"X-Auth-Token": token})
    assert r.status_code == 401
    assert client.get(url, headers={"X-Auth-Token": token}).json == {  # type: ignore[comparison-overlap]
        "unauthorized": {"code": 401, "message": "the token has expired", "details": ""}
    }
    fresh = _files_token(browser)  # the page simply asks for another one
    assert client.head(url, headers={"X-Auth-Token": fresh}).status_code == 204


def test_logging_out_ends_the_tokens(
    app: Flask, browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    token = _files_token(browser)
    url = f"/object-store/v1/{alice['uuid']}"
    assert client.head(url, headers={"X-Auth-Token": token}).status_code == 204
    r = post_form(browser, "/ui/logout", {}, form_page="/ui/files")
    assert r.status_code == 302
    assert client.head(url, headers={"X-Auth-Token": token}).status_code == 401
    api = {"X-Auth-Token": alice["token"]}  # the API token is not the session's
    assert client.head(url, headers=api).status_code == 204


def test_renewing_the_api_token_ends_them_too(
    browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    token = _files_token(browser)
    assert post_form(browser, "/ui/token", {}, form_page="/ui/").status_code == 200
    url = f"/object-store/v1/{alice['uuid']}"
    assert client.head(url, headers={"X-Auth-Token": token}).status_code == 401
    assert client.head(url, headers={"X-Auth-Token": _files_token(browser)}).status_code == 204


def test_a_user_holds_a_bounded_number(app: Flask, browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    issued = [_files_token(browser) for _ in range(page_tokens.MOST_LIVE + 3)]
    with app.app_context():
        rows = db.session.scalars(select(Token).where(Token.kind == "web")).all()
        assert len(rows) == page_tokens.MOST_LIVE
        assert sec.digest(issued[-1]) in {r.digest for r in rows}
        user = accounts.find_user(db.session, alice["email"])
        assert accounts.current_api_token(db.session, user) is not None
