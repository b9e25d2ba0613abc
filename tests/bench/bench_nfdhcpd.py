"""Benchmark: nfdhcpd's DHCP answers through NFQUEUE against dnsmasq, and its memory.

In one run, in the same pair of network namespaces (``tests/testbed/nfdhcpd_lab.py``), one
load generator in the "VM" sends DISCOVERs from a raw socket and times the OFFERs:
- latency: one DISCOVER at a time (p50 and p99);
- throughput: a window of outstanding DISCOVERs for a few seconds (answers per second);
first to nfdhcpd (rate limit raised out of the way), then to dnsmasq (Debian's
dnsmasq-base, ``--no-ping --quiet-dhcp``) on the same "tap" with the queue rules removed.
Then nfdhcpd's resident memory with 10,000 bindings (for taps that do not exist).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.testbed.namespaces import Host
from tests.testbed.nfdhcpd_lab import QUEUE_RULES, lab_running
from tests.testbed.nfdhcpd_lab import run as sh

from .machine import describe

UNLIMITED = "rate = 1000000.0\nburst = 1000000\n"
XID_AT = 14 + 20 + 8 + 4  # Ethernet, IPv4, UDP, then op/htype/hlen/hops


def _discover(mac: bytes) -> bytearray:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    frame = (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67, chksum=0)  # no UDP checksum: the xid can be patched in
        / BOOTP(chaddr=mac, xid=0)
        / DHCP(options=[("message-type", "discover"), "end"])
    )
    return bytearray(bytes(frame))


def _answers(sock: socket.socket) -> list[int]:
    """xids of the OFFERs waiting on the socket."""
    xids = []
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            return xids
        if addr[2] == socket.PACKET_OUTGOING or len(data) < XID_AT + 4:
            continue
        if data[23] == 17 and data[36:38] == b"\x00\x44":  # UDP to port 68
            xids.append(int.from_bytes(data[XID_AT : XID_AT + 4], "big"))


def load(mac: str, rounds: int, seconds: float, window: int) -> dict[str, float]:
    """Inside the VM namespace: latencies of single DISCOVERs, then sustained answers/s."""
    raw = bytes.fromhex(mac.replace(":", ""))
    frame = _discover(raw)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind(("eth0", 0))
    sock.setblocking(False)
    latencies = []
    for xid in range(1, rounds + 1):
        frame[XID_AT : XID_AT + 4] = xid.to_bytes(4, "big")
        t0 = time.perf_counter()
        sock.send(frame)
        while xid not in _answers(sock):
            if time.perf_counter() - t0 > 2:
                break
        else:
            latencies.append(time.perf_counter() - t0)
    latencies.sort()
    sent = answered = lost = 0
    xid = 1 << 20
    t0 = last = time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        while sent - answered - lost < window:
            xid += 1
            frame[XID_AT : XID_AT + 4] = xid.to_bytes(4, "big")
            sock.send(frame)
            sent += 1
        got = len(_answers(sock))
        if got:
            answered, last = answered + got, now
        elif now - last > 0.05:  # what is still out after 50 ms is lost: send more
            lost, last = sent - answered, now
        else:
            time.sleep(0.0001)
    elapsed = time.perf_counter() - t0
    sock.close()
    n = len(latencies)
    return {
        "answered": n,
        "p50": latencies[n // 2] * 1e3 if n else float("nan"),
        "p99": latencies[min(n - 1, n * 99 // 100)] * 1e3 if n else float("nan"),
        "rate": answered / elapsed,
        "sent": sent,
    }


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(smoke: bool = False) -> list[str]:
    rounds, seconds = (50, 0.5) if smoke else (2000, 5.0)
    rows = {}
    with lab_running(UNLIMITED) as lab:
        binding = lab.bind()
        vm = Host(lab.vm)
        rows["nfdhcpd (NFQUEUE)"] = vm.call(load, binding.mac, rounds, seconds, 32)
        for rule in QUEUE_RULES:
            sh("ip", "netns", "exec", lab.host, *[a if a != "-A" else "-D" for a in rule])
        sh("ip", "-n", lab.host, "addr", "add", "10.77.0.1/24", "dev", "tap0")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", lab.host, "dnsmasq", "--no-daemon", "--no-ping",
             "--quiet-dhcp", "--port=0", "--interface=tap0", "--bind-interfaces",
             "--dhcp-range=10.77.0.10,10.77.0.250,12h", f"--dhcp-host={binding.mac},10.77.0.5",
             f"--dhcp-leasefile={lab.folder / 'dnsmasq.leases'}", "--conf-file=/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)
            rows["dnsmasq (UDP socket)"] = vm.call(load, binding.mac, rounds, seconds, 32)
        finally:
            dnsmasq.terminate()
            dnsmasq.wait(10)
    count = 1000 if smoke else 10000
    with lab_running(UNLIMITED) as lab:
        mac = lab.vm_mac()
        t0 = time.perf_counter()
        for i in range(count):
            lab.bind(tap=f"vmtap{i}", indev=f"vmtap{i}", hostname=f"vm{i}.example.test", mac=mac,
                     wait=False)  # fmt: skip
        written = time.perf_counter() - t0
        lab.daemon.send_signal(1)  # SIGHUP: reload everything
        deadline = time.monotonic() + 60
        while f"{count} bindings loaded" not in lab.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        rss = _rss_mib(lab.daemon.pid)
    lines = [
        describe(),
        f"{rounds} single DISCOVER→OFFER round trips, then {seconds:g} s with 32 outstanding:",
        "",
        "| server | p50 | p99 | answers/s |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['rate']:,.0f} |")
    lines.append(
        f"nfdhcpd with {count} bindings (taps absent; files written in {written:.1f} s): "
        f"RSS {rss:.0f} MiB"
    )
    return lines
