"""IPv6 answers: Router Advertisements, Neighbor Advertisements and DHCPv6 Replies.

Pure functions, no I/O and no scapy: requests come in as NFQUEUE hands them over (starting
at the IPv6 header), replies go out as whole Ethernet frames packed by hand, to be sent on
the tap.  The caller decides verdicts; these functions only build replies, and give
``None`` when there is nothing to answer, never raising on any packet.

The server side of every reply is the MAC of the binding's INDEV (``server_mac``) and the
link-local address derived from it, as in the original nfdhcpd.  The VM's MAC comes from
the Ethernet source NFQUEUE reports, else from the Source Link-Layer Address option, never
from the IPv6 source (RFC 7217 addresses are not EUI-64).  A known MAC other than the
binding's is a spoof and gets no answer unless the binding allows MAC spoofing.

Checksums of requests are not verified (nfdhcpd did not either): a corrupt request costs
one reply to the VM that sent it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Literal

from .bindings import Binding

ICMPV6, UDP, HOP_BY_HOP = 58, 17, 0
RS, RA, NS, NA = 133, 134, 135, 136
OPT_SLLA, OPT_TLLA, OPT_PREFIX, OPT_MTU, OPT_RDNSS, OPT_DNSSL = 1, 2, 3, 5, 25, 31
DHCP6_CLIENT, DHCP6_SERVER = 546, 547
DHCP6_INFO_REQUEST, DHCP6_REPLY = 11, 7
D6_CLIENTID, D6_SERVERID, D6_DNS_SERVERS, D6_DOMAIN_LIST = 1, 2, 23, 24
ALL_NODES = IPv6Address("ff02::1")
ALL_NODES_MAC = bytes.fromhex("333300000001")
INFINITE = 0xFFFFFFFF
MIN_MTU = 1280  # RFC 8200; hosts ignore a smaller MTU option


@dataclass(frozen=True)
class Ipv6Config:
    """What RAs and DHCPv6 replies announce; invalid values raise ValueError."""

    mode: Literal["slaac", "slaac+dhcpv6"] = "slaac+dhcpv6"  # O flag iff slaac+dhcpv6
    ra_period: int = 300  # seconds between periodic RAs; RDNSS/DNSSL lifetime = 3 * ra_period
    router_lifetime: int = 1800
    nameservers: tuple[IPv6Address, ...] = ()
    domains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("slaac", "slaac+dhcpv6"):
            raise ValueError(f"ipv6 mode {self.mode!r}: not slaac or slaac+dhcpv6")
        if not 1 <= self.ra_period <= INFINITE // 3:
            raise ValueError(f"ra_period {self.ra_period}: not between 1 and {INFINITE // 3}")
        if not 0 <= self.router_lifetime <= 0xFFFF:
            raise ValueError(f"router_lifetime {self.router_lifetime}: not between 0 and 65535")
        if not all(isinstance(a, IPv6Address) for a in self.nameservers):
            raise ValueError("IPv6 nameservers must be IPv6 addresses")
        if len(self.nameservers) > 127:  # the RDNSS length field counts 8-octet units
            raise ValueError("at most 127 IPv6 nameservers")
        names = b"".join(_dns_name(d) for d in self.domains)
        if len(names) > 2000:  # DNSSL length field, with room to spare
            raise ValueError("IPv6 search domains: too long")


@dataclass(frozen=True)
class Parsed:
    """An IPv6 packet: addresses, hop limit and its ICMPv6 (``proto`` 58) or UDP (17) part.

    ``body`` is the ICMPv6 message after type, code and checksum, or the UDP payload.
    """

    src: IPv6Address
    dst: IPv6Address
    hop_limit: int
    proto: int
    type: int = 0  # ICMPv6 only
    code: int = 0
    sport: int = 0  # UDP only
    dport: int = 0
    body: bytes = b""


def link_local(mac: bytes) -> IPv6Address:
    """fe80::/64 plus the modified EUI-64 of ``mac`` (RFC 4291, appendix A)."""
    if len(mac) != 6:
        raise ValueError(f"a MAC has 6 octets, not {len(mac)}")
    iid = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return IPv6Address(b"\xfe\x80" + bytes(6) + iid)


def parse(packet: bytes) -> Parsed | None:
    """The IPv6 header, a skipped hop-by-hop header, then ICMPv6 or UDP; else None."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    plen, proto, hop_limit = struct.unpack_from("!HBB", packet, 4)
    if 40 + plen > len(packet):
        return None
    data = packet[40 : 40 + plen]  # a jumbogram (plen 0) ends up empty, hence None
    if proto == HOP_BY_HOP:
        if len(data) < 8 or len(data) < 8 * (data[1] + 1):
            return None
        proto, data = data[0], data[8 * (data[1] + 1) :]
    src, dst = IPv6Address(packet[8:24]), IPv6Address(packet[24:40])
    if proto == ICMPV6 and len(data) >= 4:
        return Parsed(src, dst, hop_limit, ICMPV6, type=data[0], code=data[1], body=data[4:])
    if proto == UDP and len(data) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", data)
        if 8 <= length <= len(data):
            return Parsed(src, dst, hop_limit, UDP, sport=sport, dport=dport, body=data[8:length])
    return None


