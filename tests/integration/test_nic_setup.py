"""The NIC setup script for real, in network namespaces the test creates: "VMs" are
namespaces behind veth "taps" on one bridge; the script runs with Ganeti's environment.
Private networks sharing the bridge are isolated by MAC prefix, spoofed MACs and IPs are
dropped, and teardown leaves no rule behind."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "kvm-ifup" / "ganeti"


def run(*argv: str, check: bool = True, env: dict[str, str] | None = None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check, env=env)


@dataclass
class Net:
    host: str
    folder: Path
    vms: dict[str, str]  # name -> namespace

    def script(self, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run one of the Ganeti-facing scripts in the host namespace, as Ganeti would."""
        full = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "SNF_CONFIG_DIR": str(self.folder)}
        return run("ip", "netns", "exec", self.host, sys.executable, str(SCRIPTS / name),
                   env={**full, **env}, check=False)  # fmt: skip

    def rules(self) -> str:
        out = [run("ip", "netns", "exec", self.host, tool, check=False).stdout
               for tool in ("ebtables-save", "iptables-save", "ip6tables-save")]  # fmt: skip
        out.append(run("ip", "-n", self.host, "rule").stdout)
        # Rules and chains only: the (empty) tables our tools create stay, as they would anyway.
        return "\n".join(line for text in out for line in text.splitlines()
                         if line.startswith(("-A", ":SNF")) or "lookup" in line)  # fmt: skip

    def ping(self, vm: str, address: str) -> bool:
        ns = self.vms[vm]
        return run("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", address,
                   check=False).returncode == 0  # fmt: skip


VMS = {  # name: (MAC, IP, network tags, MAC prefix)
    "a1": ("aa:00:01:00:00:01", "10.88.0.1", "private-filtered nfdhcpd", "aa:00:01"),
    "a2": ("aa:00:01:00:00:02", "10.88.0.2", "private-filtered nfdhcpd", "aa:00:01"),
    "b1": ("aa:00:02:00:00:01", "10.88.0.3", "private-filtered nfdhcpd", "aa:00:02"),
}


def nic_env(name: str) -> dict[str, str]:
    mac, ip, tags, prefix = VMS[name]
    return {
        "INSTANCE": f"{name}.example.test", "INTERFACE": f"tap-{name}", "MAC": mac,
        "MODE": "bridged", "LINK": "br0", "BRIDGE": "br0", "IP": ip, "INTERFACE_INDEX": "0",
        "TAGS": "", "NETWORK_NAME": f"net-{prefix[-2:]}", "NETWORK_TAGS": tags,
        "NETWORK_SUBNET": "10.88.0.0/24", "NETWORK_MAC_PREFIX": prefix,
    }  # fmt: skip


