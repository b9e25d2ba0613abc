"""snf.image.guest_files: the contents of the files snf-image writes into a Linux guest."""

from __future__ import annotations

import configparser
import shlex
import uuid
from typing import Any

import pytest

from snf.common.errors import InvalidInput
from snf.image.guest_files import (
    NicConfig,
    hostname_file,
    hosts_file,
    is_ssh_host_key,
    machine_id_reset,
    network_files,
    network_style,
    nocloud_seed,
)
from tests.conftest import require

try:  # PyYAML comes with the test extras (through python-openstackclient)
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

MAC0 = "AA:00:00:12:34:56"  # given in upper case: the files hold it in lower case
MAC1 = "aa:00:00:12:34:57"
ONE = [NicConfig(0, MAC0)]
TWO = [NicConfig(1, MAC1), NicConfig(0, MAC0, ipv6=True)]  # out of order on purpose


def load_yaml(text: str | bytes) -> Any:
    require(yaml is not None, "PyYAML is not installed")
    return yaml.safe_load(text)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


# --- host name ----------------------------------------------------------------------------


def test_hostname_file_is_the_instance_name_as_given() -> None:
    assert hostname_file("web1.example.org") == "web1.example.org\n"
    assert hostname_file("web1") == "web1\n"


def test_hostname_file_longer_than_the_kernel_allows_is_the_first_label() -> None:
    fqdn = "web1." + "a" * 60 + ".example.org"
    assert hostname_file(fqdn) == "web1\n"


@pytest.mark.parametrize(
    "bad", ["", "web1\n", "web 1", "web1..org", "-web1", "web1-.org", "we_b1", "a" * 64, "ä.org"]
)
def test_a_bad_host_name_is_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="host name"):
        hostname_file(bad)
    with pytest.raises(InvalidInput):
        hosts_file(None, bad)


def test_hosts_file_missing_gets_debian_defaults() -> None:
    lines = hosts_file(None, "web1.example.org").splitlines()
    assert lines[:2] == ["127.0.0.1\tlocalhost", "127.0.1.1\tweb1.example.org web1"]
    assert "::1     localhost ip6-localhost ip6-loopback" in lines


def test_hosts_file_replaces_127_0_1_1_after_the_localhost_line() -> None:
    existing = (
        "# static table\n"
        "127.0.1.1\tdebian.localdomain debian\n"
        "127.0.0.1\tlocalhost\n"
        "  127.0.1.1   other   # indented, with a comment\n"
        "192.0.2.5 db.example.org db\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    assert hosts_file(existing, "web1.example.org") == (
        "# static table\n"
        "127.0.0.1\tlocalhost\n"
        "127.0.1.1\tweb1.example.org web1\n"
        "192.0.2.5 db.example.org db\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )


def test_hosts_file_without_localhost_line_gets_the_line_at_the_top() -> None:
    assert hosts_file("192.0.2.5 db", "web1") == "127.0.1.1\tweb1\n192.0.2.5 db\n"
    assert hosts_file("", "web1") == "127.0.1.1\tweb1\n"


def test_hosts_file_keeps_odd_lines_and_is_idempotent() -> None:
    huge = "x" * 1_000_000
    existing = (
        f"127.0.0.1 localhost\r\n{huge}\n\x00\x1b[31m\n\t\n#127.0.1.1 commented\n"
        "127.0.1.1#no space\n127.0.1.10 not-ours\n\n\n"
    )
    once = hosts_file(existing, "web1.example.org")
    lines = once.split("\n")
    assert lines[:2] == ["127.0.0.1 localhost\r", "127.0.1.1\tweb1.example.org web1"]
    assert huge in lines and "\x00\x1b[31m" in lines and "#127.0.1.1 commented" in lines
    assert "127.0.1.10 not-ours" in lines and "127.0.1.1#no space" not in lines
    assert once.endswith("\n\n\n")
    assert hosts_file(once, "web1.example.org") == once


# --- NICs and network styles -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "mac"),
    [(-1, MAC0), (True, MAC0), ("0", MAC0), (0, "aa:00:00:12:34"), (0, MAC0 + "\n"), (0, "")],
)
def test_a_bad_nic_is_invalid_input(index: Any, mac: str) -> None:
    with pytest.raises(InvalidInput, match="NIC"):
        NicConfig(index, mac)


