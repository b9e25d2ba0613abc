"""nfdhcpd: the daemon around the packet core.

One ``select`` loop over the NFQUEUE descriptors (one queue per protocol, from the
``[nfdhcpd]`` section), the inotify descriptor of the bindings directory and the periodic
RA timer.  Replies go out on one shared ``AF_PACKET`` socket, addressed to the binding's
tap, so they bypass the bridge, ebtables and iptables.  Once the queues are bound it drops
to ``[nfdhcpd] user``.  SIGHUP re-reads every binding, SIGTERM and SIGINT end it, SIGUSR1
logs the counters::

    nfdhcpd [--config-dir DIR]

The rules that queue packets to it (``iptables -t mangle -A PREROUTING -i tap+ -p udp
--dport 67 -j NFQUEUE --queue-num 42`` and the like) are the NIC setup's, or the host's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import pwd
import select
import signal
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from snf.common.cli import run_main
from snf.common.config import NfdhcpdConfig, load_config
from snf.common.errors import InvalidInput
from snf.common.inotify import (
    IN_CLOSE_WRITE,
    IN_DELETE,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Watch,
)
from snf.common.log import setup_from_config

from . import dhcp4, ipv6
from .bindings import load_all, load_binding
from .core import Kind, Responder, classify

log = logging.getLogger("snf.nfdhcpd")
MAC_TTL = 10.0
PR_SET_KEEPCAPS = 8
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAPABILITY_VERSION_3 = 0x20080522


def responder_of(cfg: NfdhcpdConfig) -> Responder:
    try:
        dhcp = dhcp4.DhcpConfig(
            server_ip=IPv4Address(cfg.server_ip) if cfg.server_ip else None,
            lease_time=cfg.lease_time,
            renewal_time=cfg.renewal_time,
            nameservers=tuple(IPv4Address(a) for a in cfg.nameservers),
            domain=cfg.domain or None,
        )
        v6 = ipv6.Ipv6Config(
            mode=cfg.ipv6_mode,
            ra_period=cfg.ra_period,
            nameservers=tuple(IPv6Address(a) for a in cfg.nameservers6),
            domains=tuple(cfg.domains6),
        )
    except ValueError as exc:
        raise InvalidInput(f"[nfdhcpd]: {exc}") from None
    return Responder(dhcp, v6, MacCache().get, rate=cfg.rate, burst=float(cfg.burst))


class MacCache:
    """Interface MACs from /sys, re-read after a few seconds (bridges change theirs)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, bytes | None]] = {}

    def get(self, ifname: str) -> bytes | None:
        now = time.monotonic()
        hit = self.seen.get(ifname)
        if hit is not None and now - hit[0] < MAC_TTL:
            return hit[1]
        try:
            text = Path("/sys/class/net", ifname, "address").read_text().strip()
            mac: bytes | None = bytes.fromhex(text.replace(":", ""))
        except (OSError, ValueError):
            mac = None
        self.seen[ifname] = (now, mac)
        return mac


def _ifname(index: int) -> str | None:
    if not index:
        return None
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


