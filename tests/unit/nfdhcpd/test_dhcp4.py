from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from snf.common.errors import InvalidInput
from snf.nfdhcpd import dhcp4
from snf.nfdhcpd.bindings import Binding
from snf.nfdhcpd.dhcp4 import DhcpConfig, DhcpRequest, parse_request, reply

MAC = "aa:6b:39:22:33:44"
OTHER_MAC = "aa:6b:39:22:33:55"
SERVER_MAC = bytes.fromhex("cc4752454e54")
BINDING = Binding(
    tap="tap10",
    indev="tap10",
    mac=MAC,
    hostname="testing-vm",
    ip=IPv4Address("192.0.2.100"),
    subnet=IPv4Network("192.0.2.0/24"),
    gateway=IPv4Address("192.0.2.1"),
)
CONFIG = DhcpConfig(
    lease_time=3600,
    renewal_time=600,
    nameservers=(IPv4Address("198.51.100.53"), IPv4Address("198.51.100.54")),
)
TYPES = {"discover": 1, "request": 3, "decline": 4, "release": 7, "inform": 8}


def request_packet(
    msg_type: str | int = "discover",
    mac: str = MAC,
    xid: int = 0x1234ABCD,
    flags: int = 0,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    options: tuple[Any, ...] = (),
) -> Packet:
    """A client's request as scapy builds it, from the IPv4 header on (what NFQUEUE gives)."""
    return (
        IP(src=ciaddr, dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr, chaddr=mac_bytes(mac))
        / DHCP(options=[("message-type", msg_type), *options, "end"])
    )


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def parsed(**kwargs: Any) -> DhcpRequest:
    req = parse_request(bytes(request_packet(**kwargs)))
    assert req is not None
    return req


def answer(binding: Binding = BINDING, config: DhcpConfig = CONFIG, **kwargs: Any) -> Packet | None:
    frame = reply(parsed(**kwargs), binding, config, SERVER_MAC)
    if frame is None:
        return None
    return dissect(frame)


def dissect(frame: bytes) -> Packet:
    """The frame as scapy reads it, after checking scapy computes the same checksums."""
    packet = Ether(frame)
    again = packet.copy()
    del again[IP].chksum, again[IP].len, again[UDP].chksum, again[UDP].len
    assert bytes(again) == frame
    assert len(packet[BOOTP]) >= 300
    return packet


def options(packet: Packet) -> dict[str, Any]:
    result: dict[str, Any] = {}
    items = packet[DHCP].options
    assert "end" in items
    for item in items[: items.index("end")]:
        assert isinstance(item, tuple), item
        result[item[0]] = item[1] if len(item) == 2 else item[1:]
    return result


def check_frame(packet: Packet, msg: str, dst_mac: str, dst_ip: str, server: str) -> None:
    assert packet[Ether].dst == dst_mac
    assert packet[Ether].src == "cc:47:52:45:4e:54"
    assert packet[Ether].type == 0x0800
    assert packet[IP].src == server and packet[IP].dst == dst_ip
    assert packet[IP].ttl == 64 and packet[IP].proto == 17 and packet[IP].ihl == 5
    assert packet[IP].flags == 0 and packet[IP].frag == 0
    assert packet[UDP].sport == 67 and packet[UDP].dport == 68
    bootp = packet[BOOTP]
    assert bootp.op == 2 and bootp.htype == 1 and bootp.hlen == 6 and bootp.hops == 0
    assert bootp.xid == 0x1234ABCD
    assert bootp.chaddr[:6] == mac_bytes(MAC) and bootp.chaddr[6:] == b"\0" * 10
    assert bootp.sname == b"\0" * 64 and bootp.file == b"\0" * 128
    assert options(packet)["message-type"] == getattr(dhcp4, msg.upper())


FULL_OPTIONS = {
    "server_id": "192.0.2.1",
    "lease_time": 3600,
    "renewal_time": 600,
    "rebinding_time": 3150,
    "subnet_mask": "255.255.255.0",
    "broadcast_address": "192.0.2.255",
    "router": "192.0.2.1",
    "name_server": ("198.51.100.53", "198.51.100.54"),
    "hostname": b"testing-vm",
}


def test_discover_gets_an_offer() -> None:
    packet = answer(msg_type="discover")
    assert packet is not None
    check_frame(packet, "offer", MAC, "192.0.2.100", "192.0.2.1")
    assert packet[BOOTP].yiaddr == "192.0.2.100" and packet[BOOTP].siaddr == "192.0.2.1"
    assert packet[BOOTP].ciaddr == "0.0.0.0" and packet[BOOTP].giaddr == "0.0.0.0"
    assert options(packet) == {"message-type": 2, **FULL_OPTIONS}
    names = [o[0] for o in packet[DHCP].options if isinstance(o, tuple)]
    assert names == ["message-type", *FULL_OPTIONS]


