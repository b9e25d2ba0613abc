"""The NIC commands, checked as data: nothing here runs ip, iptables, ebtables or arptables."""

import re
import shlex
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snf.common.errors import InvalidInput
from snf.network.commands import (
    Command,
    Write,
    binding_text,
    dry_run,
    profile_chains,
    setup,
    teardown,
)
from snf.network.nic_env import Nic, parse_nic_env

BINDINGS = "/var/lib/nfdhcpd"
BASE = {
    "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
    "INSTANCE": "vm1.example.org",
    "INTERFACE": "tap0",
    "INTERFACE_INDEX": "0",
    "INTERFACE_UUID": "5d8c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "MAC": "aa:00:00:4a:2b:3c",
    "TAGS": "",
}
BRIDGED = {**BASE, "MODE": "bridged", "LINK": "br0", "BRIDGE": "br0", "IP": "198.51.100.7"}
BRIDGED_NET = {
    **BRIDGED,
    "NETWORK_NAME": "public",
    "NETWORK_TAGS": "nfdhcpd",
    "NETWORK_SUBNET": "198.51.100.0/24",
    "NETWORK_GATEWAY": "198.51.100.1",
    "NETWORK_SUBNET6": "2001:db8:1::/64",
    "NETWORK_GATEWAY6": "2001:db8:1::1",
    "TAGS": "synnefo:network:public:protected",
}
PRIVATE = {
    **BRIDGED,
    "LINK": "prv0",
    "BRIDGE": "prv0",
    "IP": "10.0.0.5",
    "NETWORK_TAGS": "private-filtered nfdhcpd",
    "NETWORK_SUBNET": "10.0.0.0/24",
    "NETWORK_MAC_PREFIX": "aa:00:00",
}
ROUTED4 = {
    **BASE,
    "MODE": "routed",
    "LINK": "100",
    "IP": "192.0.2.100",
    "NETWORK_NAME": "snf-net-7",
    "NETWORK_TAGS": "ip-less-routed",
    "NETWORK_SUBNET": "192.0.2.0/24",
    "NETWORK_GATEWAY": "192.0.2.1",
}
ROUTED46 = {
    **ROUTED4,
    "NETWORK_TAGS": "ip-less-routed nfdhcpd",
    "NETWORK_SUBNET6": "2001:db8:aaaa:bbbb::/64",
    "NETWORK_GATEWAY6": "2001:db8:aaaa:bbbb::1",
    "TAGS": "synnefo:network:0:limited",
}
ENVS = [BRIDGED, BRIDGED_NET, PRIVATE, ROUTED4, ROUTED46]
EUI64 = "2001:db8:aaaa:bbbb:a800:ff:fe4a:2b3c"


def after_teardown(env, **kwargs):
    """The dry run of what setup does after its teardown part."""
    nic = parse_nic_env(env)
    actions = setup(nic, bindings_dir=BINDINGS, **kwargs)
    uplink6 = kwargs.get("uplink6")
    return dry_run(actions[len(teardown(nic, bindings_dir=BINDINGS, uplink6=uplink6)) :])


EB_FROM = """\
ebtables -N SNF-FROM-tap0 || true
ebtables -P SNF-FROM-tap0 RETURN
ebtables -F SNF-FROM-tap0
ebtables -A SNF-FROM-tap0 -s '!' aa:00:00:4a:2b:3c -j DROP
ebtables -A SNF-FROM-tap0 -p 802_1Q -j DROP
ebtables -A SNF-FROM-tap0 -p IPv4 --ip-src 0.0.0.0 --ip-proto udp --ip-dport 67 -j RETURN
ebtables -A SNF-FROM-tap0 -p IPv4 --ip-src '!' {ip} -j DROP
ebtables -A SNF-FROM-tap0 -p ARP --arp-ip-src 0.0.0.0 -j RETURN
ebtables -A SNF-FROM-tap0 -p ARP --arp-ip-src '!' {ip} -j DROP
"""


def test_bridged_golden():
    assert after_teardown(BRIDGED) == EB_FROM.format(ip="198.51.100.7") + dedent("""\
        ebtables -I FORWARD -i tap0 -j SNF-FROM-tap0
        ebtables -I INPUT -i tap0 -j SNF-FROM-tap0
        ip link set dev tap0 address fe:00:00:4a:2b:3c
        ip link set dev tap0 master br0
        ip link set dev tap0 up
        """)


