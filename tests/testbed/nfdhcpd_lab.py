"""A network lab for nfdhcpd's tests and benchmark: a "host" and a "VM" network namespace
joined by a veth pair (``tap0`` on the host side, ``eth0`` in the VM), the NFQUEUE rules,
and nfdhcpd running in the host namespace with its own configuration folder."""

from __future__ import annotations

import contextlib
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

from snf.nfdhcpd.bindings import Binding, eui64, write_binding

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

    def bind(self, wait: bool = True, **changes: object) -> Binding:
        """Write a binding for the VM's NIC (``changes`` override fields) and, with
        ``wait``, wait until the daemon has loaded it."""
        mac = str(changes.pop("mac", None) or self.vm_mac())
        fields: dict[str, object] = {
            "tap": "tap0", "indev": "tap0", "mac": mac, "hostname": "vm1.example.test",
            "ip": IPv4Address("10.77.0.5"), "subnet": SUBNET, "gateway": IPv4Address("10.77.0.1"),
            "subnet6": SUBNET6, "gateway6": None, "eui64": eui64(SUBNET6, mac), "mtu": 1400,
        }  # fmt: skip
        fields.update(changes)
        binding = Binding(**fields)  # type: ignore[arg-type]
        write_binding(self.bindings, binding)
        deadline = time.monotonic() + 5
        while wait and f"binding {binding.tap} loaded" not in self.log():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return binding


@contextlib.contextmanager
def lab_running(extra_config: str = "", wait_for: str = "running as nobody") -> Iterator[Lab]:
    """A host and a VM namespace joined by a veth "tap", the queue rules, and nfdhcpd
    running in the host namespace; everything removed at the end."""
    suffix = secrets.token_hex(3)
    host, vm = f"snfnh-{suffix}", f"snfnv-{suffix}"
    folder = Path(tempfile.mkdtemp(prefix="snf-nfdhcpd-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "bindings").mkdir(mode=0o755)
    (folder / "snf.toml").write_text(
        f'[nfdhcpd]\nbindings_dir = "{folder / "bindings"}"\npidfile = "{folder / "pid"}"\n'
        'nameservers = ["192.0.2.53", "192.0.2.54"]\nnameservers6 = ["2001:db8::53"]\n'
        'domains6 = ["example.test"]\nra_period = 600\n'
        + extra_config
        + f'[log]\nlevel = "debug"\nfile = "{folder / "nfdhcpd.log"}"\n'
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
        while wait_for not in lab.log():
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