def test_request_for_the_bound_address_gets_an_ack() -> None:
    packet = answer(msg_type="request", options=(("requested_addr", "192.0.2.100"),))
    assert packet is not None
    check_frame(packet, "ack", MAC, "192.0.2.100", "192.0.2.1")
    assert packet[BOOTP].yiaddr == "192.0.2.100" and packet[BOOTP].ciaddr == "0.0.0.0"
    assert options(packet) == {"message-type": 5, **FULL_OPTIONS}


def test_renewal_without_option_50_gets_an_ack_keeping_ciaddr() -> None:
    packet = answer(msg_type="request", ciaddr="192.0.2.100")
    assert packet is not None
    check_frame(packet, "ack", MAC, "192.0.2.100", "192.0.2.1")
    assert packet[BOOTP].ciaddr == "192.0.2.100" and packet[BOOTP].yiaddr == "192.0.2.100"
    assert options(packet)["lease_time"] == 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"options": (("requested_addr", "192.0.2.101"),)},
        {"ciaddr": "192.0.2.101"},
        {"ciaddr": "192.0.2.100", "options": (("requested_addr", "10.0.0.1"),)},
    ],
)
def test_request_for_another_address_gets_a_broadcast_nak(kwargs: dict[str, Any]) -> None:
    packet = answer(msg_type="request", **kwargs)
    assert packet is not None
    check_frame(packet, "nak", "ff:ff:ff:ff:ff:ff", "255.255.255.255", "192.0.2.1")
    bootp = packet[BOOTP]
    assert bootp.yiaddr == bootp.siaddr == bootp.ciaddr == "0.0.0.0"
    assert options(packet) == {"message-type": 6, "server_id": "192.0.2.1"}


def test_inform_gets_an_ack_without_address_or_lease() -> None:
    packet = answer(msg_type="inform", ciaddr="192.0.2.100")
    assert packet is not None
    check_frame(packet, "ack", MAC, "192.0.2.100", "192.0.2.1")
    assert packet[BOOTP].yiaddr == "0.0.0.0" and packet[BOOTP].ciaddr == "192.0.2.100"
    lease = ("lease_time", "renewal_time", "rebinding_time")
    expected = {k: v for k, v in FULL_OPTIONS.items() if k not in lease}
    assert options(packet) == {"message-type": 5, **expected}


@pytest.mark.parametrize("msg_type", ["decline", "release", 2, 5, 6, 9, 13, 255])
def test_other_message_types_get_no_reply(msg_type: str | int) -> None:
    assert answer(msg_type=msg_type) is None


def test_mac_mismatch_gets_no_reply_unless_macspoof() -> None:
    assert answer(mac=OTHER_MAC) is None
    packet = answer(replace(BINDING, macspoof=True), mac=OTHER_MAC)
    assert packet is not None
    assert packet[Ether].dst == OTHER_MAC
    assert packet[BOOTP].chaddr[:6] == mac_bytes(OTHER_MAC)


def test_mac_comparison_ignores_the_binding_case() -> None:
    assert answer(replace(BINDING, mac=MAC.upper())) is not None


def test_no_ip_gets_no_reply() -> None:
    assert answer(replace(BINDING, ip=None)) is None


def test_private_drops_the_router_option() -> None:
    packet = answer(replace(BINDING, private=True))
    assert packet is not None
    assert "router" not in options(packet)
    assert options(packet)["server_id"] == "192.0.2.1"


def test_mtu_option() -> None:
    packet = answer(replace(BINDING, mtu=1450))
    assert packet is not None
    assert options(packet)["interface-mtu"] == 1450
    plain = answer()
    assert plain is not None and "interface-mtu" not in options(plain)


def test_domain_from_hostname_or_config() -> None:
    fqdn = replace(BINDING, hostname="vm1.example.org")
    packet = answer(fqdn)
    assert packet is not None
    assert options(packet)["hostname"] == b"vm1" and options(packet)["domain"] == b"example.org"
    packet = answer(fqdn, replace(CONFIG, domain="cloud.test"))
    assert packet is not None
    assert options(packet)["domain"] == b"cloud.test"
    plain = answer()
    assert plain is not None and "domain" not in options(plain)


def test_no_nameservers_no_dns_option() -> None:
    packet = answer(config=DhcpConfig())
    assert packet is not None
    opts = options(packet)
    assert "name_server" not in opts
    assert (opts["lease_time"], opts["renewal_time"], opts["rebinding_time"]) == (
        604800,
        600,
        529200,
    )


