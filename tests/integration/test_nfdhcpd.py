"""nfdhcpd for real: the daemon in a "host" network namespace answers real clients (busybox
udhcpc, dhclient, rdisc6, the kernel's SLAAC) in a "VM" namespace behind a veth "tap",
through iptables NFQUEUE rules.  The test creates its namespaces and removes them."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest

from snf.nfdhcpd.bindings import Binding, eui64, write_binding
from tests.conftest import require

VENV_BIN = Path(sys.executable).parent
QUEUE_RULES = [
    ["iptables", "-t", "mangle", "-A", "PREROUTING", "-i", "tap+", "-p", "udp",
     "--dport", "67", "-j", "NFQUEUE", "--queue-num", "42"],
    ["ip6tables", "-t", "mangle", "-A", "PREROUTING", "-i", "tap+", "-p", "icmpv6",
     "--icmpv6-type", "133", "-j", "NFQUEUE", "--queue-num", "43"],
    ["ip6tables", "-t", "mangle", "-A", "PREROUTING", "-i", "tap+", "-p", "icmpv6",
     "--icmpv6-type", "135", "-j", "NFQUEUE", "--queue-num", "44"],
    ["ip6tables", "-t", "mangle", "-A", "PREROUTING", "-i", "tap+", "-p", "udp",
     "--dport", "547", "-j", "NFQUEUE", "--queue-num", "45"],
]  # fmt: skip
SUBNET = IPv4Network("10.77.0.0/24")
SUBNET6 = IPv6Network("2001:db8:77::/64")


def run(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


@dataclass
class Lab:
    host: str
    vm: str
    folder: Path
    daemon: subprocess.Popen[bytes]

    @property
    def bindings(self) -> Path:
        return self.folder / "bindings"

    def in_vm(self, *argv: str, timeout: float = 30, check: bool = True):
        return run("ip", "netns", "exec", self.vm, *argv, timeout=timeout, check=check)

    def vm_mac(self) -> str:
        return self.in_vm("cat", "/sys/class/net/eth0/address").stdout.strip()

    def log(self) -> str:
        path = self.folder / "nfdhcpd.log"
        return path.read_text() if path.exists() else ""

    def counters(self) -> str:
        """The daemon's counters (SIGUSR1), for failure messages."""
        self.daemon.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        return self.log().rsplit("counters: ", 1)[-1]

    def bind(self, **changes: object) -> Binding:
        mac = self.vm_mac()
        fields: dict[str, object] = {
            "tap": "tap0", "indev": "tap0", "mac": mac, "hostname": "vm1.example.test",
            "ip": IPv4Address("10.77.0.5"), "subnet": SUBNET, "gateway": IPv4Address("10.77.0.1"),
            "subnet6": SUBNET6, "gateway6": None, "eui64": eui64(SUBNET6, mac), "mtu": 1400,
        }  # fmt: skip
        fields.update(changes)
        binding = Binding(**fields)  # type: ignore[arg-type]
        write_binding(self.bindings, binding)
        deadline = time.monotonic() + 5
        while "binding tap0 loaded" not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return binding


