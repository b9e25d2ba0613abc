"""nfdhcpd's packet core: verdicts, lookups, rate limits, and one verdict for any input."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from snf.nfdhcpd import dhcp4, ipv6
from snf.nfdhcpd.bindings import Binding
from snf.nfdhcpd.core import ACCEPT, Decision, Kind, Responder, classify

VM_MAC = "aa:00:00:12:34:56"
SERVER_MAC = bytes.fromhex("cc474e524554")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def responder(clock: Clock | None = None, **kwargs: float) -> Responder:
    r = Responder(
        dhcp4.DhcpConfig(nameservers=(IPv4Address("192.0.2.53"),)),
        ipv6.Ipv6Config(),
        lambda ifname: SERVER_MAC if ifname in ("tap0", "br0") else None,
        clock=clock or Clock(),
        **kwargs,
    )
    r.bindings["tap0"] = Binding(
        tap="tap0", indev="br0", mac=VM_MAC, hostname="vm1.example.test",
        ip=IPv4Address("10.0.0.5"), subnet=IPv4Network("10.0.0.0/24"),
        gateway=IPv4Address("10.0.0.1"), subnet6=IPv6Network("2001:db8:1::/64"),
    )  # fmt: skip
    return r


def discover(mac: str = VM_MAC) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", ""))
    return bytes(
        IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=chaddr, xid=0x1234)
        / DHCP(options=[("message-type", "discover"), "end"])
    )


def test_a_packet_from_an_unknown_tap_is_accepted() -> None:
    r = responder()
    assert r.handle(Kind.DHCP, discover(), "br0", "tap9", None) == ACCEPT
    assert r.handle(Kind.DHCP, discover(), "eth0", None, None) == ACCEPT


def test_a_bridged_discover_is_dropped_and_answered_on_the_tap() -> None:
    decision = responder().handle(Kind.DHCP, discover(), "br0", "tap0", None)
    assert not decision.accept
    ((tap, frame),) = decision.frames
    assert tap == "tap0"
    offer = Ether(frame)
    assert offer[BOOTP].yiaddr == "10.0.0.5" and offer[Ether].src == "cc:47:4e:52:45:54"


def test_a_routed_nic_is_found_by_its_indev() -> None:
    r = responder()
    r.bindings["tap1"] = Binding(
        tap="tap1", indev="tap0", mac=VM_MAC, hostname="vm2",
        ip=IPv4Address("10.0.0.6"), subnet=IPv4Network("10.0.0.0/24"),
    )  # fmt: skip
    decision = r.handle(Kind.DHCP, discover(), "tap1", None, None)
    assert decision.frames and decision.frames[0][0] == "tap1"


def test_a_spoofed_request_is_dropped_without_an_answer() -> None:
    decision = responder().handle(Kind.DHCP, discover("aa:00:00:00:00:01"), "br0", "tap0", None)
    assert decision == Decision(False)


def test_rate_limit_per_tap_then_refill() -> None:
    clock = Clock()
    r = responder(clock, rate=2.0, burst=3.0)
    answered = [bool(r.handle(Kind.DHCP, discover(), "br0", "tap0", None).frames) for _ in range(5)]
    assert answered == [True, True, True, False, False]
    assert r.counters["rate-limited"] == 2
    clock.now += 1.0  # two more tokens
    assert r.handle(Kind.DHCP, discover(), "br0", "tap0", None).frames
    assert r.handle(Kind.DHCP, discover(), "br0", "tap0", None).frames
    assert not r.handle(Kind.DHCP, discover(), "br0", "tap0", None).frames


def test_a_failing_handler_costs_one_answer_not_the_daemon(monkeypatch) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(dhcp4, "parse_request", boom)
    decision = responder().handle(Kind.DHCP, discover(), "br0", "tap0", None)
    assert decision == Decision(False)


def test_an_rs_gets_an_ra_and_periodic_ras_cover_ipv6_bindings() -> None:
    r = responder()
    rs = bytes(IPv6(src="fe80::a800:ff:fe12:3456", dst="ff02::2", hlim=255) / ICMPv6ND_RS())
    decision = r.handle(Kind.RS, rs, "br0", "tap0", bytes.fromhex(VM_MAC.replace(":", "")))
    assert not decision.accept and decision.frames
    assert [tap for tap, _ in r.periodic_ras()] == ["tap0"]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    payload=st.binary(max_size=600),
    src=st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
)
def test_any_bytes_get_exactly_one_decision(kind: Kind, payload: bytes, src: bytes | None) -> None:
    decision = responder(rate=1e9, burst=1e9).handle(kind, payload, "br0", "tap0", src)
    assert isinstance(decision, Decision) and not decision.accept
    assert all(tap == "tap0" and isinstance(f, bytes) for tap, f in decision.frames)


def test_classify_sorts_frames_as_the_queue_rules_would() -> None:
    mac = "aa:00:00:12:34:56"
    dhcp = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(discover())
    assert classify(bytes(dhcp)) == (Kind.DHCP, discover())
    rs = Ether(src=mac) / IPv6(src="fe80::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS()
    assert classify(bytes(rs))[0] is Kind.RS
    dhcp6 = Ether(src=mac) / IPv6(src="fe80::1", dst="ff02::1:2") / UDP(sport=546, dport=547)
    assert classify(bytes(dhcp6))[0] is Kind.DHCPV6
    other = Ether(src=mac) / IP(dst="10.0.0.1") / UDP(sport=1000, dport=53)
    assert classify(bytes(other)) is None
    assert classify(b"") is None and classify(bytes(14)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_classify_never_raises(frame: bytes) -> None:
    classify(frame)
