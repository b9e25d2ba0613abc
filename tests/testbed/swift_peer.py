"""OpenStack Swift itself on one machine, in the testbed's services host: the object store our
benchmarks compare the portal's against.

Debian's Swift 2.30.1 (``swift-proxy``, ``swift-account``, ``swift-container``,
``swift-object``) and memcached, with every file under ``plan.STATE_DIR / "swift"``:
``etc/`` (swift.conf, one config per server, the three rings: ``swift_dir`` in every config,
so /etc/swift is never read), ``srv/d1`` (the one device, owned by ``swift``), ``log/`` (one
log per process, written with ``-v``: there is no /dev/log) and ``run/`` (pid files).  All of
it listens on the services host's address inside the ``snftb-lan`` namespace:

==================  =====  ========================================
what                port   notes
==================  =====  ========================================
proxy               8090   tempauth: user ``test:tester``, key ``testing``
account server      6202
container server    6201
object server       6200   fsyncs, and drops written data from the page cache
memcached           11212  tempauth keeps its tokens there
==================  =====  ========================================

``start()`` clears an earlier run and brings up a fresh one (≈ 5 s), each process detached
in its own session, and waits until ``/healthcheck`` answers and an authenticated
``swift stat`` works; ``stop()`` ends every process it started, by their process groups.
``cluster.down()`` also ends them (it kills every process in the lan namespace).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snf.common.errors import CommandFailed, SnfError

from . import namespaces, plan
from .cluster import TestbedError
from .namespaces import CLEAN_ENV, Host, thread_in_netns

log = logging.getLogger("snf.testbed")

ROOT = plan.STATE_DIR / "swift"
ETC = ROOT / "etc"
SRV = ROOT / "srv"
LOG_DIR = ROOT / "log"
RUN_DIR = ROOT / "run"
DEVICE = "d1"
OS_USER = "swift"
MEMCACHED_USER = "memcache"

PROXY_PORT = 8090
MEMCACHED_PORT = 11212
#: The storage servers and their ports, in the order they start (the proxy comes last).
SERVER_PORTS = {"account": 6202, "container": 6201, "object": 6200}
USER = "test:tester"
KEY = "testing"
AUTH_URL = f"http://{plan.SVC_ADDRESS}:{PROXY_PORT}/auth/v1.0"
SWIFT_CLI = Path(sys.executable).parent / "swift"
MEMCACHED = Path("/usr/bin/memcached")
START_TIMEOUT = 60.0

PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempauth "
    "copy slo dlo versioned_writes symlink proxy-logging proxy-server"
)
PROXY_FILTERS = (
    "catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "listing_formats", "bulk",
    "copy", "slo", "dlo", "versioned_writes", "symlink",
)  # fmt: skip


@dataclass(frozen=True)
class SwiftPeer:
    """A running Swift: where to authenticate, as whom, and the process group of each of its
    servers (``memcached``, ``account``, ``container``, ``object``, ``proxy``)."""

    host: Host
    auth_url: str = AUTH_URL
    user: str = USER
    key: str = KEY
    pids: dict[str, int] = field(default_factory=dict)

    def cli_options(self) -> list[str]:
        """The ``swift`` CLI's options for this Swift (v1.0 auth through tempauth)."""
        return ["-A", self.auth_url, "-U", self.user, "-K", self.key]

    def swift(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the ``swift`` CLI (python-swiftclient) inside the services host."""
        return self.host.run([str(SWIFT_CLI), *self.cli_options(), *argv], timeout=timeout)

    def authenticate(self) -> tuple[str, str]:
        """A storage URL and a token (``X-Storage-Url``, ``X-Auth-Token``) for the account."""
        request = urllib.request.Request(
            self.auth_url, headers={"X-Storage-User": self.user, "X-Storage-Pass": self.key}
        )
        with thread_in_netns(self.host.netns), urllib.request.urlopen(request, timeout=10) as r:
            return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]


def installed() -> bool:
    servers = [Path(f"/usr/bin/swift-{s}-server") for s in (*SERVER_PORTS, "proxy")]
    tools = [Path("/usr/bin/swift-ring-builder"), MEMCACHED, SWIFT_CLI]
    return all(p.exists() for p in servers + tools)


def start(
    *,
    workers: int = 1,
    timeout: float = START_TIMEOUT,
    progress: Callable[[str], None] = log.info,
) -> SwiftPeer:
    """Bring up a fresh Swift (clearing an earlier run first) with ``workers`` workers per
    server; fail after ``timeout`` s with the end of its logs."""
    if not installed():
        raise TestbedError("OpenStack Swift is not installed: no swift-*-server, "
                           "swift-ring-builder, memcached or swift CLI")  # fmt: skip
    host = namespaces.create_lan()
    stop()
    shutil.rmtree(ROOT, ignore_errors=True)
    for d in (ETC, SRV / DEVICE, LOG_DIR, RUN_DIR):
        d.mkdir(parents=True)
    # The servers run as swift: they must be able to walk down to their directories.
    for d in (plan.STATE_DIR, ROOT):
        d.chmod(d.stat().st_mode | 0o011)
    for d in (SRV, SRV / DEVICE):
        shutil.chown(d, OS_USER, OS_USER)
    t0 = time.monotonic()
    write_configs(workers)
    for ring, port in SERVER_PORTS.items():
        build_ring(ring, port)
    progress(f"swift: configs and rings ready ({time.monotonic() - t0:.1f} s)")
    procs = {"memcached": _spawn(host, "memcached", _memcached_argv())}
    for server in (*SERVER_PORTS, "proxy"):
        conf = ETC / f"{server}-server.conf"
        procs[server] = _spawn(host, server, [f"/usr/bin/swift-{server}-server", str(conf), "-v"])
    peer = SwiftPeer(host, pids={name: p.pid for name, p in procs.items()})
    try:
        _wait_ready(peer, procs, t0 + timeout)
    except (OSError, SnfError, TimeoutError) as exc:
        tails = _log_tails()
        stop()
        raise TestbedError(f"Swift did not start within {timeout} s: {exc}\n{tails}") from exc
    progress(f"swift: {AUTH_URL} answers ({time.monotonic() - t0:.1f} s)")
    return peer


def stop(grace: float = 5.0) -> None:
    """End every process of a running (or an earlier) Swift: SIGTERM to each process group
    recorded in ``run/``, then SIGKILL to what is left after ``grace`` seconds.  A group is
    signalled only while one of our processes is in it (a stale pid file after a reboot
    names someone else's); a process of ours outside them is signalled alone.  Idempotent."""
    recorded = set()
    for pidfile in sorted(RUN_DIR.glob("*.pid")) if RUN_DIR.exists() else []:
        with contextlib.suppress(ValueError, OSError):
            recorded.add(int(pidfile.read_text()))
        pidfile.unlink(missing_ok=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        ours = _ours()
        groups = recorded & set(ours.values())
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        for pid in (pid for pid, pgid in ours.items() if pgid not in groups):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while _ours() and time.monotonic() < end:
            time.sleep(0.05)
        _reap()
        if not _ours():
            # A process that is exiting is no longer "ours" (its command line is gone) but
            # not yet a zombie: wait for our children to be reaped, not only polled.
            _reap(wait=grace)
            return


def processes() -> list[int]:
    """The pids of every live process of ours: Swift servers (their config is under ROOT) and
    our memcached (its port)."""
    return sorted(_ours())


def _ours() -> dict[int, int]:
    """Our live processes: pid -> process group."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state, _, pgid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        ours = any(a.startswith(f"{ROOT}/") for a in argv)
        memcached = argv[0] == str(MEMCACHED) and str(MEMCACHED_PORT) in argv
        if state != "Z" and (ours or memcached):
            found[int(entry.name)] = int(pgid)
    return found


# --- configuration ----------------------------------------------------------------------------


def write_configs(workers: int) -> None:
    """swift.conf and the four servers' configs under ETC."""
    (ETC / "swift.conf").write_text(
        "# tests/testbed/swift_peer.py\n[swift-hash]\nswift_hash_path_prefix = snftb\n"
        "swift_hash_path_suffix = peer\n\n[storage-policy:0]\nname = gold\ndefault = yes\n"
    )
    common = {"bind_ip": plan.SVC_ADDRESS, "workers": str(workers), "user": OS_USER,
              "swift_dir": str(ETC)}  # fmt: skip
    storage = {**common, "devices": str(SRV), "mount_check": "false"}
    for server, port in SERVER_PORTS.items():
        sections = {
            "DEFAULT": {**storage, "bind_port": str(port)},
            "pipeline:main": {"pipeline": f"{server}-server"},
            f"app:{server}-server": {"use": f"egg:swift#{server}"},
        }
        (ETC / f"{server}-server.conf").write_text(_ini(sections))
    sections = {
        "DEFAULT": {**common, "bind_port": str(PROXY_PORT)},
        "pipeline:main": {"pipeline": PROXY_PIPELINE},
        "app:proxy-server": {"use": "egg:swift#proxy", "account_autocreate": "true"},
        **{f"filter:{name}": {"use": f"egg:swift#{name.replace('-', '_')}"}
           for name in PROXY_FILTERS},
        "filter:cache": {"use": "egg:swift#memcache",
                         "memcache_servers": f"{plan.SVC_ADDRESS}:{MEMCACHED_PORT}"},
        "filter:tempauth": {"use": "egg:swift#tempauth", "user_test_tester": f"{KEY} .admin"},
    }  # fmt: skip
    (ETC / "proxy-server.conf").write_text(_ini(sections))


def _ini(sections: dict[str, dict[str, str]]) -> str:
    out = ["# tests/testbed/swift_peer.py"]
    for name, values in sections.items():
        out += ["", f"[{name}]", *(f"{k} = {v}" for k, v in values.items())]
    return "\n".join(out) + "\n"


def build_ring(ring: str, port: int) -> None:
    """A ring of 2^10 partitions, one replica, one device: ours."""
    builder = str(ETC / f"{ring}.builder")
    tool = "/usr/bin/swift-ring-builder"
    namespaces.sh([tool, builder, "create", "10", "1", "1"])
    namespaces.sh([tool, builder, "add", f"r1z1-{plan.SVC_ADDRESS}:{port}/{DEVICE}", "100"])
    # exit status 1 is a warning (e.g. about balance), 2 an error
    proc = namespaces.sh([tool, builder, "rebalance"], check=False)
    if proc.returncode not in (0, 1) or not (ETC / f"{ring}.ring.gz").exists():
        raise CommandFailed([tool, builder, "rebalance"], proc.returncode,
                            proc.stdout + proc.stderr)  # fmt: skip


# --- processes --------------------------------------------------------------------------------


def _memcached_argv() -> list[str]:
    return [str(MEMCACHED), "-u", MEMCACHED_USER, "-l", plan.SVC_ADDRESS,
            "-p", str(MEMCACHED_PORT), "-U", "0", "-m", "64"]  # fmt: skip


def _spawn(host: Host, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start argv detached inside ``host`` (its own session and process group), its output
    going to ``log/<name>.log``; record its pid in ``run/<name>.pid``."""
    env = [f"{k}={v}" for k, v in CLEAN_ENV.items()]
    with (LOG_DIR / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            [*host.enter_argv(), "env", "-i", *env, *argv], stdin=subprocess.DEVNULL,
            stdout=out, stderr=out, cwd="/", start_new_session=True,
        )  # fmt: skip
    (RUN_DIR / f"{name}.pid").write_text(f"{proc.pid}\n")
    _children[proc.pid] = proc
    return proc


#: Processes this process started, so that stop() reaps them (no zombies left behind).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(wait: float = 0.0) -> None:
    """Collect the exit status of the processes this process started and that ended (with
    ``wait``, give each up to that many seconds to end)."""
    for pid, child in list(_children.items()):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait) if wait else child.poll()
        if child.returncode is not None:
            del _children[pid]


def _wait_ready(
    peer: SwiftPeer, procs: dict[str, subprocess.Popen[bytes]], deadline: float
) -> None:
    """Poll until every port accepts, /healthcheck answers OK and ``swift stat`` works."""
    ports = [MEMCACHED_PORT, *SERVER_PORTS.values(), PROXY_PORT]
    health = f"http://{plan.SVC_ADDRESS}:{PROXY_PORT}/healthcheck"
    last: Exception | None = None
    while time.monotonic() < deadline:
        dead = [f"{name} (exit status {p.returncode})" for name, p in procs.items()
                if p.poll() is not None]  # fmt: skip
        if dead:
            raise TestbedError(f"exited: {', '.join(dead)}")
        try:
            with thread_in_netns(peer.host.netns):
                for port in ports:
                    socket.create_connection((plan.SVC_ADDRESS, port), timeout=2).close()
                with urllib.request.urlopen(health, timeout=5) as r:
                    if r.read() != b"OK":
                        raise OSError(f"{health} did not answer OK")
            stat = peer.swift(
                "--retries", "0", "stat", timeout=max(5.0, deadline - time.monotonic())
            )
            if f"Account: AUTH_{USER.split(':')[0]}" not in stat.stdout:
                raise CommandFailed(["swift", "stat"], 0, stat.stdout)
            return
        except (OSError, CommandFailed) as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"not ready: {last}")


def _log_tails(lines: int = 15) -> str:
    parts = []
    for path in sorted(LOG_DIR.glob("*.log")) if LOG_DIR.exists() else []:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs in {LOG_DIR})"
