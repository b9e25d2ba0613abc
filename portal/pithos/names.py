"""Checking the names of accounts, containers and objects, and user metadata headers.

Pure functions: each takes what the client sent and returns it checked (or raises
:class:`BadRequest` naming the problem), so every view refuses bad input alike.

Names may use any Unicode in any normalization, but never "odd" characters: control
characters (category Cc), lone surrogates, U+FFFD (what a decoder leaves for invalid UTF-8)
and the Unicode noncharacters.  Lengths are counted in UTF-8 bytes, as Swift does.

Header values reach us as WSGI gives them, latin-1-decoded ``str``; :func:`header_text` turns
one into the text the client meant (its bytes as UTF-8) and :func:`header_value` back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import BadRequest

MAX_CONTAINER_BYTES = 256
MAX_OBJECT_BYTES = 1024

#: Swift's limits on the user metadata one request sets (``swift/common/constraints.py``).
MAX_META_NAME_BYTES = 128
MAX_META_VALUE_BYTES = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_BYTES = 4096

KINDS = ("Account", "Container", "Object")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _odd_class() -> re.Pattern[str]:
    """One character class for every odd character (faster than a per-character loop)."""
    ranges = [
        "\x00-\x1f",  # C0 controls (category Cc)
        "\x7f-\x9f",  # DEL and C1 controls (category Cc)
        "\ud800-\udfff",  # surrogates: never valid alone in text
        "\ufdd0-\ufdef",  # noncharacters
        "\ufffd",  # the replacement character
    ]
    for plane in range(17):  # U+xFFFE and U+xFFFF on every plane
        base = plane << 16
        ranges.append(f"{chr(base | 0xFFFE)}{chr(base | 0xFFFF)}")
    return re.compile("[" + "".join(ranges) + "]")


_ODD = _odd_class()


def odd_character(text: str) -> str | None:
    """The first odd character of ``text`` as ``U+XXXX`` (with what it is), or None."""
    found = _ODD.search(text)
    if found is None:
        return None
    code = ord(found.group())
    if code <= 0x9F:
        what = "a control character"
    elif 0xD800 <= code <= 0xDFFF:
        what = "a lone surrogate"
    elif code == 0xFFFD:
        what = "the replacement character (invalid UTF-8?)"
    else:
        what = "a Unicode noncharacter"
    return f"{what} (U+{code:04X})"


def _check_text(name: str, what: str, limit: int) -> None:
    """The checks common to container and object names: not empty, no odd characters, short."""
    if not name:
        raise BadRequest(f"the {what} name is empty")
    odd = odd_character(name)
    if odd is not None:
        raise BadRequest(f"the {what} name contains {odd}")
    size = len(name.encode("utf-8"))
    if size > limit:
        raise BadRequest(f"the {what} name has {size} bytes (UTF-8); at most {limit} are allowed")


def check_account(name: str) -> str:
    """An account as it appears in a URL: a user's UUID, lower-case and with dashes."""
    if not _UUID.fullmatch(name):
        raise BadRequest("an account must be a user's UUID (lower-case, with dashes)")
    return name


def check_container(name: str) -> str:
    """A container name: at most 256 UTF-8 bytes, no ``/``, not ``.`` or ``..``."""
    _check_text(name, "container", MAX_CONTAINER_BYTES)
    if "/" in name:
        raise BadRequest("a container name must not contain '/'")
    if name in (".", ".."):
        raise BadRequest(f"{name!r} is not a valid container name")
    return name


def check_object(name: str) -> str:
    """An object name: at most 1024 UTF-8 bytes, no path segment ``.`` or ``..`` (which
    would make URLs ambiguous once a client or proxy normalizes them)."""
    _check_text(name, "object", MAX_OBJECT_BYTES)
    if any(part in (".", "..") for part in name.split("/")):
        raise BadRequest("an object name must not have a path segment '.' or '..'")
    return name


def header_text(value: str, name: str | None = None) -> str:
    """The text of a header value as WSGI gives it (latin-1 ``str``), its bytes read as
    UTF-8; BadRequest (naming the header ``name`` if given) when they are not UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        which = f"the {name} header" if name else "a header"
        raise BadRequest(f"{which} is not valid UTF-8") from None


def header_value(text: str) -> str:
    """The inverse of :func:`header_text`: the latin-1 ``str`` a WSGI server writes out as
    ``text``'s UTF-8 bytes.  CR, LF and NUL become spaces: they would end the header."""
    raw = text.encode("utf-8").decode("latin-1")
    return raw.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def user_metadata(headers: Iterable[tuple[str, str]], kind: str) -> dict[str, str]:
    """The ``X-<kind>-Meta-<key>`` headers among ``headers`` as ``{key: value}``.

    Keys are lower-case (the caller reports them Title-Cased), values are decoded and
    stripped; an empty value is kept, meaning "remove this key".  Swift's limits hold: a key
    of at most 128 bytes, a value of at most 256, at most 90 keys and 4096 bytes in all.
    A key sent twice keeps its last value.
    """
    prefix = f"x-{_kind(kind).lower()}-meta-"
    meta: dict[str, str] = {}
    for header, raw in headers:
        if not header.lower().startswith(prefix):
            continue
        key = header_text(header[len(prefix) :], header).lower()
        if not key:
            raise BadRequest(f"X-{kind}-Meta- needs a key after the prefix")
        key_bytes = len(key.encode("utf-8"))
        if key_bytes > MAX_META_NAME_BYTES:
            raise BadRequest(
                f"a metadata key has {key_bytes} bytes; at most {MAX_META_NAME_BYTES} are allowed"
            )
        value = header_text(raw, header).strip()
        value_bytes = len(value.encode("utf-8"))
        if value_bytes > MAX_META_VALUE_BYTES:
            raise BadRequest(
                f"the value of {header} has {value_bytes} bytes; "
                f"at most {MAX_META_VALUE_BYTES} are allowed"
            )
        meta.pop(key, None)
        meta[key] = value
    if len(meta) > MAX_META_COUNT:
        raise BadRequest(f"{len(meta)} metadata keys; at most {MAX_META_COUNT} are allowed")
    total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in meta.items())
    if total > MAX_META_OVERALL_BYTES:
        raise BadRequest(
            f"the metadata has {total} bytes in all; at most {MAX_META_OVERALL_BYTES} are allowed"
        )
    return meta


def title_key(key: str) -> str:
    """``content-color`` → ``Content-Color``: how a stored key appears in a header name."""
    return "-".join(part.capitalize() for part in key.split("-"))


def meta_headers(meta: Mapping[str, str], kind: str) -> list[tuple[str, str]]:
    """The response headers ``X-<kind>-Meta-<Key>`` for stored metadata ``meta``."""
    prefix = f"X-{_kind(kind)}-Meta-"
    return [(prefix + title_key(key), header_value(value)) for key, value in meta.items()]