def test_bridged_with_mtu_and_without_ip():
    env = {k: v for k, v in BRIDGED.items() if k != "IP"}
    assert after_teardown(env, mtu=9000) == dedent("""\
        ebtables -N SNF-FROM-tap0 || true
        ebtables -P SNF-FROM-tap0 RETURN
        ebtables -F SNF-FROM-tap0
        ebtables -A SNF-FROM-tap0 -s '!' aa:00:00:4a:2b:3c -j DROP
        ebtables -A SNF-FROM-tap0 -p 802_1Q -j DROP
        ebtables -I FORWARD -i tap0 -j SNF-FROM-tap0
        ebtables -I INPUT -i tap0 -j SNF-FROM-tap0
        ip link set dev tap0 address fe:00:00:4a:2b:3c
        ip link set dev tap0 mtu 9000
        ip link set dev tap0 master br0
        ip link set dev tap0 up
        """)


def test_bridged_ipv6_firewall_nfdhcpd_golden():
    assert after_teardown(BRIDGED_NET) == EB_FROM.format(ip="198.51.100.7") + dedent("""\
        ebtables -A SNF-FROM-tap0 -p IPv6 --ip6-src fe80::/64 -j RETURN
        ebtables -A SNF-FROM-tap0 -p IPv6 --ip6-src :: -j RETURN
        ebtables -A SNF-FROM-tap0 -p IPv6 --ip6-src '!' 2001:db8:1:0:a800:ff:fe4a:2b3c -j DROP
        ebtables -I FORWARD -i tap0 -j SNF-FROM-tap0
        ebtables -I INPUT -i tap0 -j SNF-FROM-tap0
        iptables -N SNF-TO-tap0 || true
        iptables -F SNF-TO-tap0
        iptables -A SNF-TO-tap0 -j SNF-PROTECTED
        iptables -I FORWARD -m physdev --physdev-out tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0
        ip6tables -N SNF-TO-tap0 || true
        ip6tables -F SNF-TO-tap0
        ip6tables -A SNF-TO-tap0 -j SNF-PROTECTED
        ip6tables -I FORWARD -m physdev --physdev-out tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0
        ip link set dev tap0 address fe:00:00:4a:2b:3c
        ip link set dev tap0 master br0
        ip link set dev tap0 up
        printf '%s\\n' INDEV=br0 IP=198.51.100.7 MAC=aa:00:00:4a:2b:3c HOSTNAME=vm1.example.org 'TAGS="synnefo:network:public:protected"' GATEWAY=198.51.100.1 SUBNET=198.51.100.0/24 GATEWAY6=2001:db8:1::1 SUBNET6=2001:db8:1::/64 EUI64=2001:db8:1:0:a800:ff:fe4a:2b3c PRIVATE= MTU= MACSPOOF= > /var/lib/nfdhcpd/tap0
        """)  # noqa: E501


def test_private_filtered_golden():
    assert after_teardown(PRIVATE) == EB_FROM.format(ip="10.0.0.5") + dedent("""\
        ebtables -N SNF-TO-tap0 || true
        ebtables -P SNF-TO-tap0 RETURN
        ebtables -F SNF-TO-tap0
        ebtables -A SNF-TO-tap0 -s '!' aa:00:00:00:00:00/ff:ff:ff:00:00:00 -j DROP
        ebtables -I FORWARD -i tap0 -j SNF-FROM-tap0
        ebtables -I INPUT -i tap0 -j SNF-FROM-tap0
        ebtables -I FORWARD -o tap0 -j SNF-TO-tap0
        ebtables -I OUTPUT -o tap0 -j SNF-TO-tap0
        ip link set dev tap0 address fe:00:00:4a:2b:3c
        ip link set dev tap0 master prv0
        ip link set dev tap0 up
        printf '%s\\n' INDEV=prv0 IP=10.0.0.5 MAC=aa:00:00:4a:2b:3c HOSTNAME=vm1.example.org 'TAGS=""' GATEWAY= SUBNET=10.0.0.0/24 GATEWAY6= SUBNET6= EUI64= PRIVATE=1 MTU= MACSPOOF= > /var/lib/nfdhcpd/tap0
        """)  # noqa: E501


def test_routed_v4_golden():
    assert after_teardown(ROUTED4) == dedent("""\
        iptables -N SNF-FROM-tap0 || true
        iptables -F SNF-FROM-tap0
        iptables -A SNF-FROM-tap0 '!' -s 192.0.2.100 -j DROP
        iptables -I FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0
        ip6tables -N SNF-FROM-tap0 || true
        ip6tables -F SNF-FROM-tap0
        ip6tables -A SNF-FROM-tap0 -j DROP
        ip6tables -I FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0
        arptables -A OUTPUT -o tap0 --opcode request -j mangle --mangle-ip-s 192.0.2.1
        echo 1 > /proc/sys/net/ipv4/conf/tap0/proxy_arp
        echo 1 > /proc/sys/net/ipv4/conf/tap0/forwarding
        ip link set dev tap0 address cc:47:52:4e:45:54
        ip link set dev tap0 up
        ip -4 rule add dev tap0 table 100
        ip -4 route replace 192.0.2.100/32 dev tap0 table 100 proto static
        """)


