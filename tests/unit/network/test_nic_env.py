from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from snf.common.errors import InvalidInput
from snf.network.nic_env import Nic, parse_nic_env

NET_UUID = "3f2e1d0c-9b8a-4766-8554-433221100fed"

#: what Ganeti 3.0's KVM hypervisor gives kvm-ifup for a routed NIC on a gnt-network
ROUTED = {
    "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
    "INSTANCE": "snf-42.vm.example.org",
    "MAC": "AA:6B:39:22:33:44",
    "MODE": "routed",
    "INTERFACE": "tap0",
    "INTERFACE_INDEX": "0",
    "INTERFACE_UUID": "5d8c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "INTERFACE_NAME": "",
    "TAGS": "synnefo:network:0:protected owner:alice@example.org",
    "IP": "192.0.2.100",
    "LINK": "100",
    "NETWORK_NAME": "snf-net-7",
    "NETWORK_UUID": NET_UUID,
    "NETWORK_TAGS": "nfdhcpd ip-less-routed",
    "NETWORK_SUBNET": "192.0.2.0/24",
    "NETWORK_GATEWAY": "192.0.2.1",
    "NETWORK_SUBNET6": "2001:db8:aaaa:bbbb::/64",
    "NETWORK_GATEWAY6": "2001:db8:aaaa:bbbb::1",
    "NETWORK_MAC_PREFIX": "aa:6b:39",
}

#: a bridged NIC on a private-filtered network (Ganeti also sets BRIDGE = LINK)
PRIVATE = {
    "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
    "INSTANCE": "snf-43.vm.example.org",
    "MAC": "aa:00:07:00:00:05",
    "MODE": "bridged",
    "INTERFACE": "tap3",
    "INTERFACE_INDEX": "1",
    "INTERFACE_UUID": "6e9d2b3c-4d5e-4f60-9b0c-1d2e3f4a5b6c",
    "TAGS": "",
    "IP": "10.0.0.5",
    "LINK": "prv0",
    "BRIDGE": "prv0",
    "NETWORK_NAME": "private-7",
    "NETWORK_UUID": NET_UUID,
    "NETWORK_TAGS": "private-filtered nfdhcpd",
    "NETWORK_SUBNET": "10.0.0.0/24",
    "NETWORK_MAC_PREFIX": "aa:00:07",
}


def test_realistic_routed_environment():
    nic = parse_nic_env(ROUTED)
    assert nic == Nic(
        instance="snf-42.vm.example.org",
        interface="tap0",
        mac="aa:6b:39:22:33:44",
        mode="routed",
        link="100",
        ip=IPv4Address("192.0.2.100"),
        index=0,
        network_name="snf-net-7",
        network_uuid=NET_UUID,
        network_tags=("nfdhcpd", "ip-less-routed"),
        subnet=IPv4Network("192.0.2.0/24"),
        gateway=IPv4Address("192.0.2.1"),
        subnet6=IPv6Network("2001:db8:aaaa:bbbb::/64"),
        gateway6=IPv6Address("2001:db8:aaaa:bbbb::1"),
        mac_prefix="aa:6b:39",
        tags=("synnefo:network:0:protected", "owner:alice@example.org"),
    )
    assert nic.kind == "routed"
    assert nic.dhcp is True
    assert nic.firewall == "protected"
    # the reference's binding example: aa:6b:39:22:33:44 -> ...:a86b:39ff:fe22:3344
    assert nic.eui64 == IPv6Address("2001:db8:aaaa:bbbb:a86b:39ff:fe22:3344")


def test_realistic_private_filtered_environment():
    nic = parse_nic_env(PRIVATE)
    assert (nic.kind, nic.mode, nic.link, nic.mac_prefix) == (
        "private-filtered",
        "bridged",
        "prv0",
        "aa:00:07",
    )
    assert nic.eui64 is None and nic.firewall is None and nic.tags == ()


def test_minimal_bridged_environment():
    env = {"INSTANCE": "vm1", "INTERFACE": "tap1", "MAC": "aa:00:00:00:00:01"}
    nic = parse_nic_env({**env, "MODE": "bridged", "LINK": "br0"})
    assert nic.kind == "bridged" and nic.ip is None and nic.index is None
    assert nic.network_tags == () and not nic.dhcp and nic.eui64 is None


def test_routed_without_tag_is_routed_and_table_names_are_accepted():
    env = {**ROUTED, "NETWORK_TAGS": "", "LINK": "snf_public-1"}
    nic = parse_nic_env(env)
    assert nic.kind == "routed" and nic.link == "snf_public-1" and not nic.dhcp
    assert parse_nic_env({**ROUTED, "LINK": "4294967294"}).link == "4294967294"


