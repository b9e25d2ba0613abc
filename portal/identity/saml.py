"""Log in through a SAML2 identity provider (a Shibboleth federation's IdP), with
python3-saml (``onelogin.saml2``) as the service provider.

- ``GET /identity/saml/login?next=…`` sends the browser to the IdP with a signed
  AuthnRequest (HTTP-Redirect).  The request id and the (safe) target stay in Flask's signed
  session; RelayState only carries the target for unsolicited logins.
- ``POST /identity/saml/acs`` takes the answer.  The IdP posts it cross-site, so the
  ``SameSite=Lax`` session cookie does not come with it: the ACS first answers with a page
  that posts the same fields back to itself, same-site, with the cookie.  Then the library
  checks the response (strict: signed assertion, no SHA-1, Destination, Recipient, Issuer,
  Audience, times) and this module adds what it leaves out: the response answers the
  pending request (one-time id; unsolicited answers only when allowed, never to add a
  method), an AudienceRestriction is present, the assertion is used once (replay cache),
  scoped attributes are in the IdP's scopes.  The identity goes on to
  :func:`~.external.finish_login`.
- ``GET /identity/saml/metadata`` is the SP's metadata for the federation.

Identifiers are IdP-qualified: a persistent NameID or eduPersonTargetedID becomes
``<idp entity>!<sp entity>!<value>`` (Shibboleth's form), eppn and pairwise-id are scoped.
The IdP's ``mail`` is taken as verified only when it is in one of the IdP's scopes (its own
domains): a federation IdP vouches for its institution's addresses, not for others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template_string, request, session
from flask_login import current_user
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from snf.common.config import SamlConfig
from snf.common.db import utcnow

from ..extensions import db
from ..web import csrf
from ..web.safe_next import safe_next
from .external import ExternalIdentity, finish_login, refuse
from .models import SeenAssertion

log = logging.getLogger("snf.portal.saml")

PREFIX = "/identity/saml"
PENDING = "saml_request"  # {"id": AuthnRequest ID, "next": safe target}
BOUNCED = "snf_bounced"
#: How long a used assertion without a NotOnOrAfter stays in the replay cache.
SEEN_DEFAULT = timedelta(days=1)

EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
TARGETED_ID = "urn:oid:1.3.6.1.4.1.5923.1.1.1.10"
PAIRWISE_ID = "urn:oasis:names:tc:SAML:attribute:pairwise-id"
SUBJECT_ID = "urn:oasis:names:tc:SAML:attribute:subject-id"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"
CN = "urn:oid:2.5.4.3"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
#: Attributes whose values must end in "@<one of the IdP's scopes>".
SCOPED = (EPPN, PAIRWISE_ID, SUBJECT_ID)

bp = Blueprint("saml", __name__, url_prefix=PREFIX)
csrf.protect(bp)


class Rejected(Exception):
    """A response that passed the library but not our checks: ``reason`` for the user,
    ``detail`` for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- pure helpers ------------------------------------------------------------------------


def sp_urls(base_url: str) -> tuple[str, str]:
    """The SP's entity ID (its metadata URL) and its assertion consumer service URL."""
    base = base_url.rstrip("/")
    return f"{base}{PREFIX}/metadata", f"{base}{PREFIX}/acs"


def pem_certificates(text: str) -> list[str]:
    """Every PEM certificate in ``text`` (an IdP cert file may hold two during a rollover)."""
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)


def build_settings(
    saml: SamlConfig, base_url: str, *, sp_key: str, sp_cert: str, idp_certs: Sequence[str]
) -> dict[str, Any]:
    """python3-saml's settings (reference/auth.md §2): strict, signed AuthnRequests, signed
    assertions required, SHA-256 only."""
    entity_id, acs = sp_urls(base_url)
    idp: dict[str, Any] = {
        "entityId": saml.idp_entity_id,
        "singleSignOnService": {"url": saml.idp_sso_url, "binding": C.BINDING_HTTP_REDIRECT},
    }
    if len(idp_certs) == 1:
        idp["x509cert"] = idp_certs[0]
    else:
        idp["x509certMulti"] = {"signing": list(idp_certs)}
    persistent = "persistent-id" in saml.identifiers
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": entity_id,
            "assertionConsumerService": {"url": acs, "binding": C.BINDING_HTTP_POST},
            "NameIDFormat": C.NAMEID_PERSISTENT if persistent else C.NAMEID_UNSPECIFIED,
            "x509cert": sp_cert,
            "privateKey": sp_key,
        },
        "idp": idp,
        "security": {
            "authnRequestsSigned": True,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,
            "wantNameId": True,
            "wantAttributeStatement": True,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
            "requestedAuthnContext": False,
        },
    }