def test_routed_v4_v6_firewall_nfdhcpd_golden():
    assert after_teardown(ROUTED46, uplink6="eth1") == dedent(f"""\
        iptables -N SNF-FROM-tap0 || true
        iptables -F SNF-FROM-tap0
        iptables -A SNF-FROM-tap0 '!' -s 192.0.2.100 -j DROP
        iptables -I FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0
        ip6tables -N SNF-FROM-tap0 || true
        ip6tables -F SNF-FROM-tap0
        ip6tables -A SNF-FROM-tap0 '!' -s {EUI64} -j DROP
        ip6tables -I FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0
        iptables -N SNF-TO-tap0 || true
        iptables -F SNF-TO-tap0
        iptables -A SNF-TO-tap0 -j SNF-LIMITED
        iptables -I FORWARD -o tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0
        ip6tables -N SNF-TO-tap0 || true
        ip6tables -F SNF-TO-tap0
        ip6tables -A SNF-TO-tap0 -j SNF-LIMITED
        ip6tables -I FORWARD -o tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0
        arptables -A OUTPUT -o tap0 --opcode request -j mangle --mangle-ip-s 192.0.2.1
        echo 1 > /proc/sys/net/ipv4/conf/tap0/proxy_arp
        echo 1 > /proc/sys/net/ipv4/conf/tap0/forwarding
        echo 0 > /proc/sys/net/ipv6/conf/tap0/proxy_ndp
        echo 1 > /proc/sys/net/ipv6/conf/tap0/forwarding
        ip link set dev tap0 address cc:47:52:4e:45:54
        ip link set dev tap0 up
        ip -4 rule add dev tap0 table 100
        ip -4 route replace 192.0.2.100/32 dev tap0 table 100 proto static
        ip -6 rule add dev tap0 table 100
        ip -6 route replace {EUI64}/128 dev tap0 table 100 proto static
        ip -6 neigh add proxy {EUI64} dev eth1
        printf '%s\\n' INDEV=tap0 IP=192.0.2.100 MAC=aa:00:00:4a:2b:3c HOSTNAME=vm1.example.org 'TAGS="synnefo:network:0:limited"' GATEWAY=192.0.2.1 SUBNET=192.0.2.0/24 GATEWAY6=2001:db8:aaaa:bbbb::1 SUBNET6=2001:db8:aaaa:bbbb::/64 EUI64={EUI64} PRIVATE= MTU= MACSPOOF= > /var/lib/nfdhcpd/tap0
        """)  # noqa: E501


def test_routed_without_uplink6_adds_no_proxy_neighbour():
    text = after_teardown(ROUTED46)
    assert "neigh" not in text and f"ip -6 route replace {EUI64}/128" in text


def test_routed_teardown_golden():
    nic = parse_nic_env(ROUTED46)
    assert dry_run(teardown(nic, uplink6="eth1")) == dedent(f"""\
        rm -f -- /var/lib/nfdhcpd/tap0 || true
        ip -6 neigh del proxy {EUI64} dev eth1 || true
        ip -4 route flush dev tap0 table 100 || true
        ip -6 route flush dev tap0 table 100 || true
        ip -4 rule del dev tap0 || true
        ip -6 rule del dev tap0 || true
        arptables -D OUTPUT -o tap0 --opcode request -j mangle --mangle-ip-s 192.0.2.1 || true
        iptables -D FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0 || true
        iptables -D FORWARD -o tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0 || true
        iptables -D FORWARD -m physdev --physdev-out tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0 || true
        iptables -F SNF-FROM-tap0 || true
        iptables -X SNF-FROM-tap0 || true
        iptables -F SNF-TO-tap0 || true
        iptables -X SNF-TO-tap0 || true
        ip6tables -D FORWARD -i tap0 -m comment --comment snf:tap0 -j SNF-FROM-tap0 || true
        ip6tables -D FORWARD -o tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0 || true
        ip6tables -D FORWARD -m physdev --physdev-out tap0 -m comment --comment snf:tap0 -j SNF-TO-tap0 || true
        ip6tables -F SNF-FROM-tap0 || true
        ip6tables -X SNF-FROM-tap0 || true
        ip6tables -F SNF-TO-tap0 || true
        ip6tables -X SNF-TO-tap0 || true
        ebtables -D FORWARD -i tap0 -j SNF-FROM-tap0 || true
        ebtables -D INPUT -i tap0 -j SNF-FROM-tap0 || true
        ebtables -D FORWARD -o tap0 -j SNF-TO-tap0 || true
        ebtables -D OUTPUT -o tap0 -j SNF-TO-tap0 || true
        ebtables -F SNF-FROM-tap0 || true
        ebtables -X SNF-FROM-tap0 || true
        ebtables -F SNF-TO-tap0 || true
        ebtables -X SNF-TO-tap0 || true
        """)  # noqa: E501


