"""Tests for snf.portal.pithos.names: names, header decoding and user metadata."""

from __future__ import annotations

import pytest

from snf.portal.pithos.errors import BadRequest
from snf.portal.pithos.names import (
    MAX_CONTAINER_BYTES,
    MAX_OBJECT_BYTES,
    check_account,
    check_container,
    check_object,
    header_text,
    header_value,
    meta_headers,
    odd_character,
    user_metadata,
)

UUID = "3f2b3c4d-5e6f-4a1b-8c2d-0123456789ab"


def wire(text: str) -> str:
    """A header value as a WSGI server hands it over: the UTF-8 bytes, latin-1-decoded."""
    return text.encode("utf-8").decode("latin-1")


# --- accounts ----------------------------------------------------------------------------------


def test_account_is_a_canonical_uuid() -> None:
    assert check_account(UUID) == UUID


@pytest.mark.parametrize(
    "name",
    [
        "",
        UUID.upper(),
        UUID.replace("-", ""),
        "{" + UUID + "}",
        "urn:uuid:" + UUID,
        UUID + "\n",
        " " + UUID,
        UUID[:-1],
        UUID[:-1] + "g",
        "bob@example.org",
    ],
)
def test_account_refuses_anything_else(name: str) -> None:
    with pytest.raises(BadRequest, match="UUID"):
        check_account(name)


# --- containers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["c", "photos", "my container", "...", ".hidden", "a.", "Φωτογραφίες", "日本語", "🙂"]
)
def test_container_accepts_ordinary_names(name: str) -> None:
    assert check_container(name) == name


def test_container_accepts_any_normalization() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert check_container(composed) == composed
    assert check_container(decomposed) == decomposed


def test_container_length_counts_utf8_bytes() -> None:
    assert check_container("a" * MAX_CONTAINER_BYTES)
    assert check_container("é" * (MAX_CONTAINER_BYTES // 2))
    with pytest.raises(BadRequest, match="257 bytes"):
        check_container("a" * (MAX_CONTAINER_BYTES + 1))
    with pytest.raises(BadRequest, match="258 bytes"):
        check_container("é" * (MAX_CONTAINER_BYTES // 2 + 1))  # 129 characters


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("a/", "'/'"),
        (".", "not a valid"),
        ("..", "not a valid"),
        ("a\x00b", "control character"),
        ("tab\there", "control character"),
        ("line\n", "control character"),
        ("del\x7f", "control character"),
        ("c1\x85", "control character"),
        ("bad\ud800", "surrogate"),
        ("bad\udfff", "surrogate"),
        ("bad\ufffd", "replacement"),
        ("x\ufdd0", "noncharacter"),
        ("x\ufdef", "noncharacter"),
        ("x\ufffe", "noncharacter"),
        ("x\uffff", "noncharacter"),
        ("x\U0001fffe", "noncharacter"),
        ("x\U0010ffff", "noncharacter"),
    ],
)
def test_container_refuses(name: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        check_container(name)


def test_odd_character_names_the_code_point() -> None:
    assert odd_character("fine") is None
    assert odd_character("a\x00") == "a control character (U+0000)"
    assert odd_character("\U0003ffff") == "a Unicode noncharacter (U+3FFFF)"


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",  # zero-width space: category Cf, allowed
        "\u200d",  # zero-width joiner (Cf)
        "\ufeffbom",  # U+FEFF (Cf)
        "\ufdcf\ufdf0",  # just outside the noncharacter block
        "\ufffc",  # object replacement character, not U+FFFD
        "\U0001fffd",  # just before a plane's noncharacters
        "\U00010000",
    ],
)
def test_format_characters_and_neighbours_of_odd_ones_are_allowed(name: str) -> None:
    assert check_container(name) == name
    assert check_object(name) == name


# --- objects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "o",
        "a/b/c",
        "dir/",
        "/leading",
        "a//b",
        "...",
        "a/.../b",
        ".hidden/..x/x..",
        "photos/2026/καλοκαίρι.jpg",
        "with space/and;semicolon?&=#%",
    ],
)
def test_object_accepts(name: str) -> None:
    assert check_object(name) == name


