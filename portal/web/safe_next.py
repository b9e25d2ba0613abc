"""Where to go after a login: only same-site paths, anything else becomes ``/ui/``."""

from __future__ import annotations

from urllib.parse import unquote

DEFAULT = "/ui/"


def safe_next(target: str | None, default: str = DEFAULT) -> str:
    """``target`` if it is a path on this site, else ``default``.

    A path must start with one ``/`` (``//host`` is another site), hold no backslash
    (browsers read ``/\\host`` as ``//host``), no control characters or whitespace; the same
    holds after percent-decoding, so encoded variants fail too.
    """
    if not target or len(target) > 2000:
        return default
    for candidate in (target, unquote(target)):
        if not candidate.startswith("/") or candidate.startswith("//"):
            return default
        if "\\" in candidate or any(ord(c) < 0x21 or ord(c) == 0x7F for c in candidate):
            return default
    return target
