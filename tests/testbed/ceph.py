"""A real single-node Ceph 16.2 inside the testbed's services host, for the RADOS backend.

One monitor (``mon.a``) and one OSD (``osd.0``, memstore: its data lives in RAM, 1 GiB),
no manager, no cephx, listening on the services host's address (192.0.2.1, v2 on 3300, v1
on 6789) inside the ``snftb-lan`` namespace, so nodes reach it over the bridge and nothing
listens on the machine's own interfaces.  Every file it writes (config, monitor store, logs,
pid files, admin sockets) is under ``plan.STATE_DIR / "ceph"``; nodes see its ceph.conf at
the same path (their mount namespaces bind only their own directories over the host's).

``start()`` clears an earlier run (its daemons and data) and brings up a fresh cluster with
the pools ``blocks`` and ``maps``; ``stop()`` ends the daemons.  ``cluster.down()`` also
ends them (it kills every process in the lan namespace and removes STATE_DIR).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from snf.common.errors import CommandFailed

from . import namespaces, plan
from .cluster import TestbedError
from .namespaces import CLEAN_ENV, Host

log = logging.getLogger("snf.testbed")

CEPH_DIR = plan.STATE_DIR / "ceph"
POOLS = ("blocks", "maps")
PG_NUM = 8
MEMSTORE_BYTES = 1 << 30
START_TIMEOUT = 60.0
#: The CLI's own limit per call (the monitor may still be starting); `timeout` is on top.
CLI_CONNECT_TIMEOUT = 5


def conf_text(data_dir: Path, fsid: str, address: str = plan.SVC_ADDRESS) -> str:
    """ceph.conf for the single-node cluster (storage.md §3; the brackets in mon host matter:
    without them mkfs makes a two-monitor map that never reaches quorum)."""
    d = data_dir
    return f"""\
[global]
fsid = {fsid}
mon host = [v2:{address}:3300,v1:{address}:6789]
public addr = {address}
cluster addr = {address}
auth cluster required = none
auth service required = none
auth client required = none
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
mon cluster log file = {d}/log/$cluster.log
crash dir = {d}/crash
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail crit = 0
mon data avail warn = 0
[client]
# many short-lived clients (the CLI, the tests): no admin socket, no log file
admin socket =
log file =
[mon.a]
mon data = {d}/mon
[osd.0]
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}
osd class load list = *
osd class default list = *
"""


@dataclass(frozen=True)
class Ceph:
    """A running test cluster: its ceph.conf and the host it runs in."""

    conf: Path
    host: Host

    @property
    def data_dir(self) -> Path:
        return self.conf.parent

    def ceph(self, *argv: str, timeout: float = 30) -> str:
        """Run ``ceph <argv>`` against the cluster (inside the services host); its stdout."""
        return self.host.run(
            ["ceph", "--conf", str(self.conf), "--connect-timeout", str(CLI_CONNECT_TIMEOUT),
             *argv],
            timeout=timeout,
        ).stdout  # fmt: skip

    def rados(self, *argv: str, timeout: float = 30) -> str:
        """Run ``rados <argv>`` against the cluster (inside the services host); its stdout."""
        return self.host.run(["rados", "--conf", str(self.conf), *argv], timeout=timeout).stdout


def start(*, timeout: float = START_TIMEOUT, progress: Callable[[str], None] = log.info) -> Ceph:
    """Bring up a fresh cluster (clearing an earlier run first); fail after ``timeout`` s with
    the last lines of the daemons' logs."""
    host = namespaces.create_lan()
    stop()
    shutil.rmtree(CEPH_DIR, ignore_errors=True)
    for sub in ("log", "mon", "osd", "run", "crash"):
        (CEPH_DIR / sub).mkdir(parents=True)
    conf = CEPH_DIR / "ceph.conf"
    conf.write_text(conf_text(CEPH_DIR, str(uuid.uuid4())))
    ceph = Ceph(conf, host)
    t0 = time.monotonic()
    deadline = t0 + timeout

    def left(most: float = 30) -> float:  # every command ends by the deadline
        return min(most, max(1.0, deadline - time.monotonic()))

    try:
        _daemon(host, ["ceph-mon", "--conf", str(conf), "--id", "a", "--mkfs",
                       "--keyring", "/dev/null"], left())  # fmt: skip
        (CEPH_DIR / "mon" / "keyring").touch()
        _daemon(host, ["ceph-mon", "--conf", str(conf), "--id", "a"], left())
        _until(deadline, lambda: ceph.ceph("status", timeout=left(10)) is not None)
        progress(f"ceph: monitor up ({time.monotonic() - t0:.1f} s)")
        osd_id = ceph.ceph("osd", "create", timeout=left()).strip()
        if osd_id != "0":
            raise TestbedError(f"ceph osd create gave id {osd_id!r}, not 0")
        ceph.ceph("osd", "crush", "add", "osd.0", "1", "root=default", timeout=left())
        _daemon(host, ["ceph-osd", "--conf", str(conf), "--id", "0", "--mkfs"], left())
        _daemon(host, ["ceph-osd", "--conf", str(conf), "--id", "0"], left())
        _until(deadline, lambda: " 1 up" in ceph.ceph("osd", "stat", timeout=left(10)))
        progress(f"ceph: OSD up ({time.monotonic() - t0:.1f} s)")
        for pool in POOLS:
            ceph.ceph("osd", "pool", "create", pool, str(PG_NUM), str(PG_NUM), timeout=left())
            ceph.ceph("osd", "pool", "application", "enable", pool, "rados", timeout=left())
        for pool in POOLS:  # listing a pool needs every one of its placement groups active
            ceph.rados("--pool", pool, "ls", timeout=left(60))
    except (CommandFailed, TimeoutError) as exc:
        tails = _log_tails()
        stop()
        raise TestbedError(f"Ceph did not start within {timeout} s: {exc}\n{tails}") from exc
    progress(f"ceph: pools {', '.join(POOLS)} ready ({time.monotonic() - t0:.1f} s)")
    return ceph