@pytest.mark.parametrize(
    ("paths", "style"),
    [
        ({"/etc/netplan", "/etc/network/interfaces", "/etc/systemd/network"}, "netplan"),
        ({"/etc/systemd/network", "/lib/systemd/systemd-networkd"}, "networkd"),
        ({"/etc/systemd/network", "/usr/lib/systemd/systemd-networkd"}, "networkd"),
        ({"/etc/systemd/network", "/etc/sysconfig/network-scripts"}, "ifcfg"),
        (
            {"/etc/systemd/network", "/lib/systemd/systemd-networkd", "/etc/network/interfaces"},
            "ifupdown",
        ),
        ({"/etc/network/interfaces", "/etc/NetworkManager/system-connections"}, "ifupdown"),
        (
            {"/etc/NetworkManager/system-connections", "/etc/sysconfig/network-scripts"},
            "nm",
        ),
        ({"/etc/sysconfig/network-scripts"}, "ifcfg"),
        ({"/etc/NetworkManager"}, None),
        (set(), None),
    ],
)
def test_network_style(paths: set[str], style: str | None) -> None:
    assert network_style(paths.__contains__) == style


def test_unknown_style_and_duplicate_nics_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="'wicked'"):
        network_files("wicked", ONE)
    with pytest.raises(InvalidInput, match="indexes"):
        network_files("netplan", [NicConfig(0, MAC0), NicConfig(0, MAC1)])
    with pytest.raises(InvalidInput, match="MAC"):
        network_files("netplan", [NicConfig(0, MAC0), NicConfig(1, MAC0.lower())])


@pytest.mark.parametrize("style", ["netplan", "networkd", "ifupdown", "nm", "ifcfg"])
def test_no_nics_no_files(style: str) -> None:
    assert network_files(style, []) == {}


def test_netplan() -> None:
    files = network_files("netplan", TWO)
    assert list(files) == ["/etc/netplan/50-snf-image.yaml"]
    text, mode = files["/etc/netplan/50-snf-image.yaml"]
    assert mode == 0o600
    assert load_yaml(text) == {
        "network": {
            "version": 2,
            "ethernets": {
                "eth0": {
                    "match": {"macaddress": MAC0.lower()},
                    "dhcp4": True,
                    "dhcp6": True,
                    "accept-ra": True,
                },
                "eth1": {"match": {"macaddress": MAC1}, "dhcp4": True},
            },
        }
    }
    (one,) = network_files("netplan", ONE).values()
    assert load_yaml(one[0])["network"]["ethernets"] == {
        "eth0": {"match": {"macaddress": MAC0.lower()}, "dhcp4": True}
    }


def test_netplan_quotes_a_mac_that_yaml_1_1_reads_as_a_number() -> None:
    (one,) = network_files("netplan", [NicConfig(0, "12:34:56:12:34:56")]).values()
    assert load_yaml(one[0])["network"]["ethernets"]["eth0"]["match"]["macaddress"] == (
        "12:34:56:12:34:56"
    )


def test_networkd() -> None:
    files = network_files("networkd", TWO)
    assert sorted(files) == [
        "/etc/systemd/network/50-snf-image-eth0.network",
        "/etc/systemd/network/50-snf-image-eth1.network",
    ]
    assert {mode for _, mode in files.values()} == {0o644}
    eth0 = ini(files["/etc/systemd/network/50-snf-image-eth0.network"][0])
    assert dict(eth0["Match"]) == {"MACAddress": MAC0.lower()}
    assert dict(eth0["Network"]) == {"DHCP": "yes", "IPv6AcceptRA": "yes"}
    eth1 = ini(files["/etc/systemd/network/50-snf-image-eth1.network"][0])
    assert dict(eth1["Match"]) == {"MACAddress": MAC1}
    assert dict(eth1["Network"]) == {"DHCP": "ipv4"}
    assert list(network_files("networkd", ONE)) == [
        "/etc/systemd/network/50-snf-image-eth0.network"
    ]


def test_nm_keyfiles() -> None:
    files = network_files("nm", TWO)
    base = "/etc/NetworkManager/system-connections/"
    assert sorted(files) == [base + "snf-eth0.nmconnection", base + "snf-eth1.nmconnection"]
    assert {mode for _, mode in files.values()} == {0o600}
    eth0 = ini(files[base + "snf-eth0.nmconnection"][0])
    eth1 = ini(files[base + "snf-eth1.nmconnection"][0])
    assert eth0.sections() == ["connection", "ethernet", "ipv4", "ipv6"]
    assert eth0["connection"]["id"] == "snf-eth0"
    assert eth0["connection"]["type"] == "ethernet"
    assert eth0["ethernet"]["mac-address"] == MAC0.lower()
    assert eth0["ipv4"]["method"] == "auto"
    assert eth0["ipv6"]["method"] == "auto"
    assert eth1["ethernet"]["mac-address"] == MAC1
    assert eth1["ipv6"]["method"] == "ignore"
    uuids = {uuid.UUID(c["connection"]["uuid"]) for c in (eth0, eth1)}
    assert len(uuids) == 2 and {u.version for u in uuids} == {5}
    # Deterministic: the same MAC gives the same uuid, whatever its case or index.
    again = ini(
        network_files("nm", [NicConfig(3, MAC0.lower())])[base + "snf-eth3.nmconnection"][0]
    )
    assert again["connection"]["uuid"] == eth0["connection"]["uuid"]