def test_server_address_choice() -> None:
    configured = replace(CONFIG, server_ip=IPv4Address("203.0.113.9"))
    packet = answer(config=configured)
    assert packet is not None
    assert packet[IP].src == packet[BOOTP].siaddr == options(packet)["server_id"] == "203.0.113.9"
    # server_on_link: the gateway, else the first host of the subnet that is not the VM's
    no_gateway = replace(BINDING, gateway=None)
    packet = answer(no_gateway)
    assert packet is not None
    assert packet[IP].src == options(packet)["server_id"] == "192.0.2.1"
    assert "router" not in options(packet)
    first = replace(no_gateway, ip=IPv4Address("192.0.2.1"))
    assert dhcp4.server_address(first, CONFIG) == IPv4Address("192.0.2.2")
    single = replace(no_gateway, ip=IPv4Address("192.0.2.7"), subnet=IPv4Network("192.0.2.7/32"))
    assert dhcp4.server_address(single, CONFIG) is None
    assert answer(single) is None
    no_subnet = replace(BINDING, subnet=None, gateway=None)
    assert answer(no_subnet) is None
    packet = answer(no_subnet, configured)
    assert packet is not None
    assert "subnet_mask" not in options(packet) and "broadcast_address" not in options(packet)


def test_broadcast_flag_and_relay_fields() -> None:
    packet = answer(flags=0x8000, giaddr="198.51.100.1")
    assert packet is not None
    assert packet[Ether].dst == "ff:ff:ff:ff:ff:ff" and packet[IP].dst == "255.255.255.255"
    assert packet[BOOTP].flags == 0x8000 and packet[BOOTP].giaddr == "198.51.100.1"
    assert packet[BOOTP].yiaddr == "192.0.2.100"


