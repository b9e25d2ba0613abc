"""An NBD server on a unix socket: how the volume daemon serves volumes to QEMU.

Clients: QEMU (``nbd:unix:<sock>:exportname=<vol>``, the ``kvm:`` line of ``attach``) and
qemu-storage-daemon (``--blockdev driver=nbd``, then FUSE + ``losetup`` for a ``/dev`` path).
Names are those of the NBD protocol document (NetworkBlockDevice/nbd ``doc/proto.md``).

Handshake, fixed newstyle only: the server sends ``NBDMAGIC``, ``IHAVEOPT`` and
``NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES``; a client flag other than
``NBD_FLAG_C_FIXED_NEWSTYLE`` and ``NBD_FLAG_C_NO_ZEROES``, or no ``NBD_FLAG_C_FIXED_NEWSTYLE``,
closes the connection, and so does option data over 16 KiB.  Options:

* ``NBD_OPT_EXPORT_NAME``: size, transmission flags, 124 zeroes unless
  ``NBD_FLAG_C_NO_ZEROES``; an unknown export closes the connection.
* ``NBD_OPT_INFO``, ``NBD_OPT_GO``: ``NBD_REP_INFO`` with ``NBD_INFO_EXPORT`` and
  ``NBD_INFO_BLOCK_SIZE`` (minimum 512 if the client asked for it, else 1; preferred 4096;
  maximum 32 MiB), then ``NBD_REP_ACK``; ``NBD_REP_ERR_UNKNOWN`` for an unknown export,
  ``NBD_REP_ERR_INVALID`` for malformed data.  Other info requests are ignored.
* ``NBD_OPT_LIST``: ``NBD_REP_SERVER`` per export and ``NBD_REP_ACK`` (``NBD_REP_ERR_POLICY``
  when exports come from a lookup function).  ``NBD_OPT_ABORT``: ``NBD_REP_ACK``, close.
* ``NBD_OPT_STRUCTURED_REPLY`` and all others: ``NBD_REP_ERR_UNSUP``.  Hence simple replies
  only, and no TLS, metadata contexts, ``NBD_CMD_BLOCK_STATUS`` or extended headers.

Transmission flags ``NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES``, and ``NBD_FLAG_CAN_MULTI_CONN`` for a
device whose ``multi_conn`` attribute is True.  Commands ``NBD_CMD_READ``, ``NBD_CMD_WRITE``,
``NBD_CMD_DISC``, ``NBD_CMD_FLUSH``, ``NBD_CMD_TRIM``, ``NBD_CMD_WRITE_ZEROES``; flags
``NBD_CMD_FLAG_FUA`` (flush before replying; ignored on reads) and, on write-zeroes,
``NBD_CMD_FLAG_NO_HOLE`` (allocation is the device's business).  ``NBD_EINVAL``: other
commands or flags, reads or trims past the end, reads and writes over 32 MiB (an over-large
write's payload is read and dropped, so the stream stays in sync).  ``NBD_ENOSPC``: writes
past the end (checked against the device's current ``size``), a device ``OSError`` ENOSPC.
``NBD_EIO``: any other device exception (logged).  Bad ``NBD_REQUEST_MAGIC`` closes the
connection.  Block sizes are advisory: unaligned requests are served.

Requests run concurrently (up to 32 per connection); device calls run in a thread pool shared
by all connections, so devices must be thread safe.  A FLUSH waits for every write, trim and
write-zeroes received before it, then calls ``flush()``.  ``NBD_CMD_DISC``,
:meth:`NbdServer.drop_export` and :meth:`NbdServer.close` stop reading requests and wait for
the device calls already started; nothing is flushed on disconnect (the volume's owner
flushes when it closes the volume).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

log = logging.getLogger(__name__)

# Handshake ("Fixed newstyle negotiation"; flags are bit values).
NBDMAGIC, IHAVEOPT, NBD_OPT_REPLY_MAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES = 1 << 0, 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES = 1 << 0, 1 << 1
NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_LIST = 1, 2, 3
NBD_OPT_INFO, NBD_OPT_GO, NBD_OPT_STRUCTURED_REPLY = 6, 7, 8
NBD_REP_ACK, NBD_REP_SERVER, NBD_REP_INFO = 1, 2, 3
NBD_REP_ERR_UNSUP, NBD_REP_ERR_POLICY = (1 << 31) + 1, (1 << 31) + 2
NBD_REP_ERR_INVALID, NBD_REP_ERR_UNKNOWN = (1 << 31) + 3, (1 << 31) + 6
NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE = 0, 3

# Transmission ("Transmission flags", "Request types", "Command flags", "Error values").
NBD_FLAG_HAS_FLAGS, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA = 1 << 0, 1 << 2, 1 << 3
NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_FLAG_CAN_MULTI_CONN = 1 << 5, 1 << 6, 1 << 8
NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698
NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_TRIM = 0, 1, 2, 3, 4
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE = 1 << 0, 1 << 1
NBD_EIO, NBD_EINVAL, NBD_ENOSPC = 5, 22, 28  # fixed by the protocol, not the platform's errno

MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD = 512, 4096, 32 << 20
MAX_OPTION_DATA = 16 << 10
MAX_IN_FLIGHT = 32  # requests per connection

_TRANSMISSION_FLAGS = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA
_TRANSMISSION_FLAGS |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES
_KNOWN_CMDS = {NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES}
_WRITE_CMDS = {NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES}
_OPTION, _OPTION_REPLY = struct.Struct(">QII"), struct.Struct(">QIII")
_REQUEST, _SIMPLE_REPLY = struct.Struct(">IHHQQI"), struct.Struct(">IIQ")
_T = TypeVar("_T")


class BlockDevice(Protocol):
    # A device may also define ``is_fast(write: bool, offset: int, length: int) -> bool``:
    # reads and writes it calls fast run on the event loop instead of in the thread pool.
    """What an export is: a byte range with blocking, thread-safe calls.

    ``size`` may be a plain attribute.  A device may also define ``multi_conn = True`` when
    a flush on one connection makes every connection's completed writes durable (the
    meaning of ``NBD_FLAG_CAN_MULTI_CONN``).
    """

    @property
    def size(self) -> int: ...
    def read(self, offset: int, length: int) -> bytes: ...
    def write(self, offset: int, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def trim(self, offset: int, length: int) -> None: ...
    def write_zeroes(self, offset: int, length: int) -> None: ...


Exports = Mapping[str, BlockDevice] | Callable[[str], BlockDevice | None]


class _Hangup(Exception):
    """The client broke the protocol: close the connection."""


def check_request(cmd: int, flags: int, offset: int, length: int, size: int) -> int:
    """The NBD error for a request before it reaches the device, or 0 to run it."""
    if cmd not in _KNOWN_CMDS:
        return NBD_EINVAL
    allowed = NBD_CMD_FLAG_FUA | (NBD_CMD_FLAG_NO_HOLE if cmd == NBD_CMD_WRITE_ZEROES else 0)
    if flags & ~allowed:
        return NBD_EINVAL
    if cmd == NBD_CMD_FLUSH:
        return 0
    if cmd in (NBD_CMD_READ, NBD_CMD_WRITE) and length > MAX_PAYLOAD:
        return NBD_EINVAL
    if offset + length > size:
        return NBD_ENOSPC if cmd in (NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES) else NBD_EINVAL
    return 0


def transmission_flags(device: BlockDevice) -> int:
    multi = NBD_FLAG_CAN_MULTI_CONN if getattr(device, "multi_conn", False) is True else 0
    return _TRANSMISSION_FLAGS | multi


def _parse_info(data: bytes) -> tuple[str, set[int]] | None:
    """``NBD_OPT_INFO``/``NBD_OPT_GO`` data: (export name, requested info types)."""
    size = struct.unpack_from(">I", data)[0] if len(data) >= 4 else len(data)
    if len(data) < 6 + size:
        return None
    count = struct.unpack_from(">H", data, 4 + size)[0]
    name = _decode_name(data[4 : 4 + size])
    if name is None or len(data) != 6 + size + 2 * count:
        return None
    return name, set(struct.unpack_from(f">{count}H", data, 6 + size))


def _decode_name(raw: bytes) -> str | None:
    with contextlib.suppress(UnicodeDecodeError):
        if len(raw) <= 4096 and b"\0" not in raw:
            return raw.decode()
    return None


class _Request(NamedTuple):
    flags: int
    cmd: int
    handle: int
    offset: int
    length: int


class _Connection:
    """One client: option haggling, then requests until DISC, EOF or :meth:`abort`."""

    def __init__(
        self, server: NbdServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.export: str | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    def abort(self) -> None:
        """Close the socket now; :meth:`run` then waits for the device calls in flight."""
        self.writer.transport.abort()

    async def run(self) -> None:
        try:
            device = await self._handshake()
            if device is not None:
                await self._transmit(device)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("nbd client of %r went away: %r", self.export, exc)
        except _Hangup as exc:
            log.warning("nbd client of %r disconnected: %s", self.export, exc)
        except Exception:
            log.exception("nbd client of %r failed", self.export)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks)
            self.abort()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()  # the socket is closed when this returns

    async def _handshake(self) -> BlockDevice | None:
        flags = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES
        self.writer.write(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, flags))
        (cflags,) = struct.unpack(">I", await self.reader.readexactly(4))
        known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES
        if cflags & ~known or not cflags & NBD_FLAG_C_FIXED_NEWSTYLE:
            raise _Hangup(f"client flags {cflags:#x} (fixed newstyle only)")
        while True:
            magic, opt, length = _OPTION.unpack(await self.reader.readexactly(_OPTION.size))
            if magic != IHAVEOPT or length > MAX_OPTION_DATA:
                raise _Hangup(f"option {opt}: magic {magic:#x}, {length} bytes of data")
            data = await self.reader.readexactly(length)
            if opt == NBD_OPT_EXPORT_NAME:
                name = _decode_name(data)
                device = None if name is None else self._attach(name)
                if device is None:
                    raise _Hangup(f"NBD_OPT_EXPORT_NAME: unknown export {data[:80]!r}")
                zeroes = b"" if cflags & NBD_FLAG_C_NO_ZEROES else bytes(124)
                self.writer.write(struct.pack(">QH", device.size, transmission_flags(device)))
                self.writer.write(zeroes)
                return device
            if opt == NBD_OPT_ABORT:
                await self._option_reply(opt, NBD_REP_ACK)
                return None
            if opt in (NBD_OPT_INFO, NBD_OPT_GO):
                device = await self._info(opt, data)
                if device is not None and opt == NBD_OPT_GO:
                    return device
            elif opt == NBD_OPT_LIST:
                await self._list(data)
            else:
                await self._option_reply(opt, NBD_REP_ERR_UNSUP, b"option not supported")

    def _attach(self, name: str) -> BlockDevice | None:
        """Look an export up and bind this connection to it (no await in between, so
        :meth:`NbdServer.drop_export` cannot miss the connection)."""
        device = self.server.lookup(name)
        if device is not None:
            self.export = name
        return device

    async def _info(self, opt: int, data: bytes) -> BlockDevice | None:
        parsed = _parse_info(data)
        if parsed is None:
            await self._option_reply(opt, NBD_REP_ERR_INVALID, b"malformed request")
            return None
        name, wanted = parsed
        device = self._attach(name) if opt == NBD_OPT_GO else self.server.lookup(name)
        if device is None:
            await self._option_reply(opt, NBD_REP_ERR_UNKNOWN, b"unknown export")
            return None
        size = device.size
        aligned = NBD_INFO_BLOCK_SIZE in wanted and size % MIN_BLOCK_SIZE == 0
        sizes = (MIN_BLOCK_SIZE if aligned else 1, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD)
        export = struct.pack(">HQH", NBD_INFO_EXPORT, size, transmission_flags(device))
        await self._option_reply(opt, NBD_REP_INFO, export)
        await self._option_reply(
            opt, NBD_REP_INFO, struct.pack(">HIII", NBD_INFO_BLOCK_SIZE, *sizes)
        )
        await self._option_reply(opt, NBD_REP_ACK)
        return device

    async def _list(self, data: bytes) -> None:
        exports = self.server.exports
        if data:
            await self._option_reply(NBD_OPT_LIST, NBD_REP_ERR_INVALID, b"unexpected data")
            return
        if not isinstance(exports, Mapping):
            await self._option_reply(NBD_OPT_LIST, NBD_REP_ERR_POLICY, b"exports not listed")
            return
        for name in list(exports):
            raw = name.encode()
            await self._option_reply(
                NBD_OPT_LIST, NBD_REP_SERVER, struct.pack(">I", len(raw)) + raw
            )
        await self._option_reply(NBD_OPT_LIST, NBD_REP_ACK)

    async def _option_reply(self, opt: int, kind: int, data: bytes = b"") -> None:
        self.writer.write(_OPTION_REPLY.pack(NBD_OPT_REPLY_MAGIC, opt, kind, len(data)) + data)
        await self.writer.drain()

    async def _transmit(self, device: BlockDevice) -> None:
        while True:
            magic, *fields = _REQUEST.unpack(await self.reader.readexactly(_REQUEST.size))
            req = _Request(*fields)
            if magic != NBD_REQUEST_MAGIC:
                raise _Hangup(f"bad request magic {magic:#x}")
            if req.cmd == NBD_CMD_DISC:
                return
            payload = b""
            if req.cmd == NBD_CMD_WRITE and req.length <= MAX_PAYLOAD:
                payload = await self.reader.readexactly(req.length)
            elif req.cmd == NBD_CMD_WRITE:  # refused with EINVAL; keep the stream in sync
                for done in range(0, req.length, 1 << 20):
                    await self.reader.readexactly(min(req.length - done, 1 << 20))
            await self._slots.acquire()
            barrier = set(self._writes) if req.cmd == NBD_CMD_FLUSH else set()
            task = asyncio.create_task(self._request(device, req, payload, barrier))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if req.cmd in _WRITE_CMDS:
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)

    async def _request(
        self, device: BlockDevice, req: _Request, payload: bytes, barrier: set[asyncio.Task[None]]
    ) -> None:
        data = b""
        try:
            error = check_request(req.cmd, req.flags, req.offset, req.length, device.size)
            if not error:
                data = await self._execute(device, req, payload, barrier)
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                error = NBD_ENOSPC
            else:
                log.exception("nbd export %r: %s failed", self.export, req)
                error = NBD_EIO
        try:
            async with self._send_lock:
                if not self.writer.is_closing():
                    reply = _SIMPLE_REPLY.pack(NBD_SIMPLE_REPLY_MAGIC, error, req.handle)
                    self.writer.write(reply)
                    self.writer.write(data)
                    with contextlib.suppress(ConnectionError):
                        await self.writer.drain()
        finally:
            self._slots.release()

    async def _execute(
        self, device: BlockDevice, req: _Request, payload: bytes, barrier: set[asyncio.Task[None]]
    ) -> bytes:
        run, offset, length = self.server.run_blocking, req.offset, req.length
        fast = getattr(device, "is_fast", None)
        rw = req.cmd in (NBD_CMD_READ, NBD_CMD_WRITE)
        if rw and fast is not None and fast(req.cmd == NBD_CMD_WRITE, offset, length):
            run = _inline  # microseconds of page-cache I/O: not worth a thread hop
        if req.cmd == NBD_CMD_READ:
            data = await run(device.read, offset, length) if length else b""
            if len(data) != length:
                raise OSError(errno.EIO, f"device read {len(data)} bytes, not {length}")
            return data
        if req.cmd == NBD_CMD_FLUSH:
            if barrier:
                await asyncio.wait(barrier)
            await run(device.flush)
            return b""
        if length and req.cmd == NBD_CMD_WRITE:
            await run(device.write, offset, payload)
        elif length and req.cmd == NBD_CMD_TRIM:
            await run(device.trim, offset, length)
        elif length and req.cmd == NBD_CMD_WRITE_ZEROES:
            await run(device.write_zeroes, offset, length)
        if req.flags & NBD_CMD_FLAG_FUA:
            await run(device.flush)
        return b""


async def _inline(func: Callable[..., _T], *args: object) -> _T:
    return func(*args)


class NbdServer:
    """Serve ``exports`` on the unix socket ``socket_path`` (mode 0600).

    ``exports`` is a mapping (read at each connection, so a live ``dict`` works) or a
    function from a name to a device or None; the function runs on the event loop and must
    not block.  To detach a volume, first remove its export (so that new connections fail),
    then ``await drop_export(name)``.  A server is started once and closed once.
    """

    def __init__(self, socket_path: Path, exports: Exports, *, workers: int = 4) -> None:
        self.socket_path = Path(socket_path)
        self.exports = exports
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbd")
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self._closing = False
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        """Listen; a stale socket file is replaced, a live one or another file refused."""
        sock = _bind(self.socket_path)
        self._inode = _inode(self.socket_path)
        try:
            # A stream buffer that holds a whole large write: with asyncio's 64 KiB default,
            # every 4 MiB payload pauses and resumes the socket dozens of times.
            self._server = await asyncio.start_unix_server(
                self._accept, sock=sock, limit=MAX_PAYLOAD
            )
        except BaseException:
            sock.close()
            self._unlink()
            raise

    async def close(self) -> None:
        """Stop listening, close every connection and wait for device calls in flight."""
        self._closing = True
        if self._server is not None:
            await asyncio.sleep(0)  # Python 3.11 leaks a socket accepted just before close()
            self._server.close()
        await self._drop(list(self._connections))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._executor.shutdown(wait=False)
        self._unlink()

    async def drop_export(self, name: str) -> int:
        """Close the connections to one export; return how many there were."""
        victims = [conn for conn in self._connections if conn.export == name]
        await self._drop(victims)
        return len(victims)

    def lookup(self, name: str) -> BlockDevice | None:
        try:
            if isinstance(self.exports, Mapping):
                return self.exports.get(name)
            return self.exports(name)
        except Exception:
            log.exception("nbd: looking up export %r failed", name)
            return None

    async def run_blocking(self, func: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _drop(self, connections: list[_Connection]) -> None:
        tasks = [self._connections[conn] for conn in connections if conn in self._connections]
        for conn in connections:
            conn.abort()
        if tasks:
            await asyncio.wait(tasks)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        if self._closing:
            conn.abort()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            await conn.run()
        finally:
            del self._connections[conn]

    def _unlink(self) -> None:
        if self._inode is not None and _inode(self.socket_path) == self._inode:
            self.socket_path.unlink()


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _bind(path: Path) -> socket.socket:
    """A unix socket bound at ``path`` with mode 0600, not yet listening."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", str(path))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                probe.connect(os.fspath(path))
            except OSError:
                path.unlink(missing_ok=True)
            else:
                raise FileExistsError(errno.EADDRINUSE, "a server listens on", str(path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, 0o600)  # before listen(): no one can connect in between
    except BaseException:
        sock.close()
        raise
    return sock
