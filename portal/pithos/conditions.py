"""Conditional requests (RFC 7232): If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since and If-Range, plus the date formats HTTP and Swift listings use.

An object has several entity tags (its MD5 when known and its Pithos top hash), all of them
strong; dates compare at one-second resolution, the precision of an HTTP date.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                "Dec")  # fmt: skip

_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
#: IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``.
_IMF = re.compile(rf"([a-z]{{3}}), ([0-9]{{2}}) ([a-z]{{3}}) ([0-9]{{4}}) {_TIME} gmt", re.I)
#: Obsolete RFC 850: ``Sunday, 06-Nov-94 08:49:37 GMT``.
_RFC850 = re.compile(rf"([a-z]{{6,9}}), ([0-9]{{2}})-([a-z]{{3}})-([0-9]{{2}}) {_TIME} gmt", re.I)
#: Obsolete asctime: ``Sun Nov  6 08:49:37 1994``.
_ASCTIME = re.compile(rf"([a-z]{{3}}) ([a-z]{{3}}) ([ 0-9][0-9]) {_TIME} ([0-9]{{4}})", re.I)

_TAG = re.compile(r'(W/)?(?:"([^"]*)"|([^",\s]+))')


@dataclass(frozen=True)
class Validators:
    """What conditions are checked against: every entity tag of the object (lower-case hex,
    unquoted), its modification time (epoch seconds) and whether it exists at all."""

    etags: frozenset[str]
    last_modified: float
    exists: bool = True


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` in any case; None when absent or blank (a blank is ignored)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if value is None or not value.strip():
        return None
    return value


def _tags(value: str) -> list[tuple[bool, str]]:
    """The entity tags of a header as (weak, tag): quoted or not, ``W/`` marking weak ones."""
    return [(bool(m.group(1)), (m.group(2) if m.group(2) is not None else m.group(3)).lower())
            for m in _TAG.finditer(value)]  # fmt: skip


def _matches(value: str, v: Validators, *, weak: bool) -> bool:
    """Does an If-Match / If-None-Match list match the object?  ``*`` matches any existing
    object.  Weak comparison ignores ``W/``; strong comparison never matches a weak tag."""
    if not v.exists:
        return False
    if value.strip() == "*":
        return True
    return any((weak or not is_weak) and tag in v.etags for is_weak, tag in _tags(value))


def _seconds(ts: float) -> int:
    """A modification time at the resolution of an HTTP date."""
    return math.floor(ts)


def evaluate(headers: Mapping[str, str], v: Validators, method: str) -> int | None:
    """The status the request's conditions call for, in RFC 7232 §6 order: 412, 304, or
    None to go on.  Unparsable dates are ignored; so are date conditions on a missing object.
    """
    safe = method.upper() in ("GET", "HEAD")
    if_match = _header(headers, "If-Match")
    if if_match is not None:
        if not _matches(if_match, v, weak=False):
            return 412
    elif v.exists:
        since = _header(headers, "If-Unmodified-Since")
        date = None if since is None else parse_http_date(since)
        if date is not None and _seconds(v.last_modified) > date:
            return 412
    if_none = _header(headers, "If-None-Match")
    if if_none is not None:
        if _matches(if_none, v, weak=True):
            return 304 if safe else 412
    elif safe and v.exists:
        since = _header(headers, "If-Modified-Since")
        date = None if since is None else parse_http_date(since)
        if date is not None and _seconds(v.last_modified) <= date:
            return 304
    return None


def if_range_allows(header: str | None, v: Validators) -> bool:
    """May the Range be honoured?  Yes without If-Range; with an entity tag, if it matches
    strongly; with a date, if the object was not modified after it.  Else the whole object
    is served."""
    if header is None:
        return True
    if not v.exists:
        return False
    value = header.strip()
    if not value.startswith(('"', "W/")):
        date = parse_http_date(value)
        if date is not None:
            return _seconds(v.last_modified) <= date
    tags = _tags(value)
    return len(tags) == 1 and not tags[0][0] and tags[0][1] in v.etags


def http_date(ts: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) of epoch seconds ``ts``."""
    t = datetime.fromtimestamp(_seconds(ts), UTC)
    return (f"{_DAY_NAMES[t.weekday()]}, {t.day:02d} {_MONTH_NAMES[t.month - 1]} {t.year:04d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT")  # fmt: skip


def parse_http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP date in any of RFC 7231's three formats, or None if it is
    not one (or not a real date).  Names of days and months are matched in any case."""
    text = value.strip()
    if found := _IMF.fullmatch(text):
        day_name, day, month, year, hh, mm, ss = found.groups()
        if day_name.lower() not in _DAYS:
            return None
    elif found := _RFC850.fullmatch(text):
        day_name, day, month, yy, hh, mm, ss = found.groups()
        if day_name.lower() not in _LONG_DAYS:
            return None
        year = str((2000 if int(yy) < 70 else 1900) + int(yy))
    elif found := _ASCTIME.fullmatch(text):
        day_name, month, day, hh, mm, ss, year = found.groups()
        if day_name.lower() not in _DAYS:
            return None
    else:
        return None
    if month.lower() not in _MONTHS:
        return None
    fields = (int(year), _MONTHS.index(month.lower()) + 1, int(day), int(hh), int(mm))
    second = int(ss)
    if second == 60:  # a leap second, which Python cannot represent: count it as :59
        second = 59
    try:
        datetime(*fields, second)
    except ValueError:
        return None
    return float(calendar.timegm((*fields, second, 0, 0, 0)))


def iso_time(ts: float) -> str:
    """Epoch seconds as Swift listings show them: ``2026-11-24T10:00:00.123456`` (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
