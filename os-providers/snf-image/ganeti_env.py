"""The environment Ganeti 3.0 gives OS scripts (create, import, export, rename, verify).

:func:`parse_os_env` reads and checks the variables snf-image uses (see
shared/reference/ganeti.md, section 2): the core ``OS_*``/``DEBUG_LEVEL`` variables, which
every script gets, and the instance, disk and NIC variables, which all but ``verify`` get.
Absent optional variables become None; present ones must be well-formed, otherwise
:class:`~snf.common.errors.InvalidInput` names the variable. ``OSP_*`` variables are the
OS parameters: see params.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from snf.common.errors import InvalidInput

MAX_DISKS = 16
MAX_NICS = 8
T = TypeVar("T")
API_VERSIONS = (10, 15, 20)  # the versions Ganeti 3.0 knows
NIC_MODES = ("bridged", "routed", "openvswitch")
DISK_ACCESS = ("rw", "ro")

_DECIMAL = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}")  # OS names, hypervisors, links
_BACKEND = re.compile(r"block|file:[a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URI = re.compile(r"\S+")


@dataclass(frozen=True)
class Disk:
    """One disk; ``size`` is in bytes (Ganeti 3.0 gives DISK_n_SIZE in MiB)."""

    index: int
    path: str | None = None
    uuid: str | None = None
    size: int | None = None
    name: str | None = None
    backend_type: str | None = None  # "block" or "file:<driver>"
    access: str | None = None  # "rw" or "ro"
    uri: str | None = None  # only for userspace access


@dataclass(frozen=True)
class Nic:
    """One NIC: ``mac`` lower-cased; the network fields only when it is on a Ganeti network."""

    index: int
    mac: str
    ip: str | None = None
    mode: str | None = None
    link: str | None = None
    uuid: str | None = None
    name: str | None = None
    network_name: str | None = None
    network_subnet: ipaddress.IPv4Network | None = None
    network_gateway: ipaddress.IPv4Address | None = None
    network_subnet6: ipaddress.IPv6Network | None = None
    network_gateway6: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class OsEnv:
    """The checked environment of one OS script run."""

    api_version: int
    os_name: str
    variant: str | None
    debug: int
    instance_name: str | None = None
    instance_uuid: str | None = None
    hypervisor: str | None = None
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    reinstall: bool = False  # create: INSTANCE_REINSTALL=1
    old_instance_name: str | None = None  # rename
    export_device: str | None = None  # export: EXPORT_DEVICE (or EXPORT_DISK_PATH)
    import_device: str | None = None  # import: IMPORT_DEVICE (or IMPORT_DISK_PATH)
    export_index: int | None = None
    import_index: int | None = None
    exp_size_fd: int | None = None  # export: where to write the predicted size


def _cut(value: str) -> str:
    """repr() of a value for a message, at most about 100 characters."""
    return repr(value) if len(value) <= 100 else repr(value[:97]) + "..."


class _Reader:
    """Typed, checked access to the variables; every error names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self, var: str) -> str | None:
        """The value, None when absent or empty; control characters are refused."""
        value = self.env.get(var)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or _CONTROL.search(value):
            raise InvalidInput(f"{var} must be one line of text")
        return value

    def require(self, var: str) -> str:
        value = self.get(var)
        if value is None:
            raise InvalidInput(f"{var} is missing")
        return value

    def integer(self, var: str, low: int, high: int) -> int | None:
        value = self.get(var)
        if value is None:
            return None
        if not _DECIMAL.fullmatch(value) or not low <= int(value) <= high:
            raise InvalidInput(f"{var} must be a decimal integer {low}..{high}, not {_cut(value)}")
        return int(value)

    def path(self, var: str) -> str | None:
        value = self.get(var)
        if value is not None and (not value.startswith("/") or ".." in value.split("/")):
            raise InvalidInput(f"{var} must be an absolute path, not {_cut(value)}")
        return value

    def match(self, var: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = self.get(var)
        if value is not None and not pattern.fullmatch(value):
            raise InvalidInput(f"{var} must be {what}, not {_cut(value)}")
        return value

    def choice(self, var: str, choices: tuple[str, ...]) -> str | None:
        value = self.get(var)
        if value is not None and value not in choices:
            raise InvalidInput(f"{var} must be one of {', '.join(choices)}, not {_cut(value)}")
        return value

    def uuid(self, var: str) -> str | None:
        value = self.get(var)
        if value is not None and not _UUID.fullmatch(value.lower()):
            raise InvalidInput(f"{var} must be a UUID, not {_cut(value)}")
        return None if value is None else value.lower()

    def hostname(self, var: str) -> str | None:
        value = self.get(var)
        if value is not None and (
            len(value) > 253 or not all(_LABEL.fullmatch(label) for label in value.split("."))
        ):
            raise InvalidInput(f"{var} must be a DNS host name, not {_cut(value)}")
        return value

    def parsed(self, var: str, parse: Callable[[str], T], what: str) -> T | None:
        """The value parsed by ``parse`` (which raises ValueError on bad input)."""
        value = self.get(var)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            raise InvalidInput(f"{var} must be {what}, not {_cut(value)}") from None


def _disk(r: _Reader, n: int) -> Disk:
    p = f"DISK_{n}_"
    size = r.integer(p + "SIZE", 0, 2**44)  # MiB: 16 EiB at most
    return Disk(
        index=n,
        path=r.path(p + "PATH"),
        uuid=r.uuid(p + "UUID"),
        size=None if size is None else size * 1024 * 1024,
        name=r.get(p + "NAME"),
        backend_type=r.match(p + "BACKEND_TYPE", _BACKEND, "block or file:<driver>"),
        access=r.choice(p + "ACCESS", DISK_ACCESS),
        uri=r.match(p + "URI", _URI, "a URI without spaces"),
    )


def _nic(r: _Reader, n: int) -> Nic:
    p = f"NIC_{n}_"
    mac = r.require(p + "MAC").lower()
    if not _MAC.fullmatch(mac):
        raise InvalidInput(f"{p}MAC must be a MAC address aa:bb:cc:dd:ee:ff, not {_cut(mac)}")
    ip = r.parsed(p + "IP", ipaddress.ip_address, "an IP address")
    return Nic(
        index=n,
        mac=mac,
        ip=None if ip is None else str(ip),
        mode=r.choice(p + "MODE", NIC_MODES),
        link=r.match(p + "LINK", _WORD, "an interface or bridge name"),
        uuid=r.uuid(p + "UUID"),
        name=r.get(p + "NAME"),
        network_name=r.get(p + "NETWORK_NAME"),
        network_subnet=r.parsed(p + "NETWORK_SUBNET", ipaddress.IPv4Network, "an IPv4 network"),
        network_gateway=r.parsed(p + "NETWORK_GATEWAY", ipaddress.IPv4Address, "an IPv4 address"),
        network_subnet6=r.parsed(p + "NETWORK_SUBNET6", ipaddress.IPv6Network, "an IPv6 network"),
        network_gateway6=r.parsed(p + "NETWORK_GATEWAY6", ipaddress.IPv6Address, "an IPv6 address"),
    )


def _device(r: _Reader, prefix: str, disks: tuple[Disk, ...]) -> tuple[str | None, int | None]:
    """EXPORT_/IMPORT_ DEVICE (or DISK_PATH) and INDEX; the index must name a disk."""
    device = r.path(prefix + "DEVICE") or r.path(prefix + "DISK_PATH")
    index = r.integer(prefix + "INDEX", 0, MAX_DISKS - 1)
    if index is not None and index >= len(disks):
        raise InvalidInput(f"{prefix}INDEX {index} names no disk (DISK_COUNT is {len(disks)})")
    if device is not None and index is None:
        raise InvalidInput(f"{prefix}INDEX is missing beside {prefix}DEVICE")
    return device, index


def parse_os_env(env: Mapping[str, str]) -> OsEnv:
    """Read and check an OS script's environment (verify's core-only one as well)."""
    r = _Reader(env)
    version = r.require("OS_API_VERSION")
    if version not in {str(v) for v in API_VERSIONS}:
        raise InvalidInput(f"OS_API_VERSION must be one of 10, 15, 20, not {_cut(version)}")
    os_name = r.require("OS_NAME")
    if not _WORD.fullmatch(os_name) or "+" in os_name:
        raise InvalidInput(f"OS_NAME must be an OS name without a variant, not {_cut(os_name)}")
    disk_count = r.integer("DISK_COUNT", 0, MAX_DISKS) or 0
    nic_count = r.integer("NIC_COUNT", 0, MAX_NICS) or 0
    disks = tuple(_disk(r, n) for n in range(disk_count))
    reinstall = r.choice("INSTANCE_REINSTALL", ("0", "1"))
    export_device, export_index = _device(r, "EXPORT_", disks)
    import_device, import_index = _device(r, "IMPORT_", disks)
    if export_index is not None and import_index is not None:
        raise InvalidInput("EXPORT_INDEX and IMPORT_INDEX are both set: one script, one mode")
    return OsEnv(
        api_version=int(version),
        os_name=os_name,
        variant=r.match("OS_VARIANT", _WORD, "a variant name"),
        debug=r.integer("DEBUG_LEVEL", 0, 9) or 0,
        instance_name=r.hostname("INSTANCE_NAME"),
        instance_uuid=r.uuid("INSTANCE_UUID"),
        hypervisor=r.match("HYPERVISOR", _WORD, "a hypervisor name"),
        disks=disks,
        nics=tuple(_nic(r, n) for n in range(nic_count)),
        reinstall=reinstall == "1",
        old_instance_name=r.hostname("OLD_INSTANCE_NAME"),
        export_device=export_device,
        import_device=import_device,
        export_index=export_index,
        import_index=import_index,
        exp_size_fd=r.integer("EXP_SIZE_FD", 0, 2**31 - 1),
    )
