"""Byte ranges: the ``Range`` request header, ``Content-Range``, ``multipart/byteranges``
bodies (RFC 7233), and the ``Content-Range`` of Pithos' partial updates.

Pure functions on strings and sizes; the caller streams the bytes.  A ``Range`` the server
cannot make sense of is ignored (the whole object is served), as RFC 7233 and Synnefo do;
one that makes sense but misses the object is a 416.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator

from .errors import BadRequest, RangeNotSatisfiable

#: More ranges than this in one request are ignored (served whole): a client asking for
#: hundreds of small pieces is more likely an attack than a reader.
MAX_RANGES = 100

_UNIT = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)=(.*)", re.DOTALL)
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_CONTENT_RANGE = re.compile(r"\s*bytes +(?:([0-9]+)-([0-9]+)|(\*))/([0-9]+|\*)\s*", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The ranges of a ``Range: bytes=a-b,c-,-n`` header as half-open ``(start, stop)``
    pairs within ``size`` bytes, in the order asked (neither sorted nor merged).

    None means "serve the whole object": no header, another unit, more than
    :data:`MAX_RANGES` ranges, or a malformed header (signs, spaces inside a spec, an empty
    spec, ``b < a``).  Ranges starting at or past the end (and ``-0``) are dropped; if none
    is left, :class:`RangeNotSatisfiable`.  Nothing of an empty object is satisfiable.
    """
    if header is None:
        return None
    unit = _UNIT.fullmatch(header)
    if unit is None or unit.group(1).lower() != "bytes":
        return None
    specs = unit.group(2).split(",")
    if len(specs) > MAX_RANGES:
        return None
    parsed: list[tuple[int | None, int | None]] = []
    for spec in specs:
        found = _SPEC.fullmatch(spec.strip(" \t"))
        if found is None or found.group(1) == found.group(2) == "":
            return None
        try:
            first = int(found.group(1)) if found.group(1) else None
            last = int(found.group(2)) if found.group(2) else None
        except ValueError:  # more digits than int() accepts
            return None
        if first is not None and last is not None and last < first:
            return None
        parsed.append((first, last))
    ranges: list[tuple[int, int]] = []
    for first, last in parsed:
        if first is None:  # suffix: the last ``last`` bytes
            assert last is not None
            if last > 0 and size > 0:
                ranges.append((max(0, size - last), size))
        elif first < size:
            ranges.append((first, size if last is None else min(last + 1, size)))
    if not ranges:
        raise RangeNotSatisfiable(f"no range of {header.strip()!r} is within {size} bytes", size)
    return ranges


def content_range(start: int, stop: int, size: int) -> str:
    """``Content-Range`` of the bytes ``[start, stop)`` of ``size``: ``bytes a-b/size``."""
    return f"bytes {start}-{stop - 1}/{size}"


def unsatisfied_range(size: int) -> str:
    """``Content-Range`` of a 416: ``bytes */size``."""
    return f"bytes */{size}"


def new_boundary() -> str:
    """A random multipart boundary (hex: never found in a header, unlikely in the data)."""
    return secrets.token_hex(16)


def _part_head(start: int, stop: int, size: int, content_type: str, boundary: str) -> bytes:
    """What precedes one part's bytes: the boundary line and the part's headers."""
    ctype = "".join(" " if c in "\r\n\x00" else c for c in content_type)
    return (
        f"--{boundary}\r\nContent-Type: {ctype}\r\n"
        f"Content-Range: {content_range(start, stop, size)}\r\n\r\n"
    ).encode()


def _closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def multipart_length(
    ranges: Iterable[tuple[int, int]], size: int, content_type: str, boundary: str
) -> int:
    """The exact length of :func:`multipart_body` for ``ranges`` (its Content-Length)."""
    total = len(_closing(boundary))
    for start, stop in ranges:
        total += len(_part_head(start, stop, size, content_type, boundary)) + (stop - start) + 2
    return total


def multipart_body(
    parts: Iterable[tuple[int, int, Iterable[bytes]]], size: int, content_type: str, boundary: str
) -> Iterator[bytes]:
    """A ``multipart/byteranges`` body: for each ``(start, stop, data)`` the part's head,
    the chunks of ``data`` (which must hold exactly ``stop - start`` bytes) and CRLF; then
    the closing boundary.  Data of the wrong length raises ValueError mid-stream, so the
    connection is cut instead of a body that disagrees with its Content-Length."""
    for start, stop, data in parts:
        yield _part_head(start, stop, size, content_type, boundary)
        sent = 0
        for chunk in data:
            sent += len(chunk)
            if sent > stop - start:
                raise ValueError(f"part {start}-{stop - 1} got more than {stop - start} bytes")
            if chunk:
                yield bytes(chunk)
        if sent != stop - start:
            raise ValueError(f"part {start}-{stop - 1} got {sent} of {stop - start} bytes")
        yield b"\r\n"
    yield _closing(boundary)


def parse_content_range(header: str) -> tuple[int | None, int | None, int | None]:
    """A partial update's ``Content-Range`` as (first, last inclusive, total), None for ``*``.

    Accepted: ``bytes a-b/T``, ``bytes a-b/*``, ``bytes */T`` and ``bytes */*`` (append).
    ``b < a``, or ``b >= T`` when both are given, is a BadRequest like any other form.
    """
    found = _CONTENT_RANGE.fullmatch(header)
    if found is None:
        raise BadRequest(f"Content-Range must be 'bytes a-b/total', 'bytes a-b/*' or "
                         f"'bytes */*', not {header[:80]!r}")  # fmt: skip
    a, b, _star, t = found.groups()
    try:
        first = None if a is None else int(a)
        last = None if b is None else int(b)
        total = None if t == "*" else int(t)
    except ValueError:
        raise BadRequest("Content-Range has a number too long") from None
    if first is not None and last is not None and last < first:
        raise BadRequest(f"Content-Range ends ({last}) before it starts ({first})")
    if last is not None and total is not None and last >= total:
        raise BadRequest(f"Content-Range ends ({last}) past its total length ({total})")
    return first, last, total
