"""An open volume: reads and copy-on-write writes through its map, for one holder.

Opening takes the volume's lock in the store, so on all nodes together only one process
writes a volume.  The write path, per 4 MiB block:

* a WRITABLE object entry: write into the object in place;
* anything else (zero, a content block, an object shared with a snapshot or an origin):
  copy-on-write - build the block (the old data with the new bytes patched in; nothing is
  read when the write covers the whole block), store it as a new private object *durably*,
  then point the entry at it (patched in place in the map, made durable by the next flush).

So the map never points at an object whose data is not on disk, whatever crashes when.
``flush`` makes every acknowledged write durable: first the objects written since the last
flush, then the map.  Objects that trim/zeroing unreferenced are deleted only after the map
that stopped referencing them is durable.

Thread-safe: the volume daemon serves several requests at once; each block has a lock
(striped), map changes take the map lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from snf.common.errors import InvalidInput

from .mapfile import CONTENT, OBJECT, ZERO, Entry, VolumeMap
from .store import Store, new_object_id

_STRIPES = 64
_FAST_MAX = 256 * 1024


class Volume:
    """A volume opened for I/O.  Use :func:`open_volume` or ``with Volume(...)``."""

    def __init__(
        self, store: Store, name: str, owner: str, *, stale_after: float | None = None
    ) -> None:
        store.lock(name, owner, stale_after=stale_after)
        try:
            vmap = VolumeMap.decode(store.get_map(name))
            if vmap.readonly:
                raise InvalidInput(f"{name} is a read-only map (an image or a snapshot)")
        except BaseException:
            store.unlock(name, owner)
            raise
        self.store = store
        self.name = name
        self.owner = owner
        self.map = vmap
        self._map_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._dirty: set[str] = set()
        self._map_dirty = False
        self._doomed: list[str] = []
        self._flush_lock = threading.Lock()
        self.closed = False
        #: called with the map after each flush (metadata, tests)
        self.on_flush: Callable[[VolumeMap], None] | None = None

    @property
    def size(self) -> int:
        return self.map.size

    @property
    def block_size(self) -> int:
        return self.map.block_size

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- I/O -----------------------------------------------------------------------------------

    def _check(self, offset: int, length: int) -> None:
        if self.closed:
            raise InvalidInput(f"volume {self.name} is closed")
        if offset < 0 or length < 0 or offset + length > self.map.size:
            raise InvalidInput(
                f"{length} bytes at {offset} are outside volume {self.name} ({self.map.size} bytes)"
            )

    def _segments(self, offset: int, length: int) -> list[tuple[int, int, int, int]]:
        """(block index, offset in block, length, offset in the request) per touched block."""
        bs = self.map.block_size
        out = []
        done = 0
        while done < length:
            index, within = divmod(offset + done, bs)
            n = min(bs - within, length - done)
            out.append((index, within, n, done))
            done += n
        return out

    def _read_entry(self, entry: Entry, within: int, n: int) -> bytes:
        if entry.kind == ZERO:
            return bytes(n)
        if entry.kind == CONTENT:
            return self.store.read_block(entry.ident, within, n)
        return self.store.read_object(entry.ident, within, n)

    def is_fast(self, write: bool, offset: int, length: int) -> bool:
        """Small I/O on a local store that needs no copy-on-write: microseconds of work."""
        if not self.store.local_io or length > _FAST_MAX or length == 0 or self.closed:
            return False
        if offset < 0 or offset + length > self.map.size:
            return False
        if not write:
            return True
        bs = self.map.block_size
        for index in range(offset // bs, (offset + length - 1) // bs + 1):
            entry = self.map.entry(index)
            if entry.kind != OBJECT or not entry.writable:
                return False
        return True

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        out = bytearray(length)
        for index, within, n, at in self._segments(offset, length):
            with self._stripes[index % _STRIPES]:
                entry = self.map.entry(index)
                out[at : at + n] = self._read_entry(entry, within, n)
        return bytes(out)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._check(offset, len(data))
        view = memoryview(data)
        for index, within, n, at in self._segments(offset, len(data)):
            with self._stripes[index % _STRIPES]:
                self._write_block(index, within, view[at : at + n])

    def _write_block(self, index: int, within: int, piece: memoryview) -> None:
        entry = self.map.entry(index)
        if entry.kind == OBJECT and entry.writable:
            self.store.write_object(entry.ident, within, piece)
            with self._map_lock:
                self._dirty.add(entry.ident)
            return
        bs = self.map.block_size
        if len(piece) == bs:
            block = bytes(piece)
        else:
            block = bytearray(self._read_entry(entry, 0, bs))
            block[within : within + len(piece)] = piece
            block = bytes(block)
        oid = new_object_id()
        self.store.create_object(oid, block)  # durable before the map points at it
        self._set(index, Entry(OBJECT, oid, writable=True))

    def _set(self, index: int, entry: Entry) -> None:
        with self._map_lock:
            old = self.map.entry(index)
            offset, packed = self.map.set_entry(index, entry)
            self.store.patch_map(self.name, offset, packed)
            self._map_dirty = True
            if old.kind == OBJECT and old.writable and old.ident != entry.ident:
                self._doomed.append(old.ident)
                self._dirty.discard(old.ident)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Zero a range: whole blocks become ZERO entries (freeing their private objects)."""
        self._zero(offset, length, partial=True)

    def trim(self, offset: int, length: int) -> None:
        """Discard a range: whole blocks become ZERO entries; partial blocks are left as they
        are (NBD lets a trimmed range read back as anything until it is written again)."""
        self._zero(offset, length, partial=False)

    def _zero(self, offset: int, length: int, *, partial: bool) -> None:
        self._check(offset, length)
        bs = self.map.block_size
        for index, within, n, _ in self._segments(offset, length):
            with self._stripes[index % _STRIPES]:
                kind = self.map.entry(index).kind
                whole = n == bs or (within == 0 and index * bs + n == self.map.size)
                if kind == ZERO:
                    continue
                if whole:
                    self._set(index, Entry(ZERO, ""))
                elif partial:
                    self._write_block(index, within, memoryview(bytes(n)))

    def flush(self) -> None:
        with self._flush_lock:
            with self._map_lock:
                dirty, self._dirty = self._dirty, set()
                map_dirty, self._map_dirty = self._map_dirty, False
                doomed, self._doomed = self._doomed, []
            if dirty:
                self.store.sync_objects(dirty)
            if map_dirty:
                self.store.sync_map(self.name)
            for oid in doomed:
                self.store.delete_object(oid)
            if self.on_flush is not None:
                self.on_flush(self.map)

    # --- whole-volume operations for the holder -------------------------------------------------

    def snapshot(self, snap_name: str, meta: dict | None = None) -> VolumeMap:
        """Freeze the current contents as read-only map ``snap_name`` (O(map), no data copied).

        The volume's own map is rewritten first without writable entries (so it copies on
        its next write to any block), then the snapshot map is created: a crash in between
        leaves no snapshot and a consistent volume.
        """
        with _all(self._stripes):  # no write runs while the snapshot is cut
            self.flush()
            snap = self.map.frozen()
            with self._map_lock:
                self.map.release_writable()
                self.store.put_map(self.name, self.map.encode())
            self.store.put_map(snap_name, snap.encode(), exclusive=True)
            self.store.put_meta(
                snap_name,
                {"kind": "snapshot", "source": self.name, "created": time.time(), **(meta or {})},
            )
        return snap

    def grow(self, size: int) -> None:
        with _all(self._stripes), self._map_lock:
            self.map.grow(size)
            self.store.put_map(self.name, self.map.encode())

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            self.store.unlock(self.name, self.owner)


class _all:
    """Hold every lock of a list (in order)."""

    def __init__(self, locks: list[threading.Lock]) -> None:
        self.locks = locks

    def __enter__(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc: object) -> None:
        for lock in reversed(self.locks):
            lock.release()
