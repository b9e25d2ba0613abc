"""Tests for snf.portal.pithos.conditions: RFC 7232 preconditions and HTTP dates."""

from __future__ import annotations

import calendar

import pytest
from werkzeug.datastructures import Headers

from snf.portal.pithos.conditions import (
    Validators,
    evaluate,
    http_date,
    if_range_allows,
    iso_time,
    parse_http_date,
)

MD5 = "0cc175b9c0f1b6a831c399e269772661"
TOP = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
#: 2026-11-24 10:00:00 UTC, and a bit.
T = calendar.timegm((2026, 11, 24, 10, 0, 0)) + 0.75
AT = "Tue, 24 Nov 2026 10:00:00 GMT"
BEFORE = "Tue, 24 Nov 2026 09:59:59 GMT"
AFTER = "Tue, 24 Nov 2026 10:00:01 GMT"

OBJ = Validators(frozenset({MD5, TOP}), T)
MISSING = Validators(frozenset(), 0.0, exists=False)


def status(headers: dict[str, str], method: str = "GET", v: Validators = OBJ) -> int | None:
    return evaluate(headers, v, method)


# --- If-Match ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f'"{MD5}"',
        f'"{TOP}"',
        MD5,
        TOP.upper(),
        "*",
        f'"nope", "{MD5}"',
        f'"nope" ,{TOP}',
        f'W/"x", "{MD5}"',
    ],
)
def test_if_match_holds(value: str) -> None:
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        assert status({"If-Match": value}, method) is None


@pytest.mark.parametrize("value", ['"nope"', "nope", f'W/"{MD5}"', f'"{MD5[:-1]}"', f'"{MD5}x"'])
def test_if_match_fails_with_412(value: str) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        assert status({"If-Match": value}, method) == 412


def test_if_match_on_a_missing_object_is_412_even_for_star() -> None:
    assert status({"If-Match": "*"}, "PUT", MISSING) == 412
    assert status({"If-Match": f'"{MD5}"'}, "GET", MISSING) == 412


def test_blank_headers_are_ignored() -> None:
    assert status({"If-Match": "  "}) is None
    assert status({"If-None-Match": ""}) is None


# --- If-None-Match -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [f'"{MD5}"', TOP, "*", f'W/"{MD5}"', f'"a", "b", "{TOP}"'])
def test_if_none_match_matches_304_for_reads_412_for_writes(value: str) -> None:
    assert status({"If-None-Match": value}, "GET") == 304
    assert status({"If-None-Match": value}, "HEAD") == 304
    assert status({"If-None-Match": value}, "get") == 304
    assert status({"If-None-Match": value}, "PUT") == 412
    assert status({"If-None-Match": value}, "DELETE") == 412


def test_if_none_match_without_a_match_goes_on() -> None:
    assert status({"If-None-Match": '"other"'}) is None
    assert status({"If-None-Match": '"other"'}, "PUT") is None


def test_if_none_match_never_matches_a_missing_object() -> None:
    assert status({"If-None-Match": "*"}, "PUT", MISSING) is None
    assert status({"If-None-Match": "*"}, "GET", MISSING) is None


# --- dates -------------------------------------------------------------------------------------


def test_if_modified_since() -> None:
    assert status({"If-Modified-Since": AT}) == 304  # same second, despite the .75
    assert status({"If-Modified-Since": AFTER}) == 304
    assert status({"If-Modified-Since": BEFORE}) is None
    assert status({"If-Modified-Since": AT}, "HEAD") == 304


def test_if_modified_since_applies_to_reads_only() -> None:
    assert status({"If-Modified-Since": AFTER}, "PUT") is None
    assert status({"If-Modified-Since": AFTER}, "POST") is None


def test_if_unmodified_since() -> None:
    assert status({"If-Unmodified-Since": AT}) is None
    assert status({"If-Unmodified-Since": AFTER}) is None
    assert status({"If-Unmodified-Since": BEFORE}) == 412
    assert status({"If-Unmodified-Since": BEFORE}, "PUT") == 412


@pytest.mark.parametrize("bad", ["yesterday", "", "Tue, 31 Nov 2026 10:00:00 GMT", "1795514400"])
def test_invalid_dates_are_ignored(bad: str) -> None:
    assert status({"If-Modified-Since": bad}) is None
    assert status({"If-Unmodified-Since": bad}) is None


