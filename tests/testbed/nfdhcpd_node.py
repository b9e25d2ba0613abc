"""nfdhcpd on a testbed node (``make demo`` and the Ganeti networking test), without
systemd: the queue rules for bridged taps and the daemon, in the node's namespaces, with the
node's /etc/snf; its output goes to ``<node state>/nfdhcpd.log``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .cluster import Cluster

#: Bridged taps: the bridge hands their frames to iptables (bridge-nf-call), matched by port.
QUEUE_RULES = [
    ["iptables", "-t", "mangle", "{op}", "PREROUTING", "-m", "physdev", "--physdev-in", "tap+",
     "-p", "udp", "--dport", "67", "-j", "NFQUEUE", "--queue-num", "42"],
    ["ip6tables", "-t", "mangle", "{op}", "PREROUTING", "-m", "physdev", "--physdev-in", "tap+",
     "-p", "icmpv6", "--icmpv6-type", "133", "-j", "NFQUEUE", "--queue-num", "43"],
    ["ip6tables", "-t", "mangle", "{op}", "PREROUTING", "-m", "physdev", "--physdev-in", "tap+",
     "-p", "icmpv6", "--icmpv6-type", "135", "-j", "NFQUEUE", "--queue-num", "44"],
    ["ip6tables", "-t", "mangle", "{op}", "PREROUTING", "-m", "physdev", "--physdev-in", "tap+",
     "-p", "udp", "--dport", "547", "-j", "NFQUEUE", "--queue-num", "45"],
]  # fmt: skip


def _rules(c: Cluster, op: str) -> None:
    for rule in QUEUE_RULES:
        c.master.run([op if a == "{op}" else a for a in rule], check=op == "-A")


def start(c: Cluster) -> subprocess.Popen[bytes]:
    c.master.run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
    c.master.run(["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1"])
    _rules(c, "-D")  # what an earlier run left
    _rules(c, "-A")
    log = open(c.plan.master.state_dir / "nfdhcpd.log", "ab")  # noqa: SIM115 - the child's
    with log:
        return subprocess.Popen(
            [*c.master.enter_argv(), str(Path(sys.executable).parent / "nfdhcpd"),
             "--config-dir", "/etc/snf"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def stop(c: Cluster, daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    try:
        daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    _rules(c, "-D")
