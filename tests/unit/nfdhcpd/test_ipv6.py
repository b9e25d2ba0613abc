"""snf.nfdhcpd.ipv6: requests crafted and replies dissected with scapy, plus fuzzing."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp6 import (
    DUID_LL,
    DUID_LLT,
    DHCP6_InfoRequest,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptDNSDomains,
    DHCP6OptDNSServers,
    DHCP6OptOptReq,
    DHCP6OptServerId,
)
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDNSSL,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils6 import in6_addrtomac, in6_mactoifaceid

from snf.nfdhcpd import ipv6
from snf.nfdhcpd.bindings import Binding
from snf.nfdhcpd.ipv6 import Ipv6Config

SERVER = "cc:47:52:4e:45:54"
SERVER_MAC = bytes.fromhex(SERVER.replace(":", ""))
ROUTER_LL = "fe80::ce47:52ff:fe4e:4554"
VM = "aa:6b:39:22:33:44"
VM_MAC = bytes.fromhex(VM.replace(":", ""))
VM_LL = "fe80::a86b:39ff:fe22:3344"
VM_7217 = "fe80::1c2d:9e4f:77a1:b30c"  # an RFC 7217 (stable private) link-local
OTHER = "02:00:00:00:00:99"
OTHER_MAC = bytes.fromhex(OTHER.replace(":", ""))
SUBNET6 = IPv6Network("2001:db8:aaaa:bbbb::/64")
GATEWAY6 = IPv6Address("2001:db8:aaaa:bbbb::1")
EUI64 = IPv6Address("2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344")
NS1, NS2 = IPv6Address("2001:db8::53"), IPv6Address("2001:db8::5353")

BINDING = Binding(
    tap="tap10",
    indev="tap10",
    mac=VM,
    hostname="testing-vm",
    subnet6=SUBNET6,
    gateway6=GATEWAY6,
    eui64=EUI64,
    mtu=1500,
)
BARE = Binding(tap="tap11", indev="tap11", mac=VM, hostname="bare")  # no SUBNET6
CONFIG = Ipv6Config(nameservers=(NS1, NS2), domains=("example.org", "vm.example.org."))


def rs(src: str = VM_LL, lladdr: str | None = VM, hlim: int = 255) -> bytes:
    pkt = IPv6(src=src, dst="ff02::2", hlim=hlim) / ICMPv6ND_RS()
    if lladdr is not None:
        pkt /= ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    return bytes(pkt)


def ns(target: str, src: str = VM_LL, lladdr: str | None = VM, hlim: int = 255) -> bytes:
    pkt = IPv6(src=src, dst="ff02::1:ff00:1", hlim=hlim) / ICMPv6ND_NS(tgt=target)
    if lladdr is not None:
        pkt /= ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    return bytes(pkt)


CLIENT_DUID = DUID_LLT(lladdr=VM, timeval=123456)


def dhcpv6(msg: object = None, client_id: bool = True, sport: int = 546) -> bytes:
    msg = DHCP6_InfoRequest(trid=0xABCDEF) if msg is None else msg
    pkt = IPv6(src=VM_LL, dst="ff02::1:2") / UDP(sport=sport, dport=547) / msg
    if client_id:
        pkt /= DHCP6OptClientId(duid=CLIENT_DUID)
    return bytes(pkt / DHCP6OptOptReq(reqopts=[23, 24]))


def dissect(frame: bytes) -> Ether:
    """The reply dissected; its lengths and checksum are what scapy computes itself."""
    pkt = Ether(frame)
    rebuilt = pkt.copy()
    del rebuilt[IPv6].plen
    if UDP in rebuilt:
        del rebuilt[UDP].len
        del rebuilt[UDP].chksum
    else:
        del rebuilt[IPv6].payload.cksum
    assert bytes(rebuilt) == frame
    return pkt


def options(pkt: Ether, first: type) -> list[object]:
    """The layers from ``first`` on, each without its payload."""
    layer, out = pkt[first].payload, []
    while layer and not isinstance(layer, Raw):
        bare = layer.copy()
        bare.remove_payload()
        out.append(bare)
        layer = layer.payload
    return out


# --- link_local, parse, Ipv6Config ------------------------------------------------------


@given(st.binary(min_size=6, max_size=6))
def test_link_local_is_the_modified_eui64(mac: bytes) -> None:
    text = ":".join(f"{b:02x}" for b in mac)
    addr = ipv6.link_local(mac)
    assert addr == IPv6Address("fe80::" + in6_mactoifaceid(text))
    assert in6_addrtomac(str(addr)) == text


def test_link_local_wants_six_octets() -> None:
    assert str(ipv6.link_local(SERVER_MAC)) == ROUTER_LL
    with pytest.raises(ValueError):
        ipv6.link_local(b"\x00" * 8)


def test_parse_icmpv6_and_udp() -> None:
    p = ipv6.parse(rs() + b"trailer beyond the payload length")
    assert p is not None
    assert (p.src, p.dst, p.hop_limit, p.proto) == (
        IPv6Address(VM_LL),
        IPv6Address("ff02::2"),
        255,
        58,
    )
    assert (p.type, p.code) == (133, 0)
    assert p.body == bytes(4) + bytes(ICMPv6NDOptSrcLLAddr(lladdr=VM))
    u = ipv6.parse(dhcpv6())
    assert u is not None
    assert (u.proto, u.sport, u.dport, u.body[0]) == (17, 546, 547, 11)


def test_parse_skips_hop_by_hop_and_refuses_the_odd() -> None:
    hbh = IPv6(src=VM_LL, dst="ff02::2", hlim=255) / IPv6ExtHdrHopByHop() / ICMPv6ND_RS()
    p = ipv6.parse(bytes(hbh))
    assert p is not None and (p.proto, p.type) == (58, 133)
    frag = IPv6(src=VM_LL, dst="ff02::2") / IPv6ExtHdrFragment() / ICMPv6ND_RS()
    assert ipv6.parse(bytes(frag)) is None
    assert ipv6.parse(rs()[:-1]) is None  # shorter than the payload length
    assert ipv6.parse(b"\x45" + rs()[1:]) is None  # version 4
    assert ipv6.parse(bytes(IPv6(nh=6) / Raw(bytes(20)))) is None  # TCP
    assert ipv6.parse(b"") is None


def test_udp_checksum_zero_goes_out_as_ffff() -> None:
    src, dst = IPv6Address(ROUTER_LL), IPv6Address(VM_LL)
    probe = ipv6._udp(src, dst, 547, 546, b"ab\0\0")
    zero_sum = ipv6._udp(src, dst, 547, 546, b"ab" + probe[6:8])  # sums to 0
    assert zero_sum[6:8] == b"\xff\xff"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "dhcpv6"},
        {"ra_period": 0},
        {"router_lifetime": 70000},
        {"nameservers": ("2001:db8::53",)},
        {"domains": ("a..b",)},
        {"domains": ("x" * 64 + ".org",)},
        {"domains": ("ελ.org",)},
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Ipv6Config(**kwargs)  # type: ignore[arg-type]


# --- Router Advertisements --------------------------------------------------------------


def test_ra_fields_and_options() -> None:
    frame = ipv6.handle_rs(rs(), VM_MAC, BINDING, CONFIG, SERVER_MAC)
    assert frame is not None
    pkt = dissect(frame)
    assert (pkt.src, pkt.dst, pkt.type) == (SERVER, VM, 0x86DD)
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.nh, ip.tc, ip.fl) == (ROUTER_LL, "ff02::1", 255, 58, 0, 0)
    ra = pkt[ICMPv6ND_RA]
    assert (ra.type, ra.code, ra.chlim, ra.M, ra.O, ra.H, ra.prf) == (134, 0, 64, 0, 1, 0, 1)
    assert (ra.routerlifetime, ra.reachabletime, ra.retranstimer) == (1800, 0, 0)
    opts = options(pkt, ICMPv6ND_RA)
    kinds = [type(o) for o in opts]
    assert kinds == [
        ICMPv6NDOptSrcLLAddr,
        ICMPv6NDOptMTU,
        ICMPv6NDOptPrefixInfo,
        ICMPv6NDOptRDNSS,
        ICMPv6NDOptDNSSL,
    ]
    slla, mtu, prefix, rdnss, dnssl = opts
    assert slla.lladdr == SERVER
    assert mtu.mtu == 1500
    assert (prefix.prefixlen, prefix.L, prefix.A, prefix.R) == (64, 1, 1, 1)
    assert prefix.prefix == str(GATEWAY6)  # R: the prefix field holds the router's address
    assert prefix.validlifetime == prefix.preferredlifetime == 0xFFFFFFFF
    assert (rdnss.lifetime, rdnss.dns) == (900, [str(NS1), str(NS2)])
    assert (dnssl.lifetime, dnssl.searchlist) == (900, ["example.org.", "vm.example.org."])


def test_ra_minimal_slaac_mode() -> None:
    binding = dataclasses.replace(BINDING, gateway6=None, mtu=None)
    config = Ipv6Config(mode="slaac", ra_period=600, router_lifetime=0)
    pkt = dissect(ipv6.router_advertisement(binding, config, SERVER_MAC) or b"")
    assert pkt.dst == "33:33:00:00:00:01"
    ra = pkt[ICMPv6ND_RA]
    assert (ra.M, ra.O, ra.prf, ra.routerlifetime) == (0, 0, 1, 0)
    slla, prefix = options(pkt, ICMPv6ND_RA)
    assert isinstance(slla, ICMPv6NDOptSrcLLAddr) and slla.lladdr == SERVER
    assert (prefix.prefix, prefix.R, prefix.L, prefix.A) == ("2001:db8:aaaa:bbbb::", 0, 1, 1)


def test_ra_advertises_the_first_64_of_a_shorter_subnet() -> None:
    binding = dataclasses.replace(
        BINDING,
        subnet6=IPv6Network("2001:db8:cc::/48"),
        gateway6=IPv6Address("2001:db8:cc:1::1"),  # outside the /64: no R
        eui64=None,
        mtu=1000,  # below IPv6's minimum: left out
    )
    pkt = dissect(ipv6.router_advertisement(binding, Ipv6Config(), SERVER_MAC) or b"")
    assert ICMPv6NDOptMTU not in pkt
    prefix = pkt[ICMPv6NDOptPrefixInfo]
    assert (prefix.prefix, prefix.prefixlen, prefix.R) == ("2001:db8:cc::", 64, 0)


def test_no_subnet6_no_ra() -> None:
    assert ipv6.router_advertisement(BARE, CONFIG, SERVER_MAC) is None
    assert ipv6.handle_rs(rs(), VM_MAC, BARE, CONFIG, SERVER_MAC) is None


@pytest.mark.parametrize(
    ("packet", "src_mac", "dst"),
    [
        (rs(), VM_MAC, VM),
        (rs(), VM_MAC + b"\0\0", VM),  # get_hw() pads the address to 8 octets
        (rs(), None, VM),  # MAC from the SLLA option
        (rs(lladdr=None), None, VM),  # unknown: the binding's
        (rs(src=VM_7217), VM_MAC, VM),  # the MAC is not derived from the source
        (rs(src="::", lladdr=None), VM_MAC, VM),
        (bytes(IPv6(hlim=255) / IPv6ExtHdrHopByHop() / ICMPv6ND_RS()), VM_MAC, VM),
    ],
)
def test_rs_answered(packet: bytes, src_mac: bytes | None, dst: str) -> None:
    frame = ipv6.handle_rs(packet, src_mac, BINDING, CONFIG, SERVER_MAC)
    assert frame is not None
    pkt = dissect(frame)
    assert pkt.dst == dst and ICMPv6ND_RA in pkt


@pytest.mark.parametrize(
    ("packet", "src_mac"),
    [
        (rs(), OTHER_MAC),  # spoofed Ethernet source
        (rs(lladdr=OTHER), None),  # spoofed SLLA
        (rs(hlim=64), VM_MAC),  # forwarded
        (rs(src="::"), VM_MAC),  # unspecified source with SLLA
        (bytes(IPv6(hlim=255) / ICMPv6ND_RS(code=1)), VM_MAC),
        (bytes(IPv6(hlim=255) / ICMPv6ND_RS() / Raw(bytes(8))), VM_MAC),  # length-0 option
        (ns(str(GATEWAY6)), VM_MAC),
        (dhcpv6(), VM_MAC),
    ],
)
def test_rs_refused(packet: bytes, src_mac: bytes | None) -> None:
    assert ipv6.handle_rs(packet, src_mac, BINDING, CONFIG, SERVER_MAC) is None


def test_macspoof_answers_the_mac_seen() -> None:
    binding = dataclasses.replace(BINDING, macspoof=True)
    frame = ipv6.handle_rs(rs(lladdr=OTHER), OTHER_MAC, binding, CONFIG, SERVER_MAC)
    assert frame is not None and Ether(frame).dst == OTHER


# --- Neighbor Advertisements ------------------------------------------------------------


@pytest.mark.parametrize("target", [str(GATEWAY6), "2001:db8:aaaa:bbbb::77", ROUTER_LL])
def test_na_fields(target: str) -> None:
    frame = ipv6.handle_ns(ns(target), VM_MAC, BINDING, SERVER_MAC)
    assert frame is not None
    pkt = dissect(frame)
    assert (pkt.src, pkt.dst, pkt.type) == (SERVER, VM, 0x86DD)
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.nh) == (ROUTER_LL, VM_LL, 255, 58)
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.res, na.tgt) == (136, 0, 1, 1, 0, 0, target)
    (tlla,) = options(pkt, ICMPv6ND_NA)
    assert isinstance(tlla, ICMPv6NDOptDstLLAddr) and tlla.lladdr == SERVER


def test_na_to_a_global_source_without_slla() -> None:
    packet = ns(str(GATEWAY6), src=str(EUI64), lladdr=None)
    pkt = dissect(ipv6.handle_ns(packet, None, BINDING, SERVER_MAC) or b"")
    assert (pkt.dst, pkt[IPv6].dst) == (VM, str(EUI64))


def test_na_for_the_router_link_local_without_subnet6() -> None:
    assert ipv6.handle_ns(ns(ROUTER_LL), VM_MAC, BARE, SERVER_MAC) is not None
    assert ipv6.handle_ns(ns(str(GATEWAY6)), VM_MAC, BARE, SERVER_MAC) is None


@pytest.mark.parametrize(
    ("packet", "src_mac"),
    [
        (ns(str(EUI64)), VM_MAC),  # the VM's own address
        (ns("2001:db8:aaaa:bbbb::5", src="2001:db8:aaaa:bbbb::5"), VM_MAC),  # its own, too
        (ns("2001:db8:ffff::1"), VM_MAC),  # outside SUBNET6
        (ns("fe80::1"), VM_MAC),  # another link-local
        (ns("ff02::1"), VM_MAC),  # multicast target
        (ns(str(GATEWAY6), src="::", lladdr=None), VM_MAC),  # DAD
        (ns(str(GATEWAY6)), OTHER_MAC),  # spoofed Ethernet source
        (ns(str(GATEWAY6), lladdr=OTHER), None),  # spoofed SLLA
        (ns(str(GATEWAY6), hlim=254), VM_MAC),
        (bytes(IPv6(nh=58, hlim=255) / Raw(bytes(ICMPv6ND_NS(tgt=str(GATEWAY6)))[:20])), VM_MAC),
        (
            bytes(IPv6(hlim=255) / ICMPv6ND_NS(tgt=str(GATEWAY6)) / Raw(b"\x01\x00" + bytes(6))),
            None,
        ),
        (rs(), VM_MAC),
    ],
)
def test_ns_refused(packet: bytes, src_mac: bytes | None) -> None:
    assert ipv6.handle_ns(packet, src_mac, BINDING, SERVER_MAC) is None


# --- DHCPv6 -----------------------------------------------------------------------------


def test_dhcpv6_reply_fields() -> None:
    frame = ipv6.handle_dhcpv6(dhcpv6(), VM_MAC, BINDING, CONFIG, SERVER_MAC)
    assert frame is not None
    pkt = dissect(frame)
    assert (pkt.src, pkt.dst, pkt.type) == (SERVER, VM, 0x86DD)
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].nh) == (ROUTER_LL, VM_LL, 17)
    assert (pkt[UDP].sport, pkt[UDP].dport) == (547, 546)
    reply = pkt[DHCP6_Reply]
    assert (reply.msgtype, reply.trid) == (7, 0xABCDEF)
    client, server, dns, domains = options(pkt, DHCP6_Reply)
    assert isinstance(client, DHCP6OptClientId) and bytes(client.duid) == bytes(CLIENT_DUID)
    assert isinstance(server, DHCP6OptServerId)
    assert isinstance(server.duid, DUID_LL)
    assert (server.duid.type, server.duid.hwtype, server.duid.lladdr) == (3, 1, SERVER)
    assert isinstance(dns, DHCP6OptDNSServers) and dns.dnsservers == [str(NS1), str(NS2)]
    assert isinstance(domains, DHCP6OptDNSDomains)
    assert domains.dnsdomains == ["example.org.", "vm.example.org."]


def test_dhcpv6_minimal_reply() -> None:
    frame = ipv6.handle_dhcpv6(dhcpv6(client_id=False), None, BINDING, Ipv6Config(), SERVER_MAC)
    pkt = dissect(frame or b"")
    (server,) = options(pkt, DHCP6_Reply)
    assert isinstance(server, DHCP6OptServerId)
    assert pkt.dst == VM


def test_dhcpv6_answers_its_own_server_id_only() -> None:
    ours = DHCP6OptServerId(duid=DUID_LL(lladdr=SERVER))
    theirs = DHCP6OptServerId(duid=DUID_LL(lladdr=OTHER))
    for option, answered in ((ours, True), (theirs, False)):
        packet = dhcpv6(DHCP6_InfoRequest(trid=1) / option)
        frame = ipv6.handle_dhcpv6(packet, VM_MAC, BINDING, CONFIG, SERVER_MAC)
        assert (frame is not None) is answered


def test_dhcpv6_from_unspecified_source_goes_to_the_vm_link_local() -> None:
    pkt = IPv6(src="::", dst="ff02::1:2") / UDP(sport=546, dport=547) / DHCP6_InfoRequest()
    frame = ipv6.handle_dhcpv6(bytes(pkt), VM_MAC, BINDING, CONFIG, SERVER_MAC)
    assert dissect(frame or b"")[IPv6].dst == VM_LL


@pytest.mark.parametrize(
    ("packet", "src_mac"),
    [
        (dhcpv6(DHCP6_Solicit(trid=1)), VM_MAC),
        (dhcpv6(DHCP6_Request(trid=1)), VM_MAC),
        (dhcpv6(sport=5000), VM_MAC),
        (dhcpv6(), OTHER_MAC),
        (dhcpv6()[:-1], VM_MAC),
        (
            bytes(IPv6() / UDP(sport=546, dport=547) / DHCP6_InfoRequest() / Raw(b"\0\1\0\x09")),
            None,
        ),
        (rs(), VM_MAC),
    ],
)
def test_dhcpv6_refused(packet: bytes, src_mac: bytes | None) -> None:
    assert ipv6.handle_dhcpv6(packet, src_mac, BINDING, CONFIG, SERVER_MAC) is None


# --- never raises -----------------------------------------------------------------------

MACS = st.one_of(st.none(), st.binary(max_size=10), st.sampled_from([VM_MAC, OTHER_MAC]))
VALID = [
    rs(),
    rs(src=VM_7217, lladdr=None),
    bytes(IPv6(hlim=255) / IPv6ExtHdrHopByHop() / ICMPv6ND_RS()),
    ns(str(GATEWAY6)),
    ns(ROUTER_LL, src=str(EUI64)),
    dhcpv6(),
    dhcpv6(DHCP6_InfoRequest(trid=9) / DHCP6OptServerId(duid=DUID_LL(lladdr=SERVER))),
]


def run_all(packet: bytes, src_mac: bytes | None) -> None:
    ipv6.parse(packet)
    replies = [
        ipv6.handle_rs(packet, src_mac, BINDING, CONFIG, SERVER_MAC),
        ipv6.handle_ns(packet, src_mac, BINDING, SERVER_MAC),
        ipv6.handle_dhcpv6(packet, src_mac, BINDING, CONFIG, SERVER_MAC),
        ipv6.handle_rs(packet, src_mac, BARE, CONFIG, SERVER_MAC),
        ipv6.handle_ns(packet, src_mac, BARE, SERVER_MAC),
    ]
    for frame in replies:
        if frame is not None:
            assert frame[12:14] == b"\x86\xdd"
            assert len(frame) == 54 + int.from_bytes(frame[18:20], "big")


@settings(max_examples=300)
@given(st.binary(max_size=200), MACS)
def test_arbitrary_bytes_never_raise(packet: bytes, src_mac: bytes | None) -> None:
    run_all(packet, src_mac)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with some octets replaced, then maybe cut or extended."""
    packet = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        packet[draw(st.integers(0, len(packet) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(packet)))
    packet = packet[:cut] + bytearray(draw(st.binary(max_size=40)))
    if draw(st.booleans()) and len(packet) >= 40:  # keep the payload length consistent
        packet[4:6] = (len(packet) - 40).to_bytes(2, "big")
    return bytes(packet)


@settings(max_examples=500)
@given(mutated(), MACS)
def test_mutated_requests_never_raise(packet: bytes, src_mac: bytes | None) -> None:
    run_all(packet, src_mac)


@settings(max_examples=300)
@given(st.sampled_from(VALID), st.integers(40, 120), st.binary(min_size=1, max_size=80))
def test_mutated_tails_never_raise(packet: bytes, at: int, tail: bytes) -> None:
    """Headers intact, the rest replaced: reaches the option parsers."""
    body = (packet[40:at] + tail)[:200]
    fixed = packet[:4] + len(body).to_bytes(2, "big") + packet[6:40] + body
    run_all(fixed, VM_MAC)
