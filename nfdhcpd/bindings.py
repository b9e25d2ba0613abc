"""The binding file: what nfdhcpd knows about one NIC, one file per NIC named after its tap.

The NIC setup script (kvm-ifup) writes ``<datapath>/<tap>`` with :func:`write_binding`;
nfdhcpd reads the directory with :func:`load_all` and answers DHCP, RS and NS for the NIC.
The format is snf-network's, one ``KEY=value`` line per field::

    INDEV=tap10
    IP=192.0.2.100
    MAC=aa:6b:39:22:33:44
    HOSTNAME=testing-vm
    TAGS="t1 t2"
    GATEWAY=192.0.2.1
    SUBNET=192.0.2.0/24
    GATEWAY6=2001:db8:aaaa:bbbb::1
    SUBNET6=2001:db8:aaaa:bbbb::/64
    EUI64=2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344
    PRIVATE=
    MTU=1500
    MACSPOOF=

Reading: the value is everything after the first ``=``, with surrounding double quotes
stripped; an empty value means unset; unknown keys, blank lines and ``#`` comment lines are
ignored. MAC and HOSTNAME are required; a missing INDEV means the tap itself (routed mode).
Any malformed value, a duplicate key or a line without ``=`` makes the whole file invalid.
Writing quotes only TAGS and replaces the file atomically (temporary file named ``.<tap>.*``
in the same directory, fsync, rename), so readers skip names starting with a dot.

This module does no I/O except in :func:`write_binding`, :func:`remove_binding` and
:func:`load_all`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

from snf.common.errors import InvalidInput

MAX_FILE_SIZE = 4096
MTU_MIN, MTU_MAX = 68, 65535

_IFNAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Ganeti's tag syntax (lib/objects.py, TaggableObject.ValidateTag).
_TAG_RE = re.compile(r"[\w.+*/:@-]{1,128}")
_MTU_RE = re.compile(r"[0-9]{1,5}")
_KEYS = (
    "INDEV", "IP", "MAC", "HOSTNAME", "TAGS", "GATEWAY", "SUBNET",
    "GATEWAY6", "SUBNET6", "EUI64", "PRIVATE", "MTU", "MACSPOOF",
)  # fmt: skip


def is_ifname(name: str) -> bool:
    """Whether ``name`` is a usable Linux interface name (and so a safe file name)."""
    return _IFNAME_RE.fullmatch(name) is not None and name not in (".", "..")


def is_dns_name(name: str) -> bool:
    """Whether ``name`` is a DNS host name: dot-separated labels of letters, digits, '-'."""
    return len(name) <= 253 and all(_LABEL_RE.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True)
class Binding:
    """One NIC as nfdhcpd sees it. Construction validates every field (InvalidInput).

    ``private`` drops the DHCP router option; ``macspoof`` skips the check that the DHCP
    client hardware address is ``mac``; ``mtu`` goes into DHCP option 26 and the RA.
    """

    tap: str
    indev: str
    mac: str
    hostname: str
    ip: IPv4Address | None = None
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None
    eui64: IPv6Address | None = None
    tags: tuple[str, ...] = ()
    private: bool = False
    mtu: int | None = None
    macspoof: bool = False

    def __post_init__(self) -> None:
        where = f"binding {self.tap!r}"
        if not isinstance(self.tap, str) or not is_ifname(self.tap):
            raise InvalidInput(f"binding tap name {self.tap!r} is not an interface name")
        if not isinstance(self.indev, str) or not is_ifname(self.indev):
            raise InvalidInput(f"{where}: INDEV {self.indev!r} is not an interface name")
        if not isinstance(self.mac, str) or not _MAC_RE.fullmatch(self.mac):
            raise InvalidInput(f"{where}: MAC {self.mac!r} is not a MAC address")
        object.__setattr__(self, "mac", self.mac.lower())
        if not isinstance(self.hostname, str) or not is_dns_name(self.hostname):
            raise InvalidInput(f"{where}: HOSTNAME {self.hostname!r} is not a DNS name")
        object.__setattr__(self, "tags", tuple(self.tags))
        for tag in self.tags:
            if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
                raise InvalidInput(f"{where}: TAGS holds {tag!r}, which is not a Ganeti tag")
        for key, value, kind in (
            ("IP", self.ip, IPv4Address),
            ("SUBNET", self.subnet, IPv4Network),
            ("GATEWAY", self.gateway, IPv4Address),
            ("SUBNET6", self.subnet6, IPv6Network),
            ("GATEWAY6", self.gateway6, IPv6Address),
            ("EUI64", self.eui64, IPv6Address),
        ):
            if value is not None and not isinstance(value, kind):
                raise InvalidInput(f"{where}: {key} {value!r} is not an {kind.__name__}")
            if isinstance(value, IPv6Address) and value.scope_id is not None:
                raise InvalidInput(f"{where}: {key} {value} has a scope id")
        for key, addr, net_key, net in (
            ("IP", self.ip, "SUBNET", self.subnet),
            ("GATEWAY", self.gateway, "SUBNET", self.subnet),
            ("GATEWAY6", self.gateway6, "SUBNET6", self.subnet6),
            ("EUI64", self.eui64, "SUBNET6", self.subnet6),
        ):
            if addr is not None and net is not None and addr not in net:
                raise InvalidInput(f"{where}: {key} {addr} is outside {net_key} {net}")
        if self.mtu is not None and (
            type(self.mtu) is not int or not MTU_MIN <= self.mtu <= MTU_MAX
        ):
            raise InvalidInput(
                f"{where}: MTU {self.mtu!r} is not an integer from {MTU_MIN} to {MTU_MAX}"
            )
        for key, flag in (("PRIVATE", self.private), ("MACSPOOF", self.macspoof)):
            if type(flag) is not bool:
                raise InvalidInput(f"{where}: {key} {flag!r} is not a boolean")

    @property
    def mac_bytes(self) -> bytes:
        """The MAC address as 6 bytes."""
        return bytes.fromhex(self.mac.replace(":", ""))


def eui64(subnet6: IPv6Network, mac: str) -> IPv6Address:
    """The SLAAC address of ``mac`` in ``subnet6``: its first /64 plus the modified EUI-64."""
    if not _MAC_RE.fullmatch(mac):
        raise InvalidInput(f"MAC {mac!r} is not a MAC address")
    if subnet6.prefixlen > 64:
        raise InvalidInput(f"SUBNET6 {subnet6} is longer than /64: no room for an EUI-64")
    octets = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return IPv6Address(int(subnet6.network_address) | int.from_bytes(iid, "big"))


def _convert(tap: str, key: str, value: str) -> object:
    """The typed value of one KEY=value line; InvalidInput names the key and value."""
    try:
        if key in ("IP", "GATEWAY"):
            return IPv4Address(value)
        if key in ("GATEWAY6", "EUI64"):
            if "%" in value:
                raise ValueError("a scope id is not allowed")
            return IPv6Address(value)
        if key == "SUBNET":
            return IPv4Network(value)
        if key == "SUBNET6":
            return IPv6Network(value)
    except ValueError as e:
        raise InvalidInput(f"binding {tap!r}: {key} {value!r} is not valid: {e}") from None
    if key == "MTU":
        if not _MTU_RE.fullmatch(value):
            raise InvalidInput(
                f"binding {tap!r}: MTU {value!r} is not an integer from {MTU_MIN} to {MTU_MAX}"
            )
        return int(value)
    if key == "TAGS":
        return tuple(value.split())
    if key in ("PRIVATE", "MACSPOOF"):
        return True
    return value


def parse_binding(tap: str, text: str) -> Binding:
    """The binding in ``text``, the content of the file named ``tap``. InvalidInput if bad."""
    if not isinstance(tap, str) or not is_ifname(tap):
        raise InvalidInput(f"binding tap name {tap!r} is not an interface name")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_SIZE:
        raise InvalidInput(f"binding {tap!r}: {size} bytes, more than {MAX_FILE_SIZE}")
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput(f"binding {tap!r}: line {number} {raw!r} is not KEY=value")
        if key not in _KEYS:
            continue
        if key in values:
            raise InvalidInput(f"binding {tap!r}: {key} is set twice (line {number})")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[key] = value
    fields = {
        key.lower(): _convert(tap, key, value) for key, value in values.items() if value != ""
    }
    for key in ("MAC", "HOSTNAME"):
        if key.lower() not in fields:
            raise InvalidInput(f"binding {tap!r}: {key} is missing")
    fields.setdefault("indev", tap)
    return Binding(tap=tap, **fields)  # type: ignore[arg-type]


def format_binding(b: Binding) -> str:
    """The file content for ``b``; every key is written, unset ones empty."""

    def text(value: object) -> str:
        if value is None or value is False:
            return ""
        return "1" if value is True else str(value)

    lines = [
        f"INDEV={b.indev}",
        f"IP={text(b.ip)}",
        f"MAC={b.mac}",
        f"HOSTNAME={b.hostname}",
        f'TAGS="{" ".join(b.tags)}"',
        f"GATEWAY={text(b.gateway)}",
        f"SUBNET={text(b.subnet)}",
        f"GATEWAY6={text(b.gateway6)}",
        f"SUBNET6={text(b.subnet6)}",
        f"EUI64={text(b.eui64)}",
        f"PRIVATE={text(b.private)}",
        f"MTU={text(b.mtu)}",
        f"MACSPOOF={text(b.macspoof)}",
    ]
    return "\n".join(lines) + "\n"


def write_binding(directory: Path, b: Binding) -> Path:
    """Write ``b`` as ``directory/<tap>`` (mode 0644), replacing any old file atomically."""
    path = Path(directory) / b.tap
    data = format_binding(b).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{b.tap}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return path


def remove_binding(directory: Path, tap: str) -> bool:
    """Remove ``directory/<tap>``; False if there was none."""
    if not is_ifname(tap):
        raise InvalidInput(f"binding tap name {tap!r} is not an interface name")
    try:
        (Path(directory) / tap).unlink()
    except FileNotFoundError:
        return False
    return True


def load_binding(path: Path) -> Binding:
    """The binding in the file ``path`` (named after its tap). InvalidInput or OSError."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise InvalidInput(f"binding {path.name!r}: more than {MAX_FILE_SIZE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"binding {path.name!r}: not UTF-8 text ({e.reason})") from None
    return parse_binding(path.name, text)


def load_all(directory: Path) -> tuple[dict[str, Binding], dict[str, str]]:
    """Every binding in ``directory`` by tap, and a one-line error per bad file by name.

    Names starting with a dot (temporary files of :func:`write_binding`) are skipped.
    Never raises for a bad file; an unreadable directory raises OSError.
    """
    bindings: dict[str, Binding] = {}
    errors: dict[str, str] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_file():
                raise InvalidInput(f"binding {entry.name!r}: not a regular file")
            bindings[entry.name] = load_binding(Path(entry.path))
        except InvalidInput as e:
            errors[entry.name] = str(e)
        except OSError as e:
            errors[entry.name] = f"binding {entry.name!r}: cannot read: {e.strerror or e}"
    return bindings, errors