def shell_vars(text: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(text, comments=True))


def test_ifcfg() -> None:
    files = network_files("ifcfg", TWO)
    base = "/etc/sysconfig/network-scripts/"
    assert sorted(files) == [base + "ifcfg-eth0", base + "ifcfg-eth1"]
    assert {mode for _, mode in files.values()} == {0o644}
    common = {"TYPE": "Ethernet", "ONBOOT": "yes", "BOOTPROTO": "dhcp"}
    assert shell_vars(files[base + "ifcfg-eth0"][0]) == {
        **common,
        "DEVICE": "eth0",
        "HWADDR": MAC0.lower(),
        "IPV6INIT": "yes",
        "IPV6_AUTOCONF": "yes",
    }
    assert shell_vars(files[base + "ifcfg-eth1"][0]) == {
        **common,
        "DEVICE": "eth1",
        "HWADDR": MAC1,
        "IPV6INIT": "no",
    }
    assert list(network_files("ifcfg", ONE)) == [base + "ifcfg-eth0"]


# --- ifupdown ------------------------------------------------------------------------------

DEBIAN = """\
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet static
	address 192.0.2.10/24
	gateway 192.0.2.1
	# dns-* options are implemented by the resolvconf package, if installed
	dns-nameservers 192.0.2.1
	dns-search example.org
"""


def interfaces(nics: list[NicConfig], existing: str | None) -> str:
    files = network_files("ifupdown", nics, existing)
    assert list(files) == ["/etc/network/interfaces"]
    text, mode = files["/etc/network/interfaces"]
    assert mode == 0o644
    return text


def test_ifupdown_replaces_debians_static_eth0() -> None:
    assert interfaces(ONE, DEBIAN) == (
        "# This file describes the network interfaces available on your system\n"
        "# and how to activate them. For more information, see interfaces(5).\n"
        "\n"
        "source /etc/network/interfaces.d/*\n"
        "\n"
        "# The loopback network interface\n"
        "auto lo\n"
        "iface lo inet loopback\n"
        "\n"
        "# The primary network interface\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:56.\n"
        "auto eth0\n"
        "iface eth0 inet dhcp\n"
    )


def test_ifupdown_two_nics_with_ipv6_and_idempotent() -> None:
    once = interfaces(TWO, DEBIAN)
    assert once.endswith(
        "# The primary network interface\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:56.\n"
        "auto eth0\n"
        "iface eth0 inet dhcp\n"
        "iface eth0 inet6 auto\n"
        "\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:57.\n"
        "auto eth1\n"
        "iface eth1 inet dhcp\n"
    )
    assert "192.0.2" not in once and "dns-" not in once and "allow-hotplug" not in once
    assert interfaces(TWO, once) == once


def test_ifupdown_missing_file_gets_loopback() -> None:
    assert interfaces(ONE, None) == (
        "auto lo\niface lo inet loopback\n\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:56.\n"
        "auto eth0\niface eth0 inet dhcp\n"
    )


def test_ifupdown_keeps_other_interfaces_and_rewrites_shared_lines() -> None:
    existing = """\
auto lo eth0 eth10
allow-hotplug eth1
iface lo inet loopback
iface eth10 inet static
    address 198.51.100.1/24
iface eth0 inet6 static \\
    # a continued line
    address 2001:db8::1/64
mapping eth1
    script /usr/local/sbin/map-scheme
    map HOME eth1-home
iface eth0.100 inet manual
    vlan-raw-device eth0
rename eth0=wan
source-directory /etc/network/interfaces.d
"""
    once = interfaces(TWO, existing)
    assert once == (
        "auto lo eth10\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:56.\n"
        "auto eth0\n"
        "iface eth0 inet dhcp\n"
        "iface eth0 inet6 auto\n"
        "\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:57.\n"
        "auto eth1\n"
        "iface eth1 inet dhcp\n"
        "\n"
        "iface lo inet loopback\n"
        "iface eth10 inet static\n"
        "    address 198.51.100.1/24\n"
        "iface eth0.100 inet manual\n"
        "    vlan-raw-device eth0\n"
        "rename eth0=wan\n"
        "source-directory /etc/network/interfaces.d\n"
    )
    assert interfaces(TWO, once) == once


