"""OpenID Connect login ([oidc]) with Authlib's Flask client: authorization code + PKCE.

``GET /identity/oidc/login?next=…`` sends the browser to the provider with a fresh
``state``, ``nonce`` and S256 ``code_challenge``; Authlib keeps them (and the code verifier)
in the signed session cookie under the state, and we keep the safe ``next`` target with
them.  ``GET /identity/oidc/callback`` pops that state (unknown, replayed or foreign →
refused), trades the code for tokens (with the verifier and client secret) and checks the
id_token: a key from the provider's JWKS, an algorithm the discovery document lists (never
``none``, never a symmetric one), ``iss`` = the configured issuer, ``aud`` ∋ client_id,
``exp`` (120 s leeway), ``nonce``.  Then :func:`external.finish_login` decides.

The redirect URI is ``[portal] base_url`` + ``/identity/oidc/callback``, never the Host
header.  Accounts are keyed by ``"<iss> <sub>"`` (an issuer URL holds no space, so the
split is unambiguous), never by email; the email counts as verified only when
``trust_email`` is on and the provider says ``email_verified: true``.

Every failure is a short page for the user (403; 502 when the provider is unreachable) and
one line on logger ``snf.portal.oidc`` for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth, OAuthError
from flask import Blueprint, Flask, current_app, redirect, request, session
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from snf.common.config import OidcConfig
from snf.common.errors import ConfigError

from ..web import csrf
from ..web.safe_next import safe_next
from .external import ExternalIdentity, finish_login, refuse

log = logging.getLogger("snf.portal.oidc")

NAME = "oidc"
PREFIX = "/identity/oidc"
GOOGLE_ISSUER = "https://accounts.google.com"
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: id_token algorithms we verify against the provider's published (public) keys.
ASYMMETRIC_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Profile claims taken from the userinfo endpoint when the id_token lacks an email.
PROFILE_CLAIMS = ("email", "email_verified", "name", "given_name", "family_name")
MAX_IDENTIFIER = 512  # LoginMethod.identifier
TIMEOUT = 10  # seconds, for every request to the provider
_EXTENSION = "snf.portal.oidc"
UNREACHABLE = "The login provider cannot be reached right now. Try again later."

bp = Blueprint(NAME, __name__, url_prefix=PREFIX)
csrf.protect(bp)


class ProviderError(Exception):
    """The provider's discovery document cannot be used."""


# Pure helpers -------------------------------------------------------------------------


def resolve_issuer(config: OidcConfig) -> str:
    """The issuer URL the configuration names (``https``, or ``http`` to a loopback host).

    :raises ConfigError: no usable issuer.
    """
    issuer = GOOGLE_ISSUER if config.preset == "google" else config.issuer.strip()
    parts = urlsplit(issuer)
    if not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"[oidc] issuer: {issuer!r} is not an absolute URL")
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname)):
        raise ConfigError(f"[oidc] issuer: {issuer!r} must use https")
    return issuer


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def redirect_uri(base_url: str) -> str:
    return f"{base_url.rstrip('/')}{PREFIX}/callback"


def signing_algs(metadata: Mapping[str, Any], issuer: str) -> list[str]:
    """The id_token algorithms to accept: the discovery document's, minus ``none`` and
    symmetric ones (OIDC's default is RS256).

    :raises ProviderError: the document names another issuer, or no usable algorithm.
    """
    if metadata.get("issuer") != issuer:
        raise ProviderError(f"discovery names issuer {metadata.get('issuer')!r}, not {issuer!r}")
    listed = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algs = [alg for alg in listed if alg in ASYMMETRIC_ALGS]
    if not algs:
        raise ProviderError(f"no usable id_token signing algorithm in {listed!r}")
    return algs


def claims_options(issuer: str, client_id: str) -> dict[str, dict[str, Any]]:
    """What the id_token must say (Authlib alone checks ``azp`` but not ``aud``)."""
    return {
        "iss": {"essential": True, "values": [issuer]},
        "aud": {"essential": True, "values": [client_id]},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }


def identity_from_claims(claims: Mapping[str, Any], *, trust_email: bool) -> ExternalIdentity:
    """The external identity that checked id_token claims describe.

    :raises ValueError: no usable ``iss``/``sub``.
    """
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str) or not iss or not sub:
        raise ValueError("the id_token has no iss or sub")
    if " " in iss or not 0 < len(sub) <= 255 or len(iss) + len(sub) >= MAX_IDENTIFIER:
        raise ValueError("the id_token's iss or sub is malformed")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p) or None
    info = {k: claims[k] for k in ("iss", "sub", *PROFILE_CLAIMS) if k in claims}
    return ExternalIdentity(
        method=NAME,
        identifier=f"{iss} {sub}",
        email=email,
        email_verified=bool(email) and trust_email and claims.get("email_verified") is True,
        display_name=name,
        info=info,
    )


