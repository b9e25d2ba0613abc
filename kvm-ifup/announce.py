"""Tell the uplink's neighbours where a routed NIC's addresses are now (after a start or a
migration): a gratuitous ARP for its IPv4 address and an unsolicited NA for its IPv6
address, both from the uplink's own MAC (proxy ARP and proxy NDP answer for them)."""

from __future__ import annotations

import logging
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from snf.nfdhcpd.ipv6 import unsolicited_na

log = logging.getLogger(__name__)
BROADCAST = b"\xff" * 6


def gratuitous_arp(mac: bytes, ip: IPv4Address) -> bytes:
    """An ARP request for ``ip`` from ``ip`` at ``mac``, broadcast (as ``arping -U`` sends)."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip.packed + bytes(6) + ip.packed
    return BROADCAST + mac + b"\x08\x06" + arp


def announce(uplink: str, ip: IPv4Address | None, ip6: IPv6Address | None) -> int:
    """Send the announcements on ``uplink``; how many frames went out."""
    try:
        mac = bytes.fromhex(
            Path("/sys/class/net", uplink, "address").read_text().strip().replace(":", "")
        )
    except (OSError, ValueError):
        log.warning("no uplink %s: nothing announced", uplink)
        return 0
    frames = []
    if ip is not None:
        frames.append(gratuitous_arp(mac, ip))
    if ip6 is not None:
        frames.append(unsolicited_na(mac, ip6))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        for frame in frames:
            sock.sendto(frame, (uplink, 0))
    return len(frames)
