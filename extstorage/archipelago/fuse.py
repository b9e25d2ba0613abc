"""A FUSE export: one volume as one regular file, served from the volume daemon's own process.

For kernels without nbd, a volume's kernel block device is a loop device
(``losetup --direct-io=on``) over a file.  :class:`FuseExport` makes that file: it speaks the
FUSE kernel protocol on ``/dev/fuse`` itself (``os.read``/``os.write``, ``struct``, mount(2)
through ctypes: no libfuse) and calls a :class:`~snf.archipelago.nbd.BlockDevice` (a
``Volume``) directly, with no NBD hop and no qemu-storage-daemon.  Names below are those of
``<linux/fuse.h>``.

Mount: the mountpoint is itself the file (as with qemu-storage-daemon's FUSE export), created
0600 if missing; ``mount("archipelago", MOUNTPOINT, "fuse.archipelago", MS_NOSUID | MS_NODEV |
MS_NOEXEC, "fd=N,rootmode=100000,user_id=0,group_id=0,allow_other,default_permissions,
max_read=1048576")``.  ``default_permissions`` makes the kernel enforce the mode (0600,
root): with ``allow_other`` alone any local user could read the disk.  Node ``FUSE_ROOT_ID``
is that file: ``S_IFREG | 0600``, uid/gid 0, ``size`` = the device's size, ``blksize`` 4096;
attributes are cached for an hour (``attr_valid``; the size never changes while mounted).

``FUSE_INIT``: protocol 7.26 or later; the reply's minor is the kernel's, at most 38 (the
structure layouts used here are those of 7.38).  Flags: ``FUSE_ASYNC_READ``,
``FUSE_BIG_WRITES``, ``FUSE_ASYNC_DIO`` (the loop device's direct I/O is asynchronous: without
it each loop request blocks until our reply and a queue depth of 16 becomes 1) and
``FUSE_MAX_PAGES`` with ``max_pages`` 256, ``max_write`` 1 MiB (128 KiB on kernels without
``FUSE_MAX_PAGES``).  ``max_background`` 64 (``congestion_threshold`` 48): the kernel's default,
12, would cap requests in flight below fio's depth.  No ``FUSE_WRITEBACK_CACHE``: every write
reaches the device before it is acknowledged; no ``FUSE_AUTO_INVAL_DATA``.

Requests: ``FUSE_GETATTR``; ``FUSE_SETATTR`` (``FATTR_SIZE`` other than the current size:
``EINVAL``, so opening with ``O_TRUNC`` fails; times, mode and owner are ignored);
``FUSE_OPEN`` (``open_flags`` 0: not ``FOPEN_DIRECT_IO``, which would also force the page
cache off for buffered users and serialize writes without ``FOPEN_PARALLEL_DIRECT_WRITES``;
the loop device's ``O_DIRECT`` already bypasses the page cache through the kernel's
``direct_IO`` path; not ``FOPEN_KEEP_CACHE``, so each open drops stale cached pages);
``FUSE_READ`` (short at the end of the device); ``FUSE_WRITE`` (a write starting at or past
the end: ``ENOSPC``, as a block device answers; one crossing the end is short);
``FUSE_FSYNC`` -> ``device.flush()`` (the loop device turns a block-layer flush into an
fsync); ``FUSE_FLUSH`` (every close), ``FUSE_RELEASE``, ``FUSE_ACCESS``, ``FUSE_DESTROY``: 0;
``FUSE_STATFS``: 4096-byte blocks, none free; ``FUSE_FALLOCATE``: ``FALLOC_FL_PUNCH_HOLE |
FALLOC_FL_KEEP_SIZE`` and ``FALLOC_FL_ZERO_RANGE`` -> ``device.write_zeroes`` (a punched range
must read back as zeros, and the loop device turns both discards and block-layer write-zeroes
into punch holes: ``trim`` may leave old data, which is wrong for the latter), plain
allocation inside the device -> 0, growing -> ``ENOSPC``, other modes ``EOPNOTSUPP``;
``FUSE_FORGET``, ``FUSE_BATCH_FORGET``, ``FUSE_INTERRUPT``, ``FUSE_NOTIFY_REPLY``: no reply
(device calls cannot be interrupted); everything else, ``FUSE_GETXATTR``, ``FUSE_LISTXATTR``
and ``FUSE_LSEEK`` included, ``ENOSYS`` (the kernel then stops asking; xattrs matter, as the
kernel would otherwise look up ``security.capability`` on every write).  A device ``OSError``
keeps its errno for ``ENOSPC``; any other device exception is ``EIO`` (logged once per
operation and exception type).

Threads: ``workers`` threads (default 4), each reading requests on its own descriptor cloned
with ``FUSE_DEV_IOC_CLONE`` (one shared descriptor if the ioctl fails; replies always go to
the descriptor the request came from) into its own buffer of ``max_write`` + 4 KiB (anonymous
memory, touched as requests need it); a request's data is copied out before the device sees
it, and each thread handles one request at a time.  Devices must be thread safe.

:meth:`FuseExport.close` detaches the mount (``umount2(MNT_DETACH)``); the kernel ends the
connection once nobody uses the file, and the threads stop.  If the file is still open after
``timeout`` (a loop device still attached), the connection is aborted through fusectl
(``/sys/fs/fuse/connections/N/abort``): its users get errors from then on.  The connection
lives as long as this process: if the volume daemon dies, the file and its loop device fail.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from snf.common.errors import SnfError

from .nbd import BlockDevice

log = logging.getLogger(__name__)

# enum fuse_opcode
FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_SETATTR = 1, 2, 3, 4
FUSE_OPEN, FUSE_READ, FUSE_WRITE, FUSE_STATFS, FUSE_RELEASE = 14, 15, 16, 17, 18
FUSE_FSYNC, FUSE_GETXATTR, FUSE_LISTXATTR, FUSE_FLUSH, FUSE_INIT = 20, 22, 23, 25, 26
FUSE_ACCESS, FUSE_INTERRUPT, FUSE_DESTROY, FUSE_NOTIFY_REPLY = 34, 36, 38, 41
FUSE_BATCH_FORGET, FUSE_FALLOCATE, FUSE_LSEEK = 42, 43, 46
# FUSE_INIT flags, setattr and fallocate bits, the clone ioctl: _IOR(229, 0, uint32_t)
FUSE_ASYNC_READ, FUSE_BIG_WRITES, FUSE_ASYNC_DIO, FUSE_MAX_PAGES = 1, 1 << 5, 1 << 15, 1 << 22
FATTR_SIZE = 1 << 3
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
FUSE_DEV_IOC_CLONE = 0x8004E500
MS_NOSUID, MS_NODEV, MS_NOEXEC, MNT_DETACH = 2, 4, 8, 2

PROTOCOL_MAJOR, PROTOCOL_MINOR, MIN_MINOR = 7, 38, 26
MAX_WRITE = 1 << 20
MAX_BACKGROUND = 64
ATTR_TIMEOUT = 3600
BLOCK = 4096
HEADROOM = 4096  # room for fuse_in_header + fuse_write_in in front of the data
_PAGE = mmap.PAGESIZE

_IN = struct.Struct("<IIQQIIIHH")  # fuse_in_header
_OUT = struct.Struct("<IiQ")  # fuse_out_header
_INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags
_INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
_ATTR_OUT = struct.Struct("<QII QQQQQQ IIIIIIIIII")  # fuse_attr_out with its fuse_attr
_OPEN_OUT = struct.Struct("<QII")
_RW_IN = struct.Struct("<QQI")  # fuse_read_in / fuse_write_in: fh, offset, size
_WRITE_IN_SIZE = 40
_WRITE_OUT = struct.Struct("<II")
_SETATTR_IN = struct.Struct("<I4xQQ")  # valid, fh, size
_STATFS_OUT = struct.Struct("<QQQQQIII28x")  # fuse_kstatfs
_FALLOCATE_IN = struct.Struct("<QQQI")  # fh, offset, length, mode
_NO_REPLY = {FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT, FUSE_NOTIFY_REPLY}
_GONE = {errno.ENODEV, errno.ECONNABORTED}  # the connection ended

Result = int | bytes  # an errno (0: success, no payload) or a payload
Handler = Callable[[memoryview], Result]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class FuseError(SnfError):
    """A FUSE export could not be set up."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_id(path: Path) -> str | None:
    """``major:minor`` of the topmost mount on ``path``, from /proc/self/mountinfo (which never
    touches the mounted file system, so a hung server cannot hang the caller)."""
    target = os.path.join(os.path.realpath(path.parent), path.name)
    for char, code in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        target = target.replace(char, code)
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4 and fields[4] == target:
            found = fields[2]
    return found


