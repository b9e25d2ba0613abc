"""Customize a deployed disk: grow its last partition, then check, grow and mount the root
filesystem and run the tasks of ``tasks.py`` on it, in the helper VM or directly.

The partition table and the superblock magic numbers are read here, on the node, by
bounds-checked pure Python (``partitions.py``); the filesystems themselves are parsed only
by a kernel: the helper VM's (``helper`` mode) or the node's (``direct`` mode, for trusted
images, mounted ``nodev,nosuid,noexec``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from snf.common.config import ImageConfig
from snf.common.errors import InvalidInput, SnfError

from . import partitions
from .agent import RootError, Worker, WorkerError
from .helper_image import helper_files
from .helper_vm import HelperVM
from .params import TASKS
from .tasks import Context, Guest, run_mounted_tasks

LOSETUP = "/sbin/losetup"


class CustomizeError(SnfError):
    """Customization failed inside the image."""


@dataclass(frozen=True)
class RootFs:
    partition: partitions.Partition
    fstype: str  # ext2, ext3, ext4 or xfs
    grown: bool  # the partition was grown: grow the filesystem too


def disk_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def pread(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def apply_writes(path: str, writes: list[partitions.Write]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for w in writes:
            os.pwrite(fd, w.data, w.offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def fs_type(superblock: bytes) -> str | None:
    """ext2/ext3/ext4 or xfs from a filesystem's first 2 KiB; None for anything else."""
    if superblock[:4] == b"XFSB":
        return "xfs"
    if len(superblock) >= 1120 and superblock[1080:1082] == b"\x53\xef":
        compat = int.from_bytes(superblock[1116:1120], "little")
        incompat = int.from_bytes(superblock[1120:1124], "little")
        if incompat & (0x40 | 0x80 | 0x200):  # extents, 64bit, flex_bg
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"  # has_journal
    return None


def find_root(disk: str, table: partitions.Table, wanted: int | None, grown: int | None) -> RootFs:
    """The root partition: ROOT_PARTITION if given, else the last with ext or xfs."""
    found = []
    for part in table.partitions:
        kind = fs_type(pread(disk, part.start, 2048))
        found.append((part, kind))
        if wanted is not None and part.number == wanted:
            if kind is None:
                raise InvalidInput(f"ROOT_PARTITION {wanted} holds no ext2/3/4 or xfs filesystem")
            return RootFs(part, kind, part.number == grown)
    if wanted is not None:
        raise InvalidInput(f"ROOT_PARTITION {wanted}: the image has no such partition")
    usable = [(p, k) for p, k in found if k is not None]
    if not usable:
        raise InvalidInput("the image has no ext2/3/4 or xfs partition to customize")
    part, kind = max(usable, key=lambda pk: pk[0].end)
    return RootFs(part, kind, part.number == grown)  # type: ignore[arg-type]


# --- sessions: a Worker here, or the agent in the helper VM --------------------------------------


class DirectSession:
    """The worker in this process, on a loop device of the root partition."""

    def __init__(self, disk: str, part: partitions.Partition) -> None:
        out = subprocess.run(
            [LOSETUP, "--find", "--show", "--offset", str(part.start),
             "--sizelimit", str(part.size), disk],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise CustomizeError(f"losetup {disk}: {out.stderr.strip()}")
        self.device = out.stdout.strip()
        self.mountpoint = tempfile.mkdtemp(prefix="snf-image-")
        self.worker = Worker(self.mountpoint)

    def call(self, op: str, **args: Any) -> Any:
        try:
            return getattr(self.worker, op)(**args)
        except (WorkerError, RootError) as exc:
            raise CustomizeError(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CustomizeError(f"{exc.strerror or exc}{where}") from None

    def close(self) -> None:
        try:
            self.worker.umount()
        finally:
            subprocess.run([LOSETUP, "-d", self.device], capture_output=True, check=False)
            os.rmdir(self.mountpoint)


class HelperSession:
    def __init__(self, disk: str, root: RootFs, config: ImageConfig) -> None:
        python = str(config.helper_python)
        files = helper_files(config.helper_cache_dir, config.helper_kernel, python)
        self.vm = HelperVM(
            files,
            disk,
            "xfs" if root.fstype == "xfs" else "ext4",
            accel=config.helper_accel,
            memory_mib=config.helper_memory_mib,
            call_timeout=config.helper_timeout,
        )
        self.device = f"/dev/vda{root.partition.number}"

    def call(self, op: str, **args: Any) -> Any:
        return self.vm.call(op, **args)

    def close(self) -> None:
        try:
            self.vm.quit()
        finally:
            self.vm.close()


Session = DirectSession | HelperSession


@contextlib.contextmanager
def session(disk: str, root: RootFs, config: ImageConfig) -> Iterator[Session]:
    s: Session
    if config.mode == "direct":
        s = DirectSession(disk, root.partition)
    else:
        s = HelperSession(disk, root, config)
    ok = False
    try:
        yield s
        ok = True
    finally:
        if ok:
            s.close()
        else:
            with contextlib.suppress(Exception):  # the first error is the one to report
                s.close()


def customize(disk: str, ctx: Context, config: ImageConfig) -> None:
    """Run every task the image's properties do not exclude on ``disk``."""
    p = ctx.params
    if all(p.excluded(t) for t in TASKS):
        ctx.say("every customization task is excluded: the image is deployed as it is")
        return
    if p.os_family != "linux":
        raise InvalidInput(
            f"OSFAMILY {p.os_family}: snf-image customizes Linux images only; "
            "set the image property EXCLUDE_ALL_TASKS=yes to deploy it unchanged"
        )
    size = disk_size(disk)
    head = pread(disk, 0, min(partitions.HEAD_BYTES, size))
    table = partitions.read_table(head, size)
    if not table.partitions:
        raise InvalidInput("the image's partition table lists no partition")
    writes: list[partitions.Write] = []
    if not p.excluded("FIXPARTITIONTABLE"):
        table, writes = partitions.grow_last(table, head, size)
    last = max(table.partitions, key=lambda q: q.end)
    root = find_root(disk, table, p.root_partition, last.number if writes else None)
    if writes:  # only once the root is known to be there: a refusal changes nothing
        apply_writes(disk, writes)
        ctx.say(f"partition {last.number} grown to {last.size >> 20} MiB")
    resize = root.grown and not p.excluded("FILESYSTEMRESIZE")
    number = root.partition.number
    ctx.say(f"root filesystem: partition {number} ({root.fstype}), {config.mode} mode")
    with session(disk, root, config) as s:
        if isinstance(s, HelperSession):
            ctx.say(f"helper VM ready in {s.vm.boot_seconds:.1f} s")
        s.call("fsck", device=s.device, fstype=root.fstype)
        if resize and root.fstype != "xfs":
            s.call("grow", device=s.device, fstype=root.fstype)
        s.call("mount", device=s.device, fstype=root.fstype)
        if resize and root.fstype == "xfs":
            s.call("grow", device=s.device, fstype=root.fstype)
        if resize:
            ctx.say("filesystem grown to its partition")
        run_mounted_tasks(Guest(s), ctx)
    ctx.say("customization done")