def test_ifupdown_replaces_a_stanza_in_the_middle() -> None:
    existing = (
        "auto lo\niface lo inet loopback\n\n"
        "allow-hotplug eth0\niface eth0 inet static\n    address 192.0.2.10/24\n\n"
        "# Wireless\nauto wlan0\niface wlan0 inet dhcp\n"
    )
    once = interfaces(ONE, existing)
    assert once == (
        "auto lo\niface lo inet loopback\n\n"
        "# Written by snf-image: DHCP on the NIC aa:00:00:12:34:56.\n"
        "auto eth0\niface eth0 inet dhcp\n\n"
        "# Wireless\nauto wlan0\niface wlan0 inet dhcp\n"
    )
    assert interfaces(ONE, once) == once


def test_ifupdown_survives_odd_input() -> None:
    huge = "y" * 1_000_000
    existing = f"{huge}\n\\\n\x00\n   \niface\nauto\niface eth0\n\toption\r\nauto eth0\r\n"
    text = interfaces(ONE, existing)
    assert text.startswith(f"{huge}\n\\\n\x00\n   \niface\nauto\n")
    assert "option" not in text and "auto eth0\r" not in text
    assert text.count("iface eth0 inet dhcp") == 1


# --- cloud-init, machine-id, ssh -------------------------------------------------------------

SEED = "/var/lib/cloud/seed/nocloud/"


def test_nocloud_seed() -> None:
    iid = "6f1c2a4e-0d8a-4f8e-9a55-0b5b5f1f2c3d"
    files = nocloud_seed(iid, "web1.example.org", b"#!/bin/sh\necho hi\n", TWO)
    assert sorted(files) == [SEED + "meta-data", SEED + "network-config", SEED + "user-data"]
    assert files[SEED + "user-data"] == (b"#!/bin/sh\necho hi\n", 0o600)
    meta, mode = files[SEED + "meta-data"]
    assert mode == 0o644
    assert load_yaml(meta) == {"instance-id": iid, "local-hostname": "web1.example.org"}
    network, mode = files[SEED + "network-config"]
    assert mode == 0o644
    assert load_yaml(network) == {
        "version": 2,
        "ethernets": {
            "eth0": {"match": {"macaddress": MAC0.lower()}, "dhcp4": True, "dhcp6": True},
            "eth1": {"match": {"macaddress": MAC1}, "dhcp4": True},
        },
    }


def test_nocloud_seed_defaults_and_quoting() -> None:
    iid = 'odd: "id" # not a comment\\ \u00e9 {x}'
    files = nocloud_seed(iid, "web1", None, [])
    user, mode = files[SEED + "user-data"]
    assert mode == 0o600 and user.startswith(b"#cloud-config\n")
    assert load_yaml(user) == {}
    assert load_yaml(files[SEED + "meta-data"][0])["instance-id"] == iid
    files[SEED + "meta-data"][0].decode("ascii")  # non-ASCII is escaped
    assert load_yaml(files[SEED + "network-config"][0]) == {"version": 2, "ethernets": {}}


@pytest.mark.parametrize("bad", ["", "a\nb", "\x00"])
def test_nocloud_seed_bad_instance_id(bad: str) -> None:
    with pytest.raises(InvalidInput, match="instance id"):
        nocloud_seed(bad, "web1", None, ONE)


def test_machine_id_reset() -> None:
    assert machine_id_reset() == {"/etc/machine-id": (b"", 0o444)}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ssh_host_rsa_key", True),
        ("ssh_host_rsa_key.pub", True),
        ("ssh_host_ed25519_key", True),
        ("ssh_host_ecdsa_key.pub", True),
        ("ssh_host_dsa_key", True),
        ("ssh_host_key", True),
        ("ssh_host_key.pub", True),
        ("sshd_config", False),
        ("ssh_config", False),
        ("moduli", False),
        ("ssh_host_rsa_key-cert.pub", False),
        ("ssh_host_rsa_key.pub.bak", False),
        ("ssh_host_rsa_key~", False),
        ("ssh_host_rsa_key\n", False),
        ("ssh_host_", False),
        ("../ssh_host_rsa_key", False),
        ("ssh_host_" + "a_" * 200 + "key", False),
        ("", False),
    ],
)
def test_is_ssh_host_key(name: str, expected: bool) -> None:
    assert is_ssh_host_key(name) is expected
