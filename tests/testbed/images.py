"""Small but real Linux disk images for snf-image's tests and benchmarks.

A busybox-based root (``build_root``) with the files customization touches: passwd,
shadow, group, hostname, hosts, SSH host keys, a machine ID, ifupdown's interfaces; its
``/sbin/init`` prints the host name and an injected file on the serial console, so a
booted copy shows what customization did.  ``build_disk`` puts it into an ext4 (made with
``mkfs.ext4 -d``) or xfs filesystem in one partition of an MBR or GPT disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from snf.image import partitions

MiB = 1 << 20
BUSYBOX = Path("/bin/busybox")
HELLO = "snf-guest:"
INJECTED = "/etc/snf-injected"
INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc 2>/dev/null
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
while :; do
  name=$(/bin/busybox cat /etc/hostname)
  file=$(/bin/busybox cat {INJECTED} 2>/dev/null)
  echo "{HELLO} hostname=$name file=$file end" > /dev/ttyS0
  /bin/busybox sleep 0.5
done
"""
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:User:/home/user:/bin/sh\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\nuser:!:19000:0:99999:7:::\n",
    "etc/group": "root:x:0:\nusers:x:100:\nuser:x:1000:\n",
    "etc/hostname": "template\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n",
    "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    "etc/os-release": 'ID=busybox\nNAME="snf test image"\n',
    "etc/network/interfaces": "auto lo\niface lo inet loopback\n",
    "etc/ssh/ssh_host_ed25519_key": "not a real key\n",
    "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA test\n",
    "etc/ssh/ssh_host_rsa_key": "not a real key\n",
    "etc/ssh/sshd_config": "PermitRootLogin prohibit-password\n",
}


def build_root(dest: Path, payload: int = 0) -> Path:
    """A minimal Linux root in ``dest``, with ``payload`` bytes of random data in a file
    (the bulk of a real image: customization must leave it alone)."""
    for d in ("bin", "sbin", "proc", "dev", "sys", "tmp", "root", "home/user", "var/lib/dbus"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    (dest / "bin" / "sh").symlink_to("busybox")
    (dest / "sbin" / "init").write_text(INIT)
    (dest / "sbin" / "init").chmod(0o755)
    for name, text in FILES.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    (dest / "etc" / "shadow").chmod(0o640)
    os.chown(dest / "home" / "user", 1000, 1000)
    (dest / "var" / "lib" / "dbus" / "machine-id").symlink_to("/etc/machine-id")
    if payload:
        (dest / "usr" / "share").mkdir(parents=True, exist_ok=True)
        with open(dest / "usr" / "share" / "payload.bin", "wb") as f:
            for left in range(payload, 0, -MiB):
                f.write(os.urandom(min(left, MiB)))
    return dest


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _xfs_image(root: Path, size: int, folder: Path) -> Path:
    image = folder / "fs.xfs"
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.xfs", "-q", "-f", str(image)], check=True)
    mnt = folder / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{root}/.", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    return image


def build_disk(
    path: Path,
    size: int,
    root: Path,
    *,
    fs: str = "ext4",
    table: str = "mbr",
    fs_size: int = 48 * MiB,
) -> partitions.Partition:
    """A disk of ``size`` bytes: one partition at 1 MiB of ``fs_size`` bytes holding ``root``."""
    start = MiB
    with open(path, "wb") as f:
        f.truncate(size)
    if table == "mbr":
        _write_at(path, 0, partitions.make_mbr([(start, fs_size, "83")]))
    else:
        linux = "0fc63daf-8483-4772-8e79-3d69d8477de4"
        for w in partitions.make_gpt([(start, fs_size, linux)], size):
            _write_at(path, w.offset, w.data)
    if fs == "ext4":
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", str(root), "-E", f"offset={start}",
             str(path), f"{fs_size // 1024}k"],
            check=True,
        )  # fmt: skip
    else:
        with tempfile.TemporaryDirectory() as tmp:
            image = _xfs_image(root, fs_size, Path(tmp))
            with open(image, "rb") as src, open(path, "r+b") as dst:
                dst.seek(start)
                shutil.copyfileobj(src, dst, 4 * MiB)
    with open(path, "rb") as f:
        head = f.read(partitions.HEAD_BYTES)
    (part,) = partitions.read_table(head, size).partitions
    return part


def fs_partition(disk: Path) -> tuple[partitions.Partition, str]:
    """The disk's last partition and its filesystem type (ext4 or xfs)."""
    size = disk.stat().st_size if disk.is_file() else int(
        subprocess.run(["blockdev", "--getsize64", str(disk)], capture_output=True,
                       text=True, check=True).stdout
    )  # fmt: skip
    with open(disk, "rb") as f:
        head = f.read(partitions.HEAD_BYTES)
        part = max(partitions.read_table(head, size).partitions, key=lambda p: p.end)
        f.seek(part.start)
        magic = f.read(4)
    return part, "xfs" if magic == b"XFSB" else "ext4"


@contextlib.contextmanager
def mounted(disk: Path) -> Iterator[Path]:
    """The disk's last partition mounted read-only (our own test images: trusted)."""
    part, fs = fs_partition(disk)
    options = "ro,norecovery,nouuid" if fs == "xfs" else "ro,noload"
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(
            ["mount", "-t", fs, "-o", f"{options},loop,offset={part.start},sizelimit={part.size}",
             str(disk), mnt],
            check=True,
        )  # fmt: skip
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=True)
