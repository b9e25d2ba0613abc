"""The customization worker: checks, grows and mounts an image's filesystem, then edits files
in it through :class:`SafeRoot`; and the line protocol that drives it inside the helper VM.

In ``direct`` mode the provider calls :class:`Worker` in its own process, on a loop device
of the partition.  In ``helper`` mode the same class runs inside a throw-away VM (see
``helper_vm.py``) as ``python3 -I -S -m snf.image.agent <port>``, and the provider sends it
one JSON request per line over a virtio serial port::

    {"op": "read", "args": {"path": "/etc/shadow"}}  ->  {"ok": true, "result": {"b64": ...}}
                                                      or {"ok": false, "error": "..."}

Bytes travel as ``{"b64": "..."}``.  Only the operations in :data:`OPERATIONS` exist.
Standard library only: the helper VM has nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

from snf.image.saferoot import RootError, SafeRoot

E2FSCK = "/sbin/e2fsck"
RESIZE2FS = "/sbin/resize2fs"
XFS_GROWFS = "/sbin/xfs_growfs"
MOUNT = "/bin/mount"
UMOUNT = "/bin/umount"
#: The filesystem types the worker mounts, and the kernel driver each is mounted with.
DRIVERS = {"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs"}
#: No device nodes, set-id programs or executables of the image take effect while mounted.
MOUNT_OPTIONS = "nodev,nosuid,noexec"


class WorkerError(Exception):
    """A step failed; the message says which and why."""


def _run(argv: list[str], ok: tuple[int, ...] = (0,)) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:
        raise WorkerError(f"cannot run {argv[0]}: {exc.strerror}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode not in ok:
        last = " / ".join(output.splitlines()[-3:])
        raise WorkerError(f"{os.path.basename(argv[0])} failed ({done.returncode}): {last}")
    return output


def _driver(fstype: str) -> str:
    if fstype not in DRIVERS:
        raise WorkerError(f"cannot customize a {fstype} filesystem (only ext2/3/4 and xfs)")
    return DRIVERS[fstype]


class Worker:
    """One image filesystem: check, grow, mount at ``mountpoint``, edit, unmount."""

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self.root: SafeRoot | None = None

    def fsck(self, device: str, fstype: str) -> str:
        """Repair what is safe to repair (ext: ``e2fsck -f -p``; xfs replays its log at mount)."""
        if _driver(fstype) != "ext4":
            return ""
        # 0: clean, 1: errors fixed, 2: fixed (reboot advised: not ours to do); 4+: failed.
        return _run([E2FSCK, "-f", "-p", device], ok=(0, 1, 2))

    def grow(self, device: str, fstype: str) -> str:
        """Grow the filesystem to its partition (ext: unmounted, after fsck; xfs: mounted)."""
        if _driver(fstype) == "ext4":
            if self.root is not None:
                raise WorkerError("grow an ext filesystem before mounting it")
            return _run([RESIZE2FS, device])
        if self.root is None:
            raise WorkerError("grow an xfs filesystem after mounting it")
        return _run([XFS_GROWFS, self.mountpoint])

    def mount(self, device: str, fstype: str) -> None:
        options = MOUNT_OPTIONS + (",nouuid" if fstype == "xfs" else "")
        _run([MOUNT, "-t", _driver(fstype), "-o", options, device, self.mountpoint])
        self.root = SafeRoot(self.mountpoint)

    def umount(self) -> None:
        if self.root is not None:
            self.root.close()
            self.root = None
            os.sync()
            _run([UMOUNT, self.mountpoint])

    def _root(self) -> SafeRoot:
        if self.root is None:
            raise WorkerError("the image is not mounted")
        return self.root

    def stat(self, path: str) -> dict[str, int] | None:
        return self._root().stat(path)

    def exists(self, path: str) -> bool:
        return self._root().exists(path)

    def is_link(self, path: str) -> bool:
        return self._root().is_link(path)

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        return self._root().read(path, limit)

    def listdir(self, path: str) -> list[str]:
        return self._root().listdir(path)

    def makedirs(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._root().makedirs(path, mode, uid, gid)

    def write(
        self,
        path: str,
        data: bytes,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        self._root().write(path, data, mode, uid, gid)

    def remove(self, path: str) -> bool:
        return self._root().remove(path)


OPERATIONS = (
    "fsck", "grow", "mount", "umount", "stat", "exists", "is_link",
    "read", "listdir", "makedirs", "write", "remove",
)  # fmt: skip


def encode(value: Any) -> Any:
    """A value as JSON can carry it (bytes become ``{"b64": ...}``)."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        return base64.b64decode(value["b64"], validate=True)
    return value


#: What a malformed request raises: bad JSON or base64, a missing, extra or mistyped argument
#: (a path that is not a string), a mode or id out of range, nesting too deep for the parser.
BAD_REQUEST = (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError)


def handle(worker: Worker, line: bytes) -> dict[str, Any]:
    """One request line -> one answer (errors included, never raised)."""
    try:
        request = json.loads(line)
        op, args = request["op"], request.get("args", {})
        if op not in OPERATIONS or not isinstance(args, dict):
            raise WorkerError(f"unknown operation {op!r}")
        result = getattr(worker, op)(**{k: decode(v) for k, v in args.items()})
        return {"ok": True, "result": encode(result)}
    except (WorkerError, RootError) as exc:
        return {"ok": False, "error": str(exc)}
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return {"ok": False, "error": f"{exc.strerror or exc}{where}"}
    except BAD_REQUEST as exc:
        return {"ok": False, "error": f"bad request: {type(exc).__name__}: {exc}"}


def serve(port: str, mountpoint: str = "/mnt") -> None:
    """Answer requests on the character device ``port`` until it reads ``{"op": "quit"}``."""
    worker = Worker(mountpoint)
    fd = os.open(port, os.O_RDWR | os.O_CLOEXEC)  # a virtio port opens once

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    send(b'{"ready": true}\n')
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # the host is not connected (yet, or any more)
            time.sleep(0.05)
            continue
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b'{"op": "quit"}':
                worker.umount()
                send(b'{"ok": true, "result": null}\n')
                return
            send(json.dumps(handle(worker, line)).encode() + b"\n")


if __name__ == "__main__":
    serve(sys.argv[1])
