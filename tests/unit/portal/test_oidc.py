"""OpenID Connect login (portal/identity/oidc.py) against a scriptable provider.

The browser is Flask's test client; the provider is real HTTP on 127.0.0.1
(:mod:`oidc_provider`), reached by the portal (discovery, JWKS, token) and by ``requests``
standing in for the browser's visit to its authorize endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from snf.common.config import OidcConfig
from snf.common.errors import ConfigError
from snf.portal.extensions import db
from snf.portal.identity import oidc
from snf.portal.identity.external import PENDING_KEY
from snf.portal.identity.models import LoginMethod, User

from .oidc_provider import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, OpenIDProvider, s256
from .web_client import login, outbox, post_form

BASE = "https://cloud.example.test"
LOGGER = "snf.portal.oidc"


@pytest.fixture(scope="module")
def op() -> Iterator[OpenIDProvider]:
    provider = OpenIDProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(autouse=True)
def _fresh_op(op: OpenIDProvider) -> None:
    op.reset()


@pytest.fixture
def trust_email() -> bool:
    return True


@pytest.fixture
def extra_config(op: OpenIDProvider, tmp_path: Path, trust_email: bool) -> str:
    secret = tmp_path / "oidc-client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    return (
        f'[oidc]\nenabled = true\npreset = "custom"\nname = "Test OP"\nissuer = "{op.url}"\n'
        f'client_id = "{CLIENT_ID}"\nclient_secret_file = "{secret}"\n'
        f"trust_email = {str(trust_email).lower()}\n"
        "[login]\nmoderation = false\n"
    )


# A browser's walk through the login --------------------------------------------------


def start(browser: FlaskClient, next: str | None = None) -> str:
    """GET our login endpoint: the provider's authorize URL it redirects to."""
    r = browser.get("/identity/oidc/login" + (f"?next={quote(next, safe='')}" if next else ""))
    assert r.status_code == 302, r.text
    return r.headers["Location"]


def approve(authorize_url: str) -> str:
    """Visit the provider (it approves at once): the path of our callback it sends back to."""
    r = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return location.removeprefix(BASE)


def oidc_login(browser: FlaskClient, next: str | None = None) -> TestResponse:
    return browser.get(approve(start(browser, next)))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(path: str, **changes: str | None) -> str:
    params = query(path)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return f"{urlsplit(path).path}?{urlencode(params)}"


def logged_in_as(browser: FlaskClient) -> str | None:
    """The display name the dashboard greets, None if the browser is not logged in."""
    r = browser.get("/ui/")
    if r.status_code != 200:
        return None
    return r.text.split("Welcome, ", 1)[1].split("<", 1)[0]


