"""The contents of the files snf-image writes into a Linux guest's disk before first boot.

Pure functions: text in, text out. Other code reads the guest's files and writes the results
(through the safe root abstraction); a result is a mapping of absolute guest path to
``(contents, mode)``. Text read from the image is untrusted: any line is accepted and kept or
dropped, never interpreted beyond its first words. Values from Ganeti (host name, MACs) are
checked, since they end up in configuration files.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from snf.common.errors import InvalidInput

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_SSH_HOST_KEY = re.compile(r"ssh_host_(?:[A-Za-z0-9._-]+_)?key(?:\.pub)?")
_HOST_NAME_MAX = 64  # Linux's limit on the kernel host name (HOST_NAME_MAX)
_MARK = "# Written by snf-image"


def _check_fqdn(fqdn: str) -> str:
    labels = fqdn.split(".")
    if len(fqdn) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"host name {fqdn!r} is not a valid DNS name")
    return labels[0]


def hostname_file(fqdn: str) -> str:
    """``/etc/hostname``: the instance name as given, like GRNET's snf-image.

    Ganeti instance names are FQDNs; systemd and Debian's hostname(1) accept an FQDN there
    (``hostname -s`` still gives the short name). A name longer than the kernel's 64
    characters cannot be set, so then only its first label is written.
    """
    short = _check_fqdn(fqdn)
    return (fqdn if len(fqdn) <= _HOST_NAME_MAX else short) + "\n"


def _first_field(line: str) -> str:
    fields = line.split("#", 1)[0].split(None, 1)
    return fields[0] if fields else ""


def hosts_file(existing: str | None, fqdn: str) -> str:
    """``/etc/hosts`` mapping 127.0.1.1 (Debian's convention) to the instance's names.

    Every existing line is kept except those for 127.0.1.1; the new line goes after the first
    127.0.0.1 line, or at the top when there is none. A missing file (``None``) becomes
    Debian's default, with the localhost and IPv6 loopback/multicast lines.
    """
    short = _check_fqdn(fqdn)
    own = "127.0.1.1\t" + (fqdn if short == fqdn else f"{fqdn} {short}")
    if existing is None:
        return (
            f"127.0.0.1\tlocalhost\n{own}\n\n"
            "# The following lines are desirable for IPv6 capable hosts\n"
            "::1     localhost ip6-localhost ip6-loopback\n"
            "ff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
        )
    lines = existing.split("\n")
    if lines[-1] == "":
        lines.pop()
    kept = [line for line in lines if _first_field(line) != "127.0.1.1"]
    at = next((i + 1 for i, line in enumerate(kept) if _first_field(line) == "127.0.0.1"), 0)
    kept.insert(at, own)
    return "\n".join(kept) + "\n"


@dataclass(frozen=True)
class NicConfig:
    """One NIC of the instance: Ganeti's index, its MAC, and whether its network has an IPv6
    subnet (then the guest also accepts router advertisements: SLAAC, and DHCPv6 if told)."""

    index: int
    mac: str
    ipv6: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise InvalidInput(f"NIC index {self.index!r} is not a non-negative integer")
        if not isinstance(self.mac, str) or not _MAC.fullmatch(self.mac):
            raise InvalidInput(f"NIC MAC address {self.mac!r} is not of the form aa:bb:cc:dd:ee:ff")

    @property
    def name(self) -> str:
        return f"eth{self.index}"


def network_style(exists: Callable[[str], bool]) -> str | None:
    """The network configuration system of the image, probing guest paths with ``exists``.

    In this order: ``"netplan"`` if /etc/netplan exists (Ubuntu); ``"networkd"`` if
    /etc/systemd/network and systemd-networkd (/lib or /usr/lib/systemd) exist and
    /etc/network/interfaces does not; ``"ifupdown"`` if /etc/network/interfaces exists (Debian,
    busybox); ``"nm"`` if /etc/NetworkManager/system-connections exists (RHEL 9, Fedora);
    ``"ifcfg"`` if /etc/sysconfig/network-scripts exists (RHEL 8 and older); else ``None``.
    """
    if exists("/etc/netplan"):
        return "netplan"
    interfaces = exists("/etc/network/interfaces")
    if (
        exists("/etc/systemd/network")
        and (exists("/lib/systemd/systemd-networkd") or exists("/usr/lib/systemd/systemd-networkd"))
        and not interfaces
    ):
        return "networkd"
    if interfaces:
        return "ifupdown"
    if exists("/etc/NetworkManager/system-connections"):
        return "nm"
    if exists("/etc/sysconfig/network-scripts"):
        return "ifcfg"
    return None


def _checked(nics: list[NicConfig]) -> list[NicConfig]:
    if len({nic.index for nic in nics}) != len(nics):
        raise InvalidInput(f"NIC indexes {[nic.index for nic in nics]} are not unique")
    if len({nic.mac.lower() for nic in nics}) != len(nics):
        raise InvalidInput(f"NIC MAC addresses {[nic.mac for nic in nics]} are not unique")
    return sorted(nics, key=lambda nic: nic.index)


def _netplan_ethernets(nics: list[NicConfig], indent: str, accept_ra: bool) -> list[str]:
    """Netplan version 2 ``ethernets`` entries (also cloud-init's network-config v2)."""
    if not nics:
        return [f"{indent}ethernets: {{}}"]
    lines = [f"{indent}ethernets:"]
    for nic in nics:
        lines += [
            f"{indent}  {nic.name}:",
            f"{indent}    match:",
            f"{indent}      macaddress: {json.dumps(nic.mac.lower())}",
            f"{indent}    dhcp4: true",
        ]
        if nic.ipv6:
            lines.append(f"{indent}    dhcp6: true")
            if accept_ra:
                lines.append(f"{indent}    accept-ra: true")
    return lines


def _netplan(nics: list[NicConfig]) -> dict[str, tuple[str, int]]:
    lines = [f"{_MARK}: DHCP on every NIC, matched by MAC.", "network:", "  version: 2"]
    text = "\n".join([*lines, *_netplan_ethernets(nics, "  ", accept_ra=True)]) + "\n"
    return {"/etc/netplan/50-snf-image.yaml": (text, 0o600)}  # netplan warns if world-readable


def _networkd(nics: list[NicConfig]) -> dict[str, tuple[str, int]]:
    files = {}
    for nic in nics:
        text = f"{_MARK}.\n[Match]\nMACAddress={nic.mac.lower()}\n\n[Network]\n"
        text += "DHCP=yes\nIPv6AcceptRA=yes\n" if nic.ipv6 else "DHCP=ipv4\n"
        files[f"/etc/systemd/network/50-snf-image-{nic.name}.network"] = (text, 0o644)
    return files


def _nm(nics: list[NicConfig]) -> dict[str, tuple[str, int]]:
    files = {}
    for nic in nics:
        mac = nic.mac.lower()
        text = (
            f"{_MARK}.\n[connection]\nid=snf-{nic.name}\n"
            f"uuid={uuid.uuid5(uuid.NAMESPACE_URL, 'snf-image:nic:' + mac)}\n"
            f"type=ethernet\nautoconnect=true\n\n[ethernet]\nmac-address={mac}\n\n"
            f"[ipv4]\nmethod=auto\n\n[ipv6]\nmethod={'auto' if nic.ipv6 else 'ignore'}\n"
        )
        # NetworkManager ignores keyfiles that others can read.
        files[f"/etc/NetworkManager/system-connections/snf-{nic.name}.nmconnection"] = (
            text,
            0o600,
        )
    return files


def _ifcfg(nics: list[NicConfig]) -> dict[str, tuple[str, int]]:
    files = {}
    for nic in nics:
        text = (
            f"{_MARK}.\nDEVICE={nic.name}\nHWADDR={nic.mac.lower()}\nTYPE=Ethernet\n"
            "ONBOOT=yes\nBOOTPROTO=dhcp\n"
        )
        text += "IPV6INIT=yes\nIPV6_AUTOCONF=yes\n" if nic.ipv6 else "IPV6INIT=no\n"
        files[f"/etc/sysconfig/network-scripts/ifcfg-{nic.name}"] = (text, 0o644)
    return files


# interfaces(5): the words that start a stanza; every other line belongs to the one before.
_IFUPDOWN_STANZAS = {"iface", "mapping", "auto", "source", "source-directory", "rename"}
_IFUPDOWN_NAME_LISTS = {"auto", "no-auto-down", "no-scripts"}  # and allow-*


def _logical_lines(lines: list[str]) -> list[list[str]]:
    """Group physical lines joined by a trailing backslash, as ifupdown reads them."""
    groups: list[list[str]] = []
    continued = False
    for line in lines:
        if continued:
            groups[-1].append(line)
        else:
            groups.append([line])
        continued = line.rstrip("\r").endswith("\\")
    return groups


def _ifupdown(nics: list[NicConfig], existing: str | None) -> dict[str, tuple[str, int]]:
    managed = {nic.name for nic in nics}
    if existing is None:
        existing = "auto lo\niface lo inet loopback\n"
    lines = existing.split("\n")
    if lines[-1] == "":
        lines.pop()
    out: list[str] = []
    insert_at: int | None = None
    skipping = False
    for group in _logical_lines(lines):
        words = " ".join(line.rstrip("\\\r") for line in group).split()
        keyword = words[0] if words else ""
        if not keyword or keyword.startswith("#"):
            # Blank lines and indented comments in a dropped stanza go with it, as do our own.
            inside = skipping and (not keyword or group[0][:1].isspace())
            if not inside and not group[0].startswith(_MARK):
                out += group
            continue
        is_list = keyword in _IFUPDOWN_NAME_LISTS or keyword.startswith("allow-")
        if not (is_list or keyword in _IFUPDOWN_STANZAS):
            if not skipping:
                out += group  # an option line of a kept stanza
            continue
        skipping = False
        names = words[1:2] if keyword == "iface" else words[1:]
        if not managed.intersection(names) or not (is_list or keyword in ("iface", "mapping")):
            out += group
            continue
        first = insert_at is None
        if is_list:  # drop our names from the list, keep the others
            rest = [word for word in names if word not in managed]
            if rest:
                out.append(" ".join([keyword, *rest]))
        else:  # a stanza of ours (or a mapping onto it): dropped with its option lines
            skipping = True
        if first:
            insert_at = len(out)  # our stanzas go where the first of the old ones was
    stanzas: list[str] = []
    for nic in nics:
        stanzas += [
            *([""] if stanzas else []),
            f"{_MARK}: DHCP on the NIC {nic.mac.lower()}.",
            f"auto {nic.name}",
            f"iface {nic.name} inet dhcp",
        ]
        if nic.ipv6:
            stanzas.append(f"iface {nic.name} inet6 auto")
    if insert_at is None:
        insert_at = len(out)
        if out and out[-1].strip():
            stanzas.insert(0, "")
    elif insert_at < len(out) and out[insert_at].strip():
        stanzas.append("")
    out[insert_at:insert_at] = stanzas
    return {"/etc/network/interfaces": ("\n".join(out) + "\n", 0o644)}


def network_files(
    style: str, nics: list[NicConfig], existing_interfaces: str | None = None
) -> dict[str, tuple[str, int]]:
    """The files that give every NIC DHCP (and IPv6 autoconfiguration when ``ipv6``).

    ``style`` is one of :func:`network_style`'s answers. Files are matched to NICs by MAC,
    except ifupdown's, which names the interfaces ``eth<index>``: its /etc/network/interfaces
    (``existing_interfaces``, or ``None`` when missing) keeps everything but the stanzas and
    auto/allow-* entries of those names; files it sources are not looked at. No NICs: no files.
    """
    nics = _checked(nics)
    writers: dict[str, Callable[[list[NicConfig]], dict[str, tuple[str, int]]]] = {
        "netplan": _netplan,
        "networkd": _networkd,
        "nm": _nm,
        "ifcfg": _ifcfg,
        "ifupdown": lambda nics: _ifupdown(nics, existing_interfaces),
    }
    if style not in writers:
        raise InvalidInput(f"network configuration style {style!r} is not one of {list(writers)}")
    return writers[style](nics) if nics else {}


_SEED = "/var/lib/cloud/seed/nocloud/"


def nocloud_seed(
    instance_uuid: str, fqdn: str, userdata: bytes | None, nics: list[NicConfig]
) -> dict[str, tuple[bytes, int]]:
    """cloud-init NoCloud seed files: meta-data, user-data and network-config (version 2).

    YAML is written by hand with every string as a JSON string (a valid YAML scalar). User data
    is kept private (0o600); without any, an empty ``#cloud-config`` document is written.
    """
    _check_fqdn(fqdn)
    if not instance_uuid or not instance_uuid.isprintable():
        raise InvalidInput(f"instance id {instance_uuid!r} is empty or not printable")
    nics = _checked(nics)
    meta = f"instance-id: {json.dumps(instance_uuid)}\nlocal-hostname: {json.dumps(fqdn)}\n"
    network = "\n".join(["version: 2", *_netplan_ethernets(nics, "", accept_ra=False)]) + "\n"
    return {
        _SEED + "meta-data": (meta.encode(), 0o644),
        _SEED + "user-data": (b"#cloud-config\n{}\n" if userdata is None else userdata, 0o600),
        _SEED + "network-config": (network.encode(), 0o644),
    }


def machine_id_reset() -> dict[str, tuple[bytes, int]]:
    """An empty, read-only /etc/machine-id: systemd generates a new id at first boot.

    The caller must also remove /var/lib/dbus/machine-id if it is a regular file (a symbolic
    link to /etc/machine-id is left alone), else D-Bus keeps the image's id.
    """
    return {"/etc/machine-id": (b"", 0o444)}


def is_ssh_host_key(name: str) -> bool:
    """Whether a file name in /etc/ssh is a host key: ``ssh_host_*_key``, ``ssh_host_*_key.pub``,
    or SSH1's ``ssh_host_key`` and ``ssh_host_key.pub``."""
    return len(name) <= 255 and _SSH_HOST_KEY.fullmatch(name) is not None
