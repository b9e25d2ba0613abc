"""snf.image.accounts: $6$ crypt against the specification's vectors, OpenSSL and libxcrypt;
shadow editing, passwd/group parsing, and authorized_keys, with hostile image content."""

from __future__ import annotations

import base64
import random
import shutil
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

import pytest

from snf.common.errors import InvalidInput
from snf.image import accounts
from snf.image.accounts import (
    User,
    check_hash,
    merge_authorized_keys,
    parse_auth_keys,
    parse_group,
    parse_passwd,
    resolve_group,
    resolve_owner,
    set_password,
    sha512_crypt,
    today_days,
)
from tests.conftest import require

# (password, salt, rounds, expected) from "Unix crypt using SHA-256 and SHA-512" (U. Drepper).
# The "$6$rounds=5000$toolongsaltstring" vector writes rounds=5000 because its setting named
# it; sha512_crypt writes the default count implicitly, so that part is dropped here.
SPEC_VECTORS = [
    (
        "Hello world!",
        "saltstring",
        5000,
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
        "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "Hello world!",
        "saltstringsaltstring",
        10000,
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHb"
        "bMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "This is just a test",
        "toolongsaltstring",
        5000,
        "$6$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQ"
        "zQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        # Two C literals in the specification: "...over more" "than one line."
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "anotherlongsaltstring",
        1400,
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wP"
        "vMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "we have a short salt string but not a short password",
        "short",
        77777,
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0g"
        "ge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "a short string",
        "asaltof16chars..",
        123456,
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwc"
        "elCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        "the minimum number is still observed",
        "roundstoolow",
        10,
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1x"
        "hLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]

SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PW_CHARS = "".join(chr(c) for c in range(32, 127)) + "äöüßéñçøåλπΩжщ中文字日本語€😀"


def random_password(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(PW_CHARS) for _ in range(length))


def random_salt(rng: random.Random) -> str:
    return "".join(rng.choice(SALT_CHARS) for _ in range(rng.randint(1, 16)))


def libxcrypt() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            crypt = None
    require(crypt is not None, "Python's crypt module is absent")
    assert crypt is not None
    return crypt


# --- sha512_crypt ---------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "salt", "rounds", "expected"), SPEC_VECTORS)
def test_sha512_crypt_matches_the_specification_vectors(
    password: str, salt: str, rounds: int, expected: str
) -> None:
    assert sha512_crypt(password, salt, rounds) == expected


def test_sha512_crypt_matches_openssl_passwd() -> None:
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl is not installed")
    assert openssl is not None
    rng = random.Random(6)
    cases = [("x", "a"), (" héllo wörld ", "0123456789abcdef")]  # openssl skips empty lines
    cases += [(random_password(rng, n), random_salt(rng)) for n in (1, 7, 63, 64, 65, 200)]
    for password, salt in cases:
        out = subprocess.run(
            [openssl, "passwd", "-6", "-salt", salt, "-stdin"],
            input=(password + "\n").encode(),
            capture_output=True,
            check=True,
        )
        assert sha512_crypt(password, salt, 5000) == out.stdout.decode().strip(), password


def test_sha512_crypt_matches_libxcrypt_for_random_and_long_passwords() -> None:
    crypt = libxcrypt()
    rng = random.Random(512)
    lengths = [0, 1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 300, 511]
    for length in lengths:
        password = random_password(rng, length)
        password = password.encode()[:length].decode(errors="ignore")
        password += "x" * (length - len(password.encode()))
        assert len(password.encode()) == length
        salt = random_salt(rng)
        assert sha512_crypt(password, salt, 5000) == crypt.crypt(password, f"$6${salt}")


def test_sha512_crypt_refuses_passwords_libxcrypt_cannot_check() -> None:
    crypt = libxcrypt()
    for password in ("a" * 512, "ä" * 256, "x" * 100_000):
        assert crypt.crypt(password, "$6$salt").startswith("*")
        with pytest.raises(InvalidInput, match="at most 511 bytes") as info:
            sha512_crypt(password, "salt")
        assert "aaa" not in str(info.value) and "xxx" not in str(info.value)


@pytest.mark.parametrize("rounds", [1000, 1001, 1042, 4999, 5001, 12345, 100_000])
def test_sha512_crypt_matches_libxcrypt_for_round_counts(rounds: int) -> None:
    crypt = libxcrypt()
    rng = random.Random(rounds)
    password, salt = random_password(rng, rng.randint(1, 80)), random_salt(rng)
    expected = crypt.crypt(password, f"$6$rounds={rounds}${salt}")
    assert sha512_crypt(password, salt, rounds) == expected
    assert expected.startswith(f"$6$rounds={rounds}$")


def test_sha512_crypt_random_salt_and_default_rounds() -> None:
    crypt = libxcrypt()
    first, second = sha512_crypt("pw"), sha512_crypt("pw")
    assert first != second
    head, salt, digest = first.rsplit("$", 2)
    assert head == "$6$rounds=100000" and len(salt) == 16 and len(digest) == 86
    assert set(salt) <= set(SALT_CHARS)
    assert crypt.crypt("pw", first) == first


def test_sha512_crypt_clamps_rounds() -> None:
    assert sha512_crypt("pw", "salt", 0).startswith("$6$rounds=1000$salt$")
    assert sha512_crypt("pw", "salt", -5) == sha512_crypt("pw", "salt", 1000)
    assert accounts.ROUNDS_MAX == 999_999_999


@pytest.mark.parametrize("salt", ["sa$lt", "sa:lt", "salt\n", "sält", "a b"])
def test_sha512_crypt_rejects_a_salt_outside_the_alphabet(salt: str) -> None:
    with pytest.raises(InvalidInput, match="salt"):
        sha512_crypt("pw", salt, 1000)


def test_sha512_crypt_rejects_nul_without_echoing_the_password() -> None:
    with pytest.raises(InvalidInput, match="holds a NUL") as info:
        sha512_crypt("sec\0ret", "salt", 1000)
    assert "sec" not in str(info.value)
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        sha512_crypt("pw\ud800", "salt", 1000)


# --- check_hash -----------------------------------------------------------------------------

GOOD_HASHES = [
    SPEC_VECTORS[0][3],
    SPEC_VECTORS[1][3],
    "$5$abc$sCOGUciM.GdmYMCUvmUcgu03oRH87O0clF96.9mwWGB",
    "$5$rounds=80000$wnsT7Yr92oJoP28r$V1bu/4FAudnzQyyaWfGPau7RVOCm1HWv6epjRxs/Xq0",
    "$y$j9T$abcdefghijklmnop$xxI14acrF4kcY59GsyqJ1DqdhVdc9N0f1.omTKnq.61",
    "$gy$j9T$abcdefghijklmnop$iAhyhrFG8gN3RUpwkuadelXVBU0Zpz893kYISCCQqMA",
    "$2b$05$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
    "$2y$12$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
]

BAD_HASHES = [
    "",
    "hunter2",
    "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",  # MD5-crypt: weak
    "$2a$05$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
    "$2b$03$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
    "abJnggxhB/yWI",  # DES
    "!",
    "*",
    SPEC_VECTORS[0][3] + "\n",
    SPEC_VECTORS[0][3] + ":0:99999",
    SPEC_VECTORS[0][3][:-1],
    SPEC_VECTORS[0][3] + "x",
    SPEC_VECTORS[0][3].replace("svn8", "sv:8"),
    "$6$saltsaltsaltsaltsalt$" + "a" * 86,  # salt longer than 16
    "$y$j9T$" + "a" * 300 + "$" + "b" * 300,
    "$y$j9T$salt$" + "a" * 43 + "\nroot::0:0::/:/bin/sh",
]


@pytest.mark.parametrize("value", GOOD_HASHES)
def test_check_hash_accepts_strong_schemes(value: str) -> None:
    assert check_hash(value) == value


@pytest.mark.parametrize("value", BAD_HASHES)
def test_check_hash_rejects_without_echoing_the_value(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_hash(value)
    message = str(info.value)
    assert message == (
        "img_passwd_hash is not a crypt(3) hash of a strong scheme ($6$, $5$, $y$, $gy$, $2b$)"
    )


def test_check_hash_accepts_what_libxcrypt_produces() -> None:
    crypt = libxcrypt()
    for setting in (
        "$6$abcdefgh",
        "$5$rounds=6000$abc",
        "$y$j9T$abcdefghijkl",
        "$2b$04$" + 22 * "a",
    ):
        value = crypt.crypt("pw", setting)
        assert value and not value.startswith("*")
        assert check_hash(value) == value


# --- shadow ---------------------------------------------------------------------------------

SHADOW = (
    "root:*:19000:0:99999:7:::\n"
    "daemon:*:19000:0:99999:7:::\n"
    "user:!:19100:0:99999:7:::extra\n"
    "junk line without colons\n"
    "\n"
    "other:$6$x$y:19200::::::\n"
)
HASH = SPEC_VECTORS[0][3]


def test_set_password_changes_only_the_users_fields() -> None:
    result = set_password(SHADOW, "user", HASH, 20000)
    before, after = SHADOW.split("\n"), result.split("\n")
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if old.startswith("user:"):
            assert new == f"user:{HASH}:20000:0:99999:7:::extra"
        else:
            assert new == old
    assert result.endswith("\n")


def test_set_password_keeps_a_missing_trailing_newline() -> None:
    shadow = "root:*:1:0:99999:7:::\nuser:x:1:0:99999:7:::"
    assert (
        set_password(shadow, "user", HASH, 5)
        == f"root:*:1:0:99999:7:::\nuser:{HASH}:5:0:99999:7:::"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("user", f"user:{HASH}:7::::::"),
        ("user:x", f"user:{HASH}:7::::::"),
        ("user:x:1:0", f"user:{HASH}:7:0:::::"),
        ("user:x:1:0:99999:7:::", f"user:{HASH}:7:0:99999:7:::"),
    ],
)
def test_set_password_pads_short_lines_to_nine_fields(line: str, expected: str) -> None:
    result = set_password(f"root:*:1::::::\n{line}\n", "user", HASH, 7)
    assert result == f"root:*:1::::::\n{expected}\n"
    assert result.split("\n")[1].count(":") >= 8


def test_set_password_does_not_match_prefixes_or_other_fields() -> None:
    shadow = "username:x:1::::::\nxuser:x:1::::::\nroot:user:1::::::\n"
    with pytest.raises(InvalidInput, match=r"^user user is not in the image's /etc/shadow$"):
        set_password(shadow, "user", HASH, 1)


def test_set_password_handles_crlf_and_duplicates() -> None:
    shadow = "user:x:1::::::\r\nuser:y:2::::::\n"
    assert set_password(shadow, "user", HASH, 3) == (
        f"user:{HASH}:3::::::\r\nuser:{HASH}:3::::::\n"
    )


@pytest.mark.parametrize("user", ["", "a:b", "a\nb", "root\0"])
def test_set_password_rejects_bad_user_names(user: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid user name"):
        set_password("root:*:1::::::\n:x:1::::::\n", user, HASH, 1)


@pytest.mark.parametrize("hashed", ["", "a:b", f"{HASH}\nroot::0::::::"])
def test_set_password_rejects_hashes_that_would_break_the_file(hashed: str) -> None:
    with pytest.raises(InvalidInput, match="password hash"):
        set_password(SHADOW, "user", hashed, 1)


def test_set_password_rejects_a_negative_day() -> None:
    with pytest.raises(InvalidInput, match="today"):
        set_password(SHADOW, "user", HASH, -1)


def test_today_days() -> None:
    assert today_days(0) == 0
    assert today_days(86399.9) == 0
    assert today_days(86400) == 1
    assert today_days(1_700_000_000) == 19675
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInput):
            today_days(bad)


# --- passwd and group -----------------------------------------------------------------------

PASSWD = "\n".join(
    [
        "root:x:0:0:root:/root:/bin/bash",
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
        "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash",
        "alice:x:0:0:second alice:/root:/bin/sh",  # duplicate: the first wins
        "",
        "# a comment:x:5:5:::",
        "+nis:x:7:7:::",
        "-blocked:x:8:8:::",
        "+",
        "short:x:9:9",
        "long:x:10:10:a:b:c:d",
        "neg:x:-1:0:::",
        "hex:x:0x10:0:::",
        "space:x: 11:0:::",
        "arabic:x:\u0661\u0662:0:::",
        "huge:x:99999999999999999999999:0:::",
        "minus1:x:4294967295:0:::",
        "maxid:x:4294967294:4294967294:::",
        ":x:12:12:::",
        "   bob:x:1001:1001::/home/bob:/bin/sh\r",
        "\0\0\0garbage\xff",
    ]
)


def test_parse_passwd_skips_junk_and_keeps_the_first_entry() -> None:
    users = parse_passwd(PASSWD)
    assert sorted(users) == ["alice", "bob", "daemon", "maxid", "root"]
    assert users["alice"] == User("alice", 1000, 1000, "/home/alice", "/bin/bash")
    assert users["root"] == User("root", 0, 0, "/root", "/bin/bash")
    assert users["bob"] == User("bob", 1001, 1001, "/home/bob", "/bin/sh\r")
    assert users["maxid"].uid == 4294967294


def test_parse_group_skips_junk() -> None:
    text = (
        "root:x:0:\nwheel:x:10:alice,bob\nwheel:x:0:\nstaff:x:50\n+nis::9:\n"
        "bad:x:ten:\n::3:\n#c:x:4:\nusers:x:100:a:b\n\tdocker:x:999:\nbig:x:4294967295:\n"
    )
    assert parse_group(text) == {"root": 0, "wheel": 10, "docker": 999}


def test_parse_handles_empty_and_binary_junk() -> None:
    assert parse_passwd("") == {} and parse_group("") == {}
    junk = "".join(chr(random.Random(1).randrange(0, 0x3000)) for _ in range(5000))
    parse_passwd(junk)
    parse_group(junk)
    parse_passwd(":" * 6 + "\n" + ":::::::::\n")


def test_resolve_owner_prefers_the_images_names() -> None:
    users = parse_passwd(PASSWD + "\n1000:x:2000:2000:::")
    assert resolve_owner("alice", users) == 1000
    assert resolve_owner("root", users) == 0
    assert resolve_owner("1000", users) == 2000  # a name first, as chown does
    assert resolve_owner("4242", users) == 4242
    assert resolve_owner("0", users) == 0
    assert resolve_owner("4294967294", users) == 4294967294


@pytest.mark.parametrize(
    "owner",
    ["nobody", "", "-1", "4294967295", "1e3", " 0", "0x10", "+nis", "\u0661", "9" * 5000, "short"],
)
def test_resolve_owner_rejects_unknown_users(owner: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_owner(owner, parse_passwd(PASSWD))
    assert str(info.value) == f"owner {owner!r} is not a user of the image"


def test_resolve_group() -> None:
    groups = parse_group("root:x:0:\nwheel:x:10:\n")
    assert resolve_group("wheel", groups) == 10
    assert resolve_group("55", groups) == 55
    for bad in ("staff", "", "4294967295", "-3"):
        with pytest.raises(InvalidInput) as info:
            resolve_group(bad, groups)
        assert str(info.value) == f"group {bad!r} is not a group of the image"


# --- authorized_keys ------------------------------------------------------------------------


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def blob(*parts: bytes) -> str:
    return base64.b64encode(b"".join(ssh_string(p) for p in parts)).decode()


ED = "ssh-ed25519 " + blob(b"ssh-ed25519", bytes(range(32)))
ED2 = "ssh-ed25519 " + blob(b"ssh-ed25519", bytes(range(1, 33)))
RSA = "ssh-rsa " + blob(b"ssh-rsa", b"\x01\x00\x01", b"\x00" + bytes(range(1, 129)))
VALID_KEYS = [
    ED,
    RSA,
    "ecdsa-sha2-nistp256 " + blob(b"ecdsa-sha2-nistp256", b"nistp256", b"\x04" + bytes(64)),
    "ecdsa-sha2-nistp384 " + blob(b"ecdsa-sha2-nistp384", b"nistp384", b"\x04" + bytes(96)),
    "ecdsa-sha2-nistp521 " + blob(b"ecdsa-sha2-nistp521", b"nistp521", b"\x04" + bytes(132)),
    "sk-ssh-ed25519@openssh.com " + blob(b"sk-ssh-ed25519@openssh.com", bytes(32), b"ssh:"),
    "sk-ecdsa-sha2-nistp256@openssh.com "
    + blob(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", b"\x04" + bytes(64), b"ssh:"),
    "ssh-dss " + blob(b"ssh-dss", b"p", b"q", b"g", b"y"),
]


@pytest.mark.parametrize("key", VALID_KEYS, ids=lambda k: k.split()[0])
def test_parse_auth_keys_accepts_each_type(key: str) -> None:
    assert parse_auth_keys(key) == [key]
    assert parse_auth_keys(f"  {key}   me@host  \r\n") == [f"{key} me@host"]


def test_parse_auth_keys_accepts_keys_from_ssh_keygen(tmp_path: Path) -> None:
    keygen = shutil.which("ssh-keygen")
    require(keygen is not None, "ssh-keygen is not installed")
    assert keygen is not None
    lines = []
    for name, args in [("ed", ["-t", "ed25519"]), ("ec", ["-t", "ecdsa", "-b", "384"])]:
        path = tmp_path / name
        argv = [keygen, "-q", "-N", "", "-C", f"{name} key", "-f", str(path), *args]
        subprocess.run(argv, check=True, capture_output=True)
        lines.append(path.with_suffix(".pub").read_text().strip())
    text = "# keys\n\n" + "\n".join(lines) + "\n"
    assert parse_auth_keys(text) == lines


def test_parse_auth_keys_multiple_with_comments_and_blank_lines() -> None:
    text = f"# mine\n\n{ED} alice@laptop\n   \n\t# old\n{RSA}\n"
    assert parse_auth_keys(text) == [f"{ED} alice@laptop", RSA]


def test_parse_auth_keys_limits() -> None:
    keys = [f"ssh-ed25519 {blob(b'ssh-ed25519', bytes([i]) * 32)}" for i in range(65)]
    assert len(parse_auth_keys("\n".join(keys[:64]))) == 64
    with pytest.raises(InvalidInput, match="more than 64 keys"):
        parse_auth_keys("\n".join(keys))
    with pytest.raises(InvalidInput, match="16384"):
        parse_auth_keys(ED + " " + "c" * 16384)


ED_BODY = ED.split()[1]
HOSTILE = [
    ("", "no SSH public key"),
    ("# only a comment\n\n", "no SSH public key"),
    (f'from="10.0.0.1" {ED}', "key options"),
    (f'command="/bin/sh -c \\"x y\\"",no-pty {ED}', "key options"),
    (f"restrict {ED}", "key options"),
    ("ssh-ed25519", "no base64 data"),
    (f"ssh-foo {ED_BODY}", "key type 'ssh-foo' is not one of"),
    (f"ssh-rsa-cert-v01@openssh.com {ED_BODY}", "is not one of"),
    (f"SSH-ED25519 {ED_BODY}", "is not one of"),
    ("ssh-ed25519 !!!notbase64", "does not decode"),
    (f"ssh-ed25519 {ED_BODY[:-1]}", "does not decode"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\u00e9", "does not decode"),
    (f"ssh-rsa {ED_BODY}", "not a ssh-rsa key"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed").decode(), "malformed"),
    ("ssh-ed25519 " + base64.b64encode(b"\xff\xff\xff\xff").decode(), "malformed"),
    ("ssh-ed25519 " + blob(b"ssh-ed25519"), "malformed"),
    ("ssh-ed25519 " + blob(b"ssh-ed25519", bytes(31)), "malformed"),
    ("ssh-ed25519 " + blob(b"ssh-ed25519", bytes(32), b"x"), "malformed"),
    ("ssh-ed25519 " + blob(b"ssh-ed25519", bytes(32)) + "AAAA", "malformed"),
    ("ssh-ed25519 ==", "does not decode"),
    ("ecdsa-sha2-nistp256 " + blob(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04"), "malformed"),
    (f"{ED}\0hidden", "control character"),
    (f"{ED} a\x1b[2Jb", "control character"),
    (f"{ED} a\x9b2Jb", "control character"),
    (f"{ED}\n{ED} \x0bx", "line 2"),
    (f"{ED}\nssh-foo x", "auth_keys line 2"),
    ("\ud800", "not valid Unicode"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE)
def test_parse_auth_keys_rejects_hostile_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match="auth_keys") as info:
        parse_auth_keys(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_merge_authorized_keys_appends_only_new_keys() -> None:
    existing = f"# managed by hand\n{ED}   old comment\n"
    result = merge_authorized_keys(existing, [f"{ED} new comment", RSA, RSA])
    assert result == f"{existing}{RSA}\n"


def test_merge_authorized_keys_into_empty_and_unterminated_files() -> None:
    assert merge_authorized_keys("", [ED, RSA]) == f"{ED}\n{RSA}\n"
    assert merge_authorized_keys("", []) == ""
    assert merge_authorized_keys(ED, [RSA]) == f"{ED}\n{RSA}\n"
    assert merge_authorized_keys(ED, [ED]) == f"{ED}\n"
    assert merge_authorized_keys("#x", []) == "#x\n"


def test_merge_authorized_keys_sees_keys_behind_options() -> None:
    existing = (
        f'from="10.0.0.1" {ED}\r\n'
        f'command="echo \\"{RSA}\\" x",no-pty {ED2} c\n'
        "garbage ! line\n\x00\xff\n"
    )
    result = merge_authorized_keys(existing, [ED, RSA, ED2])
    assert result == f"{existing}{RSA}\n"  # the RSA inside command="..." is not a key line


def test_merge_authorized_keys_does_not_match_quoted_keys() -> None:
    existing = f'command="{RSA}" {ED}\n'
    assert merge_authorized_keys(existing, [RSA]) == f"{existing}{RSA}\n"


@pytest.mark.parametrize("key", ["ssh-ed25519", "", f"{ED}\n{RSA}", f"{ED}\rx", f"{ED}\0"])
def test_merge_authorized_keys_rejects_keys_that_are_not_one_line(key: str) -> None:
    with pytest.raises(InvalidInput, match="SSH key"):
        merge_authorized_keys("", [key])
