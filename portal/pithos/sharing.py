"""Sharing: the ``X-Object-Sharing`` header (``read=u1,owner:group,*;write=u2``), the
``X-Account-Group-<name>`` headers that define groups, and who a sharing lets in.

A member is ``*`` (every authenticated user), a user (a UUID or an email, which the caller
resolves to a UUID before storing) or ``owner:group``, a group of the account ``owner``.
Write permission implies read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from .errors import BadRequest
from .names import odd_character

ACTIONS = ("read", "write")
#: Members one sharing (read and write together) or one group may list.
MAX_MEMBERS = 256
MAX_GROUP_NAME = 64
#: The longest user name accepted: an email address (RFC 5321's path limit).
MAX_USER = 254

_GROUP = re.compile(r"[A-Za-z0-9_.-]+")
_EMAIL = re.compile(r"[^@]+@[^@]+")


def check_group_name(name: str) -> str:
    """A group name: 1 to 64 ASCII letters, digits, ``_``, ``-`` and ``.``."""
    if not name:
        raise BadRequest("a group name is empty")
    if len(name) > MAX_GROUP_NAME:
        raise BadRequest(f"a group name has at most {MAX_GROUP_NAME} characters")
    if not _GROUP.fullmatch(name):
        raise BadRequest(f"group name {name[:80]!r} may hold only letters, digits, _, - and .")
    return name


def _check_user(user: str, where: str) -> str:
    """A user as given: a UUID or an email, with nothing that would confuse the header."""
    if not user:
        raise BadRequest(f"{where} has an empty member")
    if len(user) > MAX_USER:
        raise BadRequest(f"{where} has a member longer than {MAX_USER} characters")
    if odd_character(user) is not None or any(c.isspace() or c in ',;=:*"' for c in user):
        raise BadRequest(f"{where} member {user[:80]!r} is not a user")
    try:
        uuid.UUID(user)
    except ValueError:
        if not _EMAIL.fullmatch(user):
            raise BadRequest(f"{where} member {user!r} is neither a UUID nor an email") from None
    return user


def _check_member(member: str, where: str) -> str:
    """A sharing member: ``*``, a user, or ``owner:group``."""
    if member == "*":
        return member
    owner, colon, group = member.rpartition(":")
    if colon:
        _check_user(owner, where)
        check_group_name(group)
        return member
    return _check_user(member, where)


def _split_members(value: str, where: str) -> list[str]:
    """``a, b ,c`` → ``[a, b, c]``: stripped, duplicates dropped (first kept); no empty ones."""
    members: list[str] = []
    for item in value.split(","):
        member = item.strip()
        if not member:
            raise BadRequest(f"{where} has an empty member")
        if member not in members:
            members.append(member)
    return members


def parse_sharing(value: str) -> dict[str, list[str]]:
    """``read=u1,owner:group,*;write=u2`` as ``{"read": [...], "write": [...]}``.

    Keys are ``read`` and ``write`` in any case, each at most once; spaces around tokens are
    allowed, as are empty parts between semicolons.  Members keep the order given, without
    duplicates, at most 256 in all.  A blank value is ``{}``: no sharing.
    """
    perms: dict[str, list[str]] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, equals, members = part.partition("=")
        key = key.strip().lower()
        if not equals or key not in ACTIONS:
            raise BadRequest(
                f"X-Object-Sharing: {part.strip()[:80]!r} is not read=... or write=..."
            )
        if key in perms:
            raise BadRequest(f"X-Object-Sharing names {key} twice")
        where = f"X-Object-Sharing {key}"
        perms[key] = [_check_member(m, where) for m in _split_members(members, where)]
    total = sum(len(m) for m in perms.values())
    if total > MAX_MEMBERS:
        raise BadRequest(f"X-Object-Sharing lists {total} members; at most {MAX_MEMBERS}")
    return {key: perms[key] for key in ACTIONS if key in perms}


def format_sharing(perms: Mapping[str, Sequence[str]]) -> str:
    """The ``X-Object-Sharing`` value of ``perms`` (``read`` then ``write``; "" for none)."""
    return ";".join(f"{key}={','.join(perms[key])}" for key in ACTIONS if perms.get(key))


def parse_group_members(value: str) -> list[str]:
    """The users of ``X-Account-Group-<name>: u1,u2`` (UUIDs or emails); [] for a blank
    value, which deletes the group.  Groups hold users only: no ``*``, no other groups."""
    if not value.strip():
        return []
    members = [_check_user(m, "the group") for m in _split_members(value, "the group")]
    if len(members) > MAX_MEMBERS:
        raise BadRequest(f"a group lists {len(members)} members; at most {MAX_MEMBERS}")
    return members


def _any_match(members: Iterable[str], user: str,
               groups: Callable[[str, str], Collection[str]]) -> bool:  # fmt: skip
    for member in members:
        if member == "*" or member == user:
            return True
        owner, colon, group = member.rpartition(":")
        if colon and user in groups(owner, group):
            return True
    return False


def allows(perms: Mapping[str, Sequence[str]], user: str,
           groups: Callable[[str, str], Collection[str]], action: str) -> bool:  # fmt: skip
    """May ``user`` (an authenticated user's UUID) ``read`` or ``write`` under ``perms``?
    ``groups(owner, group)`` gives the members of ``owner:group``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be read or write, not {action!r}")
    if not user:
        return False
    keys = ("read", "write") if action == "read" else ("write",)
    return any(_any_match(perms.get(key) or (), user, groups) for key in keys)
