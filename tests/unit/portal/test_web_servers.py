"""The servers page (/ui/servers) and its compute token (/ui/servers/token): who gets one,
what it opens, when it ends; the page escapes names and its script never writes HTML.
The page in a browser against a real cluster is tests/e2e/test_web_servers.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from snf.portal.compute.models import Flavor
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity import secrets as sec
from snf.portal.identity.models import Token
from snf.portal.web import page_tokens

from .web_client import csrf, login, post_form

STATIC = Path(__file__).resolve().parents[3] / "portal" / "web" / "static"


def _data(page: str, name: str) -> str:
    match = re.search(rf'data-{name}="([^"]*)"', page)
    assert match, page[:500]
    return match.group(1)


def _servers_token(browser: FlaskClient) -> str:
    page = browser.get("/ui/servers")
    r = browser.post("/ui/servers/token", headers={"X-CSRF-Token": _data(page.text, "csrf")})
    assert r.status_code == 200, r.text
    return str(r.json["token"])  # type: ignore[index]


@pytest.fixture
def flavor(app: Flask) -> int:
    with app.app_context():
        f = Flavor(name="small", vcpus=1, ram=512, disk=2, disk_template="ext_archipelago")
        db.session.add(f)
        db.session.commit()
        return f.id


def test_the_page_needs_a_login(browser: FlaskClient) -> None:
    r = browser.get("/ui/servers")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/login?next=/ui/servers"


def test_the_page_renders_for_a_logged_in_user(browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    r = browser.get("/ui/servers")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert 'data-compute="/compute/v2.0"' in r.text
    assert 'data-token-url="/ui/servers/token"' in r.text
    assert _data(r.text, "csrf") == csrf(browser, "/ui/servers")  # the session's CSRF token
    assert re.fullmatch(r"\d+", _data(r.text, "poll-ms"))
    assert '<script src="/ui/static/servers.js"></script>' in r.text
    for part in ('id="create-form"', 'id="server-image"', 'id="server-flavor"',
                 'id="password-panel" hidden', 'id="server-rows"', "<noscript>"):  # fmt: skip
        assert part in r.text, part
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    # the token is asked for by the script, never rendered into the page
    with browser.application.app_context():
        kinds = db.session.scalars(select(Token.kind)).all()
        assert page_tokens.SERVERS.kind not in kinds
    assert 'href="/ui/servers"' in browser.get("/ui/").text  # the navigation links it
    script = browser.get("/ui/static/servers.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    script.close()


def test_the_page_escapes_names(app: Flask, browser: FlaskClient) -> None:
    with app.app_context():
        accounts.create_user(db.session, "mallory@example.test", '<b id="x">M</b> & "q"',
                             password="correct horse", active=True)  # fmt: skip
        db.session.commit()
    login(browser, "mallory@example.test", "correct horse")
    r = browser.get("/ui/servers")
    assert r.status_code == 200
    assert '<b id="x">' not in r.text
    assert "&lt;b id=&#34;x&#34;&gt;M&lt;/b&gt; &amp; &#34;q&#34;" in r.text


def test_the_script_never_writes_html_nor_stores_the_token() -> None:
    text = (STATIC / "servers.js").read_text()
    risky = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
             "localStorage", "sessionStorage", "document.cookie", "X-Auth-Token=")  # fmt: skip
    for word in risky:
        assert word not in text, word
    # a snapshot is the compute API's createImage, with a name the user confirms
    assert '["snapshot", "Snapshot", null]' in text and '"createImage"' in text


def test_the_token_endpoint_needs_the_csrf_token(browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    assert browser.post("/ui/servers/token").status_code == 400
    forged = browser.post("/ui/servers/token", headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 400
    assert browser.get("/ui/servers/token").status_code == 405
    r = browser.post("/ui/servers/token", headers={"X-CSRF-Token": csrf(browser, "/ui/servers")})
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert body is not None and body["account"] == alice["uuid"]
    assert 3000 < body["expires_in"] <= 3600 and body["expires"].endswith("Z")


def test_the_token_endpoint_needs_a_session(browser: FlaskClient, alice: dict) -> None:
    token = csrf(browser)  # a CSRF token from the login page, but nobody logged in
    r = browser.post("/ui/servers/token", headers={"X-CSRF-Token": token})
    assert r.status_code == 401 and r.json["unauthorized"]["code"] == 401  # type: ignore[index]
    r = browser.post("/ui/servers/token", headers={"X-CSRF-Token": token,
                     "X-Auth-Token": alice["token"]})  # fmt: skip
    assert r.status_code == 401  # an API token is no session


def test_the_token_works_with_the_compute_api_only(
    browser: FlaskClient, client: FlaskClient, alice: dict, flavor: int
) -> None:
    login(browser, alice["email"], "correct horse")
    headers = {"X-Auth-Token": _servers_token(browser)}
    base = _data(browser.get("/ui/servers").text, "compute")
    # what the page reads
    flavors = client.get(f"{base}/flavors/detail", headers=headers)
    assert flavors.status_code == 200
    assert [f["name"] for f in flavors.json["flavors"]] == ["small"]  # type: ignore[index]
    assert client.get(f"{base}/images/detail", headers=headers).json == {"images": []}
    assert client.get(f"{base}/servers/detail", headers=headers).json == {"servers": []}
    # errors come back in OpenStack's shape, which the page shows as a message
    r = client.post(f"{base}/servers", headers=headers, json={"server": {"name": "",
                    "imageRef": "x", "flavorRef": flavor}})  # fmt: skip
    assert r.status_code == 400 and "printable" in r.json["badRequest"]["message"]  # type: ignore[index]
    r = client.post(f"{base}/servers/12345/action", headers=headers, json={"os-stop": None})
    assert r.status_code == 404 and r.json["itemNotFound"]["message"]  # type: ignore[index]
    # ... but nothing else: not files, quotas, images' own API, identity
    for path in (f"/object-store/v1/{alice['uuid']}", "/account/v1.0/quotas",
                 "/image/v1.0/images/", "/identity/v2.0/tenants",
                 "/account/v1.0/user_catalogs"):  # fmt: skip
        r = client.get(path, headers=headers)
        assert r.status_code == 401 and "servers page" in r.text, path
    assert client.get("/account/v1.0/quotas", query_string=headers).status_code == 401
    # the file browser's token does not open compute either
    files = browser.post("/ui/files/token", headers={"X-CSRF-Token": csrf(browser, "/ui/files")})
    r = client.get(f"{base}/servers/detail", headers={"X-Auth-Token": files.json["token"]})  # type: ignore[index]
    assert r.status_code == 401
    # the user's API token is untouched by it
    api = {"X-Auth-Token": alice["token"]}
    assert client.get("/account/v1.0/quotas", headers=api).status_code == 200


def test_logging_out_ends_the_tokens(
    browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    headers = {"X-Auth-Token": _servers_token(browser)}
    assert client.get("/compute/v2.0/servers", headers=headers).status_code == 200
    r = post_form(browser, "/ui/logout", {}, form_page="/ui/servers")
    assert r.status_code == 302
    assert client.get("/compute/v2.0/servers", headers=headers).status_code == 401
    api = {"X-Auth-Token": alice["token"]}  # the API token is not the session's
    assert client.get("/compute/v2.0/servers", headers=api).status_code == 200


def test_renewing_the_api_token_ends_them_too(
    browser: FlaskClient, client: FlaskClient, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    headers = {"X-Auth-Token": _servers_token(browser)}
    assert post_form(browser, "/ui/token", {}, form_page="/ui/").status_code == 200
    assert client.get("/compute/v2.0/servers", headers=headers).status_code == 401
    fresh = {"X-Auth-Token": _servers_token(browser)}
    assert client.get("/compute/v2.0/servers", headers=fresh).status_code == 200


def test_a_user_holds_a_bounded_number(app: Flask, browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    issued = [_servers_token(browser) for _ in range(page_tokens.MOST_LIVE + 3)]
    with app.app_context():
        rows = db.session.scalars(select(Token).where(Token.kind == page_tokens.SERVERS.kind)).all()
        assert len(rows) == page_tokens.MOST_LIVE
        assert sec.digest(issued[-1]) in {r.digest for r in rows}
        user = accounts.find_user(db.session, alice["email"])
        assert accounts.current_api_token(db.session, user) is not None
