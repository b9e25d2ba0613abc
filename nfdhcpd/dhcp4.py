"""DHCPv4 server logic: a queued request packet plus a binding in, a reply frame out.

:func:`parse_request` reads what NFQUEUE hands over for an IPv4 packet (the IPv4 header
onwards) and returns a :class:`DhcpRequest`, or None for anything that is not a well-formed
BOOTREQUEST to port 67; it never raises. :func:`reply` answers it from the NIC's binding
with a whole Ethernet frame, to be sent on the tap:

* DISCOVER -> OFFER; REQUEST -> ACK, or NAK when the requested address (option 50) or the
  client address (ciaddr) is not the binding's IP; INFORM -> ACK without address or lease;
  anything else (DECLINE, RELEASE, ...) -> no reply.
* No reply when the binding has no IP, when the client hardware address is not the
  binding's MAC (unless MACSPOOF), or when no server address can be chosen.
* The server address (option 54, IP source, siaddr) is ``DhcpConfig.server_ip``, else the
  binding's GATEWAY, else the first host of its SUBNET other than its IP.
* OFFER and ACK go to the client's MAC and IP; a NAK, or any reply to a request with the
  BOOTP broadcast flag set (RFC 2131 4.1), to ff:ff:ff:ff:ff:ff and 255.255.255.255.
  A relay agent (giaddr) is copied into the reply but not sent to: replies go on the tap.

Packets are packed by hand with :mod:`struct`; this module does no I/O.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from snf.common.errors import InvalidInput
from snf.nfdhcpd.bindings import Binding, is_dns_name

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
SERVER_PORT, CLIENT_PORT = 67, 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"
MIN_BOOTP_SIZE = 300
BROADCAST_FLAG = 0x8000

_BOOTP = struct.Struct("!BBBBIHHIIII16s64s128s")  # op .. file: 236 bytes
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ZERO = IPv4Address(0)
_BROADCAST_IP = IPv4Address("255.255.255.255")
_BROADCAST_MAC = b"\xff" * 6


@dataclass(frozen=True)
class DhcpConfig:
    """The [dhcp] settings reply() needs. Construction validates them (InvalidInput).

    ``server_ip`` None means "on link": the binding's gateway or first subnet host.
    ``domain`` None means the part of the binding's HOSTNAME after its first dot, if any.
    The rebinding time (T2) is 7/8 of the lease, but never less than ``renewal_time`` (T1).
    """

    server_ip: IPv4Address | None = None
    lease_time: int = 604800
    renewal_time: int = 600
    nameservers: tuple[IPv4Address, ...] = ()
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.server_ip is not None and not isinstance(self.server_ip, IPv4Address):
            raise InvalidInput(f"DHCP server_ip {self.server_ip!r} is not an IPv4 address")
        if type(self.lease_time) is not int or not 1 <= self.lease_time <= 0xFFFFFFFF:
            raise InvalidInput(
                f"DHCP lease_time {self.lease_time!r} is not an integer from 1 to 4294967295"
            )
        if type(self.renewal_time) is not int or not 1 <= self.renewal_time <= self.lease_time:
            raise InvalidInput(
                f"DHCP renewal_time {self.renewal_time!r} is not an integer from 1 to lease_time "
                f"({self.lease_time})"
            )
        object.__setattr__(self, "nameservers", tuple(self.nameservers))
        if len(self.nameservers) > 63 or not all(
            isinstance(n, IPv4Address) for n in self.nameservers
        ):
            raise InvalidInput(
                f"DHCP nameservers {self.nameservers!r} are not at most 63 IPv4 addresses"
            )
        if self.domain is not None and (
            not isinstance(self.domain, str) or not (self.domain and is_dns_name(self.domain))
        ):
            raise InvalidInput(f"DHCP domain {self.domain!r} is not a DNS name")

    @property
    def rebinding_time(self) -> int:
        """T2: 7/8 of the lease, at least the renewal time."""
        return max(self.lease_time * 7 // 8, self.renewal_time)


@dataclass(frozen=True)
class DhcpRequest:
    """A parsed BOOTREQUEST: the fields reply() uses and the BOOTP payload as received."""

    msg_type: int
    xid: int
    chaddr: bytes
    flags: int
    ciaddr: IPv4Address
    giaddr: IPv4Address
    requested_ip: IPv4Address | None
    bootp: bytes


def _options(data: bytes) -> dict[int, bytes] | None:
    """The options after the magic cookie, by code (later repeats win); None if malformed."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return options
        if i + 1 >= len(data):
            return None
        end = i + 2 + data[i + 1]
        if end > len(data):
            return None
        options[code] = data[i + 2 : end]
        i = end
    return options


def parse_request(ip_packet: bytes) -> DhcpRequest | None:
    """The DHCP request in an IPv4 packet, or None if it is not a well-formed one.

    Checks the IPv4 header (version, IHL, total length, UDP, not a fragment), the UDP
    header (length, destination port 67) and BOOTP (BOOTREQUEST, Ethernet, magic cookie,
    options well formed, option 53 present). Checksums are not checked; option overload
    (52) is ignored. Never raises.
    """
    try:
        return _parse_request(bytes(ip_packet))
    except (struct.error, IndexError, ValueError, TypeError):
        return None


