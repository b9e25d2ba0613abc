"""Object content in the shared block store: cutting an upload into blocks, reading ranges
back, and the read-only map every version is written as.

An upload is read in 4 MiB blocks; each block is hashed and stored by a small thread pool
(hashlib and file writes release the GIL) while the next one is read, and the MD5 that
Swift clients check runs in its own thread, in order.  At most a few blocks are in memory
at once, whatever the object's size.  Blocks are stored not yet durable and made durable
together before the version that names them is committed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from snf.archipelago.hashing import BLOCK_SIZE, ZERO_HASH, is_block_name, top_hash
from snf.archipelago.mapfile import CONTENT, ENTRY, READONLY, ZERO, VolumeMap, blocks_for
from snf.archipelago.store import Store

from .errors import BadRequest

log = logging.getLogger("snf.portal.pithos")


@dataclass(frozen=True)
class Stored:
    """What an upload stored: its block hashes, size, top hash and MD5 (None if not asked)."""

    hashes: list[str]
    size: int
    md5: str | None

    @property
    def top_hash(self) -> str:
        return top_hash(self.hashes)


class _Md5:
    """MD5 over the blocks in upload order, in a thread of its own."""

    #: Blocks waiting for the MD5 at most (bounds memory when MD5 is the slowest step).
    BACKLOG = 8

    def __init__(self) -> None:
        self._md5 = hashlib.md5()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pithos-md5")
        self._queued: deque[Future[None]] = deque()

    def update(self, data: bytes) -> None:
        self._queued.append(self._pool.submit(self._md5.update, data))
        while len(self._queued) > self.BACKLOG:
            self._queued.popleft().result()

    def hexdigest(self) -> str:
        while self._queued:
            self._queued.popleft().result()
        self._pool.shutdown()
        return self._md5.hexdigest()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class _Flusher:
    """Makes stored blocks durable one by one in a thread of its own while the upload goes
    on, so the disk writes back during the transfer instead of all at its end."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pithos-sync")
        self._seen: set[str] = set()
        self._futures: list[Future[None]] = []

    def submitted(self, name: str) -> str:
        if name != ZERO_HASH and name not in self._seen:
            self._seen.add(name)
            self._futures.append(self._pool.submit(self._store.sync_blocks, [name]))
        return name

    def wait(self) -> None:
        for future in self._futures:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def store_stream(
    store: Store,
    stream: BinaryIO,
    *,
    length: int | None,
    limit: int,
    threads: int = 2,
    md5: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Stored:
    """Read ``stream`` to its end (or ``length`` bytes) and store it as blocks.

    ``length`` None means "until the stream ends" (chunked uploads).  More than ``limit``
    bytes, or fewer or more than ``length``, is a BadRequest and nothing refers to what was
    stored (the garbage collector removes it).
    """
    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="pithos-put")
    flusher = _Flusher(store)
    digest = _Md5() if md5 else None
    pending: deque[Future[str]] = deque()
    hashes: list[str] = []
    size = 0
    try:
        while True:
            want = BLOCK_SIZE if length is None else min(BLOCK_SIZE, length - size)
            block = _read_block(stream, want) if want > 0 else b""
            if not block:
                break
            size += len(block)
            if size > limit:
                raise BadRequest(f"an object holds at most {limit} bytes")
            if digest is not None:
                digest.update(block)
            pending.append(pool.submit(store.put_block, block, durable=False))
            while len(pending) > 2 * threads:
                hashes.append(flusher.submitted(pending.popleft().result()))
            if progress is not None:
                progress(size)
            if len(block) < want:
                break
        if length is not None and size != length:
            raise BadRequest(f"the body has {size} bytes, Content-Length said {length}")
        if length is not None and _read_block(stream, 1):
            raise BadRequest(f"the body is longer than Content-Length ({length})")
        hashes.extend(flusher.submitted(f.result()) for f in pending)
        pending.clear()
        flusher.wait()
        return Stored(hashes or [ZERO_HASH], size, digest.hexdigest() if digest else None)
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown()
        flusher.close()
        if digest is not None:
            digest.close()


