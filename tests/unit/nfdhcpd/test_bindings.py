import os
import stat
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snf.common.errors import InvalidInput
from snf.nfdhcpd import bindings
from snf.nfdhcpd.bindings import (
    Binding,
    eui64,
    format_binding,
    load_all,
    parse_binding,
    remove_binding,
    write_binding,
)

REFERENCE = """\
INDEV=tap10
IP=192.0.2.100
MAC=aa:6b:39:22:33:44
HOSTNAME=testing-vm
TAGS="t1 t2"
GATEWAY=192.0.2.1
SUBNET=192.0.2.0/24
GATEWAY6=2001:db8:aaaa:bbbb::1
SUBNET6=2001:db8:aaaa:bbbb::/64
EUI64=2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344
PRIVATE=
MTU=
MACSPOOF=
"""

MINIMAL = "MAC=aa:6b:39:22:33:44\nHOSTNAME=vm1\n"


def test_the_reference_example_parses() -> None:
    b = parse_binding("tap10", REFERENCE)
    assert b == Binding(
        tap="tap10",
        indev="tap10",
        mac="aa:6b:39:22:33:44",
        hostname="testing-vm",
        ip=IPv4Address("192.0.2.100"),
        subnet=IPv4Network("192.0.2.0/24"),
        gateway=IPv4Address("192.0.2.1"),
        subnet6=IPv6Network("2001:db8:aaaa:bbbb::/64"),
        gateway6=IPv6Address("2001:db8:aaaa:bbbb::1"),
        eui64=IPv6Address("2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344"),
        tags=("t1", "t2"),
    )
    assert not b.private and not b.macspoof and b.mtu is None
    assert b.mac_bytes == bytes.fromhex("aa6b39223344")


def test_minimal_file_defaults_indev_to_the_tap_and_leaves_the_rest_unset() -> None:
    b = parse_binding("tap3", MINIMAL)
    assert b.indev == "tap3" and b.ip is None and b.subnet is None and b.tags == ()