def test_bridged_teardown_leaves_the_bridge_and_no_routes():
    text = dry_run(teardown(parse_nic_env(BRIDGED)))
    assert text.endswith("ip link set dev tap0 nomaster || true\n")
    assert "route" not in text and "arptables" not in text and "neigh" not in text


def _undo(action, tap):
    """What teardown must hold to undo one setup action (None: nothing to undo)."""
    if isinstance(action, Write):
        return None if action.path.startswith("/proc/sys/") else ("rm", "-f", "--", action.path)
    argv = action.argv
    if argv[0] in ("ebtables", "iptables", "ip6tables", "arptables"):
        tool, op, chain, *rule = argv
        if op == "-N" or (op in ("-A", "-I") and chain.endswith(f"-{tap}")):
            return (tool, "-X", chain)
        if op in ("-A", "-I"):
            return (tool, "-D", chain, *rule)
        assert op in ("-F", "-P")  # emptied or given a policy: the chain's -X undoes both
        return None
    if argv[:4] == ("ip", "link", "set", "dev"):
        return (*argv[:5], "nomaster") if argv[5] == "master" else None  # else the tap's own
    family, what, verb = argv[1:4]
    if (what, verb) == ("rule", "add"):
        return ("ip", family, "rule", "del", "dev", tap)
    if (what, verb) == ("route", "replace"):
        table = argv[argv.index("table") + 1]
        return ("ip", family, "route", "flush", "dev", tap, "table", table)
    if (what, verb) == ("neigh", "add"):
        return ("ip", family, "neigh", "del", *argv[4:])
    raise AssertionError(f"setup action with no known undo: {argv}")


@pytest.mark.parametrize(
    "env", ENVS, ids=lambda env: env["MODE"] + "-" + env.get("NETWORK_TAGS", "")
)
@pytest.mark.parametrize("uplink6", [None, "eth1"])
def test_teardown_undoes_setup_and_setup_starts_with_teardown(env, uplink6):
    nic = parse_nic_env(env)
    down = teardown(nic, bindings_dir=BINDINGS, uplink6=uplink6)
    up = setup(nic, bindings_dir=BINDINGS, uplink6=uplink6)
    assert up[: len(down)] == down
    argvs = [a.argv for a in down]
    for action in up[len(down) :]:
        undo = _undo(action, nic.interface)
        if undo is not None:
            assert undo in argvs, f"nothing in teardown undoes {action}"
        if undo is not None and undo[1] == "-X":
            assert (undo[0], "-F", undo[2]) in argvs
    assert all(isinstance(a, Command) and not a.check for a in down)
    # everything teardown touches is named after this tap (or is its VM's address)
    for argv in argvs:
        mine = ("tap0", str(nic.eui64))
        assert any(arg in mine or arg.endswith(("-tap0", ":tap0", "/tap0")) for arg in argv)
    # setup fails loudly except where a chain may already exist
    tail = up[len(down) :]
    assert all(a.check or a.argv[1] == "-N" for a in tail if isinstance(a, Command))


def test_per_tap_names_do_not_reach_other_taps():
    nic = parse_nic_env({**ROUTED46, "INTERFACE": "tap1"})
    words = {
        arg for a in setup(nic, bindings_dir=BINDINGS) if isinstance(a, Command) for arg in a.argv
    }
    assert {w for w in words if "tap" in w} == {
        "tap1",
        "SNF-FROM-tap1",
        "SNF-TO-tap1",
        "snf:tap1",
        "/var/lib/nfdhcpd/tap1",
    }