def read_body(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes of a request body.  A body the server cannot read (the client
    went away inside a chunk, a malformed chunk: gunicorn raises its own errors) is a
    BadRequest, not a server error."""
    try:
        return stream.read(size)
    except Exception as exc:
        raise BadRequest(f"the request body could not be read: {exc}") from None


def _read_block(stream: BinaryIO, want: int) -> bytes:
    """Up to ``want`` bytes: short only at the end of the stream."""
    first = read_body(stream, want)
    if len(first) == want or not first:
        return first
    parts = [first]
    got = len(first)
    while got < want:
        data = read_body(stream, want - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def store_blocks(store: Store, body: bytes) -> list[str]:
    """Pithos' block upload (POST to a container): the body cut every 4 MiB, each stored."""
    view = memoryview(body)
    names = [
        store.put_block(view[i : i + BLOCK_SIZE], durable=False)
        for i in range(0, len(body), BLOCK_SIZE)
    ]
    store.sync_blocks(n for n in set(names) if n != ZERO_HASH)
    return names


def check_hashmap(size: object, hashes: object, limit: int) -> tuple[int, list[str]]:
    """A client's hashmap (``{"bytes": N, "hashes": [...]}``), checked."""
    if type(size) is not int or not 0 <= size <= limit:
        raise BadRequest(f"bytes must be an integer from 0 to {limit}")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise BadRequest("hashes must be a list of hex strings")
    hashes = [h.lower() for h in hashes]
    if not all(is_block_name(h) for h in hashes):
        raise BadRequest("every hash must be 64 hexadecimal characters (sha256)")
    if len(hashes) != max(1, blocks_for(size)):
        raise BadRequest(f"{size} bytes need {max(1, blocks_for(size))} hashes, not {len(hashes)}")
    return size, hashes


def missing_blocks(store: Store, hashes: Sequence[str]) -> list[str]:
    """The named blocks the store does not hold (each once, in order)."""
    seen: set[str] = set()
    missing = []
    for name in hashes:
        if name not in seen:
            seen.add(name)
            if not store.has_block(name):
                missing.append(name)
    return missing


def iter_range(store: Store, hashes: Sequence[str], start: int, stop: int) -> Iterator[bytes]:
    """The bytes [start, stop) of an object, a block at a time."""
    offset = start
    while offset < stop:
        index, within = divmod(offset, BLOCK_SIZE)
        count = min(BLOCK_SIZE - within, stop - offset)
        if within == 0 and count == BLOCK_SIZE:
            yield store.get_block(hashes[index])
        else:
            yield store.read_block(hashes[index], within, count)
        offset += count


def md5_of(store: Store, hashes: Sequence[str], size: int) -> str:
    digest = hashlib.md5()
    for chunk in iter_range(store, hashes, 0, size):
        digest.update(chunk)
    return digest.hexdigest()


# --- version maps -----------------------------------------------------------------------------


def map_name(object_uuid: str, version_id: int) -> str:
    return f"pithos-{object_uuid.replace('-', '')}-{version_id}"


def write_map(store: Store, name: str, hashes: Sequence[str], size: int) -> None:
    """Write a version's read-only map: a CONTENT entry per block, ZERO for zero blocks."""
    vmap = VolumeMap(size, flags=READONLY)
    raw = vmap.raw
    for index in range(vmap.count):
        name_hex = hashes[index]
        if name_hex != ZERO_HASH:
            ENTRY.pack_into(raw, index * ENTRY.size, CONTENT, 0, bytes.fromhex(name_hex))
    # The meta first: the reconciler tells an in-flight version from an orphan by its age.
    store.put_meta(name, {"kind": "pithos-version", "created": time.time()})
    store.put_map(name, vmap.encode(), exclusive=True)
    store.sync_map(name)


def read_map(store: Store, name: str) -> list[str]:
    """A version's block hashes (an empty object: the one empty block)."""
    vmap = VolumeMap.decode(store.get_map(name))
    raw = vmap.raw
    hashes = []
    for offset in range(0, len(raw), ENTRY.size):
        kind = raw[offset]
        if kind == ZERO:
            hashes.append(ZERO_HASH)
        elif kind == CONTENT:
            hashes.append(raw[offset + 8 : offset + 40].hex())
        else:
            raise BadRequest(f"map {name} holds a private block: not an object version")
    return hashes or [ZERO_HASH]