def test_flags_mtu_mac_case_quotes_comments_and_unknown_keys() -> None:
    text = (
        "# written by kvm-ifup\n\n"
        "  INDEV=br0  \n"
        'MAC="AA:6B:39:22:33:4F"\n'
        "HOSTNAME=vm1.example.org\n"
        "PRIVATE=yes\n"
        "MACSPOOF=1\n"
        "MTU=1450\n"
        "FUTURE=whatever=with=equals\n"
        "TAGS=single\n"
    )
    b = parse_binding("tap3", text)
    assert b.indev == "br0"
    assert b.mac == "aa:6b:39:22:33:4f"
    assert b.hostname == "vm1.example.org"
    assert b.private and b.macspoof and b.mtu == 1450
    assert b.tags == ("single",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("MAC=aa:6b:39:22:33", "binding 'tap3': MAC 'aa:6b:39:22:33' is not a MAC address"),
        ("MAC=aa-6b-39-22-33-44", "MAC 'aa-6b-39-22-33-44' is not a MAC address"),
        ("HOSTNAME=bad_name", "HOSTNAME 'bad_name' is not a DNS name"),
        ("HOSTNAME=-vm", "HOSTNAME '-vm' is not a DNS name"),
        ("HOSTNAME=vm..org", "HOSTNAME 'vm..org' is not a DNS name"),
        ("HOSTNAME=" + "a" * 64, "is not a DNS name"),
        ("HOSTNAME=" + ".".join(["a" * 63] * 4), "is not a DNS name"),
        ("INDEV=a-very-long-interface", "INDEV 'a-very-long-interface' is not an interface"),
        ("INDEV=br/0", "INDEV 'br/0' is not an interface name"),
        ("INDEV=..", "INDEV '..' is not an interface name"),
        ("IP=192.0.2.256", "IP '192.0.2.256' is not valid"),
        ("IP=2001:db8::1", "IP '2001:db8::1' is not valid"),
        ("IP=192.0.2.1 # comment", "IP '192.0.2.1 # comment' is not valid"),
        ("GATEWAY=gw", "GATEWAY 'gw' is not valid"),
        ("SUBNET=192.0.2.1/24", "SUBNET '192.0.2.1/24' is not valid: 192.0.2.1/24 has host"),
        ("SUBNET=192.0.2.0/33", "SUBNET '192.0.2.0/33' is not valid"),
        ("SUBNET6=2001:db8::1/64", "SUBNET6 '2001:db8::1/64' is not valid"),
        ("GATEWAY6=192.0.2.1", "GATEWAY6 '192.0.2.1' is not valid"),
        ("GATEWAY6=fe80::1%eth0", "GATEWAY6 'fe80::1%eth0' is not valid: a scope id"),
        ("EUI64=zz::1", "EUI64 'zz::1' is not valid"),
        ("MTU=abc", "MTU 'abc' is not an integer from 68 to 65535"),
        ("MTU=67", "MTU 67 is not an integer from 68 to 65535"),
        ("MTU=65536", "MTU 65536 is not an integer from 68 to 65535"),
        ("MTU=1_500", "MTU '1_500' is not an integer"),
        ("MTU=-1", "MTU '-1' is not an integer"),
        ('TAGS="ok bad"tag"', "TAGS holds 'bad\"tag', which is not a Ganeti tag"),
        ("TAGS=" + "t" * 129, "which is not a Ganeti tag"),
        ("just some words", "line 1 'just some words' is not KEY=value"),
    ],
)
def test_every_malformed_value_is_rejected_naming_key_and_value(line: str, message: str) -> None:
    key = line.partition("=")[0]
    base = "".join(f"{x}\n" for x in MINIMAL.splitlines() if not x.startswith(f"{key}="))
    with pytest.raises(InvalidInput) as info:
        parse_binding("tap3", line + "\n" + base)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HOSTNAME=vm1\n", "binding 'tap3': MAC is missing"),
        ("MAC=aa:6b:39:22:33:44\n", "binding 'tap3': HOSTNAME is missing"),
        ("MAC=\nHOSTNAME=vm1\n", "MAC is missing"),
        (MINIMAL + "IP=192.0.2.1\nIP=192.0.2.2\n", "IP is set twice (line 4)"),
        (
            MINIMAL + "IP=198.51.100.7\nSUBNET=192.0.2.0/24\n",
            "binding 'tap3': IP 198.51.100.7 is outside SUBNET 192.0.2.0/24",
        ),
        (
            MINIMAL + "GATEWAY=198.51.100.1\nSUBNET=192.0.2.0/24\n",
            "GATEWAY 198.51.100.1 is outside SUBNET 192.0.2.0/24",
        ),
        (
            MINIMAL + "GATEWAY6=2001:db8:1::1\nSUBNET6=2001:db8:2::/64\n",
            "GATEWAY6 2001:db8:1::1 is outside SUBNET6 2001:db8:2::/64",
        ),
        (
            MINIMAL + "EUI64=2001:db8:1::1\nSUBNET6=2001:db8:2::/64\n",
            "EUI64 2001:db8:1::1 is outside SUBNET6",
        ),
        (MINIMAL + "#" * 4096, "binding 'tap3': 4131 bytes, more than 4096"),
    ],
)
def test_missing_duplicate_inconsistent_and_oversized_files_are_rejected(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_binding("tap3", text)
    assert message in str(info.value)


@pytest.mark.parametrize("tap", ["", ".", "..", "tap/0", "x" * 16, "tap 0", "täp"])
def test_bad_tap_names_are_rejected(tap: str) -> None:
    with pytest.raises(InvalidInput, match="is not an interface name"):
        parse_binding(tap, MINIMAL)
    with pytest.raises(InvalidInput, match="is not an interface name"):
        remove_binding(Path("/nonexistent"), tap)


def test_construction_validates_like_parsing() -> None:
    good = {"tap": "tap0", "indev": "tap0", "mac": "AA:BB:CC:DD:EE:FF", "hostname": "vm"}
    assert Binding(**good).mac == "aa:bb:cc:dd:ee:ff"
    assert Binding(**good, tags=["a", "b"]).tags == ("a", "b")  # type: ignore[arg-type]
    for extra, message in [
        ({"mtu": True}, "MTU True is not an integer"),
        ({"mtu": 1500.0}, "MTU 1500.0 is not an integer"),
        ({"private": "yes"}, "PRIVATE 'yes' is not a boolean"),
        ({"tags": ("a b",)}, "TAGS holds 'a b'"),
        ({"tags": ("",)}, "TAGS holds ''"),
        ({"ip": "192.0.2.1"}, "IP '192.0.2.1' is not an IPv4Address"),
        ({"subnet6": IPv4Network("192.0.2.0/24")}, "SUBNET6 IPv4Network"),
        ({"gateway6": IPv6Address("fe80::1%eth0")}, "GATEWAY6 fe80::1%eth0 has a scope id"),
    ]:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            Binding(**good, **extra)  # type: ignore[arg-type]


def test_eui64_matches_snf_network() -> None:
    net = IPv6Network("2001:db8:aaaa:bbbb::/64")
    assert eui64(net, "aa:6b:39:22:33:44") == IPv6Address("2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344")
    assert eui64(IPv6Network("2001:db8::/48"), "02:00:00:00:00:01") == IPv6Address(
        "2001:db8::ff:fe00:1"
    )
    with pytest.raises(InvalidInput, match="SUBNET6 2001:db8::/80 is longer than /64"):
        eui64(IPv6Network("2001:db8::/80"), "aa:6b:39:22:33:44")
    with pytest.raises(InvalidInput, match="MAC 'aa:6b' is not a MAC address"):
        eui64(net, "aa:6b")


# --- round trip ----------------------------------------------------------------------------

_ifnames = st.from_regex(r"[A-Za-z0-9_.:-]{1,15}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
_labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True)
_macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
_tags = st.from_regex(r"[A-Za-z0-9_.+*/:@-]{1,128}", fullmatch=True)


@st.composite
def valid_bindings(draw: st.DrawFn) -> Binding:
    mac = draw(_macs)
    ip = subnet = gateway = subnet6 = gateway6 = addr6 = None
    if draw(st.booleans()):
        subnet = IPv4Network((draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 32))), False)
        pick = st.integers(int(subnet.network_address), int(subnet.broadcast_address))
        ip = draw(st.none() | pick.map(IPv4Address))
        gateway = draw(st.none() | pick.map(IPv4Address))
    elif draw(st.booleans()):
        ip = IPv4Address(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        subnet6 = IPv6Network((draw(st.integers(0, 2**128 - 1)), draw(st.integers(0, 64))), False)
        gateway6 = draw(st.none() | st.just(subnet6.network_address + 1))
        addr6 = draw(st.none() | st.just(eui64(subnet6, mac)))
    return Binding(
        tap=draw(_ifnames),
        indev=draw(_ifnames),
        mac=mac.upper() if draw(st.booleans()) else mac,
        hostname=".".join(draw(st.lists(_labels, min_size=1, max_size=3))),
        ip=ip,
        subnet=subnet,
        gateway=gateway,
        subnet6=subnet6,
        gateway6=gateway6,
        eui64=addr6,
        tags=tuple(draw(st.lists(_tags, max_size=4))),
        private=draw(st.booleans()),
        mtu=draw(st.none() | st.integers(68, 65535)),
        macspoof=draw(st.booleans()),
    )


@given(valid_bindings())
def test_format_then_parse_gives_the_binding_back(b: Binding) -> None:
    text = format_binding(b)
    assert parse_binding(b.tap, text) == b
    assert len(text.encode()) <= bindings.MAX_FILE_SIZE


def test_format_quotes_only_tags() -> None:
    assert format_binding(parse_binding("tap10", REFERENCE)) == REFERENCE
    flags = parse_binding("tap1", MINIMAL + "PRIVATE=x\nMACSPOOF=x\nMTU=9000\n")
    assert "PRIVATE=1\nMTU=9000\nMACSPOOF=1\n" in format_binding(flags)


# --- files ---------------------------------------------------------------------------------


def test_write_is_atomic_0644_and_replaces(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        b = parse_binding("tap10", REFERENCE)
        path = write_binding(tmp_path, b)
        path2 = write_binding(tmp_path, parse_binding("tap10", MINIMAL))
    finally:
        os.umask(old_umask)
    assert path == path2 == tmp_path / "tap10"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == format_binding(parse_binding("tap10", MINIMAL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tap10"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_binding(tmp_path, parse_binding("tap10", REFERENCE))

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bindings.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_binding(tmp_path, parse_binding("tap10", MINIMAL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tap10"]
    assert (tmp_path / "tap10").read_text() == REFERENCE


def test_remove(tmp_path: Path) -> None:
    write_binding(tmp_path, parse_binding("tap10", MINIMAL))
    assert remove_binding(tmp_path, "tap10") is True
    assert remove_binding(tmp_path, "tap10") is False
    assert list(tmp_path.iterdir()) == []


def test_load_all_reports_bad_files_and_skips_temp_files(tmp_path: Path) -> None:
    write_binding(tmp_path, parse_binding("tap10", REFERENCE))
    write_binding(tmp_path, parse_binding("tap11", MINIMAL))
    (tmp_path / "tap12").write_text("MAC=nope\nHOSTNAME=vm\n")
    (tmp_path / "tap13").write_bytes(MINIMAL.encode() + b"TAGS=\xff\n")
    (tmp_path / "tap14").write_text(MINIMAL + "#" * 5000)
    (tmp_path / "way-too-long-name").write_text(MINIMAL)
    (tmp_path / "tap15").mkdir()
    (tmp_path / ".tap16.abc.tmp").write_text("garbage")
    found, errors = load_all(tmp_path)
    assert found == {
        "tap10": parse_binding("tap10", REFERENCE),
        "tap11": parse_binding("tap11", MINIMAL),
    }
    assert errors == {
        "tap12": "binding 'tap12': MAC 'nope' is not a MAC address",
        "tap13": "binding 'tap13': not UTF-8 text (invalid start byte)",
        "tap14": "binding 'tap14': more than 4096 bytes",
        "tap15": "binding 'tap15': not a regular file",
        "way-too-long-name": "binding tap name 'way-too-long-name' is not an interface name",
    }


def test_load_all_reports_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "tap1").symlink_to(tmp_path / "missing")
    found, errors = load_all(tmp_path)
    assert found == {}
    assert errors == {"tap1": "binding 'tap1': not a regular file"}
    if os.geteuid() != 0:
        (tmp_path / "tap1").unlink()
        (tmp_path / "tap2").write_text(MINIMAL)
        (tmp_path / "tap2").chmod(0)
        assert load_all(tmp_path)[1] == {"tap2": "binding 'tap2': cannot read: Permission denied"}