def oidc_methods(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(select(LoginMethod).where(LoginMethod.provider == "oidc"))
        owners = {u.uuid: u.email for u in db.session.scalars(select(User))}
        return [(owners[m.user_uuid], m.identifier) for m in rows]


def user_state(app: Flask, email: str) -> str | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        return None if user is None else user.state


def refused(r: TestResponse, caplog: pytest.LogCaptureFixture, words: str) -> None:
    assert r.status_code == 403, r.text
    assert "Login failed" in r.text and words in r.text
    assert "Traceback" not in r.text
    assert any(rec.name == LOGGER for rec in caplog.records), caplog.text


@pytest.fixture
def dana(app: Flask, browser: FlaskClient, op: OpenIDProvider) -> str:
    """Dana signed up with the provider; her browser is logged out again."""
    r = oidc_login(browser)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/signup"
    r = post_form(browser, "/ui/signup", {"email": "dana@example.test", "name": "Dana Example"})
    assert r.status_code == 302, r.text
    post_form(browser, "/ui/logout", {}, form_page="/ui/")
    assert logged_in_as(browser) is None
    return "dana@example.test"


# Pure helpers ------------------------------------------------------------------------


def test_resolve_issuer() -> None:
    assert oidc.resolve_issuer(OidcConfig(preset="google")) == "https://accounts.google.com"
    custom = OidcConfig(preset="custom", issuer="https://id.example.test/realms/x")
    assert oidc.resolve_issuer(custom) == "https://id.example.test/realms/x"
    assert oidc.resolve_issuer(OidcConfig(preset="custom", issuer="http://127.0.0.1:9"))
    for bad in ("", "id.example.test", "http://id.example.test", "https://x.test/?a=1"):
        with pytest.raises(ConfigError):
            oidc.resolve_issuer(OidcConfig(preset="custom", issuer=bad))
    assert oidc.discovery_url("https://a.test/r/") == (
        "https://a.test/r/.well-known/openid-configuration"
    )
    assert oidc.redirect_uri("https://cloud.example.test/") == REDIRECT_URI


def test_signing_algs_drop_none_and_symmetric() -> None:
    iss = "https://id.example.test"
    meta: dict[str, Any] = {"issuer": iss}
    assert oidc.signing_algs(meta, iss) == ["RS256"]  # OIDC's default
    meta["id_token_signing_alg_values_supported"] = ["none", "HS256", "RS256", "ES256"]
    assert oidc.signing_algs(meta, iss) == ["RS256", "ES256"]
    meta["id_token_signing_alg_values_supported"] = ["none", "HS256"]
    with pytest.raises(oidc.ProviderError):
        oidc.signing_algs(meta, iss)
    with pytest.raises(oidc.ProviderError, match="issuer"):
        oidc.signing_algs({"issuer": "https://evil.test"}, iss)


def test_identity_from_claims() -> None:
    claims = {
        "iss": "https://id.test",
        "sub": "42",
        "email": "a@b.test",
        "email_verified": True,
        "given_name": "Ann",
        "family_name": "Bee",
        "picture": "x",
    }
    identity = oidc.identity_from_claims(claims, trust_email=True)
    assert identity.method == "oidc" and identity.identifier == "https://id.test 42"
    assert identity.email == "a@b.test" and identity.email_verified
    assert identity.display_name == "Ann Bee"
    assert "picture" not in identity.info and identity.info["sub"] == "42"
    assert not oidc.identity_from_claims(claims, trust_email=False).email_verified
    for verified in (False, "true", None):
        unverified = {**claims, "email_verified": verified}
        assert not oidc.identity_from_claims(unverified, trust_email=True).email_verified
    for broken in (
        {"sub": "42"},
        {"iss": "https://id.test"},
        {**claims, "sub": ""},
        {**claims, "sub": 42},
        {**claims, "sub": "x" * 256},
    ):
        with pytest.raises(ValueError):
            oidc.identity_from_claims(broken, trust_email=True)


# The redirect to the provider --------------------------------------------------------


def test_login_redirect_carries_state_nonce_and_pkce(app: Flask, op: OpenIDProvider) -> None:
    # A forged Host header changes nothing: the redirect URI comes from the config.
    browser = app.test_client()
    browser.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "evil.test"})
    url = start(browser)
    assert url.startswith(f"{op.url}/authorize?")
    q = query(url)
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
    assert q["redirect_uri"] == REDIRECT_URI
    assert set(q["scope"].split()) == {"openid", "email", "profile"}
    assert len(q["state"]) >= 20 and len(q["nonce"]) >= 20
    assert q["code_challenge_method"] == "S256"
    with browser.session_transaction() as s:
        pending = s[f"_state_oidc_{q['state']}"]["data"]
    assert s256(pending["code_verifier"]) == q["code_challenge"]
    assert pending["nonce"] == q["nonce"] and pending["next"] == "/ui/"
    assert start(browser) != url  # fresh values every time


