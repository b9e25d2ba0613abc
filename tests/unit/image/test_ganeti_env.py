import ipaddress

import pytest

from snf.common.errors import InvalidInput
from snf.image.ganeti_env import Disk, Nic, OsEnv, parse_os_env

DISK0_UUID = "5a4c1f2e-0b6d-4c1a-9e8f-2d3c4b5a6978"
DISK1_UUID = "6b5d2a3f-1c7e-4d2b-8f9a-3e4d5c6b7a89"
NIC0_UUID = "7c6e3b4a-2d8f-4e3c-9a0b-4f5e6d7c8b9a"
NIC1_UUID = "8d7f4c5b-3e9a-4f4d-8b1c-5a6f7e8d9cab"
INSTANCE_UUID = "9e8a5d6c-4f0b-4a5e-9c2d-6b7a8f9e0dbc"

#: what verify gets: the core environment only
CORE = {
    "OS_API_VERSION": "20",
    "OS_NAME": "snf-image",
    "OS_VARIANT": "default",
    "DEBUG_LEVEL": "0",
    "OSP_IMG_ID": "pithos://acct/images/debian.diskdump",
    "OSP_IMG_FORMAT": "diskdump",
    "OSP_IMG_PASSWD": "<secret>",
    "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
}

#: what create gets from Ganeti 3.0 for a KVM instance with two disks and two NICs
FULL = {
    **CORE,
    "INSTANCE_NAME": "snf-42.vm.example.org",
    "INSTANCE_OS": "snf-image+default",
    "INSTANCE_UUID": INSTANCE_UUID,
    "INSTANCE_CTIME": "1718000000.123456",
    "INSTANCE_MTIME": "1718000001.654321",
    "INSTANCE_PRIMARY_NODE": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
    "INSTANCE_SECONDARY_NODES": "",
    "INSTANCE_BE_maxmem": "1024",
    "INSTANCE_BE_vcpus": "2",
    "INSTANCE_HV_kernel_path": "",
    "INSTANCE_HV_disk_type": "paravirtual",
    "HYPERVISOR": "kvm",
    "DISK_COUNT": "2",
    "DISK_0_ACCESS": "rw",
    "DISK_0_UUID": DISK0_UUID,
    "DISK_0_SIZE": "10240",
    "DISK_0_NAME": "root",
    "DISK_0_FRONTEND_TYPE": "paravirtual",
    "DISK_0_BACKEND_TYPE": "block",
    "DISK_0_PATH": "/dev/xenvg/" + DISK0_UUID + ".disk0",
    "DISK_1_ACCESS": "ro",
    "DISK_1_UUID": DISK1_UUID.upper(),
    "DISK_1_SIZE": "1",
    "DISK_1_FRONTEND_TYPE": "paravirtual",
    "DISK_1_BACKEND_TYPE": "file:loop",
    "DISK_1_URI": "rbd:rbd/" + DISK1_UUID + ".rbd.disk1",
    "NIC_COUNT": "2",
    "NIC_0_MAC": "AA:00:00:12:34:56",
    "NIC_0_UUID": NIC0_UUID,
    "NIC_0_NAME": "public",
    "NIC_0_IP": "192.0.2.10",
    "NIC_0_MODE": "bridged",
    "NIC_0_LINK": "br0",
    "NIC_0_BRIDGE": "br0",
    "NIC_0_FRONTEND_TYPE": "paravirtual",
    "NIC_0_NETWORK_NAME": "snf-net-1",
    "NIC_0_NETWORK_UUID": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "NIC_0_NETWORK_TAGS": "nfdhcpd ip-less-routed",
    "NIC_0_NETWORK_SUBNET": "192.0.2.0/24",
    "NIC_0_NETWORK_GATEWAY": "192.0.2.1",
    "NIC_0_NETWORK_SUBNET6": "2001:db8:1::/64",
    "NIC_0_NETWORK_GATEWAY6": "2001:db8:1::1",
    "NIC_0_NETWORK_MAC_PREFIX": "aa:00:00",
    "NIC_1_MAC": "aa:00:00:ab:cd:ef",
    "NIC_1_UUID": NIC1_UUID,
    "NIC_1_MODE": "routed",
    "NIC_1_LINK": "snf_public",
}