def stop(grace: float = 10.0) -> None:
    """End the daemons of a running (or an earlier) cluster: SIGTERM, then SIGKILL."""
    pids = []
    for pidfile in (CEPH_DIR / "run").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pidfile.read_text().strip()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if _is_ceph(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while alive and time.monotonic() < end:
            time.sleep(0.1)
            alive = [pid for pid in alive if _is_ceph(pid)]
        if not alive:
            return


def _is_ceph(pid: int) -> bool:
    """Whether ``pid`` is still one of our daemons (and not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.path.basename(cmdline[0]) in (b"ceph-mon", b"ceph-osd")


def _daemon(host: Host, argv: Sequence[str], timeout: float = 30) -> None:
    """Run a Ceph daemon command inside ``host``; it forks, so its output goes to a file,
    not to a pipe that the daemon would keep open."""
    out = CEPH_DIR / "log" / "commands.log"
    env = [f"{k}={v}" for k, v in CLEAN_ENV.items()]
    full = [*host.enter_argv(), "env", "-i", *env, *argv]
    with out.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        try:
            rc = subprocess.run(
                full, stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            raise CommandFailed(list(argv), -1, f"timed out after {timeout:.1f} s") from None
    if rc != 0:
        tail = out.read_text().splitlines()[-5:]
        raise CommandFailed(list(argv), rc, "\n".join(tail))


def _until(deadline: float, ready: Callable[[], bool]) -> None:
    """Poll ``ready`` every 0.5 s (a failing command counts as not ready) until ``deadline``."""
    while True:
        try:
            if ready():
                return
            last = "not ready yet"
        except CommandFailed as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(last)
        time.sleep(0.5)


def _log_tails(lines: int = 15) -> str:
    parts = []
    for name in ("mon.a.log", "osd.0.log", "commands.log"):
        path = CEPH_DIR / "log" / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs in {CEPH_DIR / 'log'})"