class FuseExport:
    """One device as one regular file at ``mountpoint``: :meth:`start`, then :meth:`close`."""

    def __init__(self, device: BlockDevice, mountpoint: Path, *, workers: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.device = device
        self.mountpoint = Path(mountpoint)
        self.workers = workers
        self.max_write = MAX_WRITE
        #: whether FUSE_DEV_IOC_CLONE worked (None until a second worker started)
        self.cloned: bool | None = None
        self._fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._conn: str | None = None  # major:minor of our mount
        self._created = self._closed = False
        self._lock = threading.Lock()
        self._logged: set[tuple[int, str]] = set()
        self._time = int(time.time())
        self._handlers: dict[int, Handler] = {
            FUSE_GETATTR: self._getattr,
            FUSE_SETATTR: self._setattr,
            FUSE_OPEN: lambda body: _OPEN_OUT.pack(0, 0, 0),
            FUSE_READ: self._read,
            FUSE_WRITE: self._write,
            FUSE_STATFS: self._statfs,
            FUSE_FSYNC: self._fsync,
            FUSE_FALLOCATE: self._fallocate,
            FUSE_FLUSH: lambda body: 0,
            FUSE_RELEASE: lambda body: 0,
            FUSE_ACCESS: lambda body: 0,
            FUSE_DESTROY: lambda body: 0,
        }

    @staticmethod
    def is_mounted(path: Path | str) -> bool:
        """Is anything mounted on ``path``?  (Reads /proc/self/mountinfo only.)"""
        return _mount_id(Path(path)) is not None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Mount and serve; returns once the kernel has the reply to ``FUSE_INIT``."""
        mp = self.mountpoint
        if self._closed or self._fds:
            raise FuseError(f"the FUSE export on {mp} was already started")
        if self.is_mounted(mp):
            raise FuseError(f"{mp} is already a mount point")
        if not mp.exists():
            mp.touch(mode=0o600)
            self._created = True
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        self._fds.append(fd)
        data = (f"fd={fd},rootmode=100000,user_id=0,group_id=0,allow_other,"
                f"default_permissions,max_read={MAX_WRITE}")  # fmt: skip
        try:
            try:
                ret = _libc.mount(b"archipelago", os.fsencode(mp), b"fuse.archipelago",
                                  MS_NOSUID | MS_NODEV | MS_NOEXEC, data.encode())  # fmt: skip
                _check(ret, f"mount {mp}")
            except OSError as exc:
                raise FuseError(f"cannot mount a FUSE export on {mp}: {exc.strerror}") from None
            self._conn = _mount_id(mp)
            self._init(fd)
            for index in range(self.workers):
                wfd = fd if index == 0 else self._clone(fd)
                name = f"fuse-{mp.name}-{index}"
                thread = threading.Thread(target=self._serve, args=(wfd,), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.close(timeout=1)
            raise
        log.info("FUSE export on %s: %d bytes, %d workers, max_write %d, cloned fds: %s",
                 mp, self.device.size, self.workers, self.max_write, self.cloned)  # fmt: skip

    def _init(self, fd: int) -> None:
        buf = mmap.mmap(-1, MAX_WRITE + HEADROOM)
        n = os.readv(fd, [buf])
        _, opcode, unique, *_ = _IN.unpack_from(buf)
        if opcode != FUSE_INIT or n < _IN.size + _INIT_IN.size:
            raise FuseError(f"FUSE on {self.mountpoint}: expected FUSE_INIT, got opcode {opcode}")
        major, minor, readahead, flags = _INIT_IN.unpack_from(buf, _IN.size)
        if major != PROTOCOL_MAJOR or minor < MIN_MINOR:
            self._reply(fd, unique, errno.EPROTO)
            raise FuseError(f"the kernel speaks FUSE {major}.{minor}; 7.{MIN_MINOR}+ is needed")
        want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ASYNC_DIO | FUSE_MAX_PAGES
        if not flags & FUSE_MAX_PAGES:
            self.max_write = 32 * _PAGE  # the kernel's fixed limit without FUSE_MAX_PAGES
        reply = _INIT_OUT.pack(
            PROTOCOL_MAJOR, min(minor, PROTOCOL_MINOR), min(readahead, self.max_write),
            flags & want, MAX_BACKGROUND, MAX_BACKGROUND * 3 // 4, self.max_write, 1,
            self.max_write // _PAGE, 0, 0,
        )  # fmt: skip
        self._reply(fd, unique, reply)

    def _clone(self, fd: int) -> int:
        """A descriptor of our own on the connection (or ``fd`` itself if cloning fails)."""
        if self.cloned is False:
            return fd
        new = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(new, FUSE_DEV_IOC_CLONE, struct.pack("I", fd))
        except OSError as exc:
            os.close(new)
            log.warning("FUSE_DEV_IOC_CLONE failed (%s): workers share one descriptor", exc)
            self.cloned = False
            return fd
        self.cloned = True
        self._fds.append(new)
        return new

    def close(self, timeout: float = 10.0) -> None:
        """Unmount and stop the threads (idempotent); see the module docstring for ``timeout``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._conn is not None and self.is_mounted(self.mountpoint):
            try:
                _check(_libc.umount2(os.fsencode(self.mountpoint), MNT_DETACH), "umount")
            except OSError as exc:
                log.warning("cannot unmount %s: %s", self.mountpoint, exc)
        if not self._join(timeout):
            log.warning("%s is still in use after %.1f s: aborting its FUSE connection",
                        self.mountpoint, timeout)  # fmt: skip
            self._abort()
            if not self._join(timeout):
                log.error("FUSE workers of %s did not stop", self.mountpoint)
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self._created:
            self.mountpoint.unlink(missing_ok=True)

    def _join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _abort(self) -> None:
        if self._conn is None:
            return
        major, minor = (int(part) for part in self._conn.split(":"))
        connections = Path("/sys/fs/fuse/connections")
        try:
            if not any(connections.iterdir()):
                _check(_libc.mount(b"fusectl", bytes(connections), b"fusectl", 0, None), "fusectl")
            (connections / str(major << 20 | minor) / "abort").write_text("1\n")
        except OSError as exc:
            log.error("cannot abort the FUSE connection of %s: %s", self.mountpoint, exc)

    # --- the request loop ----------------------------------------------------------------------

    def _serve(self, fd: int) -> None:
        buf = mmap.mmap(-1, self.max_write + HEADROOM)
        view = memoryview(buf)
        while True:
            try:
                n = os.readv(fd, [buf])
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # interrupted while we read it
                    continue
                if exc.errno not in _GONE:
                    log.error("reading /dev/fuse for %s: %s", self.mountpoint, exc)
                return
            self._handle(fd, view[:n])

    def _handle(self, fd: int, request: memoryview) -> None:
        _, opcode, unique, *_ = _IN.unpack_from(request)
        if opcode in _NO_REPLY:
            return
        handler = self._handlers.get(opcode)
        result: Result = errno.ENOSYS
        if handler is not None:
            try:
                result = handler(request[_IN.size :])
            except OSError as exc:
                result = errno.ENOSPC if exc.errno == errno.ENOSPC else self._failed(opcode, exc)
            except Exception as exc:
                result = self._failed(opcode, exc)
        self._reply(fd, unique, result)

    def _failed(self, opcode: int, exc: Exception) -> int:
        kind = (opcode, type(exc).__name__)
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("FUSE opcode %d on %s failed (reported as EIO; logged once): %r",
                      opcode, self.mountpoint, exc, exc_info=exc)  # fmt: skip
        return errno.EIO

    def _reply(self, fd: int, unique: int, result: Result) -> None:
        if isinstance(result, int):
            parts = [_OUT.pack(_OUT.size, -result, unique)]
        else:
            parts = [_OUT.pack(_OUT.size + len(result), 0, unique), result]
        try:
            os.writev(fd, parts)
        except OSError as exc:  # ENOENT: the request was interrupted or aborted meanwhile
            if exc.errno != errno.ENOENT and exc.errno not in _GONE:
                log.error("replying on /dev/fuse for %s: %s", self.mountpoint, exc)

    # --- operations ----------------------------------------------------------------------------

    def _getattr(self, body: memoryview) -> Result:
        size, t = self.device.size, self._time
        return _ATTR_OUT.pack(
            ATTR_TIMEOUT, 0, 0,
            1, size, (size + 511) // 512, t, t, t,
            0, 0, 0, stat.S_IFREG | 0o600, 1, 0, 0, 0, BLOCK, 0,
        )  # fmt: skip

    def _setattr(self, body: memoryview) -> Result:
        valid, _, size = _SETATTR_IN.unpack_from(body)
        if valid & FATTR_SIZE and size != self.device.size:
            return errno.EINVAL
        return self._getattr(body)

    def _read(self, body: memoryview) -> Result:
        _, offset, length = _RW_IN.unpack_from(body)
        length = min(length, self.device.size - offset)
        return self.device.read(offset, length) if length > 0 else b""

    def _write(self, body: memoryview) -> Result:
        _, offset, length = _RW_IN.unpack_from(body)
        length = min(length, self.device.size - offset)
        if length <= 0:
            return errno.ENOSPC
        self.device.write(offset, bytes(body[_WRITE_IN_SIZE : _WRITE_IN_SIZE + length]))
        return _WRITE_OUT.pack(length, 0)

    def _statfs(self, body: memoryview) -> Result:
        return _STATFS_OUT.pack(self.device.size // BLOCK, 0, 0, 1, 0, BLOCK, 255, BLOCK)

    def _fsync(self, body: memoryview) -> Result:
        self.device.flush()
        return 0

    def _fallocate(self, body: memoryview) -> Result:
        _, offset, length, mode = _FALLOCATE_IN.unpack_from(body)
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            return errno.EOPNOTSUPP
        size = self.device.size
        if offset + length > size and not mode & FALLOC_FL_KEEP_SIZE:
            return errno.ENOSPC
        length = min(length, size - offset)
        if length > 0 and mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            self.device.write_zeroes(offset, length)
        return 0
