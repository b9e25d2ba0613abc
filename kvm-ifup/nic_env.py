"""The environment Ganeti 3.0 gives kvm-ifup (kvm-vif-bridge, kvm-ifup-custom) for one NIC.

:func:`parse_nic_env` reads the variables listed in shared/reference/networking.md, section 1,
and returns a :class:`Nic`. A Nic holds checked values only: its ``__post_init__`` refuses
anything else, so a Nic built directly (tests, an executor) is checked as well. Every refusal
is an :class:`~snf.common.errors.InvalidInput` whose one-line message names the variable and
the value (repr, so newlines show as ``\\n``).

Read: INSTANCE INTERFACE MAC MODE LINK (required) and BRIDGE IP INTERFACE_INDEX NETWORK_NAME
NETWORK_UUID NETWORK_TAGS NETWORK_SUBNET NETWORK_GATEWAY NETWORK_SUBNET6 NETWORK_GATEWAY6
NETWORK_MAC_PREFIX TAGS VLAN. An empty optional variable counts as absent. VLAN is refused
(the commands connect the tap untagged); INTERFACE_UUID, INTERFACE_NAME and PATH are unused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal, TypeVar

from snf.common.errors import InvalidInput

Mode = Literal["bridged", "routed"]
Kind = Literal["bridged", "routed", "private-filtered"]
Profile = Literal["protected", "limited", "unprotected"]

#: most restrictive first: when several instance tags name this NIC, the first of these wins
PROFILES: tuple[Profile, ...] = ("protected", "limited", "unprotected")
FIREWALL_TAG = "synnefo:network:"  # + <index|network name|network uuid> + ":" + <profile>
TAG_ROUTED = "ip-less-routed"
TAG_PRIVATE = "private-filtered"
TAG_DHCP = "nfdhcpd"

#: a Linux interface name (1-15 characters); no leading "-" (argv) or "." ("." and "..")
IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_MAC_PREFIX = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){2}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+:@-]{0,127}")  # Ganeti network names
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TAG = re.compile(r"[\w.+*/:@-]{1,128}")  # Ganeti's TAG_RE and TAG_MAX_LEN
_INDEX = re.compile(r"[0-9]{1,4}")
# Characters an address may hold, checked before ipaddress parses it (IPv6Address accepts a
# "%scope" suffix of any text).
_V4 = re.compile(r"[0-9.]{7,15}")
_V4_NET = re.compile(r"[0-9.]{7,15}/[0-9]{1,2}")
_V6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_V6_NET = re.compile(r"[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}")

T = TypeVar("T")


def _show(value: object) -> str:
    """repr() of a value for a message: one line, at most about 80 characters."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 80 else text[:76] + "...'"


def _bad(var: str, value: object, why: str) -> InvalidInput:
    return InvalidInput(f"{var} {_show(value)} {why}")


@dataclass(frozen=True)
class Nic:
    """One NIC as Ganeti describes it to kvm-ifup; every value checked (see module doc)."""

    instance: str  # INSTANCE, a DNS name
    interface: str  # INTERFACE, the tap
    mac: str  # MAC, lower case
    mode: Mode  # MODE
    link: str | None  # LINK: the bridge (bridged) or the routing table (routed); required
    ip: IPv4Address | None = None  # IP
    index: int | None = None  # INTERFACE_INDEX
    network_name: str | None = None
    network_uuid: str | None = None
    network_tags: tuple[str, ...] = ()
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None
    mac_prefix: str | None = None  # NETWORK_MAC_PREFIX, lower case aa:bb:cc
    tags: tuple[str, ...] = ()  # TAGS: the instance's tags

    @property
    def kind(self) -> Kind:
        """How the NIC is set up: network tags ip-less-routed / private-filtered, else MODE."""
        if TAG_ROUTED in self.network_tags:
            return "routed"
        if TAG_PRIVATE in self.network_tags:
            return "private-filtered"
        return self.mode

    @property
    def eui64(self) -> IPv6Address | None:
        """The modified EUI-64 address of ``mac`` in ``subnet6`` (what SLAAC gives the VM)."""
        if self.subnet6 is None:
            return None
        octets = bytes.fromhex(self.mac.replace(":", ""))
        iid = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
        return IPv6Address(int(self.subnet6.network_address) | int.from_bytes(iid, "big"))

    @property
    def firewall(self) -> Profile | None:
        """The profile of instance tags synnefo:network:<index|name|uuid>:<profile>."""
        found = {profile for profile, _ in self._firewall_tags()}
        return next((p for p in PROFILES if p in found), None)

    @property
    def dhcp(self) -> bool:
        """Whether nfdhcpd serves this NIC (network tag "nfdhcpd")."""
        return TAG_DHCP in self.network_tags

    def _firewall_tags(self) -> list[tuple[str, str]]:
        """(profile part, tag) of every firewall tag naming this NIC; the part is unchecked."""
        keys = {k for k in (self.network_name, self.network_uuid) if k is not None}
        if self.index is not None:
            keys.add(str(self.index))
        found = []
        for tag in self.tags:
            if tag.startswith(FIREWALL_TAG):
                key, _, profile = tag[len(FIREWALL_TAG) :].rpartition(":")
                if key in keys:
                    found.append((profile, tag))
        return found

    def __post_init__(self) -> None:
        _check_text(self)
        _check_addresses(self)
        _check_kind(self)