@pytest.fixture
def net() -> Iterator[Net]:
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("ebtables") is not None, "ebtables is missing")
    suffix = secrets.token_hex(3)
    host = f"snfnic-h{suffix}"
    vms = {name: f"snfnic-{name}{suffix}" for name in VMS}
    folder = Path(tempfile.mkdtemp(prefix="snf-nic-", dir="/var/tmp"))
    (folder / "snf.toml").write_text(
        f'[network]\nstate_dir = "{folder / "state"}"\n'
        f'[nfdhcpd]\nbindings_dir = "{folder / "bindings"}"\n'
    )
    try:
        run("ip", "netns", "add", host)
        run("ip", "-n", host, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", host, "link", "set", "br0", "up")
        for name, ns in vms.items():
            mac, ip, _, _ = VMS[name]
            run("ip", "netns", "add", ns)
            run("ip", "-n", host, "link", "add", f"tap-{name}", "type", "veth", "peer", "name",
                "eth0", "netns", ns)  # fmt: skip
            run("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        yield Net(host, folder, vms)
    finally:
        for ns in [host, *vms.values()]:
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(folder, ignore_errors=True)
    assert suffix not in run("ip", "netns", "list").stdout


def test_private_networks_on_one_bridge_are_isolated_and_spoofing_is_dropped(net: Net) -> None:
    before = net.rules()
    for name in VMS:
        done = net.script("kvm-vif-bridge", nic_env(name))
        assert done.returncode == 0, done.stderr
    assert (net.folder / "bindings" / "tap-a1").read_text().startswith("INDEV=br0\nIP=10.88.0.1\n")
    assert net.ping("a1", "10.88.0.2")  # same private network
    assert not net.ping("a1", "10.88.0.3")  # another one on the same bridge
    assert not net.ping("b1", "10.88.0.1")
    # a1 takes another IP: its packets are dropped.
    run("ip", "-n", net.vms["a1"], "addr", "flush", "dev", "eth0")
    run("ip", "-n", net.vms["a1"], "addr", "add", "10.88.0.9/24", "dev", "eth0")
    assert not net.ping("a1", "10.88.0.2")
    # a2 takes another MAC within the prefix: dropped too.
    run("ip", "-n", net.vms["a2"], "link", "set", "eth0", "address", "aa:00:01:00:00:09")
    assert not net.ping("a2", "10.88.0.1")
    # Setup is idempotent: running it again changes nothing.
    rules = sorted(net.rules().splitlines())
    assert net.script("kvm-vif-bridge", nic_env("a1")).returncode == 0
    assert sorted(net.rules().splitlines()) == rules  # the same rules (a1's jumps come first now)
    for name in VMS:
        done = net.script("kvm-ifdown-custom", {"INTERFACE": f"tap-{name}"})
        assert done.returncode == 0, done.stderr
    assert net.rules() == before
    assert not list((net.folder / "bindings").iterdir())
    assert not list((net.folder / "state").iterdir())


@pytest.mark.parametrize(
    ("var", "value"),
    [("MAC", "aa:00:01:00:00:0g"), ("IP", "10.99.0.1"), ("INTERFACE", "tap;reboot"),
     ("LINK", "br0 $(id)"), ("INSTANCE", "a1`id`.example.test"), ("MAC", "aa:00:02:00:00:01")],
)  # fmt: skip
def test_bad_environment_values_are_refused_and_nothing_runs(
    net: Net, var: str, value: str
) -> None:
    before = net.rules()
    done = net.script("kvm-vif-bridge", {**nic_env("a1"), var: value})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("snf-network up: ")
    assert var in done.stderr
    assert net.rules() == before
    assert not (net.folder / "state").exists() or not list((net.folder / "state").iterdir())


def test_dry_run_prints_the_commands_and_changes_nothing(net: Net) -> None:
    (net.folder / "snf.toml").write_text(
        f'[network]\ndry_run = true\nstate_dir = "{net.folder / "state"}"\n'
    )
    before = net.rules()
    done = net.script("kvm-vif-bridge", nic_env("a1"))
    assert done.returncode == 0, done.stderr
    assert "SNF-FROM-tap-a1" in done.stdout and "ip link set" in done.stdout
    assert net.rules() == before


ROUTED = {
    "INSTANCE": "vm5.example.test", "INTERFACE": "tap0", "MAC": "aa:00:00:99:00:05",
    "MODE": "routed", "LINK": "100", "IP": "10.99.0.5", "INTERFACE_INDEX": "0", "TAGS": "",
    "NETWORK_NAME": "public", "NETWORK_TAGS": "ip-less-routed",
    "NETWORK_SUBNET": "10.99.0.0/24", "NETWORK_GATEWAY": "10.99.0.1",
    "NETWORK_SUBNET6": "2001:db8:99::/64", "NETWORK_GATEWAY6": "2001:db8:99::1",
}  # fmt: skip
VM6 = "2001:db8:99::a800:ff:fe99:5"  # the EUI-64 address of aa:00:00:99:00:05


@dataclass
class Routed:
    node: str
    router: str
    vm: str
    folder: Path

    def script(self, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        full = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "SNF_CONFIG_DIR": str(self.folder)}
        return run("ip", "netns", "exec", self.node, sys.executable, str(SCRIPTS / name),
                   env={**full, **env}, check=False)  # fmt: skip

    def ping(self, ns: str, address: str, *extra: str) -> bool:
        return run("ip", "netns", "exec", ns, "busybox", "ping", *extra, "-c", "1", "-W", "2",
                   address, check=False).returncode == 0  # fmt: skip

    def rules(self) -> str:
        out = [run("ip", "netns", "exec", self.node, tool, check=False).stdout
               for tool in ("iptables-save", "ip6tables-save", "arptables-save")]  # fmt: skip
        for family in ("-4", "-6"):
            out.append(run("ip", family, "-n", self.node, "rule").stdout)
            out.append(run("ip", family, "-n", self.node, "route", "show", "table", "100").stdout)
        out.append(run("ip", "-6", "-n", self.node, "neigh", "show", "proxy").stdout)
        keep = ("-A", ":SNF", "default", "10.", "2001")
        lines = [line for text in out for line in text.splitlines()]
        return "\n".join(x for x in lines if x.startswith(keep) or x[:1].isdigit() or "proxy" in x)


@pytest.fixture
def routed() -> Iterator[Routed]:
    """A router namespace on the node's uplink (up0: no address, as IP-less routing has),
    the node with table 100 towards it, and a VM behind tap0."""
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("arptables") is not None, "arptables is missing")
    suffix = secrets.token_hex(3)
    node, router, vm = (f"snfrt-{k}{suffix}" for k in ("n", "r", "v"))
    folder = Path(tempfile.mkdtemp(prefix="snf-routed-", dir="/var/tmp"))
    (folder / "snf.toml").write_text(
        f'[network]\nstate_dir = "{folder / "state"}"\n'
        f'[nfdhcpd]\nbindings_dir = "{folder / "bindings"}"\n'
    )

    def node_run(*argv: str) -> None:
        run("ip", "netns", "exec", node, *argv)

    try:
        for ns in (node, router, vm):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", node, "link", "add", "up0", "type", "veth", "peer", "name", "r0",
            "netns", router)  # fmt: skip
        run("ip", "-n", node, "link", "add", "tap0", "type", "veth", "peer", "name", "eth0",
            "netns", vm)  # fmt: skip
        run("ip", "-n", router, "addr", "add", "10.99.0.1/24", "dev", "r0")
        run("ip", "-n", router, "addr", "add", "2001:db8:99::1/64", "dev", "r0", "nodad")
        run("ip", "-n", router, "link", "set", "r0", "up")
        learn = (
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.r0.arp_accept=1",
            "net.ipv6.conf.r0.accept_untracked_na=1",
        )  # a router (forwarding) learns
        for key in learn:
            run("ip", "netns", "exec", router, "sysctl", "-qw", key)  # learn from announcements
        run("ip", "-n", node, "link", "set", "up0", "up")
        for key in (
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.up0.proxy_arp=1",
            "net.ipv6.conf.up0.proxy_ndp=1",
        ):
            node_run("sysctl", "-qw", key)  # fmt: skip
        node_run("ip", "route", "add", "10.99.0.0/24", "dev", "up0", "table", "100")
        node_run("ip", "route", "add", "default", "via", "10.99.0.1", "dev", "up0", "table", "100")
        node_run("ip", "rule", "add", "iif", "up0", "lookup", "100")
        node_run("ip", "-6", "route", "add", "2001:db8:99::/64", "dev", "up0", "table", "100")
        node_run("ip", "-6", "route", "add", "default", "via", "2001:db8:99::1", "dev", "up0",
                 "table", "100")  # fmt: skip
        node_run("ip", "-6", "rule", "add", "iif", "up0", "lookup", "100")
        # The node has no address on the subnet: its ARP requests ask as an unused one.
        node_run("arptables", "-A", "OUTPUT", "-o", "up0", "--opcode", "request", "-j",
                 "mangle", "--mangle-ip-s", "10.99.0.254")  # fmt: skip
        run("ip", "-n", vm, "link", "set", "eth0", "address", ROUTED["MAC"], "up")
        run("ip", "-n", vm, "addr", "add", "10.99.0.5/24", "dev", "eth0")
        run("ip", "-n", vm, "route", "add", "default", "via", "10.99.0.1")
        # /128: the subnet's other addresses go through the router too (with a /64 the VM
        # would ask for them on the link, where nfdhcpd answers: not part of this test).
        run("ip", "-n", vm, "addr", "add", f"{VM6}/128", "dev", "eth0", "nodad")
        yield Routed(node, router, vm, folder)
    finally:
        for ns in (node, router, vm):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(folder, ignore_errors=True)
    assert suffix not in run("ip", "netns", "list").stdout


