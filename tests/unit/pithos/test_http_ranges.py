"""Tests for snf.portal.pithos.http_ranges: Range, Content-Range and multipart bodies."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Iterator

import pytest

from snf.portal.pithos.errors import BadRequest, RangeNotSatisfiable
from snf.portal.pithos.http_ranges import (
    MAX_RANGES,
    content_range,
    multipart_body,
    multipart_length,
    new_boundary,
    parse_content_range,
    parse_range,
    unsatisfied_range,
)

# --- parse_range: satisfiable ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 1)]),
        ("bytes=0-9", 10, [(0, 10)]),
        ("bytes=2-4", 10, [(2, 5)]),
        ("bytes=9-9", 10, [(9, 10)]),
        ("bytes=5-", 10, [(5, 10)]),
        ("bytes=0-", 10, [(0, 10)]),
        ("bytes=-5", 10, [(5, 10)]),
        ("bytes=-10", 10, [(0, 10)]),
        ("bytes=-1", 1, [(0, 1)]),
        ("bytes=0-0", 1, [(0, 1)]),
        # Clipped to the object.
        ("bytes=5-100", 10, [(5, 10)]),
        ("bytes=-100", 10, [(0, 10)]),
        ("bytes=0-99999999999999999999999999", 10, [(0, 10)]),
        # Several, in the order given, neither sorted nor merged.
        ("bytes=0-1,10-12", 20, [(0, 2), (10, 13)]),
        ("bytes=8-9,0-1", 10, [(8, 10), (0, 2)]),
        ("bytes=0-4,2-6", 10, [(0, 5), (2, 7)]),
        ("bytes=0-0,-5,5-", 10, [(0, 1), (5, 10), (5, 10)]),
        ("bytes=1-1,1-1", 10, [(1, 2), (1, 2)]),
        # Unsatisfiable ones are dropped when another one is left.
        ("bytes=0-1,10-12", 10, [(0, 2)]),
        ("bytes=100-,-0,3-3", 10, [(3, 4)]),
        # White space around specs, any case of the unit.
        ("bytes= 0-1 , 3-4\t", 10, [(0, 2), (3, 5)]),
        ("Bytes=0-1", 10, [(0, 2)]),
        ("BYTES=0-1", 10, [(0, 2)]),
        (" bytes=0-1", 10, [(0, 2)]),
    ],
)
def test_parse_range(header: str, size: int, expected: list[tuple[int, int]]) -> None:
    assert parse_range(header, size) == expected


def test_exactly_max_ranges_are_served() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES))
    assert parse_range(header, 1000) == [(i, i + 1) for i in range(MAX_RANGES)]


# --- parse_range: unsatisfiable (416) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=11-11", 10),
        ("bytes=-0", 10),
        ("bytes=10-10,20-30,-0", 10),
        ("bytes=99999999999999999999999-", 10),
        # Nothing of an empty object is satisfiable.
        ("bytes=0-0", 0),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
        ("bytes=-0", 0),
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.size == size
    assert caught.value.http_status == 416


# --- parse_range: serve the whole object (None) ------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=x-y",
        "bytes=1-x",
        "bytes=+1-2",
        "bytes=-+2",
        "bytes=--2",
        "bytes=1--2",
        "bytes=1-2-3",
        "bytes=1 0-20",
        "bytes=1-2 0",
        "bytes=1 -2",
        "bytes=0x1-2",
        "bytes=1.0-2",
        "bytes=\u0663-\u0665",  # Arabic-Indic digits: int() reads them, HTTP does not
        "bytes=5-4",
        "bytes=0-1,",
        "bytes=,0-1",
        "bytes=0-1,,2-3",
        "bytes=0-1;2-3",
        "bytes = 0-1",
        "bytes0-1",
        "items=0-1",
        "none",
        "=0-1",
        "bytes=0-1\r\n",
        "bytes=" + "9" * 5000 + "-",  # more digits than int() will read
    ],
)
def test_malformed_or_foreign_headers_are_ignored(header: str | None) -> None:
    assert parse_range(header, 100) is None


def test_malformed_wins_over_unsatisfiable() -> None:
    # One bad spec makes the whole header ignored, even if the rest would be a 416.
    assert parse_range("bytes=500-,x", 100) is None
    assert parse_range("bytes=5-4", 0) is None


def test_more_than_max_ranges_serve_the_whole_object() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1))
    assert parse_range(header, 1000) is None


# --- Content-Range -----------------------------------------------------------------------------


def test_content_range() -> None:
    assert content_range(0, 1, 10) == "bytes 0-0/10"
    assert content_range(5, 10, 10) == "bytes 5-9/10"
    assert unsatisfied_range(10) == "bytes */10"
    assert unsatisfied_range(0) == "bytes */0"


def test_new_boundary_is_random_hex() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert len(first) >= 16
    int(first, 16)


# --- multipart ---------------------------------------------------------------------------------

DATA = bytes(range(256)) * 40  # 10240 bytes holding CR, LF and "--" sequences


def chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    """``data`` a few bytes at a time, as the store streams blocks."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def body_for(ranges: list[tuple[int, int]], ctype: str, boundary: str) -> bytes:
    parts = ((a, b, chunks(DATA[a:b])) for a, b in ranges)
    return b"".join(multipart_body(parts, len(DATA), ctype, boundary))