def test_object_length_counts_utf8_bytes() -> None:
    assert check_object("a" * MAX_OBJECT_BYTES)
    assert check_object("€" * (MAX_OBJECT_BYTES // 3))  # 3 bytes each
    with pytest.raises(BadRequest, match="1025 bytes"):
        check_object("a" * (MAX_OBJECT_BYTES + 1))
    with pytest.raises(BadRequest, match="1026 bytes"):
        check_object("€" * (MAX_OBJECT_BYTES // 3 + 1))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("./a", "'.' or '..'"),
        ("a/./b", "'.' or '..'"),
        ("a/../b", "'.' or '..'"),
        ("a/..", "'.' or '..'"),
        ("../../etc/passwd", "'.' or '..'"),
        ("a\x00", "control character"),
        ("a\r\nX-Injected: 1", "control character"),
        ("a\ud83d", "surrogate"),
        ("\ufffd", "replacement"),
        ("x\U000afffe", "noncharacter"),
    ],
)
def test_object_refuses(name: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        check_object(name)


def test_odd_characters_are_found_before_the_length_is_counted() -> None:
    # A lone surrogate cannot even be encoded as UTF-8; it must give a 400, not a crash.
    with pytest.raises(BadRequest, match="surrogate"):
        check_object("a" * 2000 + "\udc80")


# --- header values -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["plain", "", "héllo", "☃ snow", "日本語", "🙂", "a\tb"])
def test_header_text_and_value_are_inverse(text: str) -> None:
    assert header_text(wire(text)) == text
    assert header_value(text) == wire(text)
    assert header_text(header_value(text)) == text


def test_header_text_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(BadRequest, match="the X-Object-Meta-A header is not valid UTF-8"):
        header_text("caf\xe9", "X-Object-Meta-A")  # latin-1 é, a lone 0xE9 byte
    with pytest.raises(BadRequest, match="a header is not valid UTF-8"):
        header_text("\xc3")  # a truncated sequence
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        header_text("\xed\xa0\x80")  # an encoded surrogate


def test_header_text_refuses_what_no_wsgi_server_could_have_given() -> None:
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        header_text("☃")  # not latin-1: not from the wire


def test_header_value_cannot_end_the_header() -> None:
    assert header_value("a\r\nSet-Cookie: x\x00") == "a  Set-Cookie: x "


# --- user metadata -----------------------------------------------------------------------------


def test_user_metadata_picks_the_kinds_prefix_in_any_case() -> None:
    headers = [
        ("X-Object-Meta-Color", "red"),
        ("x-object-meta-SIZE", " L "),
        ("X-OBJECT-META-Empty", ""),
        ("X-Container-Meta-Other", "no"),
        ("X-Object-Metadata", "no"),
        ("Content-Type", "text/plain"),
    ]
    assert user_metadata(headers, "Object") == {"color": "red", "size": "L", "empty": ""}
    assert user_metadata(headers, "Container") == {"other": "no"}
    assert user_metadata(headers, "Account") == {}


def test_user_metadata_decodes_utf8_values() -> None:
    headers = [("X-Account-Meta-Name", wire("  Γιώργος ☃ "))]
    assert user_metadata(headers, "Account") == {"name": "Γιώργος ☃"}


def test_user_metadata_refuses_invalid_utf8() -> None:
    with pytest.raises(BadRequest, match="X-Object-Meta-A header is not valid UTF-8"):
        user_metadata([("X-Object-Meta-A", "\xff")], "Object")


def test_user_metadata_last_value_of_a_key_wins() -> None:
    headers = [("X-Object-Meta-A", "1"), ("x-object-meta-a", "2")]
    assert user_metadata(headers, "Object") == {"a": "2"}


def test_user_metadata_refuses_an_empty_key() -> None:
    with pytest.raises(BadRequest, match="needs a key"):
        user_metadata([("X-Object-Meta-", "v")], "Object")


def test_user_metadata_key_limit() -> None:
    assert user_metadata([("X-Object-Meta-" + "k" * 128, "v")], "Object")
    with pytest.raises(BadRequest, match="129 bytes"):
        user_metadata([("X-Object-Meta-" + "k" * 129, "v")], "Object")


def test_user_metadata_value_limit_in_utf8_bytes() -> None:
    assert user_metadata([("X-Object-Meta-K", "v" * 256)], "Object")
    assert user_metadata([("X-Object-Meta-K", "  " + "v" * 256 + "  ")], "Object")  # stripped
    with pytest.raises(BadRequest, match="257 bytes"):
        user_metadata([("X-Object-Meta-K", "v" * 257)], "Object")
    with pytest.raises(BadRequest, match="258 bytes"):
        user_metadata([("X-Object-Meta-K", wire("é" * 129))], "Object")


def test_user_metadata_count_limit() -> None:
    ninety = [(f"X-Container-Meta-K{i}", "v") for i in range(90)]
    assert len(user_metadata(ninety, "Container")) == 90
    with pytest.raises(BadRequest, match="91 metadata keys"):
        user_metadata([*ninety, ("X-Container-Meta-One-More", "v")], "Container")
    # The same key twice counts once.
    assert len(user_metadata([*ninety, ("X-Container-Meta-K0", "w")], "Container")) == 90


def test_user_metadata_overall_limit() -> None:
    # 16 keys of 2 bytes with 254-byte values: 16 * 256 = 4096 bytes exactly.
    full = [(f"X-Object-Meta-K{i:x}", "v" * 254) for i in range(16)]
    assert len(user_metadata(full, "Object")) == 16
    with pytest.raises(BadRequest, match="4097 bytes in all"):
        user_metadata([*full[:-1], ("X-Object-Meta-Kf", "v" * 255)], "Object")
    thirty = [(f"X-Object-Meta-K{i}", "v" * 200) for i in range(30)]
    with pytest.raises(BadRequest, match="in all"):
        user_metadata(thirty, "Object")


def test_user_metadata_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        user_metadata([], "object")


def test_meta_headers_title_case_keys_and_encode_values() -> None:
    meta = {"color": "red", "content-owner": "☃", "x_y": "1"}
    assert meta_headers(meta, "Object") == [
        ("X-Object-Meta-Color", "red"),
        ("X-Object-Meta-Content-Owner", wire("☃")),
        ("X-Object-Meta-X_y", "1"),
    ]
    assert meta_headers({}, "Account") == []


def test_metadata_round_trips_through_headers() -> None:
    meta = {"color": "κόκκινο", "a-b-c": "", "n": "42"}
    assert user_metadata(meta_headers(meta, "Container"), "Container") == meta