def request_data(url: str, post: Mapping[str, str] | None = None) -> dict[str, Any]:
    """python3-saml's view of a request to ``url``, a URL under the configured base URL
    (never the Host header)."""
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": "",
        "path_info": parts.path,
        "get_data": {},
        "post_data": dict(post or {}),
    }


def in_scope(value: str, scopes: Sequence[str]) -> bool:
    """``value`` is ``something@scope`` with scope one of ``scopes`` (none: any scope)."""
    local, at, scope = value.rpartition("@")
    if not (local and at and scope):
        return False
    return not scopes or scope.lower() in {s.lower() for s in scopes}


def check_scopes(attributes: Mapping[str, list[Any]], scopes: Sequence[str]) -> None:
    for name in SCOPED:
        for value in attributes.get(name, []):
            if not isinstance(value, str) or not in_scope(value, scopes):
                raise Rejected(
                    "The identity provider sent an identifier outside its scope.",
                    f"{name} value {value!r} is not in the scopes {list(scopes)}",
                )


def _single(attributes: Mapping[str, list[Any]], name: str) -> Any:
    values = attributes.get(name) or []
    if len(values) > 1:
        raise Rejected(
            "The identity provider sent an ambiguous identifier.",
            f"{name} has {len(values)} values",
        )
    return values[0] if values else None


def _qualified(value: str | None, qualifier: str | None, idp: str, sp: str) -> str | None:
    if not value:
        return None
    if qualifier and qualifier != idp:
        raise Rejected(
            "The identity provider sent an identifier of another provider.",
            f"NameQualifier {qualifier!r} is not {idp!r}",
        )
    return f"{idp}!{sp}!{value}"


def choose_identifier(
    preference: Sequence[str],
    *,
    nameid: str | None,
    nameid_format: str | None,
    nameid_qualifier: str | None,
    attributes: Mapping[str, list[Any]],
    idp: str,
    sp: str,
) -> tuple[str, str]:
    """The first of ``preference`` the response carries, as (kind, IdP-qualified value)."""
    for kind in preference:
        value: str | None = None
        if kind == "persistent-id" and nameid_format == C.NAMEID_PERSISTENT:
            value = _qualified(nameid, nameid_qualifier, idp, sp)
        elif kind == "targeted-id":
            tid = _single(attributes, TARGETED_ID)
            if isinstance(tid, dict) and isinstance(tid.get("NameID"), dict):
                inner = tid["NameID"]
                value = _qualified(inner.get("value"), inner.get("NameQualifier"), idp, sp)
        elif kind in ("pairwise-id", "eppn"):
            found = _single(attributes, PAIRWISE_ID if kind == "pairwise-id" else EPPN)
            value = found if isinstance(found, str) else None
        if value:
            return kind, value
    raise Rejected(
        "The identity provider did not release an identifier we can use.",
        f"none of {list(preference)} in the response",
    )


def display_name(attributes: Mapping[str, list[Any]]) -> str | None:
    def first(name: str) -> str | None:
        values = [v for v in attributes.get(name, []) if isinstance(v, str)]
        return values[0] if values else None

    given, surname = first(GIVEN_NAME), first(SURNAME)
    joined = " ".join(p for p in (given, surname) if p) or None
    return first(DISPLAY_NAME) or first(CN) or joined