def test_date_conditions_are_ignored_for_a_missing_object() -> None:
    assert status({"If-Modified-Since": AFTER}, "GET", MISSING) is None
    assert status({"If-Unmodified-Since": BEFORE}, "PUT", MISSING) is None


# --- order of evaluation (RFC 7232 section 6) --------------------------------------------------


def test_if_match_comes_first() -> None:
    headers = {"If-Match": '"nope"', "If-None-Match": f'"{MD5}"'}
    assert status(headers) == 412


def test_if_match_overrides_if_unmodified_since() -> None:
    # A matching If-Match means If-Unmodified-Since is not evaluated at all.
    assert status({"If-Match": f'"{MD5}"', "If-Unmodified-Since": BEFORE}) is None


def test_if_unmodified_since_comes_before_if_none_match() -> None:
    headers = {"If-Unmodified-Since": BEFORE, "If-None-Match": f'"{MD5}"'}
    assert status(headers) == 412


def test_if_none_match_overrides_if_modified_since() -> None:
    # No match for If-None-Match: If-Modified-Since is not looked at, so no 304.
    assert status({"If-None-Match": '"other"', "If-Modified-Since": AFTER}) is None
    # And a match gives the 304 whatever the date says.
    assert status({"If-None-Match": f'"{MD5}"', "If-Modified-Since": BEFORE}) == 304


def test_all_four_passing() -> None:
    headers = {
        "If-Match": f'"{TOP}"',
        "If-Unmodified-Since": AT,
        "If-None-Match": '"old"',
        "If-Modified-Since": BEFORE,
    }
    assert status(headers) is None


def test_header_names_in_any_case() -> None:
    assert status({"if-none-match": "*"}) == 304
    assert status({"IF-MATCH": '"nope"'}) == 412
    werkzeug = Headers([("if-modified-since", AT)])
    assert evaluate(werkzeug, OBJ, "GET") == 304  # type: ignore[arg-type]


# --- If-Range ----------------------------------------------------------------------------------


def test_if_range() -> None:
    assert if_range_allows(None, OBJ)
    assert if_range_allows(f'"{MD5}"', OBJ)
    assert if_range_allows(f'"{TOP}"', OBJ)
    assert if_range_allows(MD5, OBJ)  # unquoted, as some clients send
    assert not if_range_allows('"other"', OBJ)
    assert not if_range_allows(f'W/"{MD5}"', OBJ)  # weak tags never match strongly
    assert not if_range_allows(f'"{MD5}", "{TOP}"', OBJ)  # one tag, not a list
    assert if_range_allows(AT, OBJ)
    assert if_range_allows(AFTER, OBJ)
    assert not if_range_allows(BEFORE, OBJ)
    assert not if_range_allows("garbage date", OBJ)
    assert not if_range_allows(f'"{MD5}"', MISSING)


# --- HTTP dates --------------------------------------------------------------------------------


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(T) == AT  # truncated to the second


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
        "sun, 06 NOV 1994 08:49:37 gmt",
    ],
)
def test_parse_http_date_accepts_the_three_formats(value: str) -> None:
    assert parse_http_date(value) == 784111777.0


def test_parse_http_date_two_digit_years() -> None:
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
    assert parse_http_date("Tuesday, 24-Nov-26 10:00:00 GMT") == calendar.timegm(
        (2026, 11, 24, 10, 0, 0)
    )


def test_parse_http_date_leap_second() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2016, 12, 31, 23, 59, 59)
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "now",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "784111777",
    ],
)
def test_parse_http_date_refuses(value: str) -> None:
    assert parse_http_date(value) is None


def test_http_date_round_trip() -> None:
    for ts in (0, 1, 951782400, 1795514400, 4102444799):  # 2000-02-29, 2099-12-31 23:59:59
        assert parse_http_date(http_date(ts)) == ts


# --- Swift's listing time ----------------------------------------------------------------------


def test_iso_time() -> None:
    assert iso_time(T - 0.75 + 0.123456) == "2026-11-24T10:00:00.123456"
    assert iso_time(T - 0.75) == "2026-11-24T10:00:00.000000"  # always six digits
    assert iso_time(0) == "1970-01-01T00:00:00.000000"
