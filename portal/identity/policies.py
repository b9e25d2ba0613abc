"""Login methods and their policies: may a method log in, sign up, be added to an account."""

from __future__ import annotations

from dataclasses import dataclass

from snf.common.config import Config

METHODS = ("local", "saml", "oidc")


@dataclass(frozen=True)
class Policy:
    enabled: bool
    name: str
    login: bool
    signup: bool
    add: bool


def policy(config: Config, method: str) -> Policy:
    if method == "local":
        c = config.login
        return Policy(True, "Password", c.local_login, c.local_signup, c.local_add)
    if method == "saml":
        s = config.saml
        return Policy(s.enabled, s.name, s.login, s.signup, s.add)
    if method == "oidc":
        o = config.oidc
        return Policy(o.enabled, o.name, o.login, o.signup, o.add)
    return Policy(False, method, False, False, False)


def enabled(config: Config) -> list[str]:
    return [m for m in METHODS if policy(config, m).enabled]