def _check_text(nic: Nic) -> None:
    if not isinstance(nic.instance, str) or not _dns_name(nic.instance):
        raise _bad("INSTANCE", nic.instance, "is not a DNS name")
    if not isinstance(nic.interface, str) or not IFNAME.fullmatch(nic.interface):
        raise _bad("INTERFACE", nic.interface, "is not an interface name (1-15 of A-Za-z0-9_.-)")
    if not isinstance(nic.mac, str) or not _MAC.fullmatch(nic.mac):
        raise _bad("MAC", nic.mac, "is not a lower-case MAC address aa:bb:cc:dd:ee:ff")
    if int(nic.mac[:2], 16) & 1:
        raise _bad("MAC", nic.mac, "is a multicast address")
    if nic.mode == "openvswitch":
        raise InvalidInput(
            "MODE openvswitch is not supported: snf-network sets up bridged and routed NICs only"
        )
    if nic.mode not in ("bridged", "routed"):
        raise _bad("MODE", nic.mode, "is not bridged or routed")
    if nic.link is None:
        raise InvalidInput(f"LINK is not set: a {nic.mode} NIC needs it")
    if nic.mode == "bridged" and not (isinstance(nic.link, str) and IFNAME.fullmatch(nic.link)):
        raise _bad("LINK", nic.link, "is not a bridge name (1-15 of A-Za-z0-9_.-)")
    if nic.mode == "routed" and not _table(nic.link):
        raise _bad("LINK", nic.link, "is not a routing table (1..4294967294 or a name)")
    if nic.index is not None and not (isinstance(nic.index, int) and 0 <= nic.index <= 9999):
        raise _bad("INTERFACE_INDEX", nic.index, "is not a number 0..9999")
    if nic.network_name is not None and not _match(_NAME, nic.network_name):
        raise _bad("NETWORK_NAME", nic.network_name, "is not a network name")
    if nic.network_uuid is not None and not _match(_UUID, nic.network_uuid):
        raise _bad("NETWORK_UUID", nic.network_uuid, "is not a lower-case UUID")
    for var, tags in (("NETWORK_TAGS", nic.network_tags), ("TAGS", nic.tags)):
        if not isinstance(tags, tuple):
            raise _bad(var, tags, "is not a tuple of tags")
        for tag in tags:
            if not _match(_TAG, tag):
                raise _bad(var, tag, "is not a Ganeti tag (1-128 of letters, digits, _.+*/:@-)")
    if nic.mac_prefix is not None and not _match(_MAC_PREFIX, nic.mac_prefix):
        raise _bad("NETWORK_MAC_PREFIX", nic.mac_prefix, "is not a lower-case prefix aa:bb:cc")


def _check_addresses(nic: Nic) -> None:
    for var, value, cls in (
        ("IP", nic.ip, IPv4Address),
        ("NETWORK_SUBNET", nic.subnet, IPv4Network),
        ("NETWORK_GATEWAY", nic.gateway, IPv4Address),
        ("NETWORK_SUBNET6", nic.subnet6, IPv6Network),
        ("NETWORK_GATEWAY6", nic.gateway6, IPv6Address),
    ):
        if value is not None and type(value) is not cls:
            raise _bad(var, value, f"is not an {cls.__name__}")
    for var, addr in (("IP", nic.ip), ("NETWORK_GATEWAY", nic.gateway)):
        if addr is not None and (addr.is_multicast or addr.is_unspecified or addr.is_loopback):
            raise _bad(var, addr, "is not a unicast address")
        if addr is not None and addr == IPv4Address("255.255.255.255"):
            raise _bad(var, addr, "is not a unicast address")
    if nic.gateway6 is not None and (nic.gateway6.is_multicast or nic.gateway6.is_unspecified):
        raise _bad("NETWORK_GATEWAY6", nic.gateway6, "is not a unicast address")
    if nic.subnet is not None:
        subnet = nic.subnet
        for var, addr in (("IP", nic.ip), ("NETWORK_GATEWAY", nic.gateway)):
            if addr is not None and addr not in subnet:
                raise _bad(var, addr, f"is outside NETWORK_SUBNET {subnet}")
        edges = (subnet.network_address, subnet.broadcast_address)
        if nic.ip is not None and subnet.prefixlen < 31 and nic.ip in edges:
            raise _bad("IP", nic.ip, f"is the network or broadcast address of {subnet}")
    if nic.ip is not None and nic.ip == nic.gateway:
        raise _bad("IP", nic.ip, "is NETWORK_GATEWAY")
    if nic.subnet6 is not None:
        if nic.subnet6.prefixlen > 64:
            raise _bad("NETWORK_SUBNET6", nic.subnet6, "is longer than /64 (no EUI-64 address)")
        if nic.gateway6 is not None and nic.gateway6 not in nic.subnet6:
            raise _bad(
                "NETWORK_GATEWAY6", nic.gateway6, f"is outside NETWORK_SUBNET6 {nic.subnet6}"
            )