@pytest.mark.parametrize(
    "ranges",
    [
        [(0, 1), (5, 10)],
        [(0, 1), (0, 1)],
        [(10000, 10240), (0, 10240), (17, 18)],
        [(i, i + 3) for i in range(0, 300, 3)],
        [(0, 1)],
    ],
)
@pytest.mark.parametrize("ctype", ["application/octet-stream", "text/plain; charset=utf-8", "x/☃"])
def test_multipart_length_equals_the_body(ranges: list[tuple[int, int]], ctype: str) -> None:
    boundary = new_boundary()
    body = body_for(ranges, ctype, boundary)
    assert multipart_length(ranges, len(DATA), ctype, boundary) == len(body)


def test_multipart_layout() -> None:
    body = body_for([(0, 3), (8, 10)], "text/plain", "BOUND")
    assert body == (
        b"--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/10240\r\n\r\n"
        + DATA[0:3]
        + b"\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10240\r\n\r\n"
        + DATA[8:10]
        + b"\r\n--BOUND--\r\n"
    )


def test_multipart_body_parses_back_into_its_parts() -> None:
    """A MIME parser (here the stdlib's) finds each range with its Content-Range."""
    ranges = [(0, 100), (5000, 5100), (10200, 10240)]
    boundary = new_boundary()
    body = body_for(ranges, "application/octet-stream", boundary)
    head = f"Content-Type: multipart/byteranges; boundary={boundary}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = list(message.iter_parts())
    assert len(parts) == len(ranges)
    for part, (a, b) in zip(parts, ranges, strict=True):
        assert part["Content-Range"] == content_range(a, b, len(DATA))
        assert part.get_payload(decode=True) == DATA[a:b]


def test_multipart_body_streams_lazily() -> None:
    """Parts are read only when the body gets to them (the caller streams from the store)."""
    read: list[int] = []

    def part(a: int, b: int) -> Iterator[bytes]:
        read.append(a)
        yield DATA[a:b]

    stream = multipart_body(((a, a + 1, part(a, a + 1)) for a in (0, 1, 2)), 10, "x/y", "B")
    next(stream)  # the first part's head
    assert read == []
    next(stream)
    assert read == [0]


def test_multipart_part_heads_cannot_be_split_by_the_content_type() -> None:
    body = body_for([(0, 1)], "text/plain\r\nX-Evil: 1", "B")
    assert b"X-Evil" in body and b"\r\nX-Evil" not in body


@pytest.mark.parametrize("data", [[b"ab"], [b"abcd"], [b"a", b"b", b"c", b"d"], []])
def test_multipart_body_refuses_data_of_the_wrong_length(data: list[bytes]) -> None:
    with pytest.raises(ValueError, match="part 0-2"):
        b"".join(multipart_body([(0, 3, data)], 10, "x/y", "B"))


# --- partial-update Content-Range --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-9/10", (0, 9, 10)),
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 5-9/*", (5, 9, None)),
        ("bytes */*", (None, None, None)),
        ("bytes */100", (None, None, 100)),
        ("bytes 4194301-4194307/*", (4194301, 4194307, None)),
        ("Bytes 1-2/*", (1, 2, None)),
        (" bytes  1-2/3 ", (1, 2, 3)),
    ],
)
def test_parse_content_range(header: str, expected: tuple[int | None, ...]) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=0-1/2",
        "bytes 0-1",
        "bytes 0-/10",
        "bytes -5/10",
        "bytes 0-*/10",
        "bytes */",
        "bytes 5-4/10",
        "bytes 0-10/10",
        "bytes +1-2/3",
        "bytes 1 -2/3",
        "items 0-1/2",
        "bytes 0-1/2, bytes 3-4/5",
        "bytes \u0663-\u0665/*",  # Arabic-Indic digits
    ],
)
def test_parse_content_range_refuses(header: str) -> None:
    with pytest.raises(BadRequest, match="Content-Range"):
        parse_content_range(header)