def test_empty_optional_variables_are_absent():
    env = {**ROUTED, "IP": "", "NETWORK_SUBNET6": "", "NETWORK_GATEWAY6": "", "TAGS": ""}
    nic = parse_nic_env(env)
    assert nic.ip is None and nic.subnet6 is None and nic.eui64 is None and nic.firewall is None


@pytest.mark.parametrize(
    "key, profile",
    [
        ("0", "limited"),
        ("snf-net-7", "unprotected"),
        (NET_UUID, "protected"),
    ],
)
def test_firewall_tag_by_index_name_or_uuid(key, profile):
    nic = parse_nic_env({**ROUTED, "TAGS": f"synnefo:network:{key}:{profile}"})
    assert nic.firewall == profile


def test_firewall_tags_of_other_nics_are_ignored_and_the_strictest_wins():
    other = "synnefo:network:1:unprotected synnefo:network:other-net:whatever"
    assert parse_nic_env({**ROUTED, "TAGS": other}).firewall is None
    both = "synnefo:network:0:unprotected synnefo:network:snf-net-7:limited"
    assert parse_nic_env({**ROUTED, "TAGS": both}).firewall == "limited"


def test_eui64_flips_the_universal_bit():
    env = {**ROUTED, "MAC": "02:00:00:00:00:01", "NETWORK_MAC_PREFIX": ""}
    assert parse_nic_env(env).eui64 == IPv6Address("2001:db8:aaaa:bbbb::ff:fe00:1")


def test_nic_built_directly_is_checked_too():
    with pytest.raises(InvalidInput, match="INTERFACE 'tap0; reboot'"):
        Nic(instance="vm1", interface="tap0; reboot", mac="aa:00:00:00:00:01", mode="bridged",
            link="br0")  # fmt: skip
    with pytest.raises(InvalidInput, match="IP"):
        Nic(instance="vm1", interface="tap0", mac="aa:00:00:00:00:01", mode="routed", link="1",
            ip="192.0.2.1; reboot")  # type: ignore[arg-type]  # fmt: skip


