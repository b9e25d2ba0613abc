"""The commands that set up and tear down one NIC (shared/reference/networking.md, section 1).

Pure: :func:`setup` and :func:`teardown` turn a checked :class:`~snf.network.nic_env.Nic`
into :data:`Action` lists, argv tuples for ``ip``, ``ebtables``, ``iptables``, ``ip6tables``
and ``arptables`` plus :class:`Write` actions for /proc/sys and the nfdhcpd binding file
(which an executor should write to a temporary name and rename: nfdhcpd watches the
directory). Nothing runs here: an executor runs the actions in order (a :class:`Command`
with ``check=False`` may fail), and :func:`dry_run` prints them as a shell script.

Names of per-NIC chains and rules come from the tap name only: ebtables, iptables and
ip6tables chains ``SNF-FROM-<tap>`` (anti-spoofing, traffic from the VM) and ``SNF-TO-<tap>``
(private-filtered MAC isolation in ebtables, the firewall profile in ip[6]tables), jumped to
from the built-in chains by rules inserted first (``-I``) and marked ``snf:<tap>``.
:func:`teardown` removes them whatever IP, profile or kind an earlier run had; it also removes
the ip rules (one per family, of any table), the routes in LINK's table, the proxy neighbour,
the arptables rule and the binding file. /proc/sys writes are not undone: they belong to the
tap and go with it.

Not done here: the tap's MTU unless ``mtu`` is given (enslaving a tap does not change its
MTU; the executor can pass the bridge's), the firewall profile chains themselves (run
:func:`profile_chains` once per host), unsolicited NA / gratuitous ARP after a routed setup,
nfdhcpd's NFQUEUE rules, VLANs and openvswitch. Bridged firewalls need
``bridge-nf-call-ip[6]tables=1``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from snf.common.errors import InvalidInput
from snf.network.nic_env import IFNAME, PROFILES, Nic
from snf.nfdhcpd.bindings import Binding, format_binding

DEFAULT_BINDINGS_DIR = "/var/lib/nfdhcpd"
TAP_MAC_ROUTED = "cc:47:52:4e:45:54"  # snf-network's TAP_CONSTANT_MAC
PROFILE_CHAINS = {p: f"SNF-{p.upper()}" for p in PROFILES}
_DIR = re.compile(r"/[A-Za-z0-9_.+@/-]{0,200}")


@dataclass(frozen=True)
class Command:
    """One program run: ``argv[0]`` is looked up in PATH; ``check=False``: failure is fine."""

    argv: tuple[str, ...]
    check: bool = True


@dataclass(frozen=True)
class Write:
    """Write ``value`` to the file ``path`` (a /proc/sys setting or a binding file)."""

    path: str
    value: str


Action = Command | Write


def _run(*argv: str) -> Command:
    return Command(argv)


def _try(*argv: str) -> Command:
    return Command(argv, check=False)


def chains(tap: str) -> tuple[str, str]:
    """The per-tap chain names (FROM, TO); at most 24 characters for a 15-character tap."""
    return f"SNF-FROM-{tap}", f"SNF-TO-{tap}"


def _comment(tap: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", f"snf:{tap}")


def _eb_jumps(tap: str) -> list[tuple[str, tuple[str, ...]]]:
    """(built-in chain, rule) of every ebtables jump a setup may add for this tap."""
    from_chain, to_chain = chains(tap)
    return [
        ("FORWARD", ("-i", tap, "-j", from_chain)),
        ("INPUT", ("-i", tap, "-j", from_chain)),
        ("FORWARD", ("-o", tap, "-j", to_chain)),
        ("OUTPUT", ("-o", tap, "-j", to_chain)),
    ]


def _xt_jumps(tap: str) -> list[tuple[str, ...]]:
    """Every ip[6]tables FORWARD rule a setup may add for this tap."""
    from_chain, to_chain = chains(tap)
    return [
        ("-i", tap, *_comment(tap), "-j", from_chain),
        ("-o", tap, *_comment(tap), "-j", to_chain),
        ("-m", "physdev", "--physdev-out", tap, *_comment(tap), "-j", to_chain),
    ]


def _arp_rule(nic: Nic) -> tuple[str, ...] | None:
    """The arptables OUTPUT rule of a routed NIC with a gateway (ARP asks as the gateway)."""
    if nic.mode != "routed" or nic.gateway is None:
        return None
    return ("OUTPUT", "-o", nic.interface, "--opcode", "request")


def _binding_path(bindings_dir: str, tap: str) -> str:
    if not _DIR.fullmatch(bindings_dir) or ".." in bindings_dir.split("/"):
        raise InvalidInput(f"bindings_dir {bindings_dir!r} is not an absolute path")
    return posixpath.join(bindings_dir, tap)


def teardown(
    nic: Nic, *, bindings_dir: str = DEFAULT_BINDINGS_DIR, uplink6: str | None = None
) -> list[Action]:
    """Remove what :func:`setup` adds for this tap, and what an earlier run may have left.

    Every command has ``check=False``; each touches only this tap's rules and chains.
    ``uplink6`` is needed to remove the IPv6 proxy neighbour entry.
    """
    tap = nic.interface
    if uplink6 is not None and not (isinstance(uplink6, str) and IFNAME.fullmatch(uplink6)):
        raise InvalidInput(f"uplink6 {uplink6!r} is not an interface name")
    actions: list[Action] = [_try("rm", "-f", "--", _binding_path(bindings_dir, tap))]
    if nic.mode == "routed" and uplink6 is not None and nic.eui64 is not None:
        actions.append(_try("ip", "-6", "neigh", "del", "proxy", str(nic.eui64), "dev", uplink6))
    if nic.mode == "routed":
        for family in ("-4", "-6"):
            actions.append(_try("ip", family, "route", "flush", "dev", tap, "table", str(nic.link)))
    # The kernel keeps "iif tap" rules after the tap is gone: delete one per family, any table.
    actions.append(_try("ip", "-4", "rule", "del", "dev", tap))
    actions.append(_try("ip", "-6", "rule", "del", "dev", tap))
    arp = _arp_rule(nic)
    if arp is not None:
        actions.append(
            _try("arptables", "-D", *arp, "-j", "mangle", "--mangle-ip-s", str(nic.gateway))
        )
    for tool in ("iptables", "ip6tables"):
        actions += [_try(tool, "-D", "FORWARD", *rule) for rule in _xt_jumps(tap)]
        for chain in chains(tap):
            actions += [_try(tool, "-F", chain), _try(tool, "-X", chain)]
    actions += [_try("ebtables", "-D", chain, *rule) for chain, rule in _eb_jumps(tap)]
    for chain in chains(tap):
        actions += [_try("ebtables", "-F", chain), _try("ebtables", "-X", chain)]
    if nic.mode == "bridged":
        actions.append(_try("ip", "link", "set", "dev", tap, "nomaster"))
    return actions


def setup(
    nic: Nic, *, bindings_dir: str, uplink6: str | None = None, mtu: int | None = None
) -> list[Action]:
    """The actions that connect the NIC, starting with :func:`teardown`'s.

    Filters come before the tap goes up; ``uplink6`` (the interface of table LINK's IPv6
    default route) gets the proxy neighbour entry of a routed NIC's EUI-64 address; ``mtu``,
    when given, is set on the tap (for a bridged NIC, the bridge's MTU).
    """
    if mtu is not None and not (isinstance(mtu, int) and 68 <= mtu <= 65535):
        raise InvalidInput(f"mtu {mtu!r} is not a number 68..65535")
    actions = teardown(nic, bindings_dir=bindings_dir, uplink6=uplink6)
    if nic.mode == "bridged":
        actions += _bridge_filters(nic)
        actions += _firewall(nic, ("-m", "physdev", "--physdev-out", nic.interface))
        actions += _bridge_link(nic, mtu)
    else:
        actions += _routed_filters(nic)
        actions += _firewall(nic, ("-o", nic.interface))
        actions += _routed_link(nic, uplink6, mtu)
    text = binding_text(nic)
    if text is not None:
        actions.append(Write(_binding_path(bindings_dir, nic.interface), text))
    return actions


def _new_chain(tool: str, chain: str) -> list[Action]:
    """Create or empty a chain: -N may fail when it exists, -F may not.

    An ebtables-nft user chain's policy is ACCEPT unless set (whatever ``-L`` shows): a
    frame no rule of ours drops would be accepted there and skip every later rule of the
    calling chain (another tap's filters). So ebtables chains get ``-P RETURN``."""
    policy = [_run(tool, "-P", chain, "RETURN")] if tool == "ebtables" else []
    return [_try(tool, "-N", chain), *policy, _run(tool, "-F", chain)]


def _bridge_filters(nic: Nic) -> list[Action]:
    """ebtables anti-spoofing (FROM) and, for private-filtered, MAC-prefix isolation (TO)."""
    tap = nic.interface
    from_chain, to_chain = chains(tap)
    actions = _new_chain("ebtables", from_chain)
    rules: list[tuple[str, ...]] = [
        ("-s", "!", nic.mac, "-j", "DROP"),
        ("-p", "802_1Q", "-j", "DROP"),
    ]
    if nic.ip is not None:
        ip = str(nic.ip)
        dhcp = ("--ip-proto", "udp", "--ip-dport", "67")
        rules += [
            ("-p", "IPv4", "--ip-src", "0.0.0.0", *dhcp, "-j", "RETURN"),  # DHCP requests
            ("-p", "IPv4", "--ip-src", "!", ip, "-j", "DROP"),
            ("-p", "ARP", "--arp-ip-src", "0.0.0.0", "-j", "RETURN"),  # ARP probes
            ("-p", "ARP", "--arp-ip-src", "!", ip, "-j", "DROP"),
        ]
    if nic.eui64 is not None:
        rules += [
            ("-p", "IPv6", "--ip6-src", "fe80::/64", "-j", "RETURN"),
            ("-p", "IPv6", "--ip6-src", "::", "-j", "RETURN"),  # duplicate address detection
            ("-p", "IPv6", "--ip6-src", "!", str(nic.eui64), "-j", "DROP"),
        ]
    actions += [_run("ebtables", "-A", from_chain, *rule) for rule in rules]
    if nic.kind == "private-filtered":
        actions += _new_chain("ebtables", to_chain)
        mask = f"{nic.mac_prefix}:00:00:00/ff:ff:ff:00:00:00"
        actions.append(_run("ebtables", "-A", to_chain, "-s", "!", mask, "-j", "DROP"))
    for chain, rule in _eb_jumps(tap):
        if rule[-1] == from_chain or nic.kind == "private-filtered":
            actions.append(_run("ebtables", "-I", chain, *rule))
    return actions


def _routed_filters(nic: Nic) -> list[Action]:
    """ip[6]tables anti-spoofing: forward from the tap only its IP and EUI-64 address."""
    tap = nic.interface
    from_chain = chains(tap)[0]
    actions: list[Action] = []
    for tool, source in (("iptables", nic.ip), ("ip6tables", nic.eui64)):
        actions += _new_chain(tool, from_chain)
        spoof = ("!", "-s", str(source)) if source is not None else ()  # no address: drop all
        actions.append(_run(tool, "-A", from_chain, *spoof, "-j", "DROP"))
        actions.append(_run(tool, "-I", "FORWARD", *_xt_jumps(tap)[0]))
    return actions


def _firewall(nic: Nic, out: tuple[str, ...]) -> list[Action]:
    """Traffic to the VM through its profile chain (``out`` matches it), when it has one."""
    if nic.firewall is None:
        return []
    to_chain = chains(nic.interface)[1]
    actions: list[Action] = []
    for tool in ("iptables", "ip6tables"):
        actions += _new_chain(tool, to_chain)
        actions.append(_run(tool, "-A", to_chain, "-j", PROFILE_CHAINS[nic.firewall]))
        jump = (*out, *_comment(nic.interface), "-j", to_chain)
        actions.append(_run(tool, "-I", "FORWARD", *jump))
    return actions


def _bridge_link(nic: Nic, mtu: int | None) -> list[Action]:
    """Ganeti's bridged built-in: first MAC octet fe (the bridge keeps a lower MAC), master."""
    tap = nic.interface
    actions: list[Action] = [_run("ip", "link", "set", "dev", tap, "address", "fe" + nic.mac[2:])]
    if mtu is not None:
        actions.append(_run("ip", "link", "set", "dev", tap, "mtu", str(mtu)))
    actions.append(_run("ip", "link", "set", "dev", tap, "master", str(nic.link)))
    actions.append(_run("ip", "link", "set", "dev", tap, "up"))
    return actions


def _routed_link(nic: Nic, uplink6: str | None, mtu: int | None) -> list[Action]:
    """snf-network's ip-less-routed setup: proxy ARP, per-tap rule and host routes in LINK."""
    tap, table = nic.interface, str(nic.link)
    actions: list[Action] = []
    arp = _arp_rule(nic)
    if arp is not None:
        actions.append(
            _run("arptables", "-A", *arp, "-j", "mangle", "--mangle-ip-s", str(nic.gateway))
        )
    actions.append(Write(f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp", "1"))
    actions.append(Write(f"/proc/sys/net/ipv4/conf/{tap}/forwarding", "1"))
    if nic.eui64 is not None:
        actions.append(Write(f"/proc/sys/net/ipv6/conf/{tap}/proxy_ndp", "0"))  # nfdhcpd answers
        actions.append(Write(f"/proc/sys/net/ipv6/conf/{tap}/forwarding", "1"))
    actions.append(_run("ip", "link", "set", "dev", tap, "address", TAP_MAC_ROUTED))
    if mtu is not None:
        actions.append(_run("ip", "link", "set", "dev", tap, "mtu", str(mtu)))
    actions.append(_run("ip", "link", "set", "dev", tap, "up"))
    actions.append(_run("ip", "-4", "rule", "add", "dev", tap, "table", table))
    if nic.ip is not None:
        route = (f"{nic.ip}/32", "dev", tap, "table", table, "proto", "static")
        actions.append(_run("ip", "-4", "route", "replace", *route))
    if nic.eui64 is not None:
        eui64 = str(nic.eui64)
        actions.append(_run("ip", "-6", "rule", "add", "dev", tap, "table", table))
        route = (f"{eui64}/128", "dev", tap, "table", table, "proto", "static")
        actions.append(_run("ip", "-6", "route", "replace", *route))
        if uplink6 is not None:
            actions.append(_run("ip", "-6", "neigh", "add", "proxy", eui64, "dev", uplink6))
    return actions


def binding_text(nic: Nic) -> str | None:
    """nfdhcpd's binding file for the NIC (nfdhcpd owns the format), or None when its network
    lacks the nfdhcpd tag. INDEV is the tap (routed) or the bridge."""
    if not nic.dhcp:
        return None
    binding = Binding(
        tap=nic.interface,
        indev=nic.interface if nic.mode == "routed" else str(nic.link),
        mac=nic.mac,
        hostname=nic.instance,
        ip=nic.ip,
        subnet=nic.subnet,
        gateway=nic.gateway,
        subnet6=nic.subnet6,
        gateway6=nic.gateway6,
        eui64=nic.eui64,
        tags=nic.tags,
        private=nic.kind == "private-filtered",
    )
    return format_binding(binding)


def profile_chains() -> list[Action]:
    """Create (or refill) the firewall profile chains in iptables and ip6tables; once a host.

    protected: established/related, ICMP and DNS answers (udp sport 53) in, the rest dropped;
    limited: protected plus tcp 22 and 3389; unprotected: everything accepted.
    """
    actions: list[Action] = []
    for tool, icmp in (("iptables", "icmp"), ("ip6tables", "ipv6-icmp")):
        for profile, chain in PROFILE_CHAINS.items():
            actions += _new_chain(tool, chain)
            rules: list[tuple[str, ...]] = []
            if profile == "unprotected":
                rules.append(("-j", "ACCEPT"))
            else:
                rules += [
                    ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
                    ("-p", icmp, "-j", "ACCEPT"),
                    ("-p", "udp", "--sport", "53", "-j", "ACCEPT"),
                ]
                if profile == "limited":
                    rules += [
                        ("-p", "tcp", "--dport", port, "-j", "ACCEPT") for port in ("22", "3389")
                    ]
                rules.append(("-j", "DROP"))
            actions += [_run(tool, "-A", chain, *rule) for rule in rules]
    return actions


def dry_run(actions: list[Action]) -> str:
    """The actions as a shell script, one line each.

    A Command is ``shlex.join(argv)``, followed by ``|| true`` when ``check`` is False; a
    Write is ``echo VALUE > PATH``, or ``printf '%s\\n' LINE... > PATH`` for several lines.
    """
    lines = []
    for action in actions:
        if isinstance(action, Command):
            lines.append(shlex.join(action.argv) + ("" if action.check else " || true"))
        elif "\n" in action.value:
            args = " ".join(shlex.quote(line) for line in action.value.splitlines())
            lines.append(f"printf '%s\\n' {args} > {shlex.quote(action.path)}")
        else:
            lines.append(f"echo {shlex.quote(action.value)} > {shlex.quote(action.path)}")
    return "".join(line + "\n" for line in lines)