def env(base: dict[str, str] | None = None, **changes: str | None) -> dict[str, str]:
    """``base`` (FULL) with ``changes`` applied; None removes a variable."""
    result = dict(FULL if base is None else base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def refused(environment: dict[str, str], *words: str) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_os_env(environment)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def test_full_environment() -> None:
    parsed = parse_os_env(FULL)
    assert parsed == OsEnv(
        api_version=20,
        os_name="snf-image",
        variant="default",
        debug=0,
        instance_name="snf-42.vm.example.org",
        instance_uuid=INSTANCE_UUID,
        hypervisor="kvm",
        disks=(
            Disk(
                index=0,
                path="/dev/xenvg/" + DISK0_UUID + ".disk0",
                uuid=DISK0_UUID,
                size=10240 * 1024 * 1024,
                name="root",
                backend_type="block",
                access="rw",
                uri=None,
            ),
            Disk(
                index=1,
                path=None,
                uuid=DISK1_UUID,
                size=1024 * 1024,
                name=None,
                backend_type="file:loop",
                access="ro",
                uri="rbd:rbd/" + DISK1_UUID + ".rbd.disk1",
            ),
        ),
        nics=(
            Nic(
                index=0,
                mac="aa:00:00:12:34:56",
                ip="192.0.2.10",
                mode="bridged",
                link="br0",
                uuid=NIC0_UUID,
                name="public",
                network_name="snf-net-1",
                network_subnet=ipaddress.IPv4Network("192.0.2.0/24"),
                network_gateway=ipaddress.IPv4Address("192.0.2.1"),
                network_subnet6=ipaddress.IPv6Network("2001:db8:1::/64"),
                network_gateway6=ipaddress.IPv6Address("2001:db8:1::1"),
            ),
            Nic(
                index=1,
                mac="aa:00:00:ab:cd:ef",
                mode="routed",
                link="snf_public",
                uuid=NIC1_UUID,
            ),
        ),
        reinstall=False,
    )


def test_verify_gets_the_core_environment_only() -> None:
    parsed = parse_os_env(CORE)
    assert (parsed.api_version, parsed.os_name, parsed.variant, parsed.debug) == (
        20,
        "snf-image",
        "default",
        0,
    )
    assert (parsed.disks, parsed.nics) == ((), ())
    assert parsed.instance_name is parsed.instance_uuid is parsed.hypervisor is None
    assert not parsed.reinstall


def test_minimal_core_environment() -> None:
    parsed = parse_os_env({"OS_API_VERSION": "15", "OS_NAME": "snf-image"})
    assert (parsed.api_version, parsed.variant, parsed.debug) == (15, None, 0)


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"INSTANCE_REINSTALL": "1"}, lambda e: e.reinstall is True),
        ({"INSTANCE_REINSTALL": "0"}, lambda e: e.reinstall is False),
        ({"OLD_INSTANCE_NAME": "snf-41.vm.example.org"},
         lambda e: e.old_instance_name == "snf-41.vm.example.org"),
        ({"DISK_COUNT": "0", "NIC_COUNT": "0"}, lambda e: e.disks == () and e.nics == ()),
        ({"DISK_COUNT": None, "NIC_COUNT": None}, lambda e: e.disks == () and e.nics == ()),
        ({"DISK_COUNT": "1"}, lambda e: len(e.disks) == 1),  # DISK_1_* left over: ignored
        ({"DISK_COUNT": "3"}, lambda e: e.disks[2] == Disk(index=2)),  # all optional
        ({"DEBUG_LEVEL": "1"}, lambda e: e.debug == 1),
        ({"OS_VARIANT": ""}, lambda e: e.variant is None),
        ({"OS_API_VERSION": "10"}, lambda e: e.api_version == 10),
        ({"INSTANCE_NAME": "vm1"}, lambda e: e.instance_name == "vm1"),
        ({"INSTANCE_NAME": "a" * 63 + "." + "b" * 63}, lambda e: len(e.instance_name) == 127),
        ({"NIC_0_IP": "2001:db8::5"}, lambda e: e.nics[0].ip == "2001:db8::5"),
        ({"NIC_0_IP": "2001:DB8:0::5"}, lambda e: e.nics[0].ip == "2001:db8::5"),
        ({"NIC_0_MODE": "openvswitch", "NIC_0_LINK": "switch1"},
         lambda e: e.nics[0].mode == "openvswitch"),
        ({"DISK_0_SIZE": None, "DISK_0_PATH": None}, lambda e: e.disks[0].size is None),
        ({"DISK_0_BACKEND_TYPE": "file:blktap2"},
         lambda e: e.disks[0].backend_type == "file:blktap2"),
    ],
)  # fmt: skip
def test_valid_variants(changes: dict[str, str | None], check) -> None:  # type: ignore[no-untyped-def]
    assert check(parse_os_env(env(**changes)))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        # core
        ({"OS_API_VERSION": None}, ("OS_API_VERSION", "missing")),
        ({"OS_API_VERSION": "5"}, ("OS_API_VERSION", "'5'")),
        ({"OS_API_VERSION": "020"}, ("OS_API_VERSION",)),
        ({"OS_API_VERSION": "twenty"}, ("OS_API_VERSION",)),
        ({"OS_NAME": None}, ("OS_NAME", "missing")),
        ({"OS_NAME": "snf-image+default"}, ("OS_NAME", "variant")),
        ({"OS_NAME": "../snf-image"}, ("OS_NAME",)),
        ({"OS_VARIANT": "de fault"}, ("OS_VARIANT",)),
        ({"DEBUG_LEVEL": "-1"}, ("DEBUG_LEVEL",)),
        ({"DEBUG_LEVEL": "x"}, ("DEBUG_LEVEL",)),
        # instance
        ({"INSTANCE_NAME": "snf_42.example.org"}, ("INSTANCE_NAME", "host name")),
        ({"INSTANCE_NAME": "-vm.example.org"}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": "vm-.example.org"}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": "vm..example.org"}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": "vm.example.org."}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": "a" * 64}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": ".".join(["a" * 63] * 4)}, ("INSTANCE_NAME",)),  # 255 chars
        ({"INSTANCE_NAME": "vm; rm -rf /"}, ("INSTANCE_NAME",)),
        ({"INSTANCE_NAME": "vm\nX=1"}, ("INSTANCE_NAME", "one line")),
        ({"OLD_INSTANCE_NAME": "old name"}, ("OLD_INSTANCE_NAME",)),
        ({"INSTANCE_UUID": "not-a-uuid"}, ("INSTANCE_UUID", "UUID")),
        ({"INSTANCE_REINSTALL": "yes"}, ("INSTANCE_REINSTALL",)),
        ({"HYPERVISOR": "kvm --evil"}, ("HYPERVISOR",)),
        # counts
        ({"DISK_COUNT": "17"}, ("DISK_COUNT", "0..16", "'17'")),
        ({"DISK_COUNT": "-1"}, ("DISK_COUNT",)),
        ({"DISK_COUNT": "0x2"}, ("DISK_COUNT",)),
        ({"DISK_COUNT": " 2"}, ("DISK_COUNT",)),
        ({"DISK_COUNT": "2.0"}, ("DISK_COUNT",)),
        ({"DISK_COUNT": "\u0662"}, ("DISK_COUNT",)),  # ARABIC-INDIC DIGIT TWO: int() takes it
        ({"DISK_COUNT": "9" * 40}, ("DISK_COUNT",)),
        ({"NIC_COUNT": "9"}, ("NIC_COUNT", "0..8")),
        ({"NIC_COUNT": "two"}, ("NIC_COUNT",)),
        # disks
        ({"DISK_0_PATH": "x"}, ("DISK_0_PATH must be an absolute path, not 'x'",)),
        ({"DISK_0_PATH": "dev/sda"}, ("DISK_0_PATH",)),
        ({"DISK_0_PATH": "/dev/../etc/shadow"}, ("DISK_0_PATH",)),
        ({"DISK_0_PATH": "/dev/sda\0"}, ("DISK_0_PATH",)),
        ({"DISK_1_SIZE": "1.5"}, ("DISK_1_SIZE",)),
        ({"DISK_1_SIZE": "-1"}, ("DISK_1_SIZE",)),
        ({"DISK_1_SIZE": "1G"}, ("DISK_1_SIZE",)),
        ({"DISK_0_UUID": "xyz"}, ("DISK_0_UUID",)),
        ({"DISK_0_ACCESS": "rwx"}, ("DISK_0_ACCESS", "rw, ro")),
        ({"DISK_0_BACKEND_TYPE": "lvm"}, ("DISK_0_BACKEND_TYPE",)),
        ({"DISK_1_URI": "rbd:a b"}, ("DISK_1_URI",)),
        ({"DISK_0_NAME": "a\tb"}, ("DISK_0_NAME",)),
        # NICs
        ({"NIC_0_MAC": None}, ("NIC_0_MAC", "missing")),
        ({"NIC_1_MAC": "aa:00:00:ab:cd"}, ("NIC_1_MAC", "aa:bb:cc:dd:ee:ff")),
        ({"NIC_1_MAC": "aa-00-00-ab-cd-ef"}, ("NIC_1_MAC",)),
        ({"NIC_1_MAC": "aa:00:00:ab:cd:eg"}, ("NIC_1_MAC",)),
        ({"NIC_1_MAC": "aa:00:00:ab:cd:ef:01"}, ("NIC_1_MAC",)),
        ({"NIC_1_MAC": "aa0000abcdef"}, ("NIC_1_MAC",)),
        ({"NIC_1_MAC": " aa:00:00:ab:cd:ef"}, ("NIC_1_MAC",)),
        ({"NIC_0_IP": "192.0.2.300"}, ("NIC_0_IP", "IP address")),
        ({"NIC_0_IP": "pool"}, ("NIC_0_IP",)),
        ({"NIC_0_IP": "192.0.2.10/24"}, ("NIC_0_IP",)),
        ({"NIC_0_MODE": "nat"}, ("NIC_0_MODE", "bridged, routed, openvswitch")),
        ({"NIC_0_LINK": "br0 br1"}, ("NIC_0_LINK",)),
        ({"NIC_0_UUID": "x"}, ("NIC_0_UUID",)),
        ({"NIC_0_NETWORK_SUBNET": "192.0.2.1/24"}, ("NIC_0_NETWORK_SUBNET", "IPv4 network")),
        ({"NIC_0_NETWORK_SUBNET": "2001:db8::/64"}, ("NIC_0_NETWORK_SUBNET",)),
        ({"NIC_0_NETWORK_GATEWAY": "2001:db8::1"}, ("NIC_0_NETWORK_GATEWAY", "IPv4 address")),
        ({"NIC_0_NETWORK_SUBNET6": "192.0.2.0/24"}, ("NIC_0_NETWORK_SUBNET6",)),
        ({"NIC_0_NETWORK_SUBNET6": "2001:db8::1/64"}, ("NIC_0_NETWORK_SUBNET6",)),
        ({"NIC_0_NETWORK_GATEWAY6": "192.0.2.1"}, ("NIC_0_NETWORK_GATEWAY6",)),
        # export / import
        ({"EXPORT_INDEX": "2", "EXPORT_DEVICE": "/dev/sda"}, ("EXPORT_INDEX", "names no disk")),
        ({"EXPORT_INDEX": "16"}, ("EXPORT_INDEX",)),
        ({"EXPORT_INDEX": "a"}, ("EXPORT_INDEX",)),
        ({"EXPORT_DEVICE": "/dev/sda"}, ("EXPORT_INDEX", "missing")),
        ({"EXPORT_INDEX": "0", "EXPORT_DEVICE": "sda"}, ("EXPORT_DEVICE", "absolute")),
        ({"IMPORT_INDEX": "0", "IMPORT_DEVICE": "../sda"}, ("IMPORT_DEVICE",)),
        ({"IMPORT_INDEX": "5"}, ("IMPORT_INDEX",)),
        ({"IMPORT_INDEX": "0", "EXPORT_INDEX": "0"}, ("IMPORT_INDEX", "EXPORT_INDEX")),
        ({"EXP_SIZE_FD": "-3"}, ("EXP_SIZE_FD",)),
        ({"EXP_SIZE_FD": "fd3"}, ("EXP_SIZE_FD",)),
    ],
)
def test_hostile_environments(changes: dict[str, str | None], words: tuple[str, ...]) -> None:
    message = refused(env(**changes), *words)
    assert len(message) < 400


