"""A scriptable OpenID provider for the portal's OIDC tests.

A small Flask app served by werkzeug on a thread, bound to 127.0.0.1 on a free port:

- ``/.well-known/openid-configuration`` (its ``issuer`` and algorithm list scriptable),
- ``/jwks`` (one RSA key, ``kid`` ``k1``),
- ``/authorize``: approves at once, as :attr:`OpenIDProvider.user`, or answers
  ``error=access_denied`` when :attr:`~OpenIDProvider.deny`; it requires a registered
  redirect URI, ``state``, scope ``openid`` and an S256 ``code_challenge``, which it records,
- ``/token``: client authentication (``client_secret_basic`` or ``_post``), one-time codes
  (a code is spent even by a failed attempt), the same redirect URI and a ``code_verifier``
  matching the challenge; it returns an id_token whose claims (:attr:`~OpenIDProvider.claims`
  overrides them, ``None`` drops one), key and ``alg`` (:attr:`~OpenIDProvider.signing`) the
  test chooses,
- ``/userinfo``: the user's profile for the access token.

Every refusal is appended to :attr:`~OpenIDProvider.refusals`.  :meth:`~OpenIDProvider.reset`
restores the defaults between tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

CLIENT_ID = "snf-portal-test"
CLIENT_SECRET = "client secret: for tests only"
REDIRECT_URI = "https://cloud.example.test/identity/oidc/callback"
KID = "k1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Grant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    user: dict[str, Any]


@dataclass
class Refusal:
    endpoint: str
    error: str
    reason: str


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class OpenIDProvider:
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": KID}))
    #: another key with the same kid, to sign forgeries
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": KID}))
    url: str = ""

    def __post_init__(self) -> None:
        self.reset()
        self.app = self._make_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # Scripting -----------------------------------------------------------------------

    def reset(self) -> None:
        #: who logs in at the next authorize request
        self.user: dict[str, Any] = {
            "sub": "dana-1",
            "email": "dana@example.test",
            "email_verified": True,
            "name": "Dana Example",
        }
        #: id_token claim overrides (None drops the claim)
        self.claims: dict[str, Any] = {}
        #: "good" (the published key), "other-key" (same kid, another key), "none" (unsigned)
        self.signing = "good"
        self.alg = "RS256"
        self.algs_supported: list[str] = ["RS256"]
        #: the issuer the discovery document names (None: this provider's URL)
        self.discovery_issuer: str | None = None
        self.deny = False
        self.send_id_token = True
        #: whether the id_token carries the profile claims (else only the userinfo endpoint)
        self.profile_in_id_token = True
        self.userinfo_sub: str | None = None
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.refusals: list[Refusal] = []

    def start(self) -> OpenIDProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # The provider --------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("oidc_provider")
        app.add_url_rule("/.well-known/openid-configuration", view_func=self.discovery)
        app.add_url_rule("/jwks", view_func=self.jwks)
        app.add_url_rule("/authorize", view_func=self.authorize)
        app.add_url_rule("/token", view_func=self.token, methods=["POST"])
        app.add_url_rule("/userinfo", view_func=self.userinfo)
        return app

    def discovery(self) -> Response:
        return jsonify(
            {
                "issuer": self.discovery_issuer or self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": self.algs_supported,
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    def jwks(self) -> Response:
        return jsonify({"keys": [self.key.as_dict(private=False, alg="RS256", use="sig")]})

    def authorize(self) -> Response:
        args = request.args.to_dict()
        self.authorize_requests.append(args)
        if args.get("client_id") != CLIENT_ID or args.get("redirect_uri") != REDIRECT_URI:
            # Never redirect to an unregistered URI.
            self.refusals.append(Refusal("authorize", "invalid_request", "client/redirect_uri"))
            return Response("unknown client or redirect_uri", 400)
        state = args.get("state")
        problem = None
        if args.get("response_type") != "code":
            problem = "response_type"
        elif "openid" not in args.get("scope", "").split():
            problem = "scope"
        elif not state:
            problem = "state"
        elif args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            problem = "code_challenge"
        if problem:
            self.refusals.append(Refusal("authorize", "invalid_request", problem))
            return self._back({"error": "invalid_request", "error_description": problem}, state)
        if self.deny:
            return self._back({"error": "access_denied"}, state)
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            CLIENT_ID,
            REDIRECT_URI,
            args["code_challenge"],
            args.get("nonce"),
            args["scope"],
            dict(self.user),
        )
        return self._back({"code": code}, state)

    @staticmethod
    def _back(params: dict[str, str], state: str | None) -> Response:
        if state:
            params["state"] = state
        return redirect(f"{REDIRECT_URI}?{urlencode(params)}")

    def _refuse(self, error: str, reason: str, status: int = 400) -> Response:
        self.refusals.append(Refusal("token", error, reason))
        response = jsonify({"error": error, "error_description": reason})
        response.status_code = status
        return response

    def token(self) -> Response:
        form = request.form.to_dict()
        self.token_requests.append(form)
        client = self._client_id()
        if client is None:
            return self._refuse("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return self._refuse("unsupported_grant_type", "grant_type")
        grant = self.codes.pop(form.get("code", ""), None)  # one use, even a failed one
        if grant is None:
            return self._refuse("invalid_grant", "unknown or used code")
        if grant.client_id != client:
            return self._refuse("invalid_grant", "code issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._refuse("invalid_grant", "redirect_uri differs")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128:
            return self._refuse("invalid_grant", "code_verifier missing or malformed")
        if not hmac.compare_digest(s256(verifier), grant.code_challenge):
            return self._refuse("invalid_grant", "code_verifier does not match")
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant.user
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": grant.scope,
        }
        if self.send_id_token:
            body["id_token"] = self.id_token(grant)
        return jsonify(body)

    def _client_id(self) -> str | None:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            client_id, secret = unquote(auth.username or ""), unquote(auth.password or "")
        else:
            client_id, secret = (
                request.form.get("client_id", ""),
                request.form.get("client_secret", ""),
            )
        if client_id == CLIENT_ID and hmac.compare_digest(secret, CLIENT_SECRET):
            return client_id
        return None

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": grant.user["sub"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        if self.profile_in_id_token:
            claims.update({k: v for k, v in grant.user.items() if k != "sub"})
        claims.update(self.claims)
        claims = {k: v for k, v in claims.items() if v is not None}
        if self.signing == "none":
            header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{header}.{b64url(json.dumps(claims).encode())}."
        key = self.key if self.signing == "good" else self.other_key
        return jwt.encode({"alg": self.alg, "kid": KID}, claims, key, algorithms=[self.alg])

    def userinfo(self) -> Response:
        auth = request.headers.get("Authorization", "")
        user = self.access_tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or user is None:
            return Response("", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return jsonify({**user, "sub": self.userinfo_sub or user["sub"]})