def _parse_request(packet: bytes) -> DhcpRequest | None:
    if len(packet) < _IPV4.size:
        return None
    ver_ihl, _, total, _, frag, _, proto, _, _, _ = _IPV4.unpack_from(packet)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or not ihl <= total <= len(packet) or proto != 17:
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset
        return None
    udp = packet[ihl:total]
    if len(udp) < _UDP.size:
        return None
    _, dport, udp_len, _ = _UDP.unpack_from(udp)
    if dport != SERVER_PORT or not _UDP.size <= udp_len <= len(udp):
        return None
    bootp = udp[_UDP.size : udp_len]
    if len(bootp) < _BOOTP.size + len(MAGIC_COOKIE):
        return None
    op, htype, hlen, _, xid, _, flags, ciaddr, _, _, giaddr, chaddr, _, _ = _BOOTP.unpack_from(
        bootp
    )
    if op != 1 or htype != 1 or hlen != 6:
        return None
    if bootp[_BOOTP.size : _BOOTP.size + 4] != MAGIC_COOKIE:
        return None
    options = _options(bootp[_BOOTP.size + 4 :])
    if options is None or len(options.get(53, b"")) != 1:
        return None
    requested = options.get(50)
    if requested is not None and len(requested) != 4:
        return None
    return DhcpRequest(
        msg_type=options[53][0],
        xid=xid,
        chaddr=chaddr[:hlen],
        flags=flags,
        ciaddr=IPv4Address(ciaddr),
        giaddr=IPv4Address(giaddr),
        requested_ip=IPv4Address(requested) if requested is not None else None,
        bootp=bootp,
    )


def server_address(binding: Binding, config: DhcpConfig) -> IPv4Address | None:
    """The address the server answers from for ``binding``; None if there is none."""
    if config.server_ip is not None:
        return config.server_ip
    if binding.gateway is not None:
        return binding.gateway
    if binding.subnet is not None:
        for host in itertools.islice(binding.subnet.hosts(), 2):
            if host != binding.ip:
                return host
    return None


def _option(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def _reply_options(
    msg_type: int, binding: Binding, config: DhcpConfig, server: IPv4Address, lease: bool
) -> bytes:
    """The options of a reply, end option included; lease times only if ``lease``."""
    out = [_option(53, bytes((msg_type,))), _option(54, server.packed)]
    if msg_type == NAK:
        return b"".join(out) + b"\xff"
    if lease:
        out.append(_option(51, config.lease_time.to_bytes(4, "big")))
        out.append(_option(58, config.renewal_time.to_bytes(4, "big")))
        out.append(_option(59, config.rebinding_time.to_bytes(4, "big")))
    if binding.subnet is not None:
        out.append(_option(1, binding.subnet.netmask.packed))
        out.append(_option(28, binding.subnet.broadcast_address.packed))
    if binding.gateway is not None and not binding.private:
        out.append(_option(3, binding.gateway.packed))
    if config.nameservers:
        out.append(_option(6, b"".join(n.packed for n in config.nameservers)))
    host, _, host_domain = binding.hostname.partition(".")
    out.append(_option(12, host.encode("ascii")))
    domain = config.domain if config.domain is not None else host_domain
    if domain:
        out.append(_option(15, domain.encode("ascii")))
    if binding.mtu is not None:
        out.append(_option(26, binding.mtu.to_bytes(2, "big")))
    return b"".join(out) + b"\xff"


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(
    dst_mac: bytes, src_mac: bytes, src: IPv4Address, dst: IPv4Address, payload: bytes
) -> bytes:
    """Ethernet/IPv4/UDP(67 -> 68) around ``payload``, with both checksums."""
    udp_len = _UDP.size + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp_sum = _checksum(pseudo + _UDP.pack(SERVER_PORT, CLIENT_PORT, udp_len, 0) + payload)
    udp = _UDP.pack(SERVER_PORT, CLIENT_PORT, udp_len, udp_sum or 0xFFFF) + payload
    header = _IPV4.pack(0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src.packed, dst.packed)
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    return dst_mac + src_mac + b"\x08\x00" + header + udp


def reply(
    req: DhcpRequest, binding: Binding, config: DhcpConfig, server_mac: bytes
) -> bytes | None:
    """The Ethernet frame answering ``req`` for ``binding``, or None if it gets no answer.

    ``server_mac`` is the reply's source MAC (the INDEV's). See the module docstring.
    """
    if len(server_mac) != 6:
        raise InvalidInput(f"DHCP server MAC {server_mac.hex(':')!r} is not 6 bytes")
    if binding.ip is None:
        return None
    if req.chaddr != binding.mac_bytes and not binding.macspoof:
        return None
    server = server_address(binding, config)
    if server is None:
        return None
    ciaddr, yiaddr = _ZERO, binding.ip
    if req.msg_type == DISCOVER:
        msg_type = OFFER
    elif req.msg_type == REQUEST:
        wrong = (req.requested_ip is not None and req.requested_ip != binding.ip) or (
            req.ciaddr != _ZERO and req.ciaddr != binding.ip
        )
        msg_type = NAK if wrong else ACK
        ciaddr = _ZERO if wrong else req.ciaddr
        yiaddr = _ZERO if wrong else binding.ip
    elif req.msg_type == INFORM:
        msg_type, ciaddr, yiaddr = ACK, req.ciaddr, _ZERO
    else:
        return None
    options = _reply_options(msg_type, binding, config, server, lease=yiaddr != _ZERO)
    bootp = _BOOTP.pack(
        2, 1, 6, 0, req.xid, 0, req.flags, int(ciaddr), int(yiaddr),
        0 if msg_type == NAK else int(server), int(req.giaddr),
        req.chaddr, b"", b"",
    )  # fmt: skip
    bootp += MAGIC_COOKIE + options
    bootp += b"\0" * max(0, MIN_BOOTP_SIZE - len(bootp))
    if msg_type == NAK or req.flags & BROADCAST_FLAG:
        return _frame(_BROADCAST_MAC, server_mac, server, _BROADCAST_IP, bootp)
    return _frame(req.chaddr, server_mac, server, binding.ip, bootp)