def test_export_and_import() -> None:
    path = FULL["DISK_0_PATH"]
    exported = parse_os_env(
        env(EXPORT_INDEX="0", EXPORT_DEVICE=path, EXPORT_DISK_PATH=path, EXP_SIZE_FD="5")
    )
    assert (exported.export_device, exported.export_index, exported.exp_size_fd) == (path, 0, 5)
    assert (exported.import_device, exported.import_index) == (None, None)
    imported = parse_os_env(env(IMPORT_INDEX="1", IMPORT_DISK_PATH="/dev/vg/disk1"))
    assert (imported.import_device, imported.import_index) == ("/dev/vg/disk1", 1)
    assert imported.export_device is None
    # a userspace-only disk: an index and a URI, no device
    uri_only = parse_os_env(env(EXPORT_INDEX="1", EXPORT_DISK_URI="rbd:rbd/x"))
    assert (uri_only.export_device, uri_only.export_index) == (None, 1)


def test_export_index_needs_disks() -> None:
    refused(env(CORE, EXPORT_INDEX="0"), "EXPORT_INDEX", "DISK_COUNT is 0")


def test_long_values_are_cut_in_messages() -> None:
    message = refused(env(DISK_0_PATH="x" * 100000), "DISK_0_PATH")
    assert len(message) < 200


def test_nic_mac_is_lower_cased() -> None:
    assert parse_os_env(FULL).nics[0].mac == "aa:00:00:12:34:56"


def test_the_password_parameter_is_not_read_here() -> None:
    parsed = parse_os_env(env(OSP_IMG_PASSWD="\0 anything \n"))
    assert "anything" not in repr(parsed)
