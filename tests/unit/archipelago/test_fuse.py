"""The FUSE export, driven by the kernel: file I/O on the mounted file, and fio --verify at
depth 16 through a direct-I/O loop device over it (the check QEMU 7.2's FUSE export failed).
Needs root and /dev/fuse; the loop tests also losetup and fio."""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from snf.archipelago import fuse, volumes
from snf.archipelago.fuse import FuseExport
from snf.archipelago.store_dir import DirStore
from snf.archipelago.volume import Volume
from tests.conftest import require

MiB = 1 << 20
SIZE = 64 * MiB
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


class MemoryDevice:
    """A bytearray behind a lock, counting calls and the most calls seen running at once."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.data = bytearray(size)
        self.lock = threading.Lock()
        self.flushes = self.trims = self.zeroes = 0
        self.active = self.peak = 0
        self.delay = 0.0  # seconds each read and write takes (without the GIL)
        self.fail: Exception | None = None  # raised by every read and write while set

    @contextmanager
    def _call(self) -> Iterator[None]:
        with self.lock:
            if self.fail is not None:
                raise self.fail
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            yield
        finally:
            with self.lock:
                self.active -= 1

    def read(self, offset: int, length: int) -> bytes:
        with self._call():
            return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        with self._call():
            self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        with self.lock:
            self.flushes += 1

    def trim(self, offset: int, length: int) -> None:
        with self.lock:
            self.trims += 1
            self.data[offset : offset + length] = bytes(length)

    def write_zeroes(self, offset: int, length: int) -> None:
        with self.lock:
            self.zeroes += 1
            self.data[offset : offset + length] = bytes(length)


def require_fuse() -> None:
    require(os.geteuid() == 0, "FUSE exports need root (mount(2))")
    require(os.path.exists("/dev/fuse"), "the kernel has no /dev/fuse")


@pytest.fixture
def device() -> MemoryDevice:
    return MemoryDevice()


@pytest.fixture
def export(device: MemoryDevice, tmp_path: Path) -> Iterator[FuseExport]:
    require_fuse()
    exp = FuseExport(device, tmp_path / "disk")
    exp.start()
    try:
        yield exp
    finally:
        exp.close()


@pytest.fixture
def fd(export: FuseExport) -> Iterator[int]:
    handle = os.open(export.mountpoint, os.O_RDWR)
    try:
        yield handle
    finally:
        os.close(handle)


@contextmanager
def loop_device(path: Path) -> Iterator[str]:
    require(shutil.which("losetup") is not None, "losetup is not installed")
    argv = ["losetup", "--find", "--show", "--direct-io=on", str(path)]
    dev = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert Path(f"/sys/block/{Path(dev).name}/loop/dio").read_text().strip() == "1"
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def fio_verify(dev: str, rw: str, bs: str) -> None:
    require(shutil.which("fio") is not None, "fio is not installed")
    argv = ["fio", "--name=integrity", f"--filename={dev}", "--direct=1", "--ioengine=libaio",
            f"--rw={rw}", f"--bs={bs}", "--size=48M", "--iodepth=16", "--verify=crc32c",
            "--do_verify=1", "--verify_fatal=1"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    """0, or the errno of fallocate(2)."""
    return 0 if _libc.fallocate(fd, mode, offset, length) == 0 else ctypes.get_errno()


def test_the_mountpoint_is_a_regular_file_of_the_device_size(export: FuseExport) -> None:
    st = os.stat(export.mountpoint)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_size, st.st_blksize, st.st_uid, st.st_ino) == (SIZE, 4096, 0, 1)
    assert FuseExport.is_mounted(export.mountpoint) and export.cloned is True
    assert os.statvfs(export.mountpoint).f_bsize == 4096


def test_file_io_reaches_the_device(export: FuseExport, device: MemoryDevice, fd: int) -> None:
    data = os.urandom(3 * MiB + 123)
    assert os.pwrite(fd, data, 5 * MiB - 77) == len(data)
    assert device.data[5 * MiB - 77 : 8 * MiB + 46] == data
    device.data[:5] = b"hello"
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop cached pages: ask the device
    assert os.pread(fd, 5, 0) == b"hello"
    assert os.pread(fd, len(data), 5 * MiB - 77) == data
    assert os.pread(fd, 100, SIZE - 10) == bytes(10)  # short at the end
    assert os.pread(fd, 100, SIZE) == b""
    with pytest.raises(OSError) as exc:
        os.pwrite(fd, b"x", SIZE)
    assert exc.value.errno == errno.ENOSPC
    assert os.pwrite(fd, b"abcdef", SIZE - 3) == 3  # short, as at the end of a block device
    assert device.data[-3:] == b"abc" and os.stat(export.mountpoint).st_size == SIZE


def test_fsync_reaches_flush(device: MemoryDevice, fd: int) -> None:
    os.pwrite(fd, b"x" * 4096, 0)
    before = device.flushes
    os.fsync(fd)
    assert device.flushes == before + 1


def test_punch_hole_and_zero_range_read_back_as_zeros(device: MemoryDevice, fd: int) -> None:
    """A punched range must read back as zeros (fallocate(2)), and a loop device sends the
    block layer's write-zeroes as punch holes: both become write_zeroes, never trim."""
    device.data[:] = b"\xff" * SIZE
    punch = fuse.FALLOC_FL_PUNCH_HOLE | fuse.FALLOC_FL_KEEP_SIZE
    zero = fuse.FALLOC_FL_ZERO_RANGE | fuse.FALLOC_FL_KEEP_SIZE
    assert fallocate(fd, punch, 4096, 8192) == 0
    assert fallocate(fd, zero, MiB + 1, 10) == 0
    assert (device.zeroes, device.trims) == (2, 0)
    assert device.data[4095:12289] == b"\xff" + bytes(8192) + b"\xff"
    assert device.data[MiB : MiB + 12] == b"\xff" + bytes(10) + b"\xff"
    assert os.pread(fd, 8192, 4096) == bytes(8192)
    assert fallocate(fd, punch, SIZE - 4096, 1 << 30) == 0  # clipped at the end
    assert device.data[-4097:] == b"\xff" + bytes(4096)
    assert fallocate(fd, 0, 0, SIZE) == 0  # plain allocation: nothing to do
    assert fallocate(fd, 0, 0, SIZE + 1) == errno.ENOSPC  # cannot grow


