"""Namespaces for testbed hosts, and running commands or Python callables inside them.

A node is a network namespace (``ip netns``) plus a UTS and a mount namespace kept alive by
bind-mounting their ``/proc/<pid>/ns/*`` files under ``/run/snf-testbed/<node>/``.  Inside the
mount namespace, ``/sys`` is remounted (so noded sees the node's own interfaces) and the
node's own directories are bind-mounted over Ganeti's paths (plan.NODE_BINDS).

Every command is an argv list; nothing is passed through a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from snf.common.errors import CommandFailed

from . import plan

T = TypeVar("T")

#: The environment every command starts with inside a node (Ganeti's daemons inherit it).
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def sh(
    argv: Sequence[str],
    *,
    timeout: float = 60,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv on the host; raise CommandFailed (with the whole output) when it fails."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, env=env
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        raise CommandFailed(argv, -1, f"timed out after {timeout} s\n{text}") from None
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout + proc.stderr)
    return proc


def _setns(path: Path | str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def thread_in_netns(netns: str) -> Iterator[None]:
    """Run the block with the calling thread (only) in network namespace ``netns``.

    Sockets made inside stay there, and threads started inside (librados') inherit it; the
    thread comes back to its own namespace afterwards.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(Path("/run/netns") / netns, CLONE_NEWNET)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(own)


@dataclass(frozen=True)
class Host:
    """A testbed host: a network namespace, with UTS and mount namespaces for nodes."""

    netns: str
    ns_dir: Path | None = None

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    def enter_argv(self) -> list[str]:
        """The argv prefix that runs a command inside this host's namespaces."""
        if self.ns_dir is None:
            # `ip netns exec` also remounts /sys for the namespace.
            return ["ip", "netns", "exec", self.netns]
        return [
            "nsenter",
            f"--net={self.netns_path}",
            f"--uts={self.ns_dir / 'uts'}",
            f"--mount={self.ns_dir / 'mnt'}",
            "--",
        ]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host with a clean environment (plus ``env``)."""
        full_env = {**CLEAN_ENV, **(env or {})}
        prefix = [*self.enter_argv(), "env", "-i", *(f"{k}={v}" for k, v in full_env.items())]
        return sh([*prefix, *argv], timeout=timeout, check=check, input=input)

    def enter(self) -> None:
        """Move the calling (single-threaded) process into this host's namespaces."""
        _setns(self.netns_path, CLONE_NEWNET)
        if self.ns_dir is not None:
            _setns(self.ns_dir / "uts", CLONE_NEWUTS)
            _setns(self.ns_dir / "mnt", CLONE_NEWNS)
        os.chdir("/")

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 300, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a forked child inside this host; return its result.

        The result (or the exception, with the child's traceback as a note) comes back
        pickled, so both must be picklable.  The child is killed after ``timeout`` seconds.
        """
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(rfd)
            try:
                self.enter()
                outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
            except BaseException as exc:
                exc.add_note(f"in testbed host {self.netns}:\n{traceback.format_exc()}")
                outcome = ("error", exc)
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps(("error", RuntimeError(f"result not picklable: {exc!r}")))
            with os.fdopen(wfd, "wb") as pipe:
                pipe.write(data)
            os._exit(0)
        os.close(wfd)
        return _collect(pid, rfd, timeout, self.netns)


def _collect(pid: int, rfd: int, timeout: float, where: str) -> Any:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with os.fdopen(rfd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"call in {where} did not finish within {timeout} s")
            ready, _, _ = select.select([pipe], [], [], left)
            if ready:
                chunk = pipe.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"call in {where} died without a result (wait status {status})")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise value
    return value


# --- creating and removing ------------------------------------------------------------------


def ensure_ns_dir() -> None:
    """/run/snf-testbed must be a private mount for mount-namespace files to be bound there."""
    plan.NS_DIR.mkdir(parents=True, exist_ok=True)
    if sh(["mountpoint", "-q", plan.NS_DIR], check=False).returncode != 0:
        sh(["mount", "--bind", plan.NS_DIR, plan.NS_DIR])
        sh(["mount", "--make-private", plan.NS_DIR])


def netns_exists(name: str) -> bool:
    return (Path("/run/netns") / name).exists()


def create_lan() -> Host:
    """The shared segment: bridge lan0 in its own namespace, which is also the services host."""
    lan = Host(plan.LAN_NS)
    if netns_exists(plan.LAN_NS):
        return lan
    sh(["ip", "netns", "add", plan.LAN_NS])
    ip = ["ip", "-n", plan.LAN_NS]
    sh([*ip, "link", "set", "lo", "up"])
    sh([*ip, "link", "add", plan.LAN_BRIDGE, "type", "bridge"])
    sh([*ip, "addr", "add", f"{plan.SVC_ADDRESS}/{plan.PREFIX_LEN}", "dev", plan.LAN_BRIDGE])
    sh([*ip, "link", "set", plan.LAN_BRIDGE, "up"])
    return lan


def create_node(
    node: plan.NodePlan, binds: dict[str, Path], hostname: str, *, bridges: Sequence[str] = ()
) -> Host:
    """Create the node's namespaces, its link to lan0, and its bind mounts.

    ``binds`` maps a path inside the node to the host directory or file mounted there.
    """
    ensure_ns_dir()
    sh(["ip", "netns", "add", node.netns])
    ip = ["ip", "-n", node.netns]
    sh([*ip, "link", "set", "lo", "up"])
    sh(["ip", "-n", plan.LAN_NS, "link", "add", node.short, "type", "veth",
        "peer", "name", "eth0", "netns", node.netns])  # fmt: skip
    sh(["ip", "-n", plan.LAN_NS, "link", "set", node.short, "master", plan.LAN_BRIDGE, "up"])
    sh([*ip, "addr", "add", f"{node.address}/{plan.PREFIX_LEN}", "dev", "eth0"])
    sh([*ip, "link", "set", "eth0", "up"])
    for bridge in bridges:
        sh([*ip, "link", "add", bridge, "type", "bridge"])
        sh([*ip, "link", "set", bridge, "up"])

    node.ns_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("uts", "mnt"):
        (node.ns_dir / kind).touch()
    sh(["unshare", f"--uts={node.ns_dir / 'uts'}", f"--mount={node.ns_dir / 'mnt'}",
        "--propagation", "private", "true"])  # fmt: skip
    host = Host(node.netns, node.ns_dir)
    host.run(["hostname", hostname])
    host.run(["umount", "-l", "/sys"])
    host.run(["mount", "-t", "sysfs", "sysfs", "/sys"])
    for target, source in binds.items():
        host.run(["mount", "--bind", str(source), target])
    return host


def kill_netns_processes(netns: str, grace: float = 3.0) -> None:
    """SIGTERM every process in the network namespace, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _netns_pids(netns):
            time.sleep(0.05)


def _netns_pids(netns: str) -> list[int]:
    if not netns_exists(netns):
        return []
    out = sh(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def remove_netns(netns: str, ns_dir: Path | None = None) -> None:
    """Kill the namespace's processes and remove it (and the node's UTS/mount namespaces)."""
    kill_netns_processes(netns)
    if ns_dir is not None and ns_dir.exists():
        for kind in ("mnt", "uts"):
            path = ns_dir / kind
            sh(["umount", path], check=False)
            path.unlink(missing_ok=True)
        ns_dir.rmdir()
    if netns_exists(netns):
        sh(["ip", "netns", "del", netns])
