"""The web UI's account flows: signup, verification, moderation, login, sessions, tokens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from snf.common.db import utcnow
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity.models import LoginAttempt, Token, User
from snf.portal.web.safe_next import safe_next

from .web_client import csrf, link_in, login, outbox, post_form, signup


@pytest.fixture
def extra_config() -> str:
    return '[mail]\nadmins = ["root@example.test"]\n[login]\nauto_moderate = [".*@auto\\\\.test"]\n'


def user(app: Flask, email: str) -> User:
    with app.app_context():
        found = db.session.scalar(select(User).where(User.email == email))
        assert found is not None
        db.session.expunge(found)
        return found


def test_signup_verify_moderate_login(app: Flask, browser: FlaskClient, tmp_path: Path) -> None:
    r = signup(browser, "Carol@Example.test", name="Carol")
    assert r.status_code == 200 and "verification link" in r.text
    assert user(app, "carol@example.test").state == "pending verification"
    # Not yet: right password, but unverified.
    r = login(browser, "carol@example.test", "password one")
    assert r.status_code == 403 and "Verify your email" in r.text
    (mail,) = outbox(tmp_path)
    assert mail["to"] == "carol@example.test"
    link = link_in(mail["body"])
    r = browser.get(link)
    assert r.status_code == 200 and "administrator will review" in r.text
    assert browser.get(link).status_code == 400  # the code works once
    notice = outbox(tmp_path)[-1]
    assert notice["to"] == "root@example.test" and "carol@example.test" in notice["subject"]
    r = login(browser, "carol@example.test", "password one")
    assert r.status_code == 403 and "approval" in r.text
    with app.app_context():
        accounts.activate(accounts.find_user(db.session, "carol@example.test"))
        db.session.commit()
    r = login(browser, "carol@example.test", "password one", next="/ui/quotas")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/quotas"
    page = browser.get("/ui/")
    assert page.status_code == 200 and "Welcome, Carol" in page.text
    assert "cyclades.vm" in page.text  # the quota table


def test_auto_moderated_email_is_active_after_verification(
    app: Flask, browser: FlaskClient, tmp_path: Path
) -> None:
    signup(browser, "dan@auto.test")
    browser.get(link_in(outbox(tmp_path)[0]["body"]))
    assert user(app, "dan@auto.test").is_active
    assert len(outbox(tmp_path)) == 1  # nobody to moderate


def test_expired_verification_code(app: Flask, browser: FlaskClient, tmp_path: Path) -> None:
    signup(browser, "eve@auto.test")
    with app.app_context():
        found = accounts.find_user(db.session, "eve@auto.test")
        found.verification_expires = utcnow() - timedelta(seconds=1)
        db.session.commit()
    r = browser.get(link_in(outbox(tmp_path)[0]["body"]))
    assert r.status_code == 400 and "expired" in r.text
    assert browser.get("/ui/verify?code=nonsense").status_code == 400


def test_signup_rules(app: Flask, browser: FlaskClient, alice: dict, tmp_path: Path) -> None:
    r = signup(browser, alice["email"])
    assert r.status_code == 400 and "exists" in r.text  # a verified account keeps its email
    assert signup(browser, "not-an-email").status_code == 400
    assert signup(browser, "x@auto.test", password="short").status_code == 400
    r = post_form(browser, "/ui/signup", {"email": "y@auto.test", "name": "Y",
                  "password": "password one", "password2": "password two"})  # fmt: skip
    assert r.status_code == 400 and "differ" in r.text
    # An abandoned, unverified signup is replaced by a new one with the same email.
    signup(browser, "z@auto.test", password="first password")
    signup(browser, "z@auto.test", password="second password")
    first, second = outbox(tmp_path)
    assert browser.get(link_in(first["body"])).status_code == 400
    assert browser.get(link_in(second["body"])).status_code == 200
    assert login(browser, "z@auto.test", "second password").status_code == 302


def test_forms_need_the_csrf_token(browser: FlaskClient, alice: dict) -> None:
    r = browser.post("/ui/login", data={"email": alice["email"], "password": "correct horse"})
    assert r.status_code == 400 and "did not come from this site" in r.text
    r = browser.post("/ui/login", data={"email": alice["email"], "password": "correct horse",
                                        "csrf_token": "forged"})  # fmt: skip
    assert r.status_code == 400
    assert login(browser, alice["email"], "correct horse").status_code == 302
    assert browser.post("/ui/logout").status_code == 400  # logged-in, still no token: refused
    assert browser.get("/ui/").status_code == 200
    assert browser.get("/ui/logout").status_code == 405  # logout is POST only
    r = post_form(browser, "/ui/logout", {}, form_page="/ui/")
    assert r.status_code == 302
    assert browser.get("/ui/").status_code == 302  # to the login page


def test_login_rate_limit(app: Flask, browser: FlaskClient, alice: dict) -> None:
    for _ in range(5):
        assert login(browser, alice["email"], "wrong password").status_code == 401
    # Attempt 6 is refused, even with the right password.
    r = login(browser, alice["email"], "correct horse")
    assert r.status_code == 429 and "Too many" in r.text
    # Same text for an unknown account as for a known one with a wrong password.
    other = login(browser, "nobody@example.test", "whatever")
    assert other.status_code == 429
    with app.app_context():  # the window passes
        for attempt in db.session.scalars(select(LoginAttempt)):
            attempt.at -= timedelta(seconds=301)
        db.session.commit()
    assert login(browser, alice["email"], "correct horse").status_code == 302


def test_wrong_password_and_unknown_user_look_alike(browser: FlaskClient, alice: dict) -> None:
    a = login(browser, alice["email"], "wrong password")
    b = login(browser, "nobody@example.test", "wrong password")
    assert a.status_code == b.status_code == 401
    assert "Wrong email or password" in a.text and "Wrong email or password" in b.text


def test_next_targets_are_same_site_only() -> None:
    for bad in ["//evil.test", "/\\evil.test", "https://evil.test", "javascript:alert(1)",
                "/%2F/evil.test", "%2F%2Fevil.test", "/ui/\nx", "/%5Cevil.test", "", None,
                "evil.test"]:  # fmt: skip
        assert safe_next(bad) == "/ui/", bad
    assert safe_next("/ui/quotas?x=1") == "/ui/quotas?x=1"


def test_login_redirects_only_to_safe_next(browser: FlaskClient, alice: dict) -> None:
    r = login(browser, alice["email"], "correct horse", next="//evil.test/")
    assert r.headers["Location"] == "/ui/"


def test_dashboard_needs_a_login(browser: FlaskClient) -> None:
    r = browser.get("/ui/quotas")
    assert r.status_code == 302 and r.headers["Location"].startswith("/ui/login?next=")


def test_token_renewal(app: Flask, browser: FlaskClient, alice: dict) -> None:
    other = app.test_client()
    other.environ_base.update(browser.environ_base)
    login(browser, alice["email"], "correct horse")
    login(other, alice["email"], "correct horse")
    r = post_form(browser, "/ui/token", {}, form_page="/ui/")
    assert r.status_code == 200
    token = r.text.split('id="api-token">')[1].split("<")[0]
    # The new token works, the old one does not; the other browser is logged out.
    headers = {"X-Auth-Token": token}
    assert browser.get("/account/v1.0/quotas", headers=headers).status_code == 200
    old = {"X-Auth-Token": alice["token"]}
    assert browser.get("/account/v1.0/quotas", headers=old).status_code == 401
    assert browser.get("/ui/").status_code == 200
    assert other.get("/ui/").status_code == 302
    with app.app_context():
        rows = db.session.scalars(select(Token).where(Token.kind == "api")).all()
        assert [r.digest for r in rows] != [token]  # only the digest is stored
        assert all(len(r.digest) == 64 and token not in r.digest for r in rows)


def test_login_methods_never_the_last(app: Flask, browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    with app.app_context():
        (method,) = accounts.find_user(db.session, alice["email"]).login_methods
        method_id = method.id
    r = post_form(browser, f"/ui/methods/{method_id}/remove", {}, form_page="/ui/methods")
    assert r.status_code == 302
    page = browser.get("/ui/methods")
    assert "only login method" in page.text
    with app.app_context():  # a second method: now the password can go, and with it the hash
        found = accounts.find_user(db.session, alice["email"])
        found.login_methods.append(
            accounts.LoginMethod(provider="oidc", identifier="https://op.test 123")
        )
        db.session.commit()
    post_form(browser, f"/ui/methods/{method_id}/remove", {}, form_page="/ui/methods")
    with app.app_context():
        found = accounts.find_user(db.session, alice["email"])
        assert [m.provider for m in found.login_methods] == ["oidc"]
    fresh = app.test_client()
    fresh.environ_base.update(browser.environ_base)
    assert login(fresh, alice["email"], "correct horse").status_code == 401


def test_profile_password_change_ends_other_sessions(
    app: Flask, browser: FlaskClient, alice: dict
) -> None:
    other = app.test_client()
    other.environ_base.update(browser.environ_base)
    login(browser, alice["email"], "correct horse")
    login(other, alice["email"], "correct horse")
    r = post_form(browser, "/ui/profile", {"name": "Alice B", "password": "new password",
                  "password2": "new password"})  # fmt: skip
    assert r.status_code == 302
    assert browser.get("/ui/").status_code == 200 and "Alice B" in browser.get("/ui/").text
    assert other.get("/ui/").status_code == 302
    fresh = app.test_client()
    fresh.environ_base.update(browser.environ_base)
    assert login(fresh, alice["email"], "new password").status_code == 302


def test_ui_errors_are_pages(browser: FlaskClient) -> None:
    r = browser.get("/ui/no/such/page")
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert csrf(browser)  # the login page renders


def test_keystone_password_login_is_rate_limited(client: FlaskClient, alice: dict) -> None:
    def attempt(password: str) -> int:
        body = {"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": alice["email"], "password": password}}}}}  # fmt: skip
        return client.post("/identity/v3/auth/tokens", json=body).status_code

    assert [attempt("wrong") for _ in range(5)] == [401] * 5
    r = attempt("correct horse")
    assert r == 429


def test_token_revocation(browser: FlaskClient, alice: dict) -> None:
    login(browser, alice["email"], "correct horse")
    headers = {"X-Auth-Token": alice["token"]}
    assert browser.get("/account/v1.0/quotas", headers=headers).status_code == 200
    assert 'id="revoke-token"' in browser.get("/ui/").text
    r = post_form(browser, "/ui/token/revoke", {}, form_page="/ui/")
    assert r.status_code == 302
    assert browser.get("/account/v1.0/quotas", headers=headers).status_code == 401
    page = browser.get("/ui/").text
    assert "revoked" in page and 'id="revoke-token"' not in page