def test_discovery_naming_another_issuer_stops_the_login(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    op.discovery_issuer = "https://evil.test"
    r = browser.get("/identity/oidc/login")
    assert r.status_code == 502 and "cannot be reached" in r.text
    assert "evil.test" in caplog.text and not op.authorize_requests


# Happy paths -------------------------------------------------------------------------


def test_signup_then_login(app: Flask, browser: FlaskClient, op: OpenIDProvider) -> None:
    r = oidc_login(browser, next="/ui/quotas")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/signup"
    page = browser.get("/ui/signup")
    assert 'value="dana@example.test"' in page.text and 'value="Dana Example"' in page.text
    r = post_form(browser, "/ui/signup", {"email": "dana@example.test", "name": "Dana"})
    assert r.status_code == 302 and r.headers["Location"] == "/ui/quotas"
    assert user_state(app, "dana@example.test") == "active"  # the provider vouched
    assert oidc_methods(app) == [("dana@example.test", f"{op.url} dana-1")]
    assert logged_in_as(browser) == "Dana"
    (token_request,) = op.token_requests
    assert "client_secret" not in token_request  # client_secret_basic
    assert not op.refusals and not op.codes  # the code was spent

    post_form(browser, "/ui/logout", {}, form_page="/ui/")
    assert logged_in_as(browser) is None
    r = oidc_login(browser, next="/ui/quotas")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/quotas"
    assert logged_in_as(browser) == "Dana"


@pytest.mark.parametrize(
    ("next", "lands"),
    [
        ("/ui/methods", "/ui/methods"),
        ("//evil.test", "/ui/"),
        ("https://evil.test/", "/ui/"),
        ("/\\evil.test", "/ui/"),
        ("/%2F%2Fevil.test", "/ui/"),
    ],
)
def test_next_target_only_when_safe(browser: FlaskClient, dana: str, next: str, lands: str) -> None:
    r = oidc_login(browser, next=next)
    assert r.status_code == 302 and r.headers["Location"] == lands


def test_profile_from_the_userinfo_endpoint(browser: FlaskClient, op: OpenIDProvider) -> None:
    op.profile_in_id_token = False
    assert oidc_login(browser).headers["Location"] == "/ui/signup"
    assert 'value="dana@example.test"' in browser.get("/ui/signup").text


def test_expiry_within_the_leeway_passes(browser: FlaskClient, op: OpenIDProvider) -> None:
    op.claims = {"exp": int(time.time()) - 60}
    assert oidc_login(browser).headers["Location"] == "/ui/signup"


# Login CSRF: state -------------------------------------------------------------------


def test_callback_without_state_is_refused(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    callback = approve(start(browser))
    refused(browser.get(with_query(callback, state=None)), caplog, "not started in this browser")
    assert not op.token_requests  # refused before the code was used
    assert browser.get(callback).headers["Location"] == "/ui/signup"  # the control


def test_callback_with_another_state_is_refused(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    callback = approve(start(browser))
    refused(browser.get(with_query(callback, state="x" * 30)), caplog, "not started")
    assert not op.token_requests
    assert browser.get(callback).headers["Location"] == "/ui/signup"


def test_replayed_callback_is_refused(
    browser: FlaskClient, dana: str, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    callback = approve(start(browser))
    assert browser.get(callback).headers["Location"] == "/ui/"
    post_form(browser, "/ui/logout", {}, form_page="/ui/")
    refused(browser.get(callback), caplog, "not started")
    assert logged_in_as(browser) is None


def test_callback_from_another_browser_is_refused(
    app: Flask, browser: FlaskClient, dana: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The attacker logs in with their own account and hands the callback to the victim."""
    attacker = app.test_client()
    attacker.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "cloud.example.test"})
    callback = approve(start(attacker))
    refused(browser.get(callback), caplog, "not started in this browser")
    assert logged_in_as(browser) is None
    assert attacker.get(callback).headers["Location"] == "/ui/"  # valid where it began


# The id_token ------------------------------------------------------------------------


def _claims(**claims: Any) -> Callable[[OpenIDProvider], None]:
    def script(op: OpenIDProvider) -> None:
        op.claims = {k: (v() if callable(v) else v) for k, v in claims.items()}

    return script


def _set(**attrs: Any) -> Callable[[OpenIDProvider], None]:
    def script(op: OpenIDProvider) -> None:
        for key, value in attrs.items():
            setattr(op, key, value)

    return script


@pytest.mark.parametrize(
    ("script", "logged"),
    [
        pytest.param(_set(signing="other-key"), "BadSignatureError", id="other-key-same-kid"),
        pytest.param(_set(signing="none"), "UnsupportedAlgorithm", id="alg-none"),
        pytest.param(
            _set(signing="none", algs_supported=["none", "RS256"]),
            "UnsupportedAlgorithm",
            id="alg-none-listed-by-discovery",
        ),
        pytest.param(_claims(iss="https://evil.test"), "iss", id="wrong-iss"),
        pytest.param(_claims(aud="someone-else"), "aud", id="wrong-aud"),
        pytest.param(_claims(aud="someone-else", azp=CLIENT_ID), "aud", id="wrong-aud-with-azp"),
        pytest.param(_claims(exp=lambda: int(time.time()) - 300), "ExpiredToken", id="expired"),
        pytest.param(_claims(exp=None), "exp", id="missing-exp"),
        pytest.param(_claims(nonce=None), "nonce", id="missing-nonce"),
        pytest.param(_claims(nonce="not-the-one-we-sent"), "nonce", id="wrong-nonce"),
        pytest.param(_claims(sub=None), "sub", id="missing-sub"),
        pytest.param(_set(send_id_token=False), "no id_token", id="no-id-token"),
        pytest.param(
            _set(profile_in_id_token=False, userinfo_sub="mallory"),
            "another sub",
            id="userinfo-for-another-sub",
        ),
    ],
)
def test_bad_id_token_is_refused(
    app: Flask,
    browser: FlaskClient,
    op: OpenIDProvider,
    caplog: pytest.LogCaptureFixture,
    script: Callable[[OpenIDProvider], None],
    logged: str,
) -> None:
    script(op)
    r = oidc_login(browser)
    refused(r, caplog, "could not be")
    assert logged in caplog.text
    assert len(op.token_requests) == 1 and not op.refusals  # the provider itself was content
    with browser.session_transaction() as s:
        assert PENDING_KEY not in s  # nothing waits for the signup form
    assert logged_in_as(browser) is None and not oidc_methods(app)


# The code exchange -------------------------------------------------------------------


def test_wrong_code_verifier_is_refused_by_the_provider(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    callback = approve(start(browser))
    state = query(callback)["state"]
    with browser.session_transaction() as s:
        pending = s[f"_state_oidc_{state}"]
        pending["data"]["code_verifier"] = "v" * 48
        s[f"_state_oidc_{state}"] = pending
    refused(browser.get(callback), caplog, "refused the login")
    assert [(x.error, x.reason) for x in op.refusals] == [
        ("invalid_grant", "code_verifier does not match")
    ]
    assert "invalid_grant" in caplog.text


def test_wrong_client_secret_is_refused_by_the_provider(
    app: Flask, browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = app.extensions["snf.portal.oidc"]
    client.client_secret = "not the secret"
    refused(oidc_login(browser), caplog, "refused the login")
    assert [x.error for x in op.refusals] == ["invalid_client"]


def test_the_provider_enforces_pkce_and_one_time_codes(
    browser: FlaskClient, op: OpenIDProvider
) -> None:
    """The checks the callback tests above rely on, straight at the token endpoint."""

    def code_and_verifier() -> tuple[str, str]:
        callback = approve(start(browser))
        q = query(callback)
        with browser.session_transaction() as s:
            return q["code"], s[f"_state_oidc_{q['state']}"]["data"]["code_verifier"]

    def exchange(code: str, verifier: str | None, secret: str = CLIENT_SECRET) -> int:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        if verifier is not None:
            form["code_verifier"] = verifier
        r = requests.post(f"{op.url}/token", data=form, auth=(CLIENT_ID, secret), timeout=10)
        return r.status_code

    code, verifier = code_and_verifier()
    assert exchange(code, verifier, secret="wrong") == 401
    code, verifier = code_and_verifier()
    assert exchange(code, None) == 400
    assert exchange(code, verifier) == 400  # spent by the failed attempt
    code, verifier = code_and_verifier()
    assert exchange(code, verifier) == 200
    assert exchange(code, verifier) == 400  # one use
    assert [x.reason for x in op.refusals] == [
        "client authentication failed",
        "code_verifier missing or malformed",
        "unknown or used code",
        "unknown or used code",
    ]


def test_access_denied_at_the_provider(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    op.deny = True
    callback = approve(start(browser))
    assert query(callback)["error"] == "access_denied"
    refused(browser.get(callback), caplog, "cancelled")
    assert "access_denied" in caplog.text and not op.token_requests


# Accounts: never by email ------------------------------------------------------------


@pytest.mark.parametrize("verified", [False, True])
def test_an_email_never_links_to_an_existing_account(
    app: Flask, browser: FlaskClient, op: OpenIDProvider, alice: dict, verified: bool
) -> None:
    op.user = {
        "sub": "mallory",
        "email": alice["email"],
        "email_verified": verified,
        "name": "Not Alice",
    }
    r = oidc_login(browser)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/signup"
    assert logged_in_as(browser) is None
    r = post_form(browser, "/ui/signup", {"email": alice["email"], "name": "Not Alice"})
    assert r.status_code == 400 and "exists" in r.text
    assert not oidc_methods(app)


@pytest.mark.parametrize("trust_email", [False])
def test_untrusted_email_is_verified_by_mail(
    app: Flask, browser: FlaskClient, tmp_path: Path
) -> None:
    assert oidc_login(browser).headers["Location"] == "/ui/signup"
    r = post_form(browser, "/ui/signup", {"email": "dana@example.test", "name": "Dana"})
    assert r.status_code == 200 and "verification link" in r.text
    assert user_state(app, "dana@example.test") == "pending verification"
    assert [m["to"] for m in outbox(tmp_path)] == ["dana@example.test"]
    assert oidc_login(browser).status_code == 302  # the pending signup, again
    assert logged_in_as(browser) is None


def test_a_logged_in_user_adds_the_method(
    app: Flask, browser: FlaskClient, op: OpenIDProvider, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    assert 'class="add-method"' in browser.get("/ui/methods").text
    r = oidc_login(browser)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/methods"
    page = browser.get("/ui/methods").text
    assert "was added" in page and 'data-provider="oidc"' in page
    assert f"{op.url} dana-1" in page
    assert oidc_methods(app) == [(alice["email"], f"{op.url} dana-1")]
    post_form(browser, "/ui/logout", {}, form_page="/ui/")
    assert oidc_login(browser).headers["Location"] == "/ui/"
    assert logged_in_as(browser) == "Alice"


def test_an_identity_of_another_account_cannot_be_added(
    app: Flask, browser: FlaskClient, dana: str, op: OpenIDProvider, alice: dict
) -> None:
    login(browser, alice["email"], "correct horse")
    r = oidc_login(browser)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/methods"
    page = browser.get("/ui/methods").text
    assert "belongs to another account" in page and 'data-provider="oidc"' not in page
    assert oidc_methods(app) == [(dana, f"{op.url} dana-1")]
    assert logged_in_as(browser) == "Alice"


def test_config_errors_stop_the_app(app: Flask, tmp_path: Path) -> None:
    config = app.config["SNF"]
    for change, words in [
        ({"client_secret_file": tmp_path / "missing"}, "client_secret_file"),
        ({"scopes": ["email"]}, "openid"),
        ({"client_id": ""}, "client_id"),
        ({"issuer": "http://idp.example.test"}, "https"),
    ]:
        bad = Flask("x")
        bad.config["SNF"] = type(config)(
            **{**vars(config), "oidc": type(config.oidc)(**{**vars(config.oidc), **change})}
        )
        with pytest.raises(ConfigError, match=words):
            oidc.init_app(bad)


def test_failures_log_for_the_operator(
    browser: FlaskClient, op: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    op.claims = {"aud": "someone-else"}
    oidc_login(browser)
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING and "aud" in record.getMessage()
