"""snf.image.customize: filesystem types from real superblocks, the choice of the root
partition, and ``customize()`` in ``direct`` mode on a real ext4/MBR disk image (loop device,
e2fsck, resize2fs, mount): the tasks' effects, the partition and filesystem grown, images
left byte-identical when they must be, and no loop device or mount left behind, also when a
task fails midway."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.common.config import ImageConfig
from snf.common.errors import InvalidInput
from snf.image import customize as cz
from snf.image import partitions, tasks
from snf.image.ganeti_env import parse_os_env
from snf.image.params import parse_params
from snf.image.tasks import Context
from tests.conftest import require
from tests.testbed import images

MiB = 1 << 20
DISK_SIZE = 64 * MiB
FS_SIZE = 48 * MiB  # images.build_disk's default, at 1 MiB
ENV = {
    "OS_API_VERSION": "20",
    "OS_NAME": "snf-image",
    "INSTANCE_NAME": "vm7.example.org",
    "INSTANCE_UUID": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "NIC_COUNT": "1",
    "NIC_0_MAC": "aa:00:00:00:00:07",
}
PAYLOAD = b"hello from the tests\n"


def need(*commands: str) -> None:
    for command in commands:
        require(shutil.which(command) is not None, f"{command} is not installed")


# --- fs_type on real superblocks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "size", "expected"),
    [
        (["mkfs.ext2", "-q", "-F"], 4 * MiB, "ext2"),
        (["mkfs.ext3", "-q", "-F"], 4 * MiB, "ext3"),
        (["mkfs.ext4", "-q", "-F"], 4 * MiB, "ext4"),
        (["mkfs.ext4", "-q", "-F", "-O", "^has_journal"], 4 * MiB, "ext4"),  # still extents
        (["mkfs.ext4", "-q", "-F", "-O", "^extent,^flex_bg,^64bit"], 4 * MiB, "ext3"),
        (["mkfs.xfs", "-q", "-f"], 320 * MiB, "xfs"),  # sparse; mkfs.xfs wants >= 300 MB
        (["mkswap"], 4 * MiB, None),
    ],
    ids=["ext2", "ext3", "ext4", "ext4-no-journal", "ext4-as-ext3", "xfs", "swap"],
)
def test_fs_type_of_a_real_superblock(
    tmp_path: Path, argv: list[str], size: int, expected: str | None
) -> None:
    need(argv[0])
    image = tmp_path / "fs"
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run([*argv, str(image)], check=True, capture_output=True)
    head = image.read_bytes()[:2048]
    assert cz.fs_type(head) == expected
    if expected and expected != "xfs":
        assert cz.fs_type(head[:1100]) is None  # too short to hold the feature flags


def test_fs_type_of_junk() -> None:
    junk = bytearray(os.urandom(2048))
    junk[0:4], junk[1080:1082] = b"XFS!", b"\x00\x00"  # no magic by chance
    assert cz.fs_type(bytes(junk)) is None
    assert cz.fs_type(bytes(2048)) is None
    assert cz.fs_type(b"") is None
    assert cz.fs_type(b"XFSB") == "xfs"


# --- find_root ------------------------------------------------------------------------------------


def two_partition_disk(path: Path, first: list[str] | None, second: list[str] | None) -> None:
    """An MBR disk: partition 1 at 1 MiB (4 MiB), partition 2 at 5 MiB (8 MiB), each made
    with the mkfs ``argv`` given, or random bytes for None."""
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
        f.write(partitions.make_mbr([(MiB, 4 * MiB, "83"), (5 * MiB, 8 * MiB, "83")]))
        for start, size, argv in ((MiB, 4 * MiB, first), (5 * MiB, 8 * MiB, second)):
            if argv is None:
                f.seek(start)
                f.write(os.urandom(size))
    for start, size, argv in ((MiB, 4 * MiB, first), (5 * MiB, 8 * MiB, second)):
        if argv is not None:
            need(argv[0])
            subprocess.run([*argv, "-E", f"offset={start}", str(path), f"{size // 1024}k"],
                           check=True, capture_output=True)  # fmt: skip


def table_of(path: Path) -> partitions.Table:
    size = path.stat().st_size
    return partitions.read_table(cz.pread(str(path), 0, partitions.HEAD_BYTES), size)


EXT2 = ["mkfs.ext2", "-q", "-F"]
EXT4 = ["mkfs.ext4", "-q", "-F"]


@pytest.mark.parametrize(
    ("first", "second", "wanted", "number", "fstype"),
    [
        (None, EXT4, None, 2, "ext4"),
        (None, EXT4, 2, 2, "ext4"),
        (EXT4, None, None, 1, "ext4"),
        (EXT2, EXT4, None, 2, "ext4"),  # the one that ends last
        (EXT2, EXT4, 1, 1, "ext2"),
    ],
)
def test_find_root(
    tmp_path: Path,
    first: list[str] | None,
    second: list[str] | None,
    wanted: int | None,
    number: int,
    fstype: str,
) -> None:
    disk = tmp_path / "disk"
    two_partition_disk(disk, first, second)
    table = table_of(disk)
    root = cz.find_root(str(disk), table, wanted, grown=2)
    assert (root.partition, root.fstype) == (table.partitions[number - 1], fstype)
    assert root.grown == (number == 2)


@pytest.mark.parametrize(
    ("first", "second", "wanted", "error"),
    [
        (None, EXT4, 1, "ROOT_PARTITION 1 holds no ext2/3/4 or xfs filesystem"),
        (EXT4, None, 2, "ROOT_PARTITION 2 holds no ext2/3/4 or xfs filesystem"),
        (None, EXT4, 3, "ROOT_PARTITION 3: the image has no such partition"),
        (None, None, None, "the image has no ext2/3/4 or xfs partition to customize"),
    ],
)
def test_find_root_refuses(
    tmp_path: Path,
    first: list[str] | None,
    second: list[str] | None,
    wanted: int | None,
    error: str,
) -> None:
    disk = tmp_path / "disk"
    two_partition_disk(disk, first, second)
    with pytest.raises(InvalidInput, match=error):
        cz.find_root(str(disk), table_of(disk), wanted, grown=None)


# --- customize() without touching the disk --------------------------------------------------------


def params(**props: str) -> dict[str, str]:
    files = [{"path": images.INJECTED, "contents": base64.b64encode(PAYLOAD).decode()}]
    return {
        "img_id": "map:img",
        "img_format": "diskdump",
        "img_passwd_hash": "$5$salt$" + "a" * 43,
        "img_properties": json.dumps(props),
        "img_personality": json.dumps(files),
    }


def context(osp: dict[str, str], said: list[str]) -> Context:
    return Context(parse_params(osp), parse_os_env(ENV), said.append)


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def plain_disk(tmp_path: Path) -> Path:
    """A disk of random bytes: customize() must not even read a partition table here."""
    disk = tmp_path / "disk"
    disk.write_bytes(os.urandom(4 * MiB))
    return disk


@pytest.mark.parametrize("family", ["", "linux", "windows", "FreeBSD"])
def test_exclude_all_tasks_leaves_the_disk_as_it_is(plain_disk: Path, family: str) -> None:
    before = digest(plain_disk)
    said: list[str] = []
    osp = params(EXCLUDE_ALL_TASKS="yes", OSFAMILY=family)
    cz.customize(str(plain_disk), context(osp, said), ImageConfig(mode="direct"))
    assert digest(plain_disk) == before
    assert said == ["every customization task is excluded: the image is deployed as it is"]


def test_every_task_excluded_one_by_one_is_all_excluded(plain_disk: Path) -> None:
    before = digest(plain_disk)
    osp = params(**{f"EXCLUDE_TASK_{name}": "yes" for name in cz.TASKS})
    cz.customize(str(plain_disk), context(osp, []), ImageConfig(mode="direct"))
    assert digest(plain_disk) == before


@pytest.mark.parametrize("family", ["windows", "Windows ", "freebsd"])
def test_a_non_linux_image_needs_exclude_all_tasks(plain_disk: Path, family: str) -> None:
    before = digest(plain_disk)
    osp = params(OSFAMILY=family, EXCLUDE_TASK_CHANGEPASSWORD="yes")
    name = family.strip().lower()
    with pytest.raises(InvalidInput) as caught:
        cz.customize(str(plain_disk), context(osp, []), ImageConfig(mode="direct"))
    assert str(caught.value) == (
        f"OSFAMILY {name}: snf-image customizes Linux images only; "
        "set the image property EXCLUDE_ALL_TASKS=yes to deploy it unchanged"
    )
    assert digest(plain_disk) == before


# --- customize() in direct mode on a real disk ----------------------------------------------------


class Leftovers:
    """Loop devices on the disk and mounts below the test's folder, from ``losetup -a`` and
    /proc/mounts (other loop devices and mounts on this machine are not ours to judge)."""

    def __init__(self, disk: Path, top: Path) -> None:
        self.disk, self.top = disk, top

    def loops(self) -> list[str]:
        out = subprocess.run([cz.LOSETUP, "-a"], capture_output=True, text=True, check=True)
        return [line for line in out.stdout.splitlines() if f"({self.disk})" in line]

    def mounts(self) -> list[str]:
        with open("/proc/mounts") as f:
            return [line for line in f if line.split()[1].startswith(str(self.top))]

    def __call__(self) -> tuple[list[str], list[str]]:
        return self.loops(), self.mounts()


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 64 MiB disk: an MBR, one 48 MiB ext4 partition at 1 MiB holding a small Linux root.

    Mount points (customize's, and the tests' own) are made in the test's folder; after the
    test, no loop device of the disk and no mount there may be left, and no mount point."""
    require(os.geteuid() == 0, "direct mode needs root (loop devices, mount)")
    need("mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount", "losetup")
    require(images.BUSYBOX.exists(), f"{images.BUSYBOX} is not installed")
    mountpoints = tmp_path / "mnt"
    mountpoints.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(mountpoints))
    path = tmp_path / "disk"
    images.build_disk(path, DISK_SIZE, images.build_root(tmp_path / "root"))
    leftovers = Leftovers(path, tmp_path)
    assert leftovers() == ([], [])
    yield path
    assert leftovers() == ([], [])
    assert list(mountpoints.iterdir()) == []