# Wiring ----------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Register the Authlib client for this app and the ``oidc`` blueprint.

    :raises ConfigError: no usable issuer, scopes without ``openid``, or no client secret.
    """
    config: OidcConfig = app.config["SNF"].oidc
    issuer = resolve_issuer(config)
    if "openid" not in config.scopes:
        raise ConfigError("[oidc] scopes: must include 'openid'")
    if not config.client_id:
        raise ConfigError("[oidc] client_id: not set")
    try:
        secret = config.client_secret_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"[oidc] client_secret_file: cannot read it: {exc}") from exc
    if not secret:
        raise ConfigError(f"[oidc] client_secret_file: {config.client_secret_file} is empty")
    oauth = OAuth(app)
    client = oauth.register(
        NAME,
        client_id=config.client_id,
        client_secret=secret,
        server_metadata_url=discovery_url(issuer),
        client_kwargs={
            "scope": " ".join(config.scopes),
            "code_challenge_method": "S256",
            "default_timeout": TIMEOUT,
        },
    )
    app.extensions[_EXTENSION] = (client, issuer)
    app.register_blueprint(bp)


def _client() -> tuple[FlaskOAuth2App, str]:
    return current_app.extensions[_EXTENSION]  # type: ignore[no-any-return]


def _load_metadata(client: FlaskOAuth2App, issuer: str) -> None:
    """Fetch discovery once; pin the id_token algorithms Authlib will accept."""
    metadata = client.load_server_metadata()
    metadata["id_token_signing_alg_values_supported"] = signing_algs(metadata, issuer)


def _verified_identity(client: FlaskOAuth2App, issuer: str, config: OidcConfig) -> ExternalIdentity:
    """Trade the callback's code for tokens and check them (raises on any failure)."""
    _load_metadata(client, issuer)
    token = client.authorize_access_token(claims_options=claims_options(issuer, config.client_id))
    claims = token.get("userinfo")  # the checked id_token claims
    if not claims:
        raise ValueError("the token response has no id_token")
    if "email" not in claims and client.server_metadata.get("userinfo_endpoint"):
        claims = _with_userinfo(client, token, claims)
    return identity_from_claims(claims, trust_email=config.trust_email)


def _with_userinfo(
    client: FlaskOAuth2App, token: Mapping[str, Any], claims: Mapping[str, Any]
) -> dict[str, Any]:
    """The id_token claims plus the profile claims of the userinfo endpoint (same ``sub``)."""
    info = client.userinfo(token=token)
    if info.get("sub") != claims.get("sub"):
        raise ValueError("the userinfo endpoint answered for another sub")
    return {**claims, **{k: info[k] for k in PROFILE_CLAIMS if k in info}}


# Views -----------------------------------------------------------------------------------


@bp.get("/login")
def login() -> Response:
    client, issuer = _client()
    target = safe_next(request.args.get("next"))
    callback_uri = redirect_uri(current_app.config["SNF"].portal.base_url)
    try:
        _load_metadata(client, issuer)
        found = client.create_authorization_url(callback_uri)
    except (ProviderError, requests.RequestException, ValueError, RuntimeError) as exc:
        log.error("OIDC discovery at %s failed: %s", discovery_url(issuer), exc)
        return refuse(UNREACHABLE, 502)
    client.save_authorize_data(redirect_uri=callback_uri, next=target, **found)
    return redirect(found["url"])


@bp.get("/callback")
def callback() -> Response:
    client, issuer = _client()
    state = request.args.get("state")
    pending = client.framework.get_state_data(session, state) if state else None
    try:
        identity = _verified_identity(client, issuer, current_app.config["SNF"].oidc)
    except MismatchingStateError:
        log.warning(
            "OIDC callback refused: unknown, used or foreign state (from %s)", request.remote_addr
        )
        return refuse("This login has expired or was not started in this browser. Try again.")
    except OAuthError as exc:
        log.warning("OIDC login refused by the provider: %s: %s", exc.error, exc.description)
        if exc.error == "access_denied":
            return refuse("The login was cancelled at the provider.")
        return refuse("The login provider refused the login.")
    except JoseError as exc:
        log.warning("OIDC id_token rejected: %s: %s", type(exc).__name__, exc)
        return refuse("The login provider's answer could not be verified.")
    except (ProviderError, ValueError, RuntimeError) as exc:
        log.warning("OIDC login failed: %s", exc)
        return refuse("The login provider's answer could not be used.")
    except requests.RequestException as exc:
        log.error("OIDC provider unreachable: %s", exc)
        return refuse(UNREACHABLE, 502)
    log.info("OIDC login checked for %s", identity.identifier)
    return finish_login(identity, pending.get("next") if isinstance(pending, dict) else None)