def email_vouched(email: str | None, scopes: Sequence[str]) -> bool:
    """The IdP vouches for an address in its own domains (a scope or a subdomain of one)."""
    if not email or email.count("@") != 1:
        return False
    domain = email.rpartition("@")[2].lower()
    return any(domain == s.lower() or domain.endswith("." + s.lower()) for s in scopes)


def to_identity(
    saml: SamlConfig,
    sp: str,
    *,
    nameid: str | None,
    nameid_format: str | None,
    nameid_qualifier: str | None,
    attributes: Mapping[str, list[Any]],
) -> ExternalIdentity:
    """Scope checks, the identifier and the profile of a checked response."""
    check_scopes(attributes, saml.idp_scopes)
    kind, identifier = choose_identifier(
        saml.identifiers,
        nameid=nameid,
        nameid_format=nameid_format,
        nameid_qualifier=nameid_qualifier,
        attributes=attributes,
        idp=saml.idp_entity_id,
        sp=sp,
    )
    mails = [v.strip() for v in attributes.get(MAIL, []) if isinstance(v, str) and v.strip()]
    email = mails[0] if mails else None
    eppn = _single(attributes, EPPN)
    name = display_name(attributes)
    return ExternalIdentity(
        method="saml",
        identifier=identifier,
        email=email,
        email_verified=email_vouched(email, saml.idp_scopes),
        display_name=name,
        info={
            "idp": saml.idp_entity_id,
            "identifier": kind,
            "eppn": eppn,
            "mail": email,
            "name": name,
        },
    )


# -- replay cache ------------------------------------------------------------------------


def remember_assertion(assertion_id: str | None, not_on_or_after: int | None) -> None:
    """Record a used assertion until it expires; :class:`Rejected` if it was used before.
    Expired entries go first.  Commits."""
    now = utcnow()
    if not assertion_id or len(assertion_id) > 256:
        raise Rejected(
            "The identity provider's answer is not valid.",
            f"unusable assertion ID {assertion_id!r}",
        )
    if not_on_or_after is None:
        expires = now + SEEN_DEFAULT
    else:
        drift = timedelta(seconds=C.ALLOWED_CLOCK_DRIFT)
        expires = max(datetime.fromtimestamp(not_on_or_after, UTC), now) + drift
    db.session.execute(delete(SeenAssertion).where(SeenAssertion.expires < now))
    db.session.commit()
    db.session.add(SeenAssertion(id=assertion_id, expires=expires))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Rejected(
            "This login answer was already used: log in again.",
            f"replayed assertion {assertion_id}",
        ) from None


# -- Flask views -------------------------------------------------------------------------


class _Auth(OneLogin_Saml2_Auth):  # type: ignore[misc]
    """Keeps the checked response, for the checks the library leaves to us."""

    checked: Any = None

    def store_valid_response(self, response: Any) -> None:
        super().store_valid_response(response)
        self.checked = response


def _config() -> tuple[SamlConfig, str]:
    snf = current_app.config["SNF"]
    return snf.saml, snf.portal.base_url


def _settings() -> dict[str, Any]:
    saml, base_url = _config()
    return build_settings(
        saml,
        base_url,
        sp_key=saml.sp_key_file.read_text(),
        sp_cert=saml.sp_cert_file.read_text(),
        idp_certs=pem_certificates(saml.idp_cert_file.read_text()),
    )


def _unavailable(exc: Exception) -> Response:
    log.error("SAML login is misconfigured: %s", exc)
    return refuse(f"{_config()[0].name} is not available right now.", 503)


def _reject(reason: str, detail: str) -> Response:
    log.warning("SAML response rejected (from %s): %s", request.remote_addr, detail)
    return refuse(reason)


@bp.get("/login")
def login() -> Response:
    target = safe_next(request.args.get("next"))
    _, base_url = _config()
    try:
        auth = OneLogin_Saml2_Auth(request_data(sp_urls(base_url)[1]), _settings())
        url = auth.login(return_to=target)
    except Exception as exc:  # unreadable key or certificate, bad settings
        return _unavailable(exc)
    session[PENDING] = {"id": auth.get_last_request_id(), "next": target}
    response = redirect(url)
    response.headers["Cache-Control"] = "no-store"
    return response


