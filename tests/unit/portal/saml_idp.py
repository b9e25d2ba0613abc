"""A forged SAML identity provider for the SP tests: throw-away keys and certificates,
Responses built from a template and signed with python3-saml's xmlsec binding, and the
browser's side of a login (start it, post the answer through the ACS's same-site bounce)."""

from __future__ import annotations

import base64
import html
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from werkzeug.test import TestResponse

BASE = "https://cloud.example.test"
SP = f"{BASE}/identity/saml/metadata"
ACS = f"{BASE}/identity/saml/acs"
IDP = "https://idp.test/idp"
SSO = "https://idp.test/idp/sso"
SCOPE = "uni.test"

EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"
PERSISTENT = C.NAMEID_PERSISTENT
TRANSIENT = C.NAMEID_TRANSIENT


@dataclass(frozen=True)
class Pki:
    """A key pair with a self-signed certificate, in memory (PEM) and in files."""

    key: str
    cert: str
    key_file: Path
    cert_file: Path


def make_pki(directory: Path, name: str) -> Pki:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (directory / f"{name}.key").write_text(key_pem)
    (directory / f"{name}.crt").write_text(cert_pem)
    return Pki(key_pem, cert_pem, directory / f"{name}.key", directory / f"{name}.crt")


def saml_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return f"_{uuid.uuid4().hex}"


def default_attributes(eppn: str = f"alice@{SCOPE}") -> dict[str, list[str]]:
    return {EPPN: [eppn], MAIL: [f"alice@{SCOPE}"], DISPLAY_NAME: ["Alice Liddell"]}


def assertion_xml(
    request_id: str | None,
    *,
    nameid: str = "alice-pid",
    nameid_format: str = PERSISTENT,
    attributes: dict[str, list[str]] | None = None,
    audience: str | None = SP,
    recipient: str = ACS,
    issuer: str = IDP,
    not_before: timedelta = timedelta(seconds=-30),
    not_on_or_after: timedelta = timedelta(minutes=5),
    assertion_id: str | None = None,
) -> str:
    """An unsigned Assertion; ``audience=None`` leaves out the AudienceRestriction; the
    validity bounds are relative to now."""
    now = datetime.now(UTC)
    nb, nooa = saml_time(now + not_before), saml_time(now + not_on_or_after)
    irt = f' InResponseTo="{request_id}"' if request_id else ""
    restriction = (
        f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience>"
        "</saml:AudienceRestriction>"
        if audience
        else ""
    )
    attrs = "".join(
        f'<saml:Attribute Name="{name}" NameFormat="{C.ATTRNAME_FORMAT_URI}">'
        + "".join(
            f'<saml:AttributeValue xsi:type="xs:string">{escape(v)}</saml:AttributeValue>'
            for v in values
        )
        + "</saml:Attribute>"
        for name, values in (default_attributes() if attributes is None else attributes).items()
    )
    return (
        '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'ID="{assertion_id or new_id()}" Version="2.0" IssueInstant="{saml_time(now)}">'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        "<saml:Subject>"
        f'<saml:NameID Format="{nameid_format}" NameQualifier="{IDP}" SPNameQualifier="{SP}">'
        f"{escape(nameid)}</saml:NameID>"
        '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData{irt} NotOnOrAfter="{nooa}" Recipient="{recipient}"/>'
        "</saml:SubjectConfirmation></saml:Subject>"
        f'<saml:Conditions NotBefore="{nb}" NotOnOrAfter="{nooa}">{restriction}</saml:Conditions>'
        f'<saml:AuthnStatement AuthnInstant="{saml_time(now)}" SessionIndex="{new_id()}">'
        "<saml:AuthnContext><saml:AuthnContextClassRef>"
        "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"
        f"<saml:AttributeStatement>{attrs}</saml:AttributeStatement>"
        "</saml:Assertion>"
    )


def response_xml(
    request_id: str | None,
    assertion: str,
    *,
    destination: str = ACS,
    issuer: str = IDP,
    extensions: str = "",
) -> str:
    now = saml_time(datetime.now(UTC))
    irt = f' InResponseTo="{request_id}"' if request_id else ""
    ext = f"<samlp:Extensions>{extensions}</samlp:Extensions>" if extensions else ""
    return (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{new_id()}" Version="2.0" IssueInstant="{now}" Destination="{destination}"{irt}>'
        f"<saml:Issuer>{issuer}</saml:Issuer>{ext}"
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
        f"</samlp:Status>{assertion}</samlp:Response>"
    )


def sign(xml: str, pki: Pki, algorithm: str = C.RSA_SHA256, digest: str = C.SHA256) -> str:
    """``xml`` with an enveloped signature on its element carrying the first Issuer."""
    signed = OneLogin_Saml2_Utils.add_sign(
        xml, pki.key, pki.cert, sign_algorithm=algorithm, digest_algorithm=digest
    )
    return signed.decode() if isinstance(signed, bytes) else signed


def signed_response(request_id: str | None, pki: Pki, *, destination: str = ACS,
                    response_issuer: str = IDP, **assertion: object) -> str:  # fmt: skip
    """A Response whose Assertion is signed (rsa-sha256/sha256) by ``pki``."""
    signed = sign(assertion_xml(request_id, **assertion), pki)  # type: ignore[arg-type]
    return response_xml(request_id, signed, destination=destination, issuer=response_issuer)


def b64(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


# -- the browser's side ------------------------------------------------------------------


def start_login(browser: FlaskClient, next_url: str = "/ui/") -> str:
    """GET the SP's login; the ID of the AuthnRequest it sends to the IdP."""
    r = browser.get(f"/identity/saml/login?next={quote(next_url)}")
    assert r.status_code == 302, r.text
    query = parse_qs(urlsplit(r.location).query)
    xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(query["SAMLRequest"][0])
    return str(etree.fromstring(xml).get("ID"))


_FIELD = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def post_acs(browser: FlaskClient, xml: str, relay_state: str | None = None) -> TestResponse:
    """The IdP's cross-site POST to the ACS, then the same-site one the bounce page makes."""
    data = {"SAMLResponse": b64(xml)}
    if relay_state is not None:
        data["RelayState"] = relay_state
    first = browser.post("/identity/saml/acs", data=data)
    assert first.status_code == 200, first.text
    fields = {name: html.unescape(value) for name, value in _FIELD.findall(first.text)}
    assert fields["SAMLResponse"] == data["SAMLResponse"]
    return browser.post("/identity/saml/acs", data=fields)