def direct(osp: dict[str, str], disk: Path) -> list[str]:
    said: list[str] = []
    cz.customize(str(disk), context(osp, said), ImageConfig(mode="direct"))
    return said


def superblock(disk: Path, part: partitions.Partition) -> tuple[int, int]:
    """(blocks, block size) from the ext superblock of ``part``."""
    sb = cz.pread(str(disk), part.start + 1024, 1024)
    blocks_lo, log_size = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 24)[0]
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0]
    return blocks_lo | blocks_hi << 32, 1024 << log_size


def fsck_clean(disk: Path, part: partitions.Partition) -> bool:
    done = subprocess.run(["e2fsck", "-fn", f"{disk}?offset={part.start}"], capture_output=True)
    return done.returncode == 0


def test_direct_customization(disk: Path) -> None:
    said = direct(params(), disk)

    (part,) = table_of(disk).partitions
    assert (part.number, part.start, part.end) == (1, MiB, DISK_SIZE)  # grown to the end
    assert superblock(disk, part) == (part.size // 4096, 4096)  # and the filesystem with it
    assert fsck_clean(disk, part)
    with images.mounted(disk) as root:
        assert (root / "etc/hostname").read_text() == "vm7.example.org\n"
        assert (root / "etc/shadow").read_text().startswith("root:$5$salt$" + "a" * 43 + ":")
        assert (root / images.INJECTED.lstrip("/")).read_bytes() == PAYLOAD
        assert (root / "etc/machine-id").read_bytes() == b""
        assert sorted(os.listdir(root / "etc/ssh")) == ["sshd_config"]
        assert "iface eth0 inet dhcp" in (root / "etc/network/interfaces").read_text()
        assert (root / "bin/busybox").read_bytes() == images.BUSYBOX.read_bytes()
    assert said[:3] == [
        "partition 1 grown to 63 MiB",
        "root filesystem: partition 1 (ext4), direct mode",
        "filesystem grown to its partition",
    ]
    assert "host name: vm7.example.org" in said
    assert said[-1] == "customization done"


@pytest.mark.parametrize(
    ("excluded", "part_grown", "fs_grown"),
    [("FIXPARTITIONTABLE", False, False), ("FILESYSTEMRESIZE", True, False)],
)
def test_direct_without_growing(
    disk: Path, excluded: str, part_grown: bool, fs_grown: bool
) -> None:
    direct(params(**{f"EXCLUDE_TASK_{excluded}": "yes"}), disk)
    (part,) = table_of(disk).partitions
    assert part.end == (DISK_SIZE if part_grown else MiB + FS_SIZE)
    blocks, size = superblock(disk, part)
    assert blocks * size == (part.size if fs_grown else FS_SIZE)
    assert fsck_clean(disk, part)
    with images.mounted(disk) as root:
        assert (root / "etc/hostname").read_text() == "vm7.example.org\n"


def test_direct_with_a_root_partition_that_is_not_there(disk: Path) -> None:
    with pytest.raises(InvalidInput, match="ROOT_PARTITION 2: the image has no such partition"):
        direct(params(ROOT_PARTITION="2"), disk)


@pytest.mark.parametrize("how", ["missing-user", "unexpected-error"])
def test_a_task_failing_midway_leaves_no_loop_or_mount(
    disk: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    osp = params()
    if how == "missing-user":  # the second task refuses
        osp["img_properties"] = json.dumps({"USERS": "ghost"})
        expected: tuple[type[Exception], str] = (InvalidInput, "user ghost is not in the image")
    else:  # the second task has a bug

        def boom(guest: tasks.Guest, ctx: Context) -> None:
            raise RuntimeError("boom")

        first = tasks.MOUNTED_TASKS[0]
        monkeypatch.setattr(tasks, "MOUNTED_TASKS", (first, ("CHANGEPASSWORD", boom)))
        expected = (RuntimeError, "boom")
    with pytest.raises(expected[0], match=expected[1]):
        direct(osp, disk)
    (part,) = table_of(disk).partitions
    assert fsck_clean(disk, part)  # unmounted cleanly
    with images.mounted(disk) as root:  # what ran before the failure stays done
        assert (root / "etc/hostname").read_text() == "vm7.example.org\n"


def test_a_corrupt_filesystem_fails_at_fsck_and_leaves_no_loop(disk: Path) -> None:
    with open(disk, "r+b") as f:  # a block size of 2^109: e2fsck gives up, the magic stays
        f.seek(MiB + 1024 + 24)
        f.write(struct.pack("<I", 99))
    with pytest.raises(cz.CustomizeError, match=r"e2fsck failed \(8\)"):
        direct(params(EXCLUDE_TASK_FIXPARTITIONTABLE="yes"), disk)
