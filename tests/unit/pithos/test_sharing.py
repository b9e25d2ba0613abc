"""Tests for snf.portal.pithos.sharing: X-Object-Sharing, groups, and who gets in."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from snf.portal.pithos.errors import BadRequest
from snf.portal.pithos.sharing import (
    MAX_MEMBERS,
    allows,
    check_group_name,
    format_sharing,
    parse_group_members,
    parse_sharing,
)

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
CAROL = "33333333-3333-4333-8333-333333333333"
DAVE = "44444444-4444-4444-8444-444444444444"


# --- parse_sharing -----------------------------------------------------------------------------


def test_parse_sharing_full_example() -> None:
    value = f"read={BOB},{ALICE}:friends,*;write={CAROL}"
    assert parse_sharing(value) == {
        "read": [BOB, f"{ALICE}:friends", "*"],
        "write": [CAROL],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {}),
        ("   ", {}),
        (";", {}),
        ("read=bob@example.org", {"read": ["bob@example.org"]}),
        ("write=bob@example.org", {"write": ["bob@example.org"]}),
        # Spaces around every token, keys in any case, write given first.
        (
            f" WRITE = {CAROL} ; Read = {BOB} , bob@example.org ",
            {"read": [BOB, "bob@example.org"], "write": [CAROL]},
        ),
        # Duplicates dropped, order kept.
        (f"read={BOB},*,{BOB},*,{ALICE}", {"read": [BOB, "*", ALICE]}),
        # A trailing semicolon is harmless.
        (f"read={BOB};", {"read": [BOB]}),
        # Group references: owner as a UUID or an email; names with _ - .
        (
            f"read={ALICE}:my_group-1.x,bob@example.org:Team",
            {"read": [f"{ALICE}:my_group-1.x", "bob@example.org:Team"]},
        ),
        # Members as given: the caller resolves emails and normalizes UUIDs.
        (f"read={BOB.upper()}", {"read": [BOB.upper()]}),
    ],
)
def test_parse_sharing(value: str, expected: dict[str, list[str]]) -> None:
    assert parse_sharing(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"delete={BOB}", "not read=... or write=..."),
        (f"read{BOB}", "not read=... or write=..."),
        (f"={BOB}", "not read=... or write=..."),
        (f"read={BOB};read={ALICE}", "twice"),
        (f"read={BOB};READ={ALICE}", "twice"),
        ("read=", "empty member"),
        ("read= ", "empty member"),
        (f"read={BOB},", "empty member"),
        (f"read={BOB},,{ALICE}", "empty member"),
        (f"read=,{BOB}", "empty member"),
        ("read=bob", "neither a UUID nor an email"),
        ("read=bob@", "neither a UUID nor an email"),
        ("read=@example.org", "neither a UUID nor an email"),
        ("read=a@b@c", "neither a UUID nor an email"),
        ("read=bob smith@example.org", "is not a user"),
        ("read=bob=x@example.org", "is not a user"),
        ("read=**", "is not a user"),
        ('read="bob@example.org"', "is not a user"),
        ("read=bob\x00@example.org", "is not a user"),
        (f"read={ALICE}:", "group name is empty"),
        (f"read={ALICE}:a/b", "may hold only"),
        (f"read={ALICE}:{'g' * 65}", "at most 64"),
        (f"read=:{'g'}", "empty member"),
        ("read=bob:friends", "neither a UUID nor an email"),
        (f"read={'a' * 250}@example.org", "longer than"),
    ],
)
def test_parse_sharing_refuses(value: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        parse_sharing(value)


def test_parse_sharing_member_limit_counts_read_and_write() -> None:
    users = [f"u{i}@example.org" for i in range(MAX_MEMBERS)]
    assert len(parse_sharing("read=" + ",".join(users))["read"]) == MAX_MEMBERS
    half = MAX_MEMBERS // 2
    value = f"read={','.join(users[:half])};write={','.join(users[half:])},extra@example.org"
    with pytest.raises(BadRequest, match=f"{MAX_MEMBERS + 1} members"):
        parse_sharing(value)
    # Duplicates do not count.
    assert parse_sharing("read=" + ",".join(users + users[:10]))


# --- format_sharing ----------------------------------------------------------------------------


def test_format_sharing() -> None:
    assert format_sharing({}) == ""
    assert format_sharing({"read": [], "write": []}) == ""
    assert format_sharing({"write": [CAROL], "read": [BOB, "*"]}) == f"read={BOB},*;write={CAROL}"
    assert format_sharing({"write": [CAROL]}) == f"write={CAROL}"
    assert format_sharing({"read": (BOB,), "write": []}) == f"read={BOB}"


@pytest.mark.parametrize(
    "perms",
    [
        {},
        {"read": ["*"]},
        {"write": [BOB]},
        {"read": [BOB, f"{ALICE}:friends", "*"], "write": [CAROL, "dave@example.org"]},
    ],
)
def test_sharing_round_trip(perms: dict[str, list[str]]) -> None:
    assert parse_sharing(format_sharing(perms)) == perms


def test_sharing_round_trip_from_a_header() -> None:
    value = f" write = {CAROL} ; read = {BOB} , {BOB} "
    canonical = format_sharing(parse_sharing(value))
    assert canonical == f"read={BOB};write={CAROL}"
    assert format_sharing(parse_sharing(canonical)) == canonical


# --- groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["friends", "Team-1", "a.b_c", "g" * 64, "0", ".", "-"])
def test_check_group_name_accepts(name: str) -> None:
    assert check_group_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("g" * 65, "at most 64"),
        ("a b", "may hold only"),
        ("a:b", "may hold only"),
        ("a,b", "may hold only"),
        ("φίλοι", "may hold only"),
        ("a\x00", "may hold only"),
        ("friends\n", "may hold only"),
    ],
)
def test_check_group_name_refuses(name: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        check_group_name(name)


def test_parse_group_members() -> None:
    assert parse_group_members(f"{BOB},{CAROL}") == [BOB, CAROL]
    assert parse_group_members(f" {BOB} , bob@example.org , {BOB} ") == [BOB, "bob@example.org"]
    assert parse_group_members("") == []
    assert parse_group_members("  ") == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{BOB},", "empty member"),
        (f"{BOB},,{CAROL}", "empty member"),
        ("*", "is not a user"),
        (f"{ALICE}:friends", "is not a user"),
        ("bob", "neither a UUID nor an email"),
    ],
)
def test_parse_group_members_refuses(value: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        parse_group_members(value)


def test_parse_group_members_limit() -> None:
    users = [f"u{i}@example.org" for i in range(MAX_MEMBERS + 1)]
    assert len(parse_group_members(",".join(users[:-1]))) == MAX_MEMBERS
    with pytest.raises(BadRequest, match=f"{MAX_MEMBERS + 1} members"):
        parse_group_members(",".join(users))


# --- allows ------------------------------------------------------------------------------------

GROUPS = {(ALICE, "friends"): {BOB}, (ALICE, "editors"): {CAROL}}


def groups(owner: str, group: str) -> Collection[str]:
    return GROUPS.get((owner, group), set())


def test_allows_listed_users() -> None:
    perms = {"read": [BOB], "write": [CAROL]}
    assert allows(perms, BOB, groups, "read")
    assert not allows(perms, BOB, groups, "write")
    assert allows(perms, CAROL, groups, "read")  # write implies read
    assert allows(perms, CAROL, groups, "write")
    assert not allows(perms, DAVE, groups, "read")
    assert not allows(perms, DAVE, groups, "write")


def test_allows_everyone() -> None:
    assert allows({"read": ["*"]}, DAVE, groups, "read")
    assert not allows({"read": ["*"]}, DAVE, groups, "write")
    assert allows({"write": ["*"]}, DAVE, groups, "read")
    assert allows({"write": ["*"]}, DAVE, groups, "write")
    assert not allows({"read": ["*"]}, "", groups, "read")  # not authenticated


def test_allows_groups() -> None:
    perms = {"read": [f"{ALICE}:friends"], "write": [f"{ALICE}:editors"]}
    assert allows(perms, BOB, groups, "read")
    assert not allows(perms, BOB, groups, "write")
    assert allows(perms, CAROL, groups, "read")
    assert allows(perms, CAROL, groups, "write")
    assert not allows(perms, DAVE, groups, "read")
    assert not allows({"read": [f"{BOB}:friends"]}, BOB, groups, "read")  # another owner's


def test_allows_asks_for_groups_only_when_needed() -> None:
    asked: list[tuple[str, str]] = []

    def counting(owner: str, group: str) -> Collection[str]:
        asked.append((owner, group))
        return groups(owner, group)

    assert allows({"read": [BOB, f"{ALICE}:friends"]}, BOB, counting, "read")
    assert asked == []
    assert allows({"read": [f"{ALICE}:editors", f"{ALICE}:friends"]}, BOB, counting, "read")
    assert asked == [(ALICE, "editors"), (ALICE, "friends")]


def test_allows_nothing_shared() -> None:
    assert not allows({}, BOB, groups, "read")
    assert not allows({"read": [], "write": []}, BOB, groups, "write")


def test_allows_refuses_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="action"):
        allows({"read": ["*"]}, BOB, groups, "delete")