_BOUNCE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Logging in</title></head><body onload="document.forms[0].submit()">
<form method="post" action="{{ action }}">
<input type="hidden" name="SAMLResponse" value="{{ response }}">
{% if relay is not none %}<input type="hidden" name="RelayState" value="{{ relay }}">{% endif %}
<input type="hidden" name="{{ bounced }}" value="1">
<noscript><p>Press the button to finish logging in.</p>
<button type="submit">Continue</button></noscript>
</form></body></html>"""


def _bounce(acs: str) -> Response:
    """Post the IdP's answer back to the ACS from this site, so that the session cookie
    (SameSite=Lax: not sent on the IdP's cross-site POST) comes along."""
    form = request.form
    body = render_template_string(
        _BOUNCE,
        action=acs,
        response=form["SAMLResponse"],
        relay=form.get("RelayState"),
        bounced=BOUNCED,
    )
    return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})


@bp.post("/acs")
@csrf.exempt
def acs() -> Response:
    saml, base_url = _config()
    entity_id, acs_url = sp_urls(base_url)
    if "SAMLResponse" not in request.form:
        return _reject("No login answer came with this request.", "no SAMLResponse")
    if request.form.get(BOUNCED) != "1":
        return _bounce(acs_url)
    pending = session.pop(PENDING, None)
    request_id = pending.get("id") if isinstance(pending, dict) else None
    if request_id is None:
        if not saml.allow_unsolicited:
            return _reject(
                "This login was not started here, or it expired: start again.",
                "no pending request (unsolicited response)",
            )
        if current_user.is_authenticated:
            return _reject(
                "Add a login method from your account page.", "unsolicited response while logged in"
            )
    try:
        auth = _Auth(request_data(acs_url, request.form), _settings())
    except Exception as exc:
        return _unavailable(exc)
    try:
        identity = _checked(auth, request_id, saml, entity_id)
    except Rejected as exc:
        return _reject(exc.reason, exc.detail)
    target = pending["next"] if isinstance(pending, dict) else request.form.get("RelayState")
    log.info("SAML login of %s from %s", identity.identifier, saml.idp_entity_id)
    return finish_login(identity, safe_next(target))


def _checked(auth: _Auth, request_id: str | None, saml: SamlConfig, sp: str) -> ExternalIdentity:
    """The library's checks, then ours; the identity, or :class:`Rejected`."""
    invalid = "The identity provider's answer is not valid."
    try:
        auth.process_response(request_id=request_id)
    except Exception as exc:  # not base64, not XML, duplicate attributes...
        raise Rejected(invalid, f"unreadable: {exc}") from None
    if auth.get_errors() or not auth.is_authenticated() or auth.checked is None:
        errors = ", ".join(auth.get_errors()) or "not authenticated"
        raise Rejected(invalid, auth.get_last_error_reason() or errors)
    in_response_to = auth.get_last_response_in_response_to()
    if in_response_to != request_id:
        raise Rejected("The identity provider's answer does not match this login.",
                       f"InResponseTo {in_response_to!r}, expected {request_id!r}")  # fmt: skip
    if not auth.checked.get_audiences():
        raise Rejected(invalid, "the assertion has no AudienceRestriction")
    identity = to_identity(
        saml, sp, nameid=auth.get_nameid(), nameid_format=auth.get_nameid_format(),
        nameid_qualifier=auth.get_nameid_nq(), attributes=auth.get_attributes(),
    )  # fmt: skip
    remember_assertion(auth.get_last_assertion_id(), auth.get_last_assertion_not_on_or_after())
    return identity


@bp.get("/metadata")
def metadata() -> Response:
    try:
        settings = OneLogin_Saml2_Settings(_settings(), sp_validation_only=True)
        xml = settings.get_sp_metadata()
        errors = settings.validate_metadata(xml)
    except Exception as exc:
        return _unavailable(exc)
    if errors:
        return _unavailable(ValueError(f"invalid SP metadata: {errors}"))
    return Response(xml, mimetype="application/samlmetadata+xml")