def test_truncate_only_to_the_current_size(export: FuseExport, fd: int) -> None:
    os.ftruncate(fd, SIZE)
    with pytest.raises(OSError) as exc:
        os.ftruncate(fd, SIZE // 2)
    assert exc.value.errno == errno.EINVAL and os.stat(export.mountpoint).st_size == SIZE


def test_device_errors(device: MemoryDevice, fd: int, caplog: pytest.LogCaptureFixture) -> None:
    device.fail = RuntimeError("store unreachable")
    with caplog.at_level(logging.ERROR, "snf.archipelago.fuse"):
        for offset in (0, 8 * MiB):  # uncached pages: each read asks the device
            with pytest.raises(OSError) as exc:
                os.pread(fd, 4096, offset)
            assert exc.value.errno == errno.EIO
    assert len([r for r in caplog.records if "store unreachable" in r.getMessage()]) == 1
    device.fail = OSError(errno.ENOSPC, "store full")
    with pytest.raises(OSError) as exc:
        os.pwrite(fd, b"x" * 4096, 0)
    assert exc.value.errno == errno.ENOSPC
    device.fail = None
    assert os.pread(fd, 3, 16 * MiB) == bytes(3)


def test_close_while_idle_unmounts_and_stops(device: MemoryDevice, tmp_path: Path) -> None:
    require_fuse()
    mountpoint = tmp_path / "disk"
    exp = FuseExport(device, mountpoint, workers=3)
    exp.start()
    workers = [t for t in threading.enumerate() if t.name.startswith("fuse-disk-")]
    assert len(workers) == 3 and FuseExport.is_mounted(mountpoint)
    exp.close()
    assert not FuseExport.is_mounted(mountpoint) and not mountpoint.exists()
    assert not any(t.is_alive() for t in workers)
    exp.close()  # idempotent


def test_close_aborts_a_connection_still_in_use(device: MemoryDevice, tmp_path: Path) -> None:
    require_fuse()
    exp = FuseExport(device, tmp_path / "disk")
    exp.start()
    handle = os.open(tmp_path / "disk", os.O_RDWR)
    try:
        exp.close(timeout=0.2)
        assert not FuseExport.is_mounted(tmp_path / "disk")
        with pytest.raises(OSError) as exc:
            os.pread(handle, 4096, 0)
        assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
    finally:
        with suppress(OSError):  # ENOTCONN: the close's FUSE_FLUSH has nobody to answer
            os.close(handle)


def test_start_refuses_a_mount_point(export: FuseExport, device: MemoryDevice) -> None:
    with pytest.raises(Exception, match="already a mount point"):
        FuseExport(device, export.mountpoint).start()


def test_requests_run_concurrently_on_every_worker(
    export: FuseExport, device: MemoryDevice
) -> None:
    device.delay = 0.05
    handle = os.open(export.mountpoint, os.O_RDONLY | os.O_DIRECT)

    def read(index: int) -> int:
        buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
        return os.preadv(handle, [buf], index * MiB)

    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(read, range(8))) == [4096] * 8
    finally:
        os.close(handle)
    assert device.peak == export.workers == 4


@pytest.mark.parametrize("rw,bs", [("randwrite", "4k"), ("randwrite", "64k"), ("write", "1M")])
def test_fio_verify_through_a_loop_device(
    export: FuseExport, device: MemoryDevice, rw: str, bs: str
) -> None:
    with loop_device(export.mountpoint) as dev:
        fio_verify(dev, rw, bs)


def test_fio_verify_through_a_volume(tmp_path: Path) -> None:
    require_fuse()
    store = DirStore(tmp_path / "store")
    volumes.create_volume(store, "vol-1", SIZE)
    with Volume(store, "vol-1", "test") as vol:
        exp = FuseExport(vol, tmp_path / "vol-1")
        exp.start()
        try:
            with loop_device(exp.mountpoint) as dev:
                fio_verify(dev, "randwrite", "4k")
                fio_verify(dev, "write", "1M")
        finally:
            exp.close()