def test_binding_text_for_routed_and_none_without_nfdhcpd_tag():
    assert binding_text(parse_nic_env(ROUTED4)) is None
    assert binding_text(parse_nic_env(ROUTED46)) == dedent(f"""\
        INDEV=tap0
        IP=192.0.2.100
        MAC=aa:00:00:4a:2b:3c
        HOSTNAME=vm1.example.org
        TAGS="synnefo:network:0:limited"
        GATEWAY=192.0.2.1
        SUBNET=192.0.2.0/24
        GATEWAY6=2001:db8:aaaa:bbbb::1
        SUBNET6=2001:db8:aaaa:bbbb::/64
        EUI64={EUI64}
        PRIVATE=
        MTU=
        MACSPOOF=
        """)
    assert not any(isinstance(a, Write) for a in setup(parse_nic_env(BRIDGED), bindings_dir="/b"))


def test_profile_chains():
    text = dry_run(profile_chains())
    assert text.startswith(
        dedent("""\
        iptables -N SNF-PROTECTED || true
        iptables -F SNF-PROTECTED
        iptables -A SNF-PROTECTED -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        iptables -A SNF-PROTECTED -p icmp -j ACCEPT
        iptables -A SNF-PROTECTED -p udp --sport 53 -j ACCEPT
        iptables -A SNF-PROTECTED -j DROP
        iptables -N SNF-LIMITED || true
        iptables -F SNF-LIMITED
        iptables -A SNF-LIMITED -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        iptables -A SNF-LIMITED -p icmp -j ACCEPT
        iptables -A SNF-LIMITED -p udp --sport 53 -j ACCEPT
        iptables -A SNF-LIMITED -p tcp --dport 22 -j ACCEPT
        iptables -A SNF-LIMITED -p tcp --dport 3389 -j ACCEPT
        iptables -A SNF-LIMITED -j DROP
        iptables -N SNF-UNPROTECTED || true
        iptables -F SNF-UNPROTECTED
        iptables -A SNF-UNPROTECTED -j ACCEPT
        ip6tables -N SNF-PROTECTED || true
        """)
    )
    assert "ip6tables -A SNF-LIMITED -p ipv6-icmp -j ACCEPT\n" in text
    assert text.count("\n") == 34


def test_dry_run_quotes_and_is_one_line_per_action():
    actions = [
        Command(("echo", "a b", "it's")),
        Command(("true",), check=False),
        Write("/proc/sys/x", "1"),
        Write("/d/f", 'A=1\nB="x y"\n'),
    ]
    assert dry_run(actions) == dedent("""\
        echo 'a b' 'it'"'"'s'
        true || true
        echo 1 > /proc/sys/x
        printf '%s\\n' A=1 'B="x y"' > /d/f
        """)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bindings_dir": "relative"}, "bindings_dir 'relative'"),
        ({"bindings_dir": "/var/lib/../etc"}, "bindings_dir"),
        ({"bindings_dir": "/var/lib/nf dhcpd"}, "bindings_dir"),
        ({"bindings_dir": BINDINGS, "uplink6": "eth1;id"}, "uplink6 'eth1;id'"),
        ({"bindings_dir": BINDINGS, "uplink6": "e" * 16}, "uplink6"),
        ({"bindings_dir": BINDINGS, "mtu": 10}, "mtu 10"),
        ({"bindings_dir": BINDINGS, "mtu": "1500"}, "mtu '1500'"),
    ],
)
def test_bad_setup_arguments_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        setup(parse_nic_env(ROUTED46), **kwargs)


SAFE_ARG = re.compile(r"[A-Za-z0-9_.:/!,-]+")
VARIABLES = ["INSTANCE", "INTERFACE", "MAC", "LINK", "IP", "NETWORK_NAME", "NETWORK_TAGS",
             "NETWORK_SUBNET", "NETWORK_GATEWAY", "NETWORK_SUBNET6", "NETWORK_GATEWAY6",
             "NETWORK_MAC_PREFIX", "TAGS", "INTERFACE_INDEX"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(ENVS),
    var=st.sampled_from(VARIABLES),
    value=st.text(alphabet=st.sampled_from("ab01:./ -;$`'\"\n()|&<>*\\%!"), max_size=20),
)
def test_any_accepted_environment_gives_safe_argv(base, var, value):
    try:
        nic = parse_nic_env({**base, var: value})
    except InvalidInput as error:
        assert "\n" not in str(error)
        return
    assert isinstance(nic, Nic)
    actions = setup(nic, bindings_dir=BINDINGS, uplink6="eth1")
    for action in actions:
        if isinstance(action, Command):
            assert all(SAFE_ARG.fullmatch(arg) for arg in action.argv), action.argv
        else:
            assert "\x00" not in action.value and SAFE_ARG.fullmatch(action.path)
    for action, line in zip(actions, dry_run(actions).splitlines(), strict=True):
        if isinstance(action, Command):
            assert tuple(shlex.split(line.removesuffix(" || true"))) == action.argv