def router_advertisement(
    binding: Binding, config: Ipv6Config, server_mac: bytes, dst_mac: bytes | None = None
) -> bytes | None:
    """An RA to ff02::1 for the binding's /64; None without SUBNET6.

    The Ethernet destination is ``dst_mac`` (a unicast answer to an RS) or all-nodes.  The
    prefix is SUBNET6's /64, on-link and autonomous with infinite lifetimes; when GATEWAY6 is
    in it, the prefix field holds GATEWAY6 and R is set, as nfdhcpd did (receivers mask it).
    """
    if binding.subnet6 is None:
        return None
    prefix = IPv6Network((binding.subnet6.network_address, 64), strict=False)
    flags = (0x40 if config.mode == "slaac+dhcpv6" else 0) | 0x08  # O; preference high
    body = struct.pack("!BBHII", 64, flags, config.router_lifetime, 0, 0)
    body += _lladdr_option(OPT_SLLA, server_mac)
    if binding.mtu is not None and MIN_MTU <= binding.mtu <= INFINITE:
        body += struct.pack("!BBHI", OPT_MTU, 1, 0, binding.mtu)
    address, pflags = prefix.network_address, 0xC0  # L, A
    if binding.gateway6 is not None and binding.gateway6 in prefix:
        address, pflags = binding.gateway6, 0xE0  # L, A, R
    body += struct.pack("!BBBBIII", OPT_PREFIX, 4, 64, pflags, INFINITE, INFINITE, 0)
    body += address.packed
    lifetime = 3 * config.ra_period
    if config.nameservers:
        n = len(config.nameservers)
        body += struct.pack("!BBHI", OPT_RDNSS, 1 + 2 * n, 0, lifetime)
        body += b"".join(a.packed for a in config.nameservers)
    if config.domains:
        names = b"".join(_dns_name(d) for d in config.domains)
        names += bytes(-len(names) % 8)
        body += struct.pack("!BBHI", OPT_DNSSL, 1 + len(names) // 8, 0, lifetime) + names
    src = link_local(server_mac)
    icmp = _icmpv6(src, ALL_NODES, RA, body)
    return _frame(server_mac, dst_mac or ALL_NODES_MAC, src, ALL_NODES, ICMPV6, 255, icmp)


def handle_rs(
    packet: bytes,
    src_mac: bytes | None,
    binding: Binding,
    config: Ipv6Config,
    server_mac: bytes,
) -> bytes | None:
    """A Router Solicitation from the VM -> an RA unicast to the VM's MAC, or None."""
    p = parse(packet)
    if p is None or p.proto != ICMPV6 or (p.type, p.code, p.hop_limit) != (RS, 0, 255):
        return None
    options = _nd_options(p.body[4:]) if len(p.body) >= 4 else None
    if options is None or (p.src.is_unspecified and OPT_SLLA in options):
        return None
    vm_mac = _vm_mac(src_mac, options.get(OPT_SLLA), binding)
    if vm_mac is None:
        return None
    return router_advertisement(binding, config, server_mac, dst_mac=vm_mac)


def handle_ns(
    packet: bytes, src_mac: bytes | None, binding: Binding, server_mac: bytes
) -> bytes | None:
    """A Neighbor Solicitation -> a Neighbor Advertisement from the router, or None.

    Answered for the router's link-local address and for any SUBNET6 address except the VM's
    own (EUI64, or the NS's source), so the VM reaches its gateway and every other host of
    its /64 through us; duplicate address detection (source ::) gets no answer.  Like
    nfdhcpd, the NA comes from the router's link-local address, not from the target: the
    Linux kernel accepts that, ndisc6 does not (it reports a time-out).
    """
    p = parse(packet)
    if p is None or p.proto != ICMPV6 or (p.type, p.code, p.hop_limit) != (NS, 0, 255):
        return None
    if len(p.body) < 20 or p.src.is_unspecified or p.src.is_multicast:
        return None
    target, options = IPv6Address(p.body[4:20]), _nd_options(p.body[20:])
    if options is None or target.is_multicast or target == p.src:
        return None
    router = link_local(server_mac)
    in_subnet = binding.subnet6 is not None and target in binding.subnet6
    if target != router and (not in_subnet or target == binding.eui64):
        return None
    vm_mac = _vm_mac(src_mac, options.get(OPT_SLLA), binding)
    if vm_mac is None:
        return None
    body = struct.pack("!I", 0xC0000000) + target.packed  # R, S; not O
    body += _lladdr_option(OPT_TLLA, server_mac)
    return _frame(server_mac, vm_mac, router, p.src, ICMPV6, 255, _icmpv6(router, p.src, NA, body))


def unsolicited_na(mac: bytes, target: IPv6Address) -> bytes:
    """An unsolicited Neighbor Advertisement to all nodes: ``target`` is at ``mac`` now
    (override flag set), what a node sends on its uplink after taking over an address."""
    src = link_local(mac)
    body = struct.pack("!I", 0x20000000) + target.packed  # O only
    body += _lladdr_option(OPT_TLLA, mac)
    icmp = _icmpv6(src, ALL_NODES, NA, body)
    return _frame(mac, ALL_NODES_MAC, src, ALL_NODES, ICMPV6, 255, icmp)


def handle_dhcpv6(
    packet: bytes,
    src_mac: bytes | None,
    binding: Binding,
    config: Ipv6Config,
    server_mac: bytes,
) -> bytes | None:
    """A DHCPv6 Information-Request -> a Reply with DNS servers and search list, or None.

    Other messages (Solicit, Request, ...) get no answer: addresses come from SLAAC.  The
    Server ID is a DUID-LL of ``server_mac``, stable across restarts; a request naming
    another server is not ours (RFC 8415, 16.12).
    """
    p = parse(packet)
    if p is None or p.proto != UDP or (p.sport, p.dport) != (DHCP6_CLIENT, DHCP6_SERVER):
        return None
    if len(p.body) < 4 or p.body[0] != DHCP6_INFO_REQUEST:
        return None
    options = _dhcp6_options(p.body[4:])
    duid = struct.pack("!HH", 3, 1) + server_mac
    if options is None or options.get(D6_SERVERID, duid) != duid:
        return None
    vm_mac = _vm_mac(src_mac, None, binding)
    if vm_mac is None:
        return None
    reply = bytes([DHCP6_REPLY]) + p.body[1:4]  # same transaction id
    if D6_CLIENTID in options:
        reply += _dhcp6_option(D6_CLIENTID, options[D6_CLIENTID])
    reply += _dhcp6_option(D6_SERVERID, duid)
    if config.nameservers:
        reply += _dhcp6_option(D6_DNS_SERVERS, b"".join(a.packed for a in config.nameservers))
    if config.domains:
        reply += _dhcp6_option(D6_DOMAIN_LIST, b"".join(_dns_name(d) for d in config.domains))
    src = link_local(server_mac)
    dst = p.src
    if dst.is_unspecified or dst.is_multicast:
        dst = link_local(vm_mac)
    udp = _udp(src, dst, DHCP6_SERVER, DHCP6_CLIENT, reply)
    return _frame(server_mac, vm_mac, src, dst, UDP, 255, udp)


# --- helpers ---------------------------------------------------------------------------


def _vm_mac(src_mac: bytes | None, slla: bytes | None, binding: Binding) -> bytes | None:
    """The MAC to answer: as seen (Ethernet source, else SLLA) or the binding's; None if spoofed."""
    seen = src_mac[:6] if src_mac is not None and len(src_mac) >= 6 else None
    if seen is None and slla is not None and len(slla) >= 6:
        seen = slla[:6]
    if seen is None:
        return binding.mac_bytes
    if seen != binding.mac_bytes and not binding.macspoof:
        return None
    return seen


def _nd_options(data: bytes) -> dict[int, bytes] | None:
    """ND options (RFC 4861, 4.6) by type, the first of each; None if malformed."""
    options: dict[int, bytes] = {}
    while data:
        if len(data) < 8 or data[1] == 0 or len(data) < 8 * data[1]:
            return None
        options.setdefault(data[0], data[2 : 8 * data[1]])
        data = data[8 * data[1] :]
    return options


def _dhcp6_options(data: bytes) -> dict[int, bytes] | None:
    """DHCPv6 options by code, the first of each; None if malformed."""
    options: dict[int, bytes] = {}
    while data:
        if len(data) < 4:
            return None
        code, length = struct.unpack_from("!HH", data)
        if len(data) < 4 + length:
            return None
        options.setdefault(code, data[4 : 4 + length])
        data = data[4 + length :]
    return options


def _dhcp6_option(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def _lladdr_option(kind: int, mac: bytes) -> bytes:
    return struct.pack("!BB", kind, 1) + mac


def _dns_name(name: str) -> bytes:
    """``name`` in DNS wire format (RFC 1035, 3.1); ValueError if it is not a valid name."""
    labels = name.removesuffix(".").split(".")
    wire = b"".join(bytes([len(raw)]) + raw for raw in (label.encode("ascii") for label in labels))
    if not all(0 < len(label) <= 63 for label in labels) or len(wire) + 1 > 255:
        raise ValueError(f"not a domain name: {name!r}")
    return wire + b"\0"


def _checksum(src: IPv6Address, dst: IPv6Address, proto: int, data: bytes) -> int:
    """The Internet checksum of ``data`` under the IPv6 pseudo-header (RFC 8200, 8.1)."""
    buf = src.packed + dst.packed + struct.pack("!I3xB", len(data), proto) + data
    buf += bytes(len(buf) % 2)
    total = sum(struct.unpack(f"!{len(buf) // 2}H", buf))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmpv6(src: IPv6Address, dst: IPv6Address, kind: int, body: bytes) -> bytes:
    csum = _checksum(src, dst, ICMPV6, struct.pack("!BBH", kind, 0, 0) + body)
    return struct.pack("!BBH", kind, 0, csum) + body


def _udp(src: IPv6Address, dst: IPv6Address, sport: int, dport: int, payload: bytes) -> bytes:
    header = struct.pack("!HHH", sport, dport, 8 + len(payload))
    csum = _checksum(src, dst, UDP, header + b"\0\0" + payload) or 0xFFFF  # 0 means none
    return header + struct.pack("!H", csum) + payload


def _frame(
    src_mac: bytes,
    dst_mac: bytes,
    src: IPv6Address,
    dst: IPv6Address,
    proto: int,
    hop_limit: int,
    upper: bytes,
) -> bytes:
    """Ethernet + IPv6 header (traffic class and flow label 0) around ``upper``."""
    ipv6 = struct.pack("!IHBB", 6 << 28, len(upper), proto, hop_limit) + src.packed + dst.packed
    return dst_mac + src_mac + b"\x86\xdd" + ipv6 + upper
