"""nfdhcpd's packet core: one queued packet in, one verdict and the reply frames out.

The shell (``daemon.py``) hands over each packet NFQUEUE queued, with the interfaces it came
in on and its Ethernet source; :meth:`Responder.handle` answers with a :class:`Decision`.
A packet from a tap without a binding is accepted (it is not ours); one from a bound tap is
dropped and, when it deserves an answer, answered with frames to send on that tap.  Every
packet gets exactly one verdict: malformed input, a failing handler or an exhausted rate
limit drop without a reply, never raise.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import dhcp4, ipv6
from .bindings import Binding

log = logging.getLogger(__name__)


class Kind(enum.Enum):
    DHCP = "dhcp"
    RS = "rs"
    NS = "ns"
    DHCPV6 = "dhcpv6"


def classify(frame: bytes) -> tuple[Kind, bytes] | None:
    """What an Ethernet frame seen on a tap asks (the AF_PACKET transport, where no iptables
    rule sorted it): the kind and the IP packet, or None for anything else."""
    if len(frame) < 14:
        return None
    ethertype, packet = frame[12:14], frame[14:]
    if ethertype == b"\x08\x00" and len(packet) >= 28 and packet[9] == 17:
        ihl = (packet[0] & 0x0F) * 4
        if packet[ihl + 2 : ihl + 4] == b"\x00\x43":  # UDP to port 67
            return Kind.DHCP, packet
    elif ethertype == b"\x86\xdd" and len(packet) >= 44:
        if packet[6] == 58 and packet[40] in (133, 135):  # ICMPv6 RS, NS
            return (Kind.RS if packet[40] == 133 else Kind.NS), packet
        if packet[6] == 17 and packet[42:44] == b"\x02\x23":  # UDP to port 547
            return Kind.DHCPV6, packet
    return None


@dataclass(frozen=True)
class Decision:
    accept: bool
    frames: tuple[tuple[str, bytes], ...] = ()  # (tap to send on, Ethernet frame)


ACCEPT = Decision(True)
DROP = Decision(False)


@dataclass
class Bucket:
    """A token bucket: ``rate`` answers per second, bursts of ``burst``."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Responder:
    """The bindings and the answers; ``mac_of(ifname)`` gives an interface's MAC (bytes)."""

    dhcp: dhcp4.DhcpConfig
    v6: ipv6.Ipv6Config
    mac_of: Callable[[str], bytes | None]
    rate: float = 10.0
    burst: float = 20.0
    clock: Callable[[], float] = time.monotonic
    bindings: dict[str, Binding] = field(default_factory=dict)
    buckets: dict[str, Bucket] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def lookup(self, indev: str | None, physindev: str | None) -> Binding | None:
        """Bridged NICs come in on the bridge from the tap (physindev), routed on the tap."""
        for name in (physindev, indev):
            if name is not None and name in self.bindings:
                return self.bindings[name]
        return None

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def _allowed(self, tap: str) -> bool:
        now = self.clock()
        bucket = self.buckets.get(tap)
        if bucket is None:
            bucket = self.buckets[tap] = Bucket(self.rate, self.burst, self.burst, now)
        return bucket.take(now)

    def handle(
        self,
        kind: Kind,
        payload: bytes,
        indev: str | None,
        physindev: str | None,
        src_mac: bytes | None,
    ) -> Decision:
        binding = self.lookup(indev, physindev)
        if binding is None:
            self._count("accepted")
            return ACCEPT
        if not self._allowed(binding.tap):
            self._count("rate-limited")
            return DROP
        try:
            frame = self._answer(kind, payload, binding, src_mac)
        except Exception:  # a bug must cost one answer, not the daemon
            log.exception("%s from %s: handler failed", kind.value, binding.tap)
            frame = None
        self._count(f"{kind.value}-answered" if frame else f"{kind.value}-dropped")
        return Decision(False, ((binding.tap, frame),) if frame else ())

    def _answer(
        self, kind: Kind, payload: bytes, binding: Binding, src_mac: bytes | None
    ) -> bytes | None:
        server_mac = self.mac_of(binding.indev)
        if server_mac is None:
            return None
        if kind is Kind.DHCP:
            request = dhcp4.parse_request(payload)
            return None if request is None else dhcp4.reply(request, binding, self.dhcp, server_mac)
        if kind is Kind.RS:
            return ipv6.handle_rs(payload, src_mac, binding, self.v6, server_mac)
        if kind is Kind.NS:
            return ipv6.handle_ns(payload, src_mac, binding, server_mac)
        return ipv6.handle_dhcpv6(payload, src_mac, binding, self.v6, server_mac)

    def periodic_ras(self) -> list[tuple[str, bytes]]:
        """An unsolicited RA for every binding with an IPv6 subnet."""
        out = []
        for binding in self.bindings.values():
            server_mac = self.mac_of(binding.indev)
            if binding.subnet6 is None or server_mac is None:
                continue
            frame = ipv6.router_advertisement(binding, self.v6, server_mac)
            if frame is not None:
                out.append((binding.tap, frame))
        return out