class Daemon:
    def __init__(self, cfg: NfdhcpdConfig) -> None:
        self.cfg = cfg
        self.responder = responder_of(cfg)
        self.directory = cfg.bindings_dir
        self.directory.mkdir(parents=True, exist_ok=True)
        self.reload()
        self.watch = Watch(IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE)
        try:
            self.watch.add(str(self.directory))
        except OSError:
            self.watch.close()
            raise
        self.sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.queues: list[Any] = []
        self.listener: socket.socket | None = None
        if cfg.transport != "packet":
            try:
                self._bind_queues()
            except OSError as exc:
                if cfg.transport == "nfqueue":
                    raise
                log.warning("NFQUEUE unavailable (%s): listening on AF_PACKET instead", exc)
                for queue in self.queues:
                    queue.unbind()
                self.queues = []
        if not self.queues:
            # Answers only: a packet cannot be dropped here, so the host's rules must drop
            # what the VMs send to ports 67 and 547 if nothing else may see it.
            self.listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            self.listener.setblocking(False)
            log.info("answering DHCP, RS, NS and DHCPv6 seen on AF_PACKET (no drops)")
        self.running = True

    def _bind_queues(self) -> None:
        from netfilterqueue import NetfilterQueue  # only where the daemon runs

        for kind, number in (
            (Kind.DHCP, self.cfg.dhcp_queue),
            (Kind.RS, self.cfg.rs_queue),
            (Kind.NS, self.cfg.ns_queue),
            (Kind.DHCPV6, self.cfg.dhcpv6_queue),
        ):
            if number:
                queue = NetfilterQueue()
                queue.bind(number, self._callback(kind), max_len=5000)
                self.queues.append(queue)
                log.info("answering %s on queue %d", kind.value, number)

    def _on_frames(self) -> None:
        """The AF_PACKET transport: answer every request frame waiting on the socket."""
        assert self.listener is not None
        while True:
            try:
                frame, addr = self.listener.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            found = classify(frame)
            if found is not None:
                kind, packet = found
                decision = self.responder.handle(kind, packet, addr[0], addr[0], frame[6:12])
                self.send(decision.frames)

    def reload(self) -> None:
        bindings, errors = load_all(self.directory)
        for name, error in errors.items():
            log.warning("binding %s ignored: %s", name, error)
        self.responder.bindings = bindings
        log.info("%d bindings loaded from %s", len(bindings), self.directory)

    def _file_changed(self, name: str, mask: int) -> None:
        if name.startswith("."):
            return
        path = self.directory / name
        if mask & (IN_DELETE | IN_MOVED_FROM) or not path.exists():
            if self.responder.bindings.pop(name, None) is not None:
                log.info("binding %s removed", name)
            return
        try:
            self.responder.bindings[name] = load_binding(path)
            log.info("binding %s loaded", name)
        except (InvalidInput, OSError) as exc:
            self.responder.bindings.pop(name, None)
            log.warning("binding %s ignored: %s", name, exc)

    def _callback(self, kind: Kind) -> Callable[[Any], None]:
        def on_packet(packet: Any) -> None:
            accept = True
            frames: tuple[tuple[str, bytes], ...] = ()
            try:
                hw = packet.get_hw()
                decision = self.responder.handle(
                    kind,
                    packet.get_payload(),
                    _ifname(packet.indev),
                    _ifname(packet.physindev),
                    bytes(hw[:6]) if hw else None,
                )
                accept, frames = decision.accept, decision.frames
            except Exception:
                log.exception("%s packet: internal error (accepted)", kind.value)
            finally:  # exactly one verdict, whatever happened above
                packet.accept() if accept else packet.drop()
            self.send(frames)

        return on_packet

    def send(self, frames: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> None:
        for tap, frame in frames:
            try:
                self.sender.sendto(frame, (tap, 0))
            except OSError as exc:
                log.warning("cannot send on %s: %s", tap, exc.strerror)

    def drop_privileges(self) -> None:
        """Run as [nfdhcpd] user, keeping only CAP_NET_ADMIN (the kernel checks it on every
        verdict sent to a queue) and CAP_NET_RAW (the reply socket)."""
        if not self.cfg.user or os.getuid() != 0:
            return
        try:
            user = pwd.getpwnam(self.cfg.user)
        except KeyError:
            raise InvalidInput(f"[nfdhcpd] user {self.cfg.user!r} does not exist") from None
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        keep = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
        header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        log.info("running as %s with CAP_NET_ADMIN and CAP_NET_RAW only", self.cfg.user)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload())
        signal.signal(signal.SIGUSR1, lambda *_: log.info("counters: %s", self.responder.counters))
        # select() restarts after a signal (PEP 475): a byte on this pipe wakes it instead.
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        by_fd: dict[int, Callable[..., Any]] = {q.get_fd(): q.run for q in self.queues}
        by_fd[wake_r] = lambda block: os.read(wake_r, 4096)
        if self.listener is not None:
            by_fd[self.listener.fileno()] = lambda block: self._on_frames()
        next_ra = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now >= next_ra:
                self.send(self.responder.periodic_ras())
                next_ra = now + self.cfg.ra_period
            ready, _, _ = select.select([*by_fd, self.watch.fd], [], [], next_ra - now)
            for fd in ready:
                if fd == self.watch.fd:
                    for mask, _, name in self.watch.events():
                        if mask & IN_Q_OVERFLOW:
                            self.reload()
                        else:
                            self._file_changed(name, mask)
                else:
                    by_fd[fd](block=False)
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)

    def _stop(self, *_: object) -> None:
        self.running = False

    def close(self) -> None:
        for queue in self.queues:
            queue.unbind()
        if self.listener is not None:
            self.listener.close()
        self.watch.close()
        self.sender.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nfdhcpd", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help="default: $SNF_CONFIG_DIR or /etc/snf")
    args = parser.parse_args(argv)
    config = load_config(args.config_dir)
    setup_from_config("nfdhcpd", config.log)
    daemon = Daemon(config.nfdhcpd)
    pidfile = config.nfdhcpd.pidfile
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{os.getpid()}\n")
    try:
        daemon.drop_privileges()
        daemon.run()
    finally:
        daemon.close()
        # A process that dropped root may not remove root's pidfile; the next start rewrites it.
        with contextlib.suppress(OSError):
            pidfile.unlink()
    log.info("stopped")
    return 0


def cli() -> None:
    run_main(main, prog="nfdhcpd")
