"""The announcements a routed NIC's setup sends on the uplink, dissected by scapy."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from snf.network.announce import gratuitous_arp
from snf.nfdhcpd.ipv6 import unsolicited_na

MAC = bytes.fromhex("0a0000000001")


def test_gratuitous_arp_asks_for_its_own_address() -> None:
    frame = Ether(gratuitous_arp(MAC, IPv4Address("192.0.2.5")))
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == "0a:00:00:00:00:01"
    arp = frame[ARP]
    assert arp.op == 1 and arp.psrc == arp.pdst == "192.0.2.5" and arp.hwsrc == frame.src


def test_unsolicited_na_overrides_and_has_a_valid_checksum() -> None:
    raw = unsolicited_na(MAC, IPv6Address("2001:db8::5"))
    frame = Ether(raw)
    assert frame.dst == "33:33:00:00:00:01" and frame[IPv6].dst == "ff02::1"
    assert frame[IPv6].hlim == 255 and frame[IPv6].src == "fe80::800:ff:fe00:1"
    na = frame[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1) and na.tgt == "2001:db8::5"
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == "0a:00:00:00:00:01"
    rebuilt = frame.copy()
    del rebuilt[ICMPv6ND_NA].cksum
    assert bytes(rebuilt) == raw