HOSTILE = [
    # (variable, value, words the message must hold)
    ("INSTANCE", "vm1 vm2", "INSTANCE"),
    ("INSTANCE", "vm1;reboot", "INSTANCE"),
    ("INSTANCE", "$(reboot)", "INSTANCE"),
    ("INSTANCE", "vm-`id`", "INSTANCE"),
    ("INSTANCE", "vm1\nIP=10.0.0.1", "INSTANCE"),
    ("INSTANCE", "vm'1", "INSTANCE"),
    ("INSTANCE", 'vm"1', "INSTANCE"),
    ("INTERFACE", "tap0 ", "INTERFACE"),
    ("INTERFACE", "tap0;id", "INTERFACE"),
    ("INTERFACE", "tap$(id)", "INTERFACE"),
    ("INTERFACE", "tap`id`", "INTERFACE"),
    ("INTERFACE", "tap\n0", "INTERFACE"),
    ("INTERFACE", "tap+", "INTERFACE"),
    ("INTERFACE", "-tap0", "INTERFACE"),
    ("INTERFACE", "..", "INTERFACE"),
    ("INTERFACE", "tap/0", "INTERFACE"),
    ("INTERFACE", "t" * 16, "INTERFACE"),
    ("INTERFACE", "", "INTERFACE is not set"),
    ("MAC", "aa:bb:cc:dd:ee", "MAC"),
    ("MAC", "aa:bb:cc:dd:ee:fg", "MAC"),
    ("MAC", "aa-bb-cc-dd-ee-ff", "MAC"),
    ("MAC", "aa:6b:39:22:33:44\n", "MAC"),
    ("MAC", "01:00:5e:00:00:01", "multicast"),
    ("MODE", "openvswitch", "MODE openvswitch is not supported: "),
    ("MODE", "routed;id", "MODE"),
    ("MODE", "", "MODE is not set"),
    ("LINK", "", "LINK is not set"),
    ("LINK", "100 ", "LINK"),
    ("LINK", "0", "LINK"),
    ("LINK", "4294967295", "LINK"),
    ("LINK", "-100", "LINK"),
    ("LINK", "main;id", "LINK"),
    ("LINK", "$(id)", "LINK"),
    ("IP", "192.0.2.300", "IP"),
    ("IP", "198.51.100.7", "outside NETWORK_SUBNET 192.0.2.0/24"),
    ("IP", "192.0.2.0", "network or broadcast"),
    ("IP", "192.0.2.255", "network or broadcast"),
    ("IP", "192.0.2.1", "is NETWORK_GATEWAY"),
    ("IP", "2001:db8::1", "IP"),
    ("IP", "192.0.2.5 ", "IP"),
    ("IP", "192.0.2.5;id", "IP"),
    ("INTERFACE_INDEX", "0x1", "INTERFACE_INDEX"),
    ("INTERFACE_INDEX", "-1", "INTERFACE_INDEX"),
    ("NETWORK_NAME", "net 1", "NETWORK_NAME"),
    ("NETWORK_NAME", "net$(id)", "NETWORK_NAME"),
    ("NETWORK_UUID", "not-a-uuid", "NETWORK_UUID"),
    ("NETWORK_TAGS", "nfdhcpd;id", "NETWORK_TAGS"),
    ("NETWORK_TAGS", "nfdhcpd\tip-less-routed", "NETWORK_TAGS"),
    ("NETWORK_TAGS", "ip-less-routed private-filtered", "both"),
    ("NETWORK_TAGS", "private-filtered", "does not fit"),
    ("NETWORK_SUBNET", "192.0.2.1/24", "NETWORK_SUBNET"),
    ("NETWORK_SUBNET", "192.0.2.0", "NETWORK_SUBNET"),
    ("NETWORK_GATEWAY", "198.51.100.1", "NETWORK_GATEWAY '198.51.100.1' is outside"),
    ("NETWORK_GATEWAY", "192.0.2.1`id`", "NETWORK_GATEWAY"),
    ("NETWORK_SUBNET6", "2001:db8:aaaa:bbbb::/80", "longer than /64"),
    ("NETWORK_SUBNET6", "2001:db8:aaaa:bbbb::1/64", "NETWORK_SUBNET6"),
    ("NETWORK_SUBNET6", "2001:db8::%$(id)/64", "NETWORK_SUBNET6"),
    ("NETWORK_GATEWAY6", "2001:db8:ffff::1", "outside NETWORK_SUBNET6"),
    ("NETWORK_GATEWAY6", "2001:db8:aaaa:bbbb::1%eth0;id", "NETWORK_GATEWAY6"),
    ("NETWORK_MAC_PREFIX", "aa:6b", "NETWORK_MAC_PREFIX"),
    ("TAGS", "a;b", "TAGS"),
    ("TAGS", "a\nb", "TAGS"),
    ("TAGS", "synnefo:network:0:open", "names no firewall profile"),
    ("TAGS", "x" * 129, "TAGS"),
    ("VLAN", "100", "VLAN '100' is not supported"),
]


@pytest.mark.parametrize("var, value, message", HOSTILE)
def test_hostile_values_are_refused_with_one_line(var, value, message):
    with pytest.raises(InvalidInput) as caught:
        parse_nic_env({**ROUTED, var: value})
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and len(text) < 200


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"LINK": "br 0", "BRIDGE": "br 0"}, "LINK 'br 0' is not a bridge name"),
        ({"LINK": "b" * 16, "BRIDGE": ""}, f"LINK '{'b' * 16}' is not a bridge name"),
        ({"MODE": "bridged", "LINK": "br0", "BRIDGE": "br1"}, "BRIDGE 'br1' differs from LINK"),
        ({"MAC": "aa:00:08:00:00:05"}, "does not start with NETWORK_MAC_PREFIX aa:00:07"),
        ({"NETWORK_MAC_PREFIX": ""}, "NETWORK_MAC_PREFIX is not set"),
        ({"MODE": "routed", "LINK": "100", "BRIDGE": ""}, "does not fit network tag"),
    ],
)
def test_bridged_and_private_filtered_refusals(changes, message):
    with pytest.raises(InvalidInput) as caught:
        parse_nic_env({**PRIVATE, **changes})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_required_variables():
    for var in ("INSTANCE", "INTERFACE", "MAC", "MODE", "LINK"):
        env = {k: v for k, v in ROUTED.items() if k != var}
        with pytest.raises(InvalidInput, match=f"^{var} is not set"):
            parse_nic_env(env)


def test_long_values_are_cut_in_the_message():
    with pytest.raises(InvalidInput) as caught:
        parse_nic_env({**ROUTED, "INSTANCE": "a;" * 500})
    assert len(str(caught.value)) < 150
