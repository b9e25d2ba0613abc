"""nfdhcpd for real: the daemon in a "host" network namespace answers real clients (busybox
udhcpc, dhclient, rdisc6, the kernel's SLAAC) in a "VM" namespace behind a veth "tap",
through iptables NFQUEUE rules.  The test creates its namespaces and removes them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.testbed.nfdhcpd_lab import Lab, lab_running


@pytest.fixture
def lab() -> Iterator[Lab]:
    require(os.geteuid() == 0, "network namespaces need root")
    require(shutil.which("iptables") is not None, "iptables is missing")
    with lab_running() as running:
        yield running


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


LISTEN_67 = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"tap0")
s.bind(("0.0.0.0", 67))
s.settimeout(8)
print(len(s.recvfrom(2048)[0]), flush=True)
"""


def test_a_tap_without_binding_is_accepted_and_bad_files_are_ignored(lab: Lab) -> None:
    (lab.bindings / "tap0").write_text("MAC=zz\nHOSTNAME=x\n")
    time.sleep(0.3)
    assert "binding tap0 ignored" in lab.log()
    # Not ours: the verdict is ACCEPT, so the host's own stack gets the DISCOVER.
    listener = subprocess.Popen(
        ["ip", "netns", "exec", lab.host, sys.executable, "-c", LISTEN_67],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)
    assert udhcpc(lab, timeout=2) is None
    out, err = listener.communicate(timeout=20)
    assert listener.returncode == 0 and int(out) >= 240, err + lab.counters()
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


def test_the_af_packet_transport_answers_without_nfqueue() -> None:
    require(os.geteuid() == 0, "network namespaces need root")
    with lab_running('transport = "packet"\n') as lab:
        assert "answering DHCP, RS, NS and DHCPv6 seen on AF_PACKET" in lab.log()
        assert "on queue" not in lab.log()
        lab.bind()
        env = udhcpc(lab)
        assert env is not None, lab.counters()
        assert env["ip"] == "10.77.0.5" and env["router"] == "10.77.0.1"


def test_a_removed_binding_is_forgotten_and_sighup_reloads(lab: Lab) -> None:
    lab.bind()
    assert udhcpc(lab) is not None
    (lab.bindings / "tap0").unlink()
    deadline = time.monotonic() + 5
    while "binding tap0 removed" not in lab.log():
        assert time.monotonic() < deadline, lab.log()
        time.sleep(0.05)
    assert udhcpc(lab, timeout=2) is None
    lab.bind(wait=False)
    lab.daemon.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while lab.log().count("1 bindings loaded") < 1:
        assert time.monotonic() < deadline, lab.log()
        time.sleep(0.05)
    assert udhcpc(lab) is not None