def _check_kind(nic: Nic) -> None:
    tags = nic.network_tags
    if TAG_ROUTED in tags and TAG_PRIVATE in tags:
        raise InvalidInput(f"NETWORK_TAGS has both {TAG_ROUTED} and {TAG_PRIVATE}")
    if TAG_ROUTED in tags and nic.mode != "routed":
        raise InvalidInput(f"MODE {nic.mode} does not fit network tag {TAG_ROUTED} (routed)")
    if TAG_PRIVATE in tags and nic.mode != "bridged":
        raise InvalidInput(f"MODE {nic.mode} does not fit network tag {TAG_PRIVATE} (bridged)")
    if nic.kind == "private-filtered":
        if nic.mac_prefix is None:
            raise InvalidInput("NETWORK_MAC_PREFIX is not set: a private-filtered NIC needs it")
        if not nic.mac.startswith(nic.mac_prefix + ":"):
            raise _bad("MAC", nic.mac, f"does not start with NETWORK_MAC_PREFIX {nic.mac_prefix}")
    for profile, tag in nic._firewall_tags():
        if profile not in PROFILES:
            raise _bad("TAGS", tag, f"names no firewall profile ({', '.join(PROFILES)})")


def _match(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _dns_name(value: str) -> bool:
    return len(value) <= 253 and all(_LABEL.fullmatch(label) for label in value.split("."))


def _table(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value.isascii() and value.isdigit():
        return len(value) <= 10 and 1 <= int(value) <= 2**32 - 2
    return _TABLE_NAME.fullmatch(value) is not None


def _get(env: Mapping[str, str], var: str) -> str | None:
    """The value, None when absent or empty."""
    value = env.get(var)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(var, value, "is not text")
    return value


def _require(env: Mapping[str, str], var: str) -> str:
    value = _get(env, var)
    if value is None:
        raise InvalidInput(f"{var} is not set")
    return value


def _address(
    env: Mapping[str, str], var: str, chars: re.Pattern[str], parse: Callable[[str], T], what: str
) -> T | None:
    value = _get(env, var)
    if value is None:
        return None
    if chars.fullmatch(value):
        try:
            return parse(value)
        except ValueError:
            pass
    raise _bad(var, value, f"is not {what}")


def _tags(env: Mapping[str, str], var: str) -> tuple[str, ...]:
    value = _get(env, var) or ""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise _bad(var, value, "holds control characters")
    return tuple(tag for tag in value.split(" ") if tag)


def parse_nic_env(env: Mapping[str, str]) -> Nic:
    """The checked NIC of a kvm-ifup environment; InvalidInput names the first bad variable."""
    mode = _require(env, "MODE")
    link = _require(env, "LINK") if mode in ("bridged", "routed") else _get(env, "LINK")
    bridge = _get(env, "BRIDGE")
    if mode == "bridged" and bridge is not None and bridge != link:
        raise _bad("BRIDGE", bridge, f"differs from LINK {_show(link)}")
    vlan = _get(env, "VLAN")
    if vlan is not None:
        raise _bad("VLAN", vlan, "is not supported: the tap is connected to LINK untagged")
    index = _get(env, "INTERFACE_INDEX")
    if index is not None and not _INDEX.fullmatch(index):
        raise _bad("INTERFACE_INDEX", index, "is not a number 0..9999")
    mac = _require(env, "MAC")
    prefix = _get(env, "NETWORK_MAC_PREFIX")
    uuid = _get(env, "NETWORK_UUID")
    return Nic(
        instance=_require(env, "INSTANCE"),
        interface=_require(env, "INTERFACE"),
        mac=mac.lower() if _MAC.fullmatch(mac.lower()) else mac,
        mode=mode,  # type: ignore[arg-type]  # checked by Nic
        link=link,
        ip=_address(env, "IP", _V4, IPv4Address, "an IPv4 address"),
        index=None if index is None else int(index),
        network_name=_get(env, "NETWORK_NAME"),
        network_uuid=None if uuid is None else uuid.lower(),
        network_tags=_tags(env, "NETWORK_TAGS"),
        subnet=_address(env, "NETWORK_SUBNET", _V4_NET, IPv4Network, "an IPv4 subnet a.b.c.d/n"),
        gateway=_address(env, "NETWORK_GATEWAY", _V4, IPv4Address, "an IPv4 address"),
        subnet6=_address(env, "NETWORK_SUBNET6", _V6_NET, IPv6Network, "an IPv6 subnet"),
        gateway6=_address(env, "NETWORK_GATEWAY6", _V6, IPv6Address, "an IPv6 address"),
        mac_prefix=None if prefix is None else prefix.lower(),
        tags=_tags(env, "TAGS"),
    )