def test_bad_server_mac_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="DHCP server MAC 'cc:47' is not 6 bytes"):
        reply(parsed(), BINDING, CONFIG, b"\xcc\x47")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lease_time": 0}, "DHCP lease_time 0 is not an integer from 1 to 4294967295"),
        ({"lease_time": 2**32}, "lease_time 4294967296"),
        ({"renewal_time": 700, "lease_time": 600}, "renewal_time 700 is not an integer from 1"),
        ({"nameservers": ("8.8.8.8",)}, "DHCP nameservers"),
        ({"nameservers": (IPv4Address("8.8.8.8"),) * 64}, "at most 63"),
        ({"domain": "bad domain"}, "DHCP domain 'bad domain' is not a DNS name"),
        ({"domain": ""}, "DHCP domain '' is not a DNS name"),
        ({"server_ip": "192.0.2.1"}, "DHCP server_ip '192.0.2.1' is not an IPv4 address"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        DhcpConfig(**kwargs)


# --- parsing -------------------------------------------------------------------------------


def test_parse_request_reads_the_fields() -> None:
    raw = bytes(
        request_packet(
            "request",
            flags=0x8000,
            ciaddr="192.0.2.100",
            giaddr="198.51.100.1",
            options=(("requested_addr", "192.0.2.100"), ("hostname", b"vm"), ("pad",)),
        )
    )
    req = parse_request(raw)
    assert req == DhcpRequest(
        msg_type=3,
        xid=0x1234ABCD,
        chaddr=mac_bytes(MAC),
        flags=0x8000,
        ciaddr=IPv4Address("192.0.2.100"),
        giaddr=IPv4Address("198.51.100.1"),
        requested_ip=IPv4Address("192.0.2.100"),
        bootp=raw[28:],
    )


def test_parse_request_accepts_ip_options_trailing_bytes_and_a_missing_end() -> None:
    with_ip_options = request_packet()
    with_ip_options[IP].options = [b"\x01\x01\x01\x00"]  # NOP NOP NOP EOL
    assert bytes(with_ip_options)[0] == 0x46
    assert parse_request(bytes(with_ip_options)) == parsed()
    assert parse_request(bytes(request_packet()) + b"\0" * 10) == parsed()
    no_end = request_packet()
    no_end[DHCP].options = [("message-type", "discover")]
    assert parse_request(bytes(no_end)) is not None


def _mutate(packet: Packet, layer: type[Packet], **fields: Any) -> bytes:
    packet = packet.copy()
    for name, value in fields.items():
        setattr(packet[layer], name, value)
    return bytes(packet)


BASE = request_packet()
COOKIE = b"\x63\x82\x53\x63"
MSG_DISCOVER = b"\x35\x01\x01"


def udp_payload(payload: bytes, **udp: Any) -> bytes:
    """IPv4/UDP(68 -> 67) around ``payload``, with lengths and checksums computed by scapy."""
    return bytes(IP() / UDP(sport=68, dport=67, **udp) / Raw(payload))


def bootp_with(options: bytes, cookie: bytes = COOKIE, **fields: Any) -> bytes:
    """A BOOTREQUEST from MAC with the raw option bytes ``options``."""
    header = BOOTP(op=1, chaddr=mac_bytes(MAC), xid=0x1234ABCD, **fields)
    return udp_payload(bytes(header) + cookie + options)


REJECTED = {
    "empty": b"",
    "short ip header": bytes(BASE)[:19],
    "ipv6": bytes(IPv6() / UDP(sport=546, dport=67) / BOOTP() / DHCP(options=["end"])),
    "ihl too small": _mutate(BASE, IP, ihl=4),
    "ihl beyond total length": b"\x4f\x00\x00\x28" + bytes(BASE)[4:40],
    "total length beyond packet": _mutate(BASE, IP, len=2000),
    "total length too short": _mutate(BASE, IP, len=19),
    "tcp": _mutate(BASE, IP, proto=6),
    "more fragments": _mutate(BASE, IP, flags="MF"),
    "fragment offset": _mutate(BASE, IP, frag=10),
    "udp truncated": bytes(IP(proto=17) / Raw(b"\0" * 7)),
    "dport 68": _mutate(BASE, UDP, dport=68),
    "udp length beyond packet": _mutate(BASE, UDP, len=2000),
    "udp length too short": _mutate(BASE, UDP, len=7),
    "bootreply": _mutate(BASE, BOOTP, op=2),
    "htype": _mutate(BASE, BOOTP, htype=6),
    "hlen": _mutate(BASE, BOOTP, hlen=16),
    "bootp truncated": udp_payload(bytes(BASE[BOOTP])[:200]),
    "no cookie": bootp_with(b"", cookie=b""),
    "bad cookie": bootp_with(MSG_DISCOVER + b"\xff", cookie=b"\x63\x82\x53\x64"),
    "no message type": bootp_with(b"\xff"),
    "message type too long": bootp_with(b"\x35\x02\x01\x01\xff"),
    "message type empty": bootp_with(b"\x35\x00\xff"),
    "option 50 too short": bootp_with(MSG_DISCOVER + b"\x32\x03\xc0\x00\x02\xff"),
    "option length beyond end": bootp_with(MSG_DISCOVER + b"\x0c\x10vm\xff"),
    "option length missing": bootp_with(MSG_DISCOVER + b"\x0c"),
}


@pytest.mark.parametrize("raw", REJECTED.values(), ids=REJECTED.keys())
def test_parse_request_rejects_malformed_packets(raw: bytes) -> None:
    assert parse_request(raw) is None


def test_the_hand_built_packets_are_valid_when_well_formed() -> None:
    assert parse_request(bootp_with(MSG_DISCOVER + b"\xff")) == parsed()
    # pads skipped, anything after the end option ignored
    raw = bootp_with(b"\0\0" + MSG_DISCOVER + b"\x0c\x02vm\xff\x0c")
    req = parse_request(raw)
    assert req is not None and req.bootp == raw[28:]
    assert replace(req, bootp=b"") == replace(parsed(), bootp=b"")


# --- fuzzing -------------------------------------------------------------------------------

FUZZ_BINDINGS = [BINDING, replace(BINDING, macspoof=True, private=True, mtu=9000)]


def _reply_never_raises(req: DhcpRequest | None) -> None:
    if req is None:
        return
    for binding in FUZZ_BINDINGS:
        frame = reply(req, binding, CONFIG, SERVER_MAC)
        if frame is not None:
            assert Ether(frame)[UDP].dport == 68


@given(st.binary(max_size=700))
def test_parse_request_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    _reply_never_raises(parse_request(raw))


VALID = [
    bytes(request_packet(t, options=(("requested_addr", "192.0.2.100"), ("hostname", b"vm"))))
    for t in TYPES
]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=500)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
    st.integers(0, 400),
    st.binary(max_size=8),
)
def test_parse_request_never_raises_on_mutated_packets(
    raw: bytes, changes: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    data = bytearray(raw)
    for offset, value in changes:
        if offset < len(data):
            data[offset] = value
    data = data[: len(data) - cut % 40] + tail
    _reply_never_raises(parse_request(bytes(data)))


@given(
    msg_type=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 2**16 - 1),
    ciaddr=st.sampled_from(["0.0.0.0", "192.0.2.100", "192.0.2.5"]),
    requested=st.none() | st.sampled_from(["192.0.2.100", "10.1.2.3"]),
    mac=st.sampled_from([MAC, OTHER_MAC]),
)
def test_reply_never_raises_on_any_parsed_request(
    msg_type: int, xid: int, flags: int, ciaddr: str, requested: str | None, mac: str
) -> None:
    extra = (("requested_addr", requested),) if requested else ()
    raw = bytes(request_packet(msg_type, mac, xid, flags, ciaddr, options=extra))
    req = parse_request(raw)
    assert req is not None and req.msg_type == msg_type and req.xid == xid
    for binding in FUZZ_BINDINGS:
        frame = reply(req, binding, CONFIG, SERVER_MAC)
        if frame is not None:
            packet = dissect(frame)
            assert packet[BOOTP].xid == xid and packet[BOOTP].flags == flags