def test_routed_ip_less_reaches_the_router_over_ipv4_and_ipv6(routed: Routed) -> None:
    before = routed.rules()
    done = routed.script("kvm-vif-bridge", ROUTED)
    assert done.returncode == 0, done.stderr
    # The gratuitous ARP and unsolicited NA on the uplink taught the router, before any ping.
    up0 = run(
        "ip", "netns", "exec", routed.node, "cat", "/sys/class/net/up0/address"
    ).stdout.strip()
    for family, address in (("-4", "10.99.0.5"), ("-6", VM6)):
        neigh = run("ip", family, "-n", routed.router, "neigh", "show", address).stdout
        assert f"lladdr {up0}" in neigh, (family, neigh)
    tap_ll = "fe80::ce47:52ff:fe4e:4554"  # the tap's constant MAC cc:47:52:4e:45:54
    run("ip", "-n", routed.vm, "-6", "route", "add", "default", "via", tap_ll, "dev", "eth0")
    deadline = time.monotonic() + 10  # the tap's link-local address answers after its DAD
    while "tentative" in run("ip", "-n", routed.node, "-6", "addr", "show", "tap0").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert routed.ping(routed.vm, "10.99.0.1")
    assert routed.ping(routed.router, "10.99.0.5")
    assert routed.ping(routed.vm, "2001:db8:99::1")
    assert routed.ping(routed.router, VM6)
    # Another source address from the VM is dropped on the node.
    run("ip", "-n", routed.vm, "addr", "add", "10.99.0.77/24", "dev", "eth0")
    assert not routed.ping(routed.vm, "10.99.0.1", "-I", "10.99.0.77")
    done = routed.script("kvm-ifdown-custom", {"INTERFACE": "tap0"})
    assert done.returncode == 0, done.stderr
    assert routed.rules() == before
    assert not routed.ping(routed.vm, "10.99.0.1")


