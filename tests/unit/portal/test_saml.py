"""The portal's SAML2 service provider (snf.portal.identity.saml), against a forged IdP
(responses built and signed here) and an independent one (pysaml2's Server)."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.response import IncorrectlySigned
from saml2.saml import AUTHN_PASSWORD_PROTECTED, NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from sqlalchemy import select
from werkzeug.test import TestResponse

from snf.portal.extensions import db
from snf.portal.identity import accounts, saml
from snf.portal.identity.models import LoginMethod, SeenAssertion, User

from .saml_idp import (
    ACS,
    EPPN,
    IDP,
    MAIL,
    SCOPE,
    SP,
    SSO,
    TRANSIENT,
    Pki,
    assertion_xml,
    default_attributes,
    make_pki,
    new_id,
    post_acs,
    response_xml,
    sign,
    signed_response,
    start_login,
)

PERSISTENT_ID = f"{IDP}!{SP}!alice-pid"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pki]:
    directory = tmp_path_factory.mktemp("saml-pki")
    return {name: make_pki(directory, name) for name in ("idp", "sp", "evil")}


@pytest.fixture
def extra_config(pki: dict[str, Pki]) -> str:
    return (
        "[saml]\nenabled = true\n"
        f'sp_key_file = "{pki["sp"].key_file}"\nsp_cert_file = "{pki["sp"].cert_file}"\n'
        f'idp_entity_id = "{IDP}"\nidp_sso_url = "{SSO}"\n'
        f'idp_cert_file = "{pki["idp"].cert_file}"\nidp_scopes = ["{SCOPE}"]\n'
        "[login]\nmoderation = false\n"
    )


@pytest.fixture
def idp(pki: dict[str, Pki]) -> Pki:
    return pki["idp"]


def csrf_token(browser: FlaskClient, path: str) -> str:
    match = CSRF.search(browser.get(path).text)
    assert match, path
    return match.group(1)


def login_with_password(browser: FlaskClient, email: str, password: str) -> None:
    token = csrf_token(browser, "/ui/login")
    r = browser.post("/ui/login", data={"csrf_token": token, "email": email,
                                        "password": password})  # fmt: skip
    assert r.status_code == 302, r.text


def logout(browser: FlaskClient) -> None:
    token = csrf_token(browser, "/ui/")
    assert browser.post("/ui/logout", data={"csrf_token": token}).status_code == 302


def pending_identity(browser: FlaskClient) -> dict:
    with browser.session_transaction() as session:
        return dict(session["pending_external"])


def saml_login(browser: FlaskClient, idp: Pki, next_url: str = "/ui/",
               **kw: object) -> TestResponse:  # fmt: skip
    request_id = start_login(browser, next_url)
    return post_acs(browser, signed_response(request_id, idp, **kw))


def assert_rejected(r: TestResponse, caplog: pytest.LogCaptureFixture, detail: str) -> None:
    assert r.status_code == 403, r.text
    assert "Login failed" in r.text and "Traceback" not in r.text
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "snf.portal.saml"]
    assert any(detail in line for line in logged), logged


# -- login, metadata -------------------------------------------------------------------


def test_login_sends_a_signed_authn_request(browser: FlaskClient, pki: dict[str, Pki]) -> None:
    r = browser.get("/identity/saml/login?next=/ui/quotas")
    assert r.status_code == 302 and r.location.startswith(SSO + "?")
    assert r.headers["Cache-Control"] == "no-store"
    query = parse_qs(urlsplit(r.location).query)
    assert query["SigAlg"] == [C.RSA_SHA256]
    raw = dict(part.split("=", 1) for part in urlsplit(r.location).query.split("&"))
    signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg"))
    assert OneLogin_Saml2_Utils.validate_binary_sign(
        signed, base64.b64decode(query["Signature"][0]), pki["sp"].cert, C.RSA_SHA256
    )
    assert not OneLogin_Saml2_Utils.validate_binary_sign(
        signed, base64.b64decode(query["Signature"][0]), pki["evil"].cert, C.RSA_SHA256
    )
    request = etree.fromstring(
        OneLogin_Saml2_Utils.decode_base64_and_inflate(query["SAMLRequest"][0])
    )
    assert request.get("Destination") == SSO
    assert request.get("AssertionConsumerServiceURL") == ACS
    assert request.findtext("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer") == SP
    with browser.session_transaction() as session:
        assert session[saml.PENDING] == {"id": request.get("ID"), "next": "/ui/quotas"}
    assert query["RelayState"] == ["/ui/quotas"]

    browser.get("/identity/saml/login?next=//evil.test/x")
    with browser.session_transaction() as session:
        assert session[saml.PENDING]["next"] == "/ui/"


def test_metadata_is_valid_and_asks_for_signatures(browser: FlaskClient, pki: dict) -> None:
    r = browser.get("/identity/saml/metadata")
    assert r.status_code == 200
    assert r.mimetype == "application/samlmetadata+xml"
    document = OneLogin_Saml2_XML.to_etree(r.data)
    valid = OneLogin_Saml2_XML.validate_xml(document, "saml-schema-metadata-2.0.xsd")
    assert not isinstance(valid, str), valid
    assert document.get("entityID") == SP
    sp_sso = document.find("{urn:oasis:names:tc:SAML:2.0:metadata}SPSSODescriptor")
    assert sp_sso.get("AuthnRequestsSigned") == "true"
    assert sp_sso.get("WantAssertionsSigned") == "true"
    acs = sp_sso.find("{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert acs.get("Location") == ACS and acs.get("Binding") == C.BINDING_HTTP_POST
    cert = "".join(pki["sp"].cert.splitlines()[1:-1])
    assert cert in r.text.replace("\n", "")


def test_settings_follow_the_reference() -> None:
    config = saml.SamlConfig(enabled=True, idp_entity_id=IDP, idp_sso_url=SSO)
    s = saml.build_settings(config, "https://cloud.example.test/", sp_key="k", sp_cert="c",
                            idp_certs=["a", "b"])  # fmt: skip
    assert s["strict"] is True
    assert s["sp"]["entityId"] == SP and s["sp"]["assertionConsumerService"]["url"] == ACS
    assert s["sp"]["NameIDFormat"] == C.NAMEID_PERSISTENT
    assert s["idp"]["x509certMulti"] == {"signing": ["a", "b"]}
    security = s["security"]
    for key in ("authnRequestsSigned", "wantAssertionsSigned", "wantNameId",
                "rejectDeprecatedAlgorithm"):  # fmt: skip
        assert security[key] is True, key
    assert security["wantMessagesSigned"] is False
    assert security["signatureAlgorithm"] == C.RSA_SHA256
    assert security["digestAlgorithm"] == C.SHA256


def test_misconfiguration_is_a_503(browser: FlaskClient, app: Flask, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    config = app.config["SNF"]
    broken = replace(config.saml, sp_key_file=tmp_path / "missing.key")
    app.config["SNF"] = replace(config, saml=broken)
    for path in ("/identity/saml/login", "/identity/saml/metadata"):
        r = browser.get(path)
        assert r.status_code == 503 and "not available" in r.text and "Traceback" not in r.text
    assert "missing.key" in caplog.text


# -- happy paths -----------------------------------------------------------------------


def test_signup_then_login(browser: FlaskClient, idp: Pki, app: Flask) -> None:
    request_id = start_login(browser, "/ui/quotas")
    r = post_acs(browser, signed_response(request_id, idp), relay_state="https://evil.test/")
    assert r.status_code == 302 and r.location.endswith("/ui/signup")
    pending = pending_identity(browser)
    assert pending["identifier"] == PERSISTENT_ID
    assert pending["email"] == f"alice@{SCOPE}" and pending["email_verified"] is True
    assert pending["next"] == "/ui/quotas"
    page = browser.get("/ui/signup")
    assert f'value="alice@{SCOPE}"' in page.text and 'value="Alice Liddell"' in page.text
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = browser.post("/ui/signup", data={"csrf_token": token, "email": f"alice@{SCOPE}",
                                         "name": "Alice Liddell"})  # fmt: skip
    assert r.status_code == 302 and r.location.endswith("/ui/quotas")
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == f"alice@{SCOPE}"))
        assert user is not None and user.email_verified and user.is_active
        assert [(m.provider, m.identifier) for m in user.login_methods] == [("saml", PERSISTENT_ID)]
        assert user.login_methods[0].info["eppn"] == f"alice@{SCOPE}"

    logout(browser)
    assert browser.get("/ui/").status_code == 302
    r = saml_login(browser, idp)
    assert r.status_code == 302 and r.location.endswith("/ui/")
    dashboard = browser.get("/ui/")
    assert dashboard.status_code == 200 and "Welcome, Alice Liddell" in dashboard.text


def test_mail_outside_the_scopes_is_not_vouched_for(
    browser: FlaskClient, idp: Pki, app: Flask, tmp_path: Path
) -> None:
    attributes = {**default_attributes(), MAIL: ["alice@mail.example"]}
    r = saml_login(browser, idp, attributes=attributes)
    assert r.status_code == 302 and pending_identity(browser)["email_verified"] is False
    token = csrf_token(browser, "/ui/signup")
    r = browser.post("/ui/signup", data={"csrf_token": token, "email": "alice@mail.example",
                                         "name": "Alice"})  # fmt: skip
    assert r.status_code == 200 and "verification link" in r.text
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "alice@mail.example"))
        assert user is not None and not user.email_verified and not user.is_active
    assert list((tmp_path / "outbox").glob("*.eml"))


def test_identifier_preference(browser: FlaskClient, idp: Pki) -> None:
    """No persistent NameID: the eppn (scoped, so IdP-qualified) is the identifier."""
    assert saml_login(browser, idp, nameid="t-123", nameid_format=TRANSIENT).status_code == 302
    assert pending_identity(browser)["identifier"] == f"alice@{SCOPE}"


def test_choose_identifier() -> None:
    targeted = {"NameID": {"Format": C.NAMEID_PERSISTENT, "NameQualifier": IDP, "value": "t1"}}
    attributes = {EPPN: [f"bob@{SCOPE}"], saml.TARGETED_ID: [targeted],
                  saml.PAIRWISE_ID: [f"pw1@{SCOPE}"]}  # fmt: skip

    def choose(preference: list[str], **kw: object) -> tuple[str, str]:
        args: dict = {"nameid": "n1", "nameid_format": C.NAMEID_TRANSIENT, "idp": IDP,
                      "nameid_qualifier": None, "attributes": attributes, "sp": SP}  # fmt: skip
        return saml.choose_identifier(preference, **{**args, **kw})

    order = ["persistent-id", "pairwise-id", "targeted-id", "eppn"]
    assert choose(order) == ("pairwise-id", f"pw1@{SCOPE}")
    assert choose(order, nameid_format=C.NAMEID_PERSISTENT) == ("persistent-id", f"{IDP}!{SP}!n1")
    assert choose(["targeted-id", "eppn"]) == ("targeted-id", f"{IDP}!{SP}!t1")
    assert choose(["eppn"]) == ("eppn", f"bob@{SCOPE}")
    with pytest.raises(saml.Rejected, match="NameQualifier"):
        choose(order, nameid_format=C.NAMEID_PERSISTENT, nameid_qualifier="https://other/idp")
    with pytest.raises(saml.Rejected, match="none of"):
        choose(["eppn"], attributes={})
    assert saml.in_scope(f"a@{SCOPE.upper()}", [SCOPE])
    assert not saml.in_scope(f"a@x.{SCOPE}", [SCOPE]) and not saml.in_scope(f"@{SCOPE}", [])
    assert saml.email_vouched(f"a@dept.{SCOPE}", [SCOPE])
    assert not saml.email_vouched(f"a@evil{SCOPE}", [SCOPE])
    assert not saml.email_vouched(f"a@{SCOPE}", [])


def test_nameid_comment_does_not_truncate(browser: FlaskClient, idp: Pki) -> None:
    """CVE-2017-11427: a comment added after signing (C14N drops comments, so the signature
    still holds) must not cut the value short."""
    request_id = start_login(browser)
    xml = signed_response(request_id, idp, nameid="alice-pid.admin")
    tampered = xml.replace(">alice-pid.admin<", ">alice-pid<!---->.admin<")
    assert tampered != xml
    assert post_acs(browser, tampered).status_code == 302
    assert pending_identity(browser)["identifier"] == f"{PERSISTENT_ID}.admin"


# -- rejections ------------------------------------------------------------------------

Build = Callable[[str, dict[str, Pki]], str]


def _tampered(rid: str, pki: dict[str, Pki]) -> str:
    xml = signed_response(rid, pki["idp"])
    return xml.replace(f"alice@{SCOPE}", f"mallory@{SCOPE}")


def _unsigned(rid: str, pki: dict[str, Pki]) -> str:
    return response_xml(rid, assertion_xml(rid))


def _sha1(rid: str, pki: dict[str, Pki]) -> str:
    signed = sign(assertion_xml(rid), pki["idp"], C.RSA_SHA1, C.SHA1)
    return response_xml(rid, signed)


def _xsw_moved(rid: str, pki: dict[str, Pki]) -> str:
    """The signed assertion hides in samlp:Extensions; a forged one takes its place."""
    signed = sign(assertion_xml(rid, nameid="alice-pid"), pki["idp"])
    return response_xml(rid, assertion_xml(rid, nameid="admin-pid"), extensions=signed)


def _xsw_swapped(rid: str, pki: dict[str, Pki]) -> str:
    """A forged assertion with the signed one's ID and Signature (content swapped)."""
    aid = new_id()
    signed = sign(assertion_xml(rid, assertion_id=aid), pki["idp"])
    signature = re.search(r"<ds:Signature.*</ds:Signature>", signed, re.S).group(0)  # type: ignore[union-attr]
    forged = assertion_xml(rid, assertion_id=aid, nameid="admin-pid")
    forged = forged.replace("</saml:Issuer>", "</saml:Issuer>" + signature, 1)
    return response_xml(rid, forged)