@pytest.fixture
def lab() -> Iterator[Lab]:
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("iptables") is not None, "iptables is missing")
    suffix = secrets.token_hex(3)
    host, vm = f"snfnh-{suffix}", f"snfnv-{suffix}"
    folder = Path(tempfile.mkdtemp(prefix="snf-nfdhcpd-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "bindings").mkdir(mode=0o755)
    (folder / "snf.toml").write_text(
        f'[nfdhcpd]\nbindings_dir = "{folder / "bindings"}"\npidfile = "{folder / "pid"}"\n'
        'nameservers = ["192.0.2.53", "192.0.2.54"]\nnameservers6 = ["2001:db8::53"]\n'
        'domains6 = ["example.test"]\nra_period = 600\n'
        f'[log]\nlevel = "debug"\nfile = "{folder / "nfdhcpd.log"}"\n'
    )
    daemon = None
    try:
        for ns in (host, vm):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", host, "link", "add", "tap0", "type", "veth", "peer", "name", "eth0",
            "netns", vm)  # fmt: skip
        run("ip", "-n", host, "link", "set", "tap0", "up")
        run("ip", "-n", vm, "link", "set", "eth0", "up")
        for rule in QUEUE_RULES:
            run("ip", "netns", "exec", host, *rule)
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", host, str(VENV_BIN / "nfdhcpd"), "--config-dir", str(folder)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        lab = Lab(host, vm, folder, daemon)
        deadline = time.monotonic() + 10
        while "running as nobody" not in lab.log():
            assert daemon.poll() is None, f"nfdhcpd exited: {lab.log()}"
            assert time.monotonic() < deadline, f"nfdhcpd did not start: {lab.log()}"
            time.sleep(0.05)
        yield lab
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for ns in (host, vm):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(folder, ignore_errors=True)
    assert not [n for n in run("ip", "netns", "list").stdout.split() if suffix in n]


def udhcpc(lab: Lab, timeout: int = 4) -> dict[str, str] | None:
    out = lab.folder / "udhcpc.env"
    out.unlink(missing_ok=True)
    script = lab.folder / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {out}\nexit 0\n')
    script.chmod(0o755)
    lab.in_vm("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", str(timeout), "-T", "1",
              "-O", "mtu", "-s", str(script), check=False, timeout=30)  # fmt: skip
    if not out.exists():
        return None
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def dhclient(lab: Lab, *args: str, reason: str) -> dict[str, str]:
    """Run dhclient until it has configured the lease (it then goes to the background:
    stop it through its pidfile) and return the environment of its script at ``reason``."""
    tag = "6" if "-6" in args else "4"
    out, script = lab.folder / f"dhclient{tag}.env", lab.folder / f"dhclient{tag}.sh"
    pidfile = lab.folder / f"dhclient{tag}.pid"
    reasons = lab.folder / f"dhclient{tag}.reasons"
    script.write_text(
        f'#!/bin/sh\necho "$reason" >> {reasons}\ncase "$reason" in {reason}) env > {out};; esac\n'
    )
    script.chmod(0o755)
    done = None
    try:
        done = lab.in_vm("dhclient", *args, "-v", "-1", "-sf", str(script), "-lf",
                  str(lab.folder / f"lease{tag}"), "-pf", str(pidfile), "eth0",
                  timeout=40, check=False)  # fmt: skip
    finally:
        if pidfile.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
    said = (done.stderr[-300:] if done else "") + (reasons.read_text() if reasons.exists() else "")
    assert out.exists(), f"dhclient {' '.join(args)}: no {reason}: {lab.counters()} {said}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def test_udhcpc_gets_its_lease_with_every_option(lab: Lab) -> None:
    lab.bind()
    env = udhcpc(lab)
    assert env is not None, lab.log()
    assert env["ip"] == "10.77.0.5" and env["subnet"] == "255.255.255.0"
    assert env["router"] == "10.77.0.1" and env["serverid"] == "10.77.0.1"
    assert env["dns"].split() == ["192.0.2.53", "192.0.2.54"]
    assert env["hostname"] == "vm1" and env["domain"] == "example.test"
    assert env["mtu"] == "1400" and env["lease"] == "604800"


def test_a_private_network_gets_no_router_and_a_spoofed_mac_no_answer(lab: Lab) -> None:
    lab.bind(private=True)
    env = udhcpc(lab)
    assert env is not None and "router" not in env and env["ip"] == "10.77.0.5"
    lab.bind(mac="aa:00:00:00:00:01")  # not the VM's MAC
    assert udhcpc(lab, timeout=2) is None


def test_a_tap_without_binding_is_not_answered_and_the_daemon_survives_bad_files(
    lab: Lab,
) -> None:
    (lab.bindings / "tap0").write_text("MAC=zz\nHOSTNAME=x\n")
    time.sleep(0.3)
    assert udhcpc(lab, timeout=2) is None
    assert "binding tap0 ignored" in lab.log()
    lab.bind()
    assert udhcpc(lab) is not None
    assert lab.daemon.poll() is None


def test_dhclient_gets_the_same_lease(lab: Lab) -> None:
    require(shutil.which("dhclient") is not None, "dhclient (isc-dhcp-client) is missing")
    lab.bind()
    env = dhclient(lab, "-4", reason="BOUND")
    assert env["new_ip_address"] == "10.77.0.5" and env["new_routers"] == "10.77.0.1"
    assert env["new_domain_name_servers"] == "192.0.2.53 192.0.2.54"
    assert env["new_host_name"] == "vm1" and env["new_interface_mtu"] == "1400"


def test_router_advertisement_slaac_and_dhcpv6(lab: Lab) -> None:
    require(shutil.which("rdisc6") is not None, "rdisc6 (ndisc6) is missing")
    binding = lab.bind()
    deadline = time.monotonic() + 10  # rdisc6 cannot send before the link-local passes DAD
    while True:
        addrs = lab.in_vm("ip", "-6", "addr", "show", "eth0").stdout
        if "fe80::" in addrs and "tentative" not in addrs:
            break
        assert time.monotonic() < deadline, addrs
        time.sleep(0.1)
    ra = lab.in_vm("rdisc6", "-1", "-w", "2000", "eth0", check=False).stdout
    assert "2001:db8:77::/64" in ra, ra + lab.counters()
    assert "2001:db8::53" in ra and "Stateful other" in ra
    # The kernel's own router solicitation gets an RA too: it forms the EUI-64 address.
    deadline = time.monotonic() + 15
    while str(binding.eui64) not in lab.in_vm("ip", "-6", "addr", "show", "eth0").stdout:
        assert time.monotonic() < deadline, lab.log()
        time.sleep(0.2)
    # dhclient 4.4 runs its script with RENEW6 (older ones: INFORM6) for the reply.
    env = dhclient(lab, "-6", "-S", reason="INFORM6|RENEW6")
    assert env["new_dhcp6_name_servers"] == "2001:db8::53"
    assert "example.test" in env["new_dhcp6_domain_search"]