def _reaches(net: Net, vm: str, address: str, port: int) -> bool:
    done = run("ip", "netns", "exec", net.vms[vm], "busybox", "nc", "-w", "2", address, str(port),
               check=False)  # fmt: skip
    return done.returncode == 0


@pytest.mark.parametrize(("profile", "open_ports"), [("protected", ()), ("limited", (22,))])
def test_firewall_profiles_from_instance_tags(net: Net, profile: str, open_ports: tuple[int, ...]):
    """a1 is behind a profile (its instance tag), a2 is not; a2 connects to a1's ports."""
    run("ip", "netns", "exec", net.host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
    shared = {"NETWORK_TAGS": "nfdhcpd", "NETWORK_MAC_PREFIX": ""}
    a1 = {**nic_env("a1"), **shared, "TAGS": f"synnefo:network:0:{profile}"}
    for env in (a1, {**nic_env("a2"), **shared}):
        done = net.script("kvm-vif-bridge", env)
        assert done.returncode == 0, done.stderr
    listeners = [
        subprocess.Popen(["ip", "netns", "exec", net.vms["a1"], "busybox", "nc", "-l", "-p",
                          str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (22, 80)
    ]  # fmt: skip
    try:
        time.sleep(0.3)
        assert net.ping("a2", "10.88.0.1")  # ICMP passes every profile
        for port in (22, 80):
            assert _reaches(net, "a2", "10.88.0.1", port) == (port in open_ports), port
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait()
    for name in ("a1", "a2"):
        assert net.script("kvm-ifdown-custom", {"INTERFACE": f"tap-{name}"}).returncode == 0
    forward = run("ip", "netns", "exec", net.host, "iptables-save", check=False).stdout
    assert "tap-a1" not in forward