def _signed(**assertion: object) -> Build:
    return lambda rid, pki: signed_response(rid, pki["idp"], **assertion)


OTHER = "https://other.test"
REJECTED: dict[str, tuple[Build, str]] = {
    "tampered": (_tampered, "Signature validation failed"),
    "unsigned": (_unsigned, "is not signed"),
    "unknown key": (lambda rid, p: signed_response(rid, p["evil"]), "Signature validation failed"),
    "wrong audience": (_signed(audience=f"{OTHER}/sp"), "not a valid audience"),
    "no AudienceRestriction": (_signed(audience=None), "no AudienceRestriction"),
    "wrong Recipient": (_signed(recipient=f"{OTHER}/acs"), "valid SubjectConfirmation"),
    "wrong Destination": (_signed(destination=f"{OTHER}/acs"), "received at"),
    "wrong Issuer": (_signed(issuer=f"{OTHER}/idp"), "Invalid issuer"),
    "wrong Response Issuer": (_signed(response_issuer=f"{OTHER}/idp"), "Invalid issuer"),
    "expired": (
        _signed(not_before=timedelta(seconds=-900), not_on_or_after=timedelta(seconds=-400)),
        "expired",
    ),
    "not yet valid": (
        _signed(not_before=timedelta(seconds=400), not_on_or_after=timedelta(seconds=900)),
        "not yet valid",
    ),
    "InResponseTo mismatch": (
        lambda rid, p: signed_response(new_id(), p["idp"]),
        "does not match the ID of the AuthNRequest",
    ),
    "InResponseTo missing": (lambda rid, p: signed_response(None, p["idp"]), "InResponseTo None"),
    "XSW moved into Extensions": (_xsw_moved, "must contain 1 assertion"),
    "XSW content swapped": (_xsw_swapped, "Signature validation failed"),
    "SHA-1": (_sha1, "Deprecated signature algorithm"),
    "eppn out of scope": (
        _signed(attributes=default_attributes("alice@evil.test")),
        "not in the scopes",
    ),
    "no identifier": (
        _signed(nameid_format=TRANSIENT, attributes={MAIL: [f"x@{SCOPE}"]}),
        "none of",
    ),
    "two eppn values": (
        _signed(nameid_format=TRANSIENT, attributes={EPPN: [f"a@{SCOPE}", f"b@{SCOPE}"]}),
        "2 values",
    ),
    "not XML": (lambda rid, p: "<samlp:Response", "unreadable"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejected(
    case: str, browser: FlaskClient, pki: dict[str, Pki], app: Flask,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    build, detail = REJECTED[case]
    request_id = start_login(browser)
    caplog.set_level(logging.INFO, "snf.portal.saml")
    assert_rejected(post_acs(browser, build(request_id, pki)), caplog, detail)
    assert browser.get("/ui/").status_code == 302  # not logged in
    with browser.session_transaction() as session:
        assert "pending_external" not in session and saml.PENDING not in session
    with app.app_context():
        assert db.session.scalar(select(LoginMethod).where(LoginMethod.provider == "saml")) is None


def test_rejected_samples_pass_when_fixed(browser: FlaskClient, pki: dict[str, Pki]) -> None:
    """The same helpers, unharmed, make an accepted response (the cases above are real)."""
    request_id = start_login(browser)
    assert post_acs(browser, signed_response(request_id, pki["idp"])).status_code == 302


def test_unsolicited_response_is_rejected(
    browser: FlaskClient, idp: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "snf.portal.saml")
    assert_rejected(post_acs(browser, signed_response(None, idp)), caplog, "no pending request")


def test_acs_bounces_the_cross_site_post(browser: FlaskClient, idp: Pki) -> None:
    request_id = start_login(browser)
    data = {"SAMLResponse": "PHg+", "RelayState": '"><script>'}
    r = browser.post("/identity/saml/acs", data=data)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert f'action="{ACS}"' in r.text and f'name="{saml.BOUNCED}" value="1"' in r.text
    assert "<script>" not in r.text.replace("<script>document", "")
    with browser.session_transaction() as session:
        assert session[saml.PENDING]["id"] == request_id  # still pending
    assert browser.post("/identity/saml/acs", data={saml.BOUNCED: "1"}).status_code == 403


def test_replayed_response_is_rejected(
    browser: FlaskClient, idp: Pki, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "snf.portal.saml")
    request_id = start_login(browser)
    xml = signed_response(request_id, idp)
    assert post_acs(browser, xml).status_code == 302
    with app.app_context():
        seen = db.session.scalars(select(SeenAssertion)).all()
        assert len(seen) == 1 and seen[0].expires > datetime.now(UTC) + timedelta(minutes=5)
        db.session.add(SeenAssertion(id="_old", expires=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    # The request id is used up...
    assert_rejected(post_acs(browser, xml), caplog, "no pending request")
    # ...and even with it pending again, the assertion ID is.
    with browser.session_transaction() as session:
        session[saml.PENDING] = {"id": request_id, "next": "/ui/"}
    assert_rejected(post_acs(browser, xml), caplog, "replayed assertion")
    with app.app_context():
        assert db.session.get(SeenAssertion, "_old") is None  # purged on use


def test_unsolicited_when_allowed(
    browser: FlaskClient, idp: Pki, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    config = app.config["SNF"]
    app.config["SNF"] = replace(config, saml=replace(config.saml, allow_unsolicited=True))
    caplog.set_level(logging.INFO, "snf.portal.saml")
    xml = signed_response(None, idp)
    r = post_acs(browser, xml, relay_state="//evil.test/")
    assert r.status_code == 302 and r.location.endswith("/ui/signup")
    assert pending_identity(browser)["next"] == "/ui/"
    assert_rejected(post_acs(browser, xml), caplog, "replayed assertion")
    # An answer to some request of another browser is no unsolicited one.
    assert_rejected(post_acs(browser, signed_response(new_id(), idp)), caplog, "InResponseTo")


# -- linking to an account ---------------------------------------------------------------


def test_logged_in_user_adds_the_method(
    browser: FlaskClient, idp: Pki, alice: dict, caplog: pytest.LogCaptureFixture
) -> None:
    login_with_password(browser, alice["email"], "correct horse")
    r = saml_login(browser, idp)
    assert r.status_code == 302 and r.location.endswith("/ui/methods")
    page = browser.get("/ui/methods")
    assert 'data-provider="saml"' in page.text and PERSISTENT_ID in page.text
    assert "The login method was added." in page.text
    logout(browser)
    assert saml_login(browser, idp).location.endswith("/ui/")
    assert "Welcome, Alice" in browser.get("/ui/").text


def test_identity_of_another_verified_account_is_refused(
    browser: FlaskClient, idp: Pki, alice: dict, app: Flask
) -> None:
    with app.app_context():
        bob = accounts.create_user(db.session, f"bob@{SCOPE}", "Bob", active=True)
        bob.login_methods.append(LoginMethod(provider="saml", identifier=PERSISTENT_ID))
        db.session.commit()
    login_with_password(browser, alice["email"], "correct horse")
    r = saml_login(browser, idp)
    assert r.status_code == 302 and r.location.endswith("/ui/methods")
    page = browser.get("/ui/methods")
    assert "This login belongs to another account." in page.text
    assert 'data-provider="saml"' not in page.text
    assert "Welcome, Alice" in browser.get("/ui/").text  # still Alice


def test_unsolicited_never_adds_a_method(
    browser: FlaskClient, idp: Pki, alice: dict, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    config = app.config["SNF"]
    app.config["SNF"] = replace(config, saml=replace(config.saml, allow_unsolicited=True))
    caplog.set_level(logging.INFO, "snf.portal.saml")
    login_with_password(browser, alice["email"], "correct horse")
    r = post_acs(browser, signed_response(None, idp))
    assert_rejected(r, caplog, "unsolicited response while logged in")


# -- an independent IdP: pysaml2 -------------------------------------------------------


@pytest.fixture
def pysaml2_idp(browser: FlaskClient, idp: Pki) -> Server:
    """pysaml2's IdP, which knows our SP from its metadata and wants signed requests."""
    config = IdPConfig()
    config.load({
        "entityid": IDP,
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [(SSO, BINDING_HTTP_REDIRECT)]},
            "want_authn_requests_signed": True,
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_URI,
                                   "attribute_restrictions": None}},
        }},
        "key_file": str(idp.key_file),
        "cert_file": str(idp.cert_file),
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"inline": [browser.get("/identity/saml/metadata").text]},
    })  # fmt: skip
    return Server(config=config)


def pysaml2_answer(browser: FlaskClient, server: Server, **signing: object) -> str:
    """Start a login, let pysaml2 check our AuthnRequest and answer it."""
    r = browser.get("/identity/saml/login?next=/ui/quotas")
    query = {k: v[0] for k, v in parse_qs(urlsplit(r.location).query).items()}
    request = server.parse_authn_request(
        query["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=query["RelayState"],
        sigalg=query["SigAlg"], signature=query["Signature"],
    )  # fmt: skip
    args = server.response_args(request.message, [BINDING_HTTP_POST])
    assert args["destination"] == ACS and args["sp_entity_id"] == SP
    name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice-pid",
                     name_qualifier=IDP, sp_name_qualifier=SP)  # fmt: skip
    identity = {"eduPersonPrincipalName": [f"alice@{SCOPE}"], "mail": [f"alice@{SCOPE}"],
                "displayName": ["Alice Liddell"]}  # fmt: skip
    authn = {"class_ref": AUTHN_PASSWORD_PROTECTED}
    return str(server.create_authn_response(identity, userid="alice", name_id=name_id,
                                            authn=authn, sign_assertion=True, sign_response=False,
                                            **signing, **args))  # fmt: skip


SHA256 = {"sign_alg": SIG_RSA_SHA256, "digest_alg": DIGEST_SHA256}


def test_pysaml2_idp_round_trip(browser: FlaskClient, pysaml2_idp: Server) -> None:
    r = post_acs(browser, pysaml2_answer(browser, pysaml2_idp, **SHA256))
    assert r.status_code == 302 and r.location.endswith("/ui/signup")
    pending = pending_identity(browser)
    assert pending["identifier"] == PERSISTENT_ID and pending["next"] == "/ui/quotas"
    assert pending["email"] == f"alice@{SCOPE}" and pending["display_name"] == "Alice Liddell"


def test_pysaml2_refuses_a_badly_signed_request(browser: FlaskClient, pysaml2_idp: Server,
                                                pki: dict[str, Pki]) -> None:  # fmt: skip
    r = browser.get("/identity/saml/login")
    query = {k: v[0] for k, v in parse_qs(urlsplit(r.location).query).items()}
    with pytest.raises(IncorrectlySigned):
        pysaml2_idp.parse_authn_request(
            query["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state="/ui/other",
            sigalg=query["SigAlg"], signature=query["Signature"],
        )  # fmt: skip


def test_pysaml2_tampered_response_is_rejected(
    browser: FlaskClient, pysaml2_idp: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "snf.portal.saml")
    xml = pysaml2_answer(browser, pysaml2_idp, **SHA256)
    tampered = xml.replace(">alice-pid<", ">admin-pid<")
    assert tampered != xml
    assert_rejected(post_acs(browser, tampered), caplog, "Signature validation failed")


def test_pysaml2_default_sha1_is_rejected(
    browser: FlaskClient, pysaml2_idp: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "snf.portal.saml")
    xml = pysaml2_answer(browser, pysaml2_idp)
    assert SIG_RSA_SHA1 in xml
    assert_rejected(post_acs(browser, xml), caplog, "Deprecated signature algorithm")
