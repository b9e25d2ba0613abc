"""The throw-away helper VM: customization of an untrusted image without mounting it on
the node.

QEMU (``accel`` ``tcg`` or ``kvm``; the ``microvm`` machine, no network, no PCI, no
firmware) boots the helper kernel and initramfs (``helper_image.py``) with the image's
disk as its only disk.  The agent inside (``agent.py``) reads requests from a virtio serial
port that QEMU connects to a socket in a private folder of ours; we write one JSON line per
request and read one per answer.  QEMU runs as ``nobody`` once started and under its
seccomp sandbox; the guest's console goes to a file whose last lines are reported when
anything fails.  A guest taken over by a hostile filesystem can only answer badly: answers
are parsed as bounded JSON and checked by the caller.
"""

from __future__ import annotations

import json
import logging
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from snf.common.errors import SnfError

from .agent import decode, encode
from .helper_image import HelperFiles
from .tsc import host_tsc_khz

log = logging.getLogger(__name__)

QEMU = "/usr/bin/qemu-system-x86_64"
MAX_ANSWER = 8 << 20
SANDBOX = "on,obsolete=deny,spawn=deny,resourcecontrol=deny"


class HelperError(SnfError):
    """The helper VM failed; the message ends with the last lines of its console."""


def qemu_argv(
    files: HelperFiles,
    disk: str,
    fstype: str,
    socket_path: Path,
    console: Path,
    *,
    accel: str,
    memory_mib: int,
    tsc_khz: int | None = None,
) -> list[str]:
    kernel_args = f"console=ttyS0 quiet panic=-1 pci=off snf.fs={fstype}"
    if tsc_khz:  # no TSC calibration: it can fail, and hang the boot, on a busy node
        kernel_args += f" tsc_early_khz={tsc_khz}"
    argv = [
        QEMU, "-accel", accel, "-M", "microvm,rtc=on", "-m", str(memory_mib), "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(files.kernel), "-initrd", str(files.initrd),
        "-append", kernel_args,
        "-chardev", f"file,id=console,path={console}", "-serial", "chardev:console",
        "-drive", f"file={disk},format=raw,if=none,id=disk,cache=writeback,discard=unmap",
        "-device", "virtio-blk-device,drive=disk",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={socket_path}",
        "-device", "virtserialport,chardev=agent,name=snf.agent",
        "-sandbox", SANDBOX,
    ]  # fmt: skip
    if accel == "kvm":
        argv += ["-cpu", "host"]
    try:
        pwd.getpwnam("nobody")
        argv += ["-runas", "nobody"]
    except KeyError:
        pass
    return argv


class HelperVM:
    """A running helper with its agent connected; ``call`` sends one request."""

    def __init__(
        self,
        files: HelperFiles,
        disk: str,
        fstype: str,
        *,
        accel: str = "tcg",
        memory_mib: int = 256,
        boot_timeout: float = 120.0,
        call_timeout: float = 900.0,
    ) -> None:
        self.call_timeout = call_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="snf-image-helper-"))
        self.console = self.folder / "console.log"
        sock_path = self.folder / "agent.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(sock_path))
        self.listener.listen(1)
        argv = qemu_argv(
            files, disk, fstype, sock_path, self.console,
            accel=accel, memory_mib=memory_mib, tsc_khz=host_tsc_khz(),
        )  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.conn: socket.socket | None = None
        self.pending = b""
        try:
            self.conn = self._accept(boot_timeout)
            ready = self._line(self.started + boot_timeout)
            if json.loads(ready) != {"ready": True}:
                raise HelperError(f"the helper VM did not start its agent: {ready[:200]!r}")
            self.boot_seconds = time.monotonic() - self.started
            log.info("helper VM ready in %.1f s", self.boot_seconds)
        except BaseException:
            self.close()
            raise

    def _fail(self, what: str) -> HelperError:
        tail = ""
        if self.console.exists():
            lines = self.console.read_text(errors="replace").strip().splitlines()[-8:]
            tail = " | console: " + " / ".join(line.strip() for line in lines)
        if self.process.poll() is not None and self.process.stdout is not None:
            qemu = self.process.stdout.read().decode(errors="replace").strip()
            tail += f" | qemu: {qemu[-400:]}" if qemu else ""
        return HelperError(f"helper VM: {what}{tail}")

    def _accept(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self._fail(f"QEMU exited with {self.process.returncode}")
            ready, _, _ = select.select([self.listener], [], [], 0.1)
            if ready:
                conn, _ = self.listener.accept()
                return conn
            if time.monotonic() > deadline:
                raise self._fail(f"QEMU did not connect within {timeout:.0f} s")

    def _line(self, deadline: float) -> bytes:
        assert self.conn is not None
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail("the agent did not answer in time")
            ready, _, _ = select.select([self.conn], [], [], min(left, 0.5))
            if not ready:
                if self.process.poll() is not None:
                    raise self._fail(f"the VM stopped ({self.process.returncode})")
                continue
            chunk = self.conn.recv(1 << 16)
            if not chunk:
                raise self._fail("the agent closed its port")
            self.pending += chunk
            if len(self.pending) > MAX_ANSWER:
                raise self._fail("the agent's answer is too long")
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def call(self, op: str, **args: Any) -> Any:
        assert self.conn is not None
        request = {"op": op, "args": {k: encode(v) for k, v in args.items()}}
        self.conn.sendall(json.dumps(request).encode() + b"\n")
        try:
            answer = json.loads(self._line(time.monotonic() + self.call_timeout))
            ok, result = answer["ok"], answer.get("result")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._fail(f"a bad answer to {op}: {exc}") from None
        if ok is not True:
            raise HelperError(str(answer.get("error", "failed"))[:500])
        return decode(result)

    def quit(self, timeout: float = 30.0) -> None:
        """Unmount, then let the guest power off."""
        if self.conn is not None:
            self.conn.sendall(b'{"op": "quit"}\n')
            self._line(time.monotonic() + timeout)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._fail("the VM did not power off") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> HelperVM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
