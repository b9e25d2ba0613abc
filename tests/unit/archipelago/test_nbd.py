"""The NBD server, driven by real clients (qemu-img, qemu-io, qemu-storage-daemon over FUSE)
and by a raw-socket client for the corners QEMU never exercises."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from snf.archipelago import nbd
from snf.archipelago.nbd import NbdServer
from tests.conftest import require

MiB = 1 << 20
SIZE = 8 * MiB
T = TypeVar("T")


class MemoryDevice:
    """A bytearray behind a lock, counting calls; ``write_delay`` slows writes down."""

    multi_conn = False

    def __init__(self, size: int = SIZE, *, write_delay: float = 0.0) -> None:
        self._size = size
        self.data = bytearray(size)
        self.lock = threading.Lock()
        self.write_delay = write_delay
        self.flushes = self.trims = self.zeroes = 0
        self.events: list[str] = []
        self.fail: Exception | None = None  # raised by the next write
        self.opened = threading.Event()  # size was read (by the handshake)

    @property
    def size(self) -> int:
        self.opened.set()
        return self._size

    def shrink(self, size: int) -> None:
        self._size = size

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self.events.append(f"write-start {offset}")
        time.sleep(self.write_delay)
        with self.lock:
            if self.fail is not None:
                exc, self.fail = self.fail, None
                raise exc
            self.data[offset : offset + len(data)] = data
        self.events.append(f"write-end {offset}")

    def flush(self) -> None:
        with self.lock:
            self.flushes += 1
        self.events.append("flush")

    def trim(self, offset: int, length: int) -> None:
        with self.lock:
            self.trims += 1
            self.data[offset : offset + length] = bytes(length)

    def write_zeroes(self, offset: int, length: int) -> None:
        with self.lock:
            self.zeroes += 1
            self.data[offset : offset + length] = bytes(length)


class ServerThread:
    """An :class:`NbdServer` on its own event loop in a background thread."""

    def __init__(self, path: Path, exports: nbd.Exports) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = NbdServer(path, exports)
        self.call(self.server.start())

    def call(self, coro: Awaitable[T]) -> T:
        async def run() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nbd-", dir="/tmp"))  # short: sun_path is 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def devices() -> dict[str, MemoryDevice]:
    return {"vol1": MemoryDevice(), "vol2": MemoryDevice()}


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Callable[..., ServerThread]]:
    """Start a server on ``sockdir/<name>``; every one is stopped at teardown."""
    servers: list[ServerThread] = []

    def start(exports: nbd.Exports, name: str = "s") -> ServerThread:
        servers.append(ServerThread(sockdir / name, exports))
        return servers[-1]

    yield start
    for st in servers:
        st.stop()


@pytest.fixture
def served(serve: Callable[..., ServerThread], devices: dict[str, MemoryDevice]) -> ServerThread:
    return serve(devices, "nbd.sock")


def modern(st: ServerThread, export: str) -> str:
    return f"nbd+unix:///{export}?socket={st.path}"


def legacy(st: ServerThread, export: str) -> str:
    return f"nbd:unix:{st.path}:exportname={export}"


def qemu(*argv: str) -> subprocess.CompletedProcess[str]:
    require(shutil.which(argv[0]) is not None, f"{argv[0]} is not installed")
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def qemu_io(uri: str, *commands: str) -> subprocess.CompletedProcess[str]:
    args = [arg for command in commands for arg in ("-c", command)]
    return qemu("qemu-io", "-f", "raw", "-d", "unmap", *args, uri)


# -- real clients -----------------------------------------------------------------------


@pytest.mark.parametrize("form", [modern, legacy])
def test_qemu_img_info(served: ServerThread, form: Callable[[ServerThread, str], str]) -> None:
    result = qemu("qemu-img", "info", "--output=json", form(served, "vol1"))
    assert result.returncode == 0, result.stderr
    assert f'"virtual-size": {SIZE}' in result.stdout


def test_qemu_img_convert_in_and_out(
    served: ServerThread, devices: dict[str, MemoryDevice], sockdir: Path
) -> None:
    image = os.urandom(3 * MiB) + bytes(2 * MiB) + os.urandom(3 * MiB)
    (sockdir / "in.raw").write_bytes(image)
    devices["vol1"].data[:] = b"\x77" * SIZE  # the zero range must really be written
    into = qemu(
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        str(sockdir / "in.raw"),
        modern(served, "vol1"),
    )
    assert into.returncode == 0, into.stderr
    assert devices["vol1"].data == image
    out = qemu(
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        legacy(served, "vol1"),
        str(sockdir / "out.raw"),
    )
    assert out.returncode == 0, out.stderr
    assert (sockdir / "out.raw").read_bytes() == image


def test_qemu_io_commands_reach_the_device(
    served: ServerThread, devices: dict[str, MemoryDevice]
) -> None:
    dev = devices["vol1"]
    result = qemu_io(
        legacy(served, "vol1"),
        "write -P 0xab 0 1M",
        "read -P 0xab 0 1M",
        "write -P 0xcd 1M 128k",
        "flush",
        "discard 0 64k",
        "write -z 1M 64k",
        "write -f -P 0xef 2M 4k",
        "read -P 0 1M 64k",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Pattern verification failed" not in result.stdout
    assert dev.data[: 64 * 1024] == bytes(64 * 1024)
    assert dev.data[64 * 1024 : MiB] == b"\xab" * (MiB - 64 * 1024)
    assert dev.data[MiB : MiB + 64 * 1024] == bytes(64 * 1024)
    assert dev.data[MiB + 64 * 1024 : MiB + 128 * 1024] == b"\xcd" * (64 * 1024)
    assert dev.data[2 * MiB : 2 * MiB + 4096] == b"\xef" * 4096
    assert dev.flushes >= 2 and dev.trims >= 1 and dev.zeroes >= 1
    assert devices["vol2"].data == bytes(SIZE)


def test_unknown_export_fails_cleanly(served: ServerThread) -> None:
    for form in (modern, legacy):
        result = qemu("qemu-img", "info", form(served, "nosuch"))
        assert result.returncode != 0
        assert "nosuch" in result.stderr or "export" in result.stderr.lower()
    assert qemu("qemu-img", "info", modern(served, "vol1")).returncode == 0


def test_several_clients_at_once(served: ServerThread, devices: dict[str, MemoryDevice]) -> None:
    jobs = [("vol1", i) for i in range(4)] + [("vol2", 4)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(
            pool.map(
                lambda job: qemu_io(
                    modern(served, job[0]),
                    f"write -P {0x10 + job[1]} {job[1]}M 1M",
                    f"read -P {0x10 + job[1]} {job[1]}M 1M",
                    "flush",
                ),
                jobs,
            )
        )
    for result in results:
        assert result.returncode == 0 and "failed" not in result.stdout, result.stdout
    for export, i in jobs:
        assert devices[export].data[i * MiB : (i + 1) * MiB] == bytes([0x10 + i]) * MiB


def test_write_past_the_end_fails_and_the_connection_stays_usable(
    served: ServerThread, devices: dict[str, MemoryDevice]
) -> None:
    """The volume shrinks under a connected qemu-io: a write past the new end fails with
    ENOSPC, and the next commands on the same connection succeed."""
    dev = devices["vol1"]
    require(shutil.which("qemu-io") is not None, "qemu-io is not installed")
    argv = ["qemu-io", "-f", "raw", modern(served, "vol1")]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            assert dev.opened.wait(10)
            dev.shrink(4 * MiB)
            commands = "write -P 0x11 6M 64k\nwrite -P 0x22 0 64k\nread -P 0x22 0 64k\nquit\n"
            output, _ = proc.communicate(commands, timeout=10)
        finally:
            proc.kill()
    assert "write failed: No space left on device" in output
    assert "wrote 65536/65536 bytes at offset 0" in output
    assert "read 65536/65536 bytes at offset 0" in output
    assert "Pattern verification failed" not in output
    assert dev.data[: 64 * 1024] == b"\x22" * (64 * 1024)


def test_qemu_storage_daemon_fuse_export(
    served: ServerThread, devices: dict[str, MemoryDevice], sockdir: Path
) -> None:
    require(os.path.exists("/dev/fuse"), "no /dev/fuse")
    require(shutil.which("qemu-storage-daemon") is not None, "no qemu-storage-daemon")
    dev = devices["vol1"]
    dev.data[3 * MiB : 3 * MiB + 4] = b"seed"
    disk = sockdir / "disk"
    disk.touch()
    blockdev = f"driver=nbd,server.type=unix,server.path={served.path},export=vol1,node-name=n"
    export = f"type=fuse,id=e,node-name=n,mountpoint={disk},writable=on"
    argv = ["qemu-storage-daemon", "--blockdev", blockdev, "--export", export]
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 10
            while os.stat(disk).st_size != SIZE:
                if proc.poll() is not None:
                    require(False, f"qemu-storage-daemon failed: {proc.communicate()[1]}")
                assert time.monotonic() < deadline, "the FUSE export did not appear"
                time.sleep(0.02)
            fd = os.open(disk, os.O_RDWR)
            try:
                assert os.pread(fd, 4, 3 * MiB) == b"seed"
                assert os.pwrite(fd, b"\x5a" * 8192, 4096) == 8192
                os.fsync(fd)
                assert os.pread(fd, 8192, 4096) == b"\x5a" * 8192
            finally:
                os.close(fd)
            assert dev.data[4096 : 4096 + 8192] == b"\x5a" * 8192
            assert dev.flushes >= 1
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                subprocess.run(["umount", "-l", str(disk)], check=False)


# -- raw sockets ------------------------------------------------------------------------


class RawClient:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))

    def close(self) -> None:
        self.sock.close()

    def recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def hello(self, flags: int = nbd.NBD_FLAG_C_FIXED_NEWSTYLE | nbd.NBD_FLAG_C_NO_ZEROES) -> None:
        magic, opt_magic, server_flags = struct.unpack(">QQH", self.recv(18))
        assert (magic, opt_magic) == (nbd.NBDMAGIC, nbd.IHAVEOPT)
        assert server_flags == nbd.NBD_FLAG_FIXED_NEWSTYLE | nbd.NBD_FLAG_NO_ZEROES
        self.sock.sendall(struct.pack(">I", flags))

    def option(self, opt: int, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">QII", nbd.IHAVEOPT, opt, len(data)) + data)

    def option_reply(self, opt: int) -> tuple[int, bytes]:
        magic, got, kind, length = struct.unpack(">QIII", self.recv(20))
        assert (magic, got) == (nbd.NBD_OPT_REPLY_MAGIC, opt)
        return kind, self.recv(length)

    def info(self, opt: int, name: str, *wanted: int) -> list[tuple[int, bytes]]:
        raw = name.encode()
        data = (
            struct.pack(">I", len(raw))
            + raw
            + struct.pack(f">H{len(wanted)}H", len(wanted), *wanted)
        )
        self.option(opt, data)
        replies = [self.option_reply(opt)]
        while replies[-1][0] == nbd.NBD_REP_INFO:
            replies.append(self.option_reply(opt))
        return replies

    def go(self, name: str) -> None:
        assert self.info(nbd.NBD_OPT_GO, name)[-1][0] == nbd.NBD_REP_ACK

    def send(
        self,
        cmd: int,
        handle: int,
        offset: int = 0,
        length: int = 0,
        flags: int = 0,
        payload: bytes = b"",
        magic: int = nbd.NBD_REQUEST_MAGIC,
    ) -> None:
        self.sock.sendall(
            struct.pack(">IHHQQI", magic, flags, cmd, handle, offset, length) + payload
        )

    def reply(self, read_length: int = 0) -> tuple[int, int, bytes]:
        magic, error, handle = struct.unpack(">IIQ", self.recv(16))
        assert magic == nbd.NBD_SIMPLE_REPLY_MAGIC
        return error, handle, self.recv(read_length) if error == 0 else b""

    def command(
        self, cmd: int, offset: int = 0, length: int = 0, flags: int = 0, payload: bytes = b""
    ) -> tuple[int, bytes]:
        self.send(cmd, 7, offset, length, flags, payload)
        error, handle, data = self.reply(length if cmd == nbd.NBD_CMD_READ else 0)
        assert handle == 7
        return error, data


Connect = Callable[..., RawClient]


@pytest.fixture
def raw(sockdir: Path) -> Iterator[Connect]:
    """Connect to ``path`` (default: the ``served`` fixture's socket); closed at teardown."""
    clients: list[RawClient] = []

    def connect(path: Path = sockdir / "nbd.sock") -> RawClient:
        clients.append(RawClient(path))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()


@pytest.mark.usefixtures("served")
def test_handshake_options(raw: Connect) -> None:
    c = raw()
    c.hello()
    c.option(nbd.NBD_OPT_LIST)
    listed = [c.option_reply(nbd.NBD_OPT_LIST) for _ in range(3)]
    assert listed == [
        (nbd.NBD_REP_SERVER, b"\0\0\0\4vol1"),
        (nbd.NBD_REP_SERVER, b"\0\0\0\4vol2"),
        (nbd.NBD_REP_ACK, b""),
    ]
    c.option(nbd.NBD_OPT_LIST, b"x")
    assert c.option_reply(nbd.NBD_OPT_LIST)[0] == nbd.NBD_REP_ERR_INVALID
    for opt in (nbd.NBD_OPT_STRUCTURED_REPLY, 5, 10, 42):
        c.option(opt)
        assert c.option_reply(opt)[0] == nbd.NBD_REP_ERR_UNSUP
    assert c.info(nbd.NBD_OPT_INFO, "nosuch")[0][0] == nbd.NBD_REP_ERR_UNKNOWN
    assert c.info(nbd.NBD_OPT_GO, "nosuch")[0][0] == nbd.NBD_REP_ERR_UNKNOWN
    c.option(nbd.NBD_OPT_GO, b"\0\0\0\x09vol")
    assert c.option_reply(nbd.NBD_OPT_GO)[0] == nbd.NBD_REP_ERR_INVALID
    replies = c.info(nbd.NBD_OPT_INFO, "vol1")
    flags = nbd.NBD_FLAG_HAS_FLAGS | nbd.NBD_FLAG_SEND_FLUSH | nbd.NBD_FLAG_SEND_FUA
    flags |= nbd.NBD_FLAG_SEND_TRIM | nbd.NBD_FLAG_SEND_WRITE_ZEROES
    assert replies == [
        (nbd.NBD_REP_INFO, struct.pack(">HQH", nbd.NBD_INFO_EXPORT, SIZE, flags)),
        (nbd.NBD_REP_INFO, struct.pack(">HIII", nbd.NBD_INFO_BLOCK_SIZE, 1, 4096, 32 * MiB)),
        (nbd.NBD_REP_ACK, b""),
    ]
    replies = c.info(nbd.NBD_OPT_INFO, "vol1", nbd.NBD_INFO_BLOCK_SIZE)
    assert replies[1][1] == struct.pack(">HIII", nbd.NBD_INFO_BLOCK_SIZE, 512, 4096, 32 * MiB)
    c.option(nbd.NBD_OPT_ABORT)
    assert c.option_reply(nbd.NBD_OPT_ABORT) == (nbd.NBD_REP_ACK, b"")
    assert c.closed()


@pytest.mark.usefixtures("served")
def test_export_name_and_client_flags(raw: Connect) -> None:
    c = raw()
    c.hello(nbd.NBD_FLAG_C_FIXED_NEWSTYLE)
    c.option(nbd.NBD_OPT_EXPORT_NAME, b"vol2")
    size, flags = struct.unpack(">QH", c.recv(10))
    assert size == SIZE and flags & nbd.NBD_FLAG_SEND_FLUSH
    assert c.recv(124) == bytes(124)
    assert c.command(nbd.NBD_CMD_READ, 0, 512) == (0, bytes(512))
    c = raw()
    c.hello()
    c.option(nbd.NBD_OPT_EXPORT_NAME, b"nosuch")
    assert c.closed()
    for bad in (0, nbd.NBD_FLAG_C_FIXED_NEWSTYLE | 4):
        c = raw()
        c.hello(bad)
        assert c.closed()


@pytest.mark.usefixtures("served")
def test_transmission_errors(raw: Connect, devices: dict[str, MemoryDevice]) -> None:
    dev = devices["vol1"]
    c = raw()
    c.hello()
    c.go("vol1")
    assert c.command(nbd.NBD_CMD_WRITE, 0, 4, payload=b"abcd") == (0, b"")
    assert c.command(nbd.NBD_CMD_READ, 0, 0) == (0, b"")
    assert c.command(nbd.NBD_CMD_READ, SIZE, 0) == (0, b"")
    assert c.command(nbd.NBD_CMD_READ, 1, 3) == (0, b"bcd")
    assert c.command(9)[0] == nbd.NBD_EINVAL  # unknown command
    assert c.command(nbd.NBD_CMD_READ, 0, 4, flags=1 << 3)[0] == nbd.NBD_EINVAL
    assert c.command(nbd.NBD_CMD_WRITE_ZEROES, 0, 4, flags=nbd.NBD_CMD_FLAG_NO_HOLE) == (0, b"")
    assert c.command(nbd.NBD_CMD_READ, SIZE - 1, 2)[0] == nbd.NBD_EINVAL
    assert c.command(nbd.NBD_CMD_TRIM, SIZE, 1)[0] == nbd.NBD_EINVAL
    assert c.command(nbd.NBD_CMD_WRITE, SIZE - 1, 2, payload=b"xx")[0] == nbd.NBD_ENOSPC
    assert c.command(nbd.NBD_CMD_WRITE_ZEROES, SIZE, 1)[0] == nbd.NBD_ENOSPC
    assert c.command(nbd.NBD_CMD_READ, 0, 32 * MiB + 1)[0] == nbd.NBD_EINVAL
    big = 32 * MiB + 512  # refused, but its payload is consumed
    assert c.command(nbd.NBD_CMD_WRITE, 0, big, payload=b"\1" * big)[0] == nbd.NBD_EINVAL
    dev.fail = OSError(errno.ENOSPC, "thin pool full")
    assert c.command(nbd.NBD_CMD_WRITE, 0, 1, payload=b"z")[0] == nbd.NBD_ENOSPC
    dev.fail = RuntimeError("backend exploded")
    assert c.command(nbd.NBD_CMD_WRITE, 0, 1, payload=b"z")[0] == nbd.NBD_EIO
    assert c.command(nbd.NBD_CMD_READ, 0, 8) == (0, bytes(8))
    assert dev.data == bytes(SIZE)  # nothing refused or failed was written
    c.send(nbd.NBD_CMD_READ, 1, 0, 8, magic=0x12345678)
    assert c.closed()
    d = raw()  # the server survived all that
    d.hello()
    d.go("vol1")
    d.send(nbd.NBD_CMD_DISC, 1)
    assert d.closed()


def test_flush_waits_for_earlier_writes(serve: Callable[..., ServerThread], raw: Connect) -> None:
    dev = MemoryDevice(write_delay=0.2)
    st = serve({"slow": dev})
    c = raw(st.path)
    c.hello()
    c.go("slow")
    requests = b"".join(
        struct.pack(">IHHQQI", nbd.NBD_REQUEST_MAGIC, 0, cmd, handle, offset, len(payload))
        + payload
        for cmd, handle, offset, payload in [
            (nbd.NBD_CMD_WRITE, 1, 0, b"A" * 4096),
            (nbd.NBD_CMD_WRITE, 2, 4096, b"B" * 4096),
            (nbd.NBD_CMD_FLUSH, 3, 0, b""),
        ]
    )
    c.sock.sendall(requests)
    handles = [c.reply()[:2] for _ in range(3)]
    assert sorted(handles[:2]) == [(0, 1), (0, 2)] and handles[2] == (0, 3)
    assert sorted(dev.events[:2]) == ["write-start 0", "write-start 4096"]  # concurrent
    assert sorted(dev.events[2:4]) == ["write-end 0", "write-end 4096"]
    assert dev.events[4:] == ["flush"]
    dev.write_delay = 0
    assert c.command(nbd.NBD_CMD_WRITE, 0, 1, nbd.NBD_CMD_FLAG_FUA, b"F") == (0, b"")
    assert dev.events[-2:] == ["write-end 0", "flush"] and dev.flushes == 2


def test_drop_export_and_close(serve: Callable[..., ServerThread], raw: Connect) -> None:
    devs = {"a": MemoryDevice(write_delay=0.3), "b": MemoryDevice()}
    st = serve(devs)
    a, b = raw(st.path), raw(st.path)
    for client, name in ((a, "a"), (b, "b")):
        client.hello()
        client.go(name)
    a.send(nbd.NBD_CMD_WRITE, 1, 0, 3, payload=b"abc")
    while not devs["a"].events:
        time.sleep(0.01)
    assert st.call(st.server.drop_export("a")) == 1
    assert devs["a"].events == ["write-start 0", "write-end 0"]  # finished before the return
    assert a.closed()
    assert b.command(nbd.NBD_CMD_READ, 0, 4) == (0, bytes(4))
    assert st.call(st.server.drop_export("a")) == 0
    assert stat.S_IMODE(os.stat(st.path).st_mode) == 0o600
    st.stop()  # closes the other connection and removes the socket file
    assert b.closed()
    assert not st.path.exists()


def test_socket_file_and_export_lookup(
    serve: Callable[..., ServerThread], raw: Connect, sockdir: Path
) -> None:
    path = sockdir / "s"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file nobody listens on
    stale.close()
    shared = MemoryDevice()
    shared.multi_conn = True
    st = serve(lambda name: shared if name == "shared" else None)
    c = raw(path)
    c.hello()
    c.option(nbd.NBD_OPT_LIST)
    assert c.option_reply(nbd.NBD_OPT_LIST)[0] == nbd.NBD_REP_ERR_POLICY
    assert c.info(nbd.NBD_OPT_INFO, "other")[0][0] == nbd.NBD_REP_ERR_UNKNOWN
    (_, export), _, _ = c.info(nbd.NBD_OPT_INFO, "shared")
    assert struct.unpack(">HQH", export)[2] & nbd.NBD_FLAG_CAN_MULTI_CONN
    c.go("shared")
    with pytest.raises(FileExistsError, match="listens"):
        asyncio.run(NbdServer(path, {}).start())
    st.stop()
    path.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        asyncio.run(NbdServer(path, {}).start())
