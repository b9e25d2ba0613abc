"""A tiny guest for boot tests: Debian's kernel plus a busybox initramfs that says hello.

The initramfs (newc cpio, written by ``snf.image.cpio`` without external tools) mounts
devtmpfs and prints ``snf-testbed-guest: up <uptime>`` on the first serial port every
0.2 s, so a reader that connects after boot still sees it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from snf.image.cpio import Cpio

BUSYBOX = Path("/bin/busybox")
HELLO = b"snf-testbed-guest: up"
INIT = b"""#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
n=0
while :; do
  echo "snf-testbed-guest: up $(/bin/busybox cut -d' ' -f1 /proc/uptime) n=$n" > /dev/ttyS0
  n=$((n+1))
  /bin/busybox sleep 0.2
done
"""


def initramfs_bytes() -> bytes:
    """The initramfs as an uncompressed newc cpio archive."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install busybox-static")
    archive = Cpio()
    for d in ("bin", "dev", "proc", "sys"):
        archive.directory(d)
    archive.device("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.file("init", INIT, 0o755)
    return archive.bytes()


def write_initramfs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(initramfs_bytes())
    os.replace(tmp, path)
    return path


def read_console_until(socket_path: str, needle: bytes, timeout: float) -> tuple[bytes, float]:
    """Inside the node: connect to a KVM serial socket (waiting for it to appear) and read
    until ``needle`` shows up.  Returns (what was read, monotonic time of the first byte)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(socket_path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{socket_path} did not appear within {timeout} s")
        time.sleep(0.02)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    while True:
        try:
            sock.connect(socket_path)
            break
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    seen = b""
    first = 0.0
    with sock:
        while needle not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no {needle!r} on the console within {timeout} s: {seen[-500:]!r}"
                )
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError(f"console closed before {needle!r}: {seen[-500:]!r}")
            if not seen:
                first = time.monotonic()
            seen += chunk
    return seen, first
