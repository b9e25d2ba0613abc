"""Accounts inside a Linux image: password hashes for its /etc/shadow, SSH authorized_keys,
and owner/group names resolved through the image's own /etc/passwd and /etc/group.

Pure functions over str, no I/O. Every file parsed here comes from an untrusted image: junk
lines are skipped where that is harmless, and InvalidInput is raised where it is not.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from dataclasses import dataclass

from snf.common.errors import InvalidInput

ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000
ROUNDS_MAX = 999_999_999
ID_MAX = 4_294_967_294  # 4294967295 is (uid_t)-1, "no id"
MAX_PASSWORD_BYTES = 511  # libxcrypt's crypt() refuses longer passphrases: no login with one
MAX_KEYS = 64
MAX_AUTH_KEYS_BYTES = 16 * 1024

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_C = "[./0-9A-Za-z]"
_SALT = re.compile(f"{_C}*")
# The order in which "$6$" encodes the final digest: 21 rotated triples, then byte 63.
_ORDER = [
    j
    for i in range(21)
    for j in ((i, i + 21, i + 42), (i + 21, i + 42, i), (i + 42, i, i + 21))[i % 3]
]
_STRONG_HASH = re.compile(
    rf"\$6\$(?:rounds=[0-9]{{1,9}}\$)?{_C}{{0,16}}\${_C}{{86}}"
    rf"|\$5\$(?:rounds=[0-9]{{1,9}}\$)?{_C}{{0,16}}\${_C}{{43}}"
    rf"|\$g?y\${_C}+\${_C}+\${_C}{{43}}"
    rf"|\$2[by]\$(?:0[4-9]|[12][0-9]|3[01])\${_C}{{53}}"
)
_ID = re.compile("[0-9]{1,10}")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Key type -> how many length-prefixed strings its public key blob holds (the type included).
_KEY_FIELDS = {
    "ssh-ed25519": 2,
    "ssh-rsa": 3,
    "ecdsa-sha2-nistp256": 3,
    "ecdsa-sha2-nistp384": 3,
    "ecdsa-sha2-nistp521": 3,
    "sk-ssh-ed25519@openssh.com": 3,
    "sk-ecdsa-sha2-nistp256@openssh.com": 4,
    "ssh-dss": 5,
}


def _repeat(data: bytes, length: int) -> bytes:
    return (data * (length // len(data) + 1))[:length]


def sha512_crypt(password: str, salt: str | None = None, rounds: int = 100_000) -> str:
    """The "$6$" crypt of ``password`` (UTF-8), as in Drepper's "Unix crypt using SHA-256
    and SHA-512". ``salt``: [./0-9A-Za-z], cut to 16 characters as the specification does;
    None draws 16 with :mod:`secrets`. ``rounds`` is clamped to [1000, 999999999] and is
    written as "rounds=N$" unless it is 5000. The password may hold at most 511 bytes."""
    if salt is None:
        salt = "".join(secrets.choice(_B64) for _ in range(16))
    if not _SALT.fullmatch(salt):
        raise InvalidInput(f"salt {salt!r} has characters outside [./0-9A-Za-z]")
    if not isinstance(rounds, int):
        raise InvalidInput(f"rounds {rounds!r} is not an integer")
    salt, rounds = salt[:16], min(max(rounds, ROUNDS_MIN), ROUNDS_MAX)
    try:
        pw, s, sha = password.encode(), salt.encode(), hashlib.sha512
    except UnicodeEncodeError:
        raise InvalidInput("the password is not valid Unicode text") from None
    if len(pw) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"the password is {len(pw)} bytes; at most {MAX_PASSWORD_BYTES} bytes")
    if b"\0" in pw:
        raise InvalidInput("the password holds a NUL character")
    b = sha(pw + s + pw).digest()
    ctx = sha(pw + s + _repeat(b, len(pw)))
    n = len(pw)
    while n:
        ctx.update(b if n & 1 else pw)
        n >>= 1
    a = ctx.digest()
    ctx = sha()
    for _ in range(len(pw)):
        ctx.update(pw)
    p = _repeat(ctx.digest(), len(pw))
    s_seq = _repeat(sha(s * (16 + a[0])).digest(), len(s))
    # Round i hashes (P if i odd else C) + (S if i % 3) + (P if i % 7) + (C if i odd else P).
    # The pattern repeats every 42 rounds: precompute each round's bytes around C.
    steps: list[tuple[bytes, bytes]] = []
    for i in range(42):
        middle = (s_seq if i % 3 else b"") + (p if i % 7 else b"")
        steps.append((p + middle, b"") if i & 1 else (b"", middle + p))
    c = a
    cycles, rest = divmod(rounds, 42)
    for _ in range(cycles):
        for prefix, suffix in steps:
            c = sha(prefix + c + suffix).digest()
    for prefix, suffix in steps[:rest]:
        c = sha(prefix + c + suffix).digest()
    chars: list[str] = []
    for k in range(0, 63, 3):
        w = c[_ORDER[k]] << 16 | c[_ORDER[k + 1]] << 8 | c[_ORDER[k + 2]]
        chars += (_B64[(w >> shift) & 63] for shift in (0, 6, 12, 18))
    chars += (_B64[c[63] & 63], _B64[c[63] >> 6])
    head = "$6$" if rounds == ROUNDS_DEFAULT else f"$6$rounds={rounds}$"
    return f"{head}{salt}${''.join(chars)}"


def check_hash(value: str) -> str:
    """Return ``value`` if it is a crypt(3) hash of $6$, $5$, $y$, $gy$, $2b$ or $2y$."""
    if not (isinstance(value, str) and len(value) < 512 and _STRONG_HASH.fullmatch(value)):
        raise InvalidInput(
            "img_passwd_hash is not a crypt(3) hash of a strong scheme ($6$, $5$, $y$, $gy$, $2b$)"
        )
    return value


def _check_name(kind: str, name: str) -> None:
    if not name or _CONTROL.search(name) or ":" in name:
        raise InvalidInput(f"{kind} {name!r} is not a valid {kind} name")


def set_password(shadow: str, user: str, hashed: str, today: int) -> str:
    """``shadow`` with every line of ``user`` given password ``hashed`` and last change
    ``today`` (days since 1970); a line shorter than 9 fields is padded with empty ones.
    All other lines and fields, and the trailing newline or its absence, are kept."""
    _check_name("user", user)
    if not hashed or _CONTROL.search(hashed) or ":" in hashed:
        raise InvalidInput("the password hash is empty or holds ':' or a control character")
    if not isinstance(today, int) or today < 0:
        raise InvalidInput(f"today {today!r} is not a day count since 1970")
    lines = shadow.split("\n")
    found = False
    for k, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] != user:
            continue
        fields += [""] * (9 - len(fields))
        fields[1], fields[2] = hashed, str(today)
        lines[k] = ":".join(fields)
        found = True
    if not found:
        raise InvalidInput(f"user {user} is not in the image's /etc/shadow")
    return "\n".join(lines)


def today_days(now: float) -> int:
    """Days since 1970-01-01 UTC at epoch time ``now``: shadow's "last change" field."""
    if not math.isfinite(now) or now < 0:
        raise InvalidInput(f"time {now!r} is not a time after 1970")
    return int(now // 86400)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def _entries(text: str, count: int) -> list[list[str]]:
    """The lines of a passwd-style file with ``count`` fields. Like glibc, leading blanks
    and '#' comments are skipped; so are NIS ('+'/'-') and malformed lines."""
    entries = []
    for line in text.split("\n"):
        fields = line.lstrip(" \t\v\f\r").split(":")
        if len(fields) == count and fields[0] and fields[0][0] not in "#+-":
            entries.append(fields)
    return entries


def _id(text: str) -> int | None:
    return int(text) if _ID.fullmatch(text) and int(text) <= ID_MAX else None


def parse_passwd(text: str) -> dict[str, User]:
    """The users of an /etc/passwd text by name; the first entry of a name wins."""
    users: dict[str, User] = {}
    for name, _pw, uid_s, gid_s, _gecos, home, shell in _entries(text, 7):
        uid, gid = _id(uid_s), _id(gid_s)
        if uid is not None and gid is not None and name not in users:
            users[name] = User(name, uid, gid, home, shell)
    return users


def parse_group(text: str) -> dict[str, int]:
    """The gid of each group of an /etc/group text; the first entry of a name wins."""
    groups: dict[str, int] = {}
    for name, _pw, gid_s, _members in _entries(text, 4):
        gid = _id(gid_s)
        if gid is not None and name not in groups:
            groups[name] = gid
    return groups


def resolve_owner(owner: str, users: dict[str, User]) -> int:
    """The uid of ``owner``: a user name of the image, else a decimal uid (0..4294967294)."""
    if owner in users:
        return users[owner].uid
    uid = _id(owner)
    if uid is None:
        raise InvalidInput(f"owner {owner!r} is not a user of the image")
    return uid


def resolve_group(group: str, groups: dict[str, int]) -> int:
    """The gid of ``group``: a group name of the image, else a decimal gid (0..4294967294)."""
    if group in groups:
        return groups[group]
    gid = _id(group)
    if gid is None:
        raise InvalidInput(f"group {group!r} is not a group of the image")
    return gid


def _key_id(line: str) -> tuple[str, str] | None:
    """The (type, base64) of an authorized_keys line, after any options as sshd skips them
    (up to the first blank outside double quotes); None for blank and comment lines."""
    line = line.strip()
    tokens = line.split()
    if not tokens or line.startswith("#"):
        return None
    if tokens[0] not in _KEY_FIELDS:
        quoted, k = False, 0
        while k < len(line) and (quoted or line[k] not in " \t"):
            if line[k] == "\\" and quoted and line[k + 1 : k + 2] == '"':
                k += 1
            elif line[k] == '"':
                quoted = not quoted
            k += 1
        tokens = line[k:].split()
    return (tokens[0], tokens[1]) if len(tokens) >= 2 else None


def merge_authorized_keys(existing: str, keys: list[str]) -> str:
    """``existing`` authorized_keys text, kept as is, with each of ``keys`` ("<type> <base64>
    [comment]") whose type and base64 are not already there (with or without options)
    appended on its own line. A non-empty result ends with a newline."""
    present = {kid for line in existing.split("\n") if (kid := _key_id(line))}
    out = existing if not existing or existing.endswith("\n") else existing + "\n"
    for key in keys:
        tokens = key.split()
        if _CONTROL.search(key.strip()) or len(tokens) < 2:
            raise InvalidInput(f"SSH key {key[:60]!r} is not one '<type> <base64> [comment]' line")
        if (tokens[0], tokens[1]) not in present:
            present.add((tokens[0], tokens[1]))
            out += " ".join(tokens) + "\n"
    return out


def _blob_strings(blob: bytes) -> list[bytes] | None:
    """The length-prefixed strings that make up an SSH public key blob; None if it is not."""
    strings, k = [], 0
    while k < len(blob):
        size = int.from_bytes(blob[k : k + 4], "big")
        if k + 4 + size > len(blob):
            return None
        strings.append(blob[k + 4 : k + 4 + size])
        k += 4 + size
    return strings


def _check_key(where: str, ktype: str, data: str) -> None:
    try:
        blob = base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise InvalidInput(f"{where}: the {ktype} key's base64 data does not decode") from None
    strings = _blob_strings(blob) or []
    if strings and strings[0] != ktype.encode():
        raise InvalidInput(f"{where}: the key data is not a {ktype} key")
    ok = len(strings) == _KEY_FIELDS[ktype]
    if "ed25519" in ktype:
        ok = ok and len(strings[1]) == 32
    if "nistp" in ktype:
        ok = ok and strings[1] == ktype[ktype.index("nistp") :][:8].encode()
    if not ok:
        raise InvalidInput(f"{where}: the {ktype} key data is malformed")


def parse_auth_keys(text: str) -> list[str]:
    """Validate the auth_keys OS parameter: OpenSSH public keys, one per line ('#' comments
    and blank lines ignored), each "<type> <base64> [comment]" (comment spaces collapsed).
    Key options (from=, command=, restrict, ...) are rejected: this parameter installs plain
    keys. At most 64 keys and 16 KiB. Returns the keys as normalized lines."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidInput("auth_keys is not valid Unicode text") from None
    if size > MAX_AUTH_KEYS_BYTES:
        raise InvalidInput(f"auth_keys is {size} bytes; at most {MAX_AUTH_KEYS_BYTES} allowed")
    keys: list[str] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line, where = raw.strip(), f"auth_keys line {n}"
        if not line or line.startswith("#"):
            continue
        if _CONTROL.search(line):
            raise InvalidInput(f"{where} contains a control character")
        tokens = line.split()
        if tokens[0] not in _KEY_FIELDS:
            if any(token in _KEY_FIELDS for token in tokens[1:]):
                raise InvalidInput(
                    f"{where}: key options (from=, command=, restrict, ...) are not accepted; "
                    "give '<type> <base64> [comment]'"
                )
            raise InvalidInput(
                f"{where}: key type {tokens[0][:60]!r} is not one of {', '.join(_KEY_FIELDS)}"
            )
        if len(tokens) < 2:
            raise InvalidInput(f"{where}: the {tokens[0]} key has no base64 data")
        _check_key(where, tokens[0], tokens[1])
        keys.append(" ".join(tokens))
        if len(keys) > MAX_KEYS:
            raise InvalidInput(f"auth_keys holds more than {MAX_KEYS} keys")
    if not keys:
        raise InvalidInput("auth_keys holds no SSH public key")
    return keys
