"""Token and password material: random tokens shown once and kept as SHA-256, scrypt
password hashes (hashlib's, no extra dependency), constant-time comparisons."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def new_token() -> str:
    """43 URL-safe characters from 32 random bytes."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        # Spend the same time on unknown users as on known ones.
        hashlib.scrypt(password.encode(), salt=b"0" * 16, dklen=32, **_SCRYPT)
        return False
    _, n, r, p, salt, key = stored.split("$")
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), dklen=32, n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(got, base64.b64decode(key))
