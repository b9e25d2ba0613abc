"""The block store: one interface, backends chosen by the ``[store]`` configuration section.

What it keeps, and how each kind of thing behaves:

* **blocks** - immutable, content-addressed: named by :func:`hashing.block_hash`, stored
  without their trailing zeros, zero-padded again by the reader.  All-zero blocks are never
  stored.  Putting a block that exists is a cheap no-op, so any number of writers on any
  number of nodes may put the same block at once.
* **objects** - a volume's private blocks: mutable, written in place at an offset, named by
  a random 128-bit id (32 hex characters).  Only the one volume that holds an object
  writable ever writes it.
* **maps** - a volume's, snapshot's or object version's list of blocks (see mapfile.py),
  named like volumes (``[A-Za-z0-9][A-Za-z0-9._+-]*``), replaced atomically as a whole or
  patched in place entry by entry.
* **meta** - small JSON documents beside maps (a volume's Ganeti disk UUID, origin, ...).
* **locks** - one exclusive lock per volume, held by an owner string, breakable when stale.
* **requests** - how a process asks the holder of a volume's lock to act (live snapshots).

Every backend passes the same tests (tests/unit/archipelago/test_store.py).
"""

from __future__ import annotations

import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from snf.common.errors import Conflict, InvalidInput, NotFound

from .hashing import BLOCK_SIZE, ZERO_HASH, block_hash, content_length, is_block_name

_MAP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_OBJECT_ID = re.compile(r"[0-9a-f]{32}")


def check_map_name(name: str) -> str:
    """Refuse names that are not plain, path-safe map names."""
    if not isinstance(name, str) or not _MAP_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(f"bad volume or map name {name!r}: use letters, digits and ._+-")
    return name


def check_block_name(name: str) -> str:
    if not is_block_name(name):
        raise InvalidInput(f"bad block name {name!r}: want 64 lower-case hex characters")
    return name


def check_object_id(oid: str) -> str:
    if not isinstance(oid, str) or not _OBJECT_ID.fullmatch(oid):
        raise InvalidInput(f"bad object id {oid!r}: want 32 lower-case hex characters")
    return oid


def new_object_id() -> str:
    return secrets.token_hex(16)


def default_owner() -> str:
    """Who takes a lock: this host and process, plus a random part for this holder."""
    import os

    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class BlockNotFound(NotFound):
    """A block, object or map that a reference names is not in the store."""


class LockHeld(Conflict):
    """The volume is locked by another owner."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(f"volume {name} is held by {owner}")
        self.name = name
        self.owner = owner


@dataclass(frozen=True)
class LockInfo:
    owner: str
    #: seconds since the epoch of the holder's last refresh
    refreshed: float


@dataclass(frozen=True)
class Usage:
    blocks: int
    block_bytes: int
    objects: int
    object_bytes: int
    maps: int


class Store(ABC):
    """The interface every backend implements (names are checked here, not by backends)."""

    block_size = BLOCK_SIZE
    #: Object and block I/O is local memory or page-cache work (microseconds), not a
    #: network round trip: callers may do small I/O without handing it to a thread.
    local_io = False

    # --- blocks ------------------------------------------------------------------------------

    def put_block(self, data: bytes | bytearray | memoryview, *, durable: bool = True) -> str:
        """Store one block (at most 4 MiB) unless it is all zero or present; return its name.

        With ``durable=False`` the block may still be in the page cache: bulk writers store
        many blocks that way and then make them durable at once with :meth:`sync_blocks`.
        """
        if len(data) > self.block_size:
            raise InvalidInput(f"a block holds at most {self.block_size} bytes, not {len(data)}")
        end = content_length(data)
        if end == 0:
            return ZERO_HASH
        name = block_hash(data[:end])
        if self._has_block(name):
            self._touch_block(name)  # in use again: out of the collector's reach for a while
        else:
            self._put_block(name, bytes(data[:end]), durable=durable)
        return name

    def sync_blocks(self, names: Iterable[str]) -> None:  # noqa: B027 - durable backends
        """Make blocks stored with ``durable=False`` durable (a no-op where every put is)."""

    def adopt_object(self, oid: str, name: str) -> bool:
        """Make the frozen private object ``oid`` also content block ``name`` without copying
        its data, where the backend can (a hard link in a directory); False: the caller
        stores the block itself.  Only for objects no volume writes any more (a snapshot's),
        whose whole block size is content (no trailing zeros)."""
        return False

    def get_block(self, name: str) -> bytes:
        """A block's bytes, zero-padded to the block size."""
        if name == ZERO_HASH:
            return bytes(self.block_size)
        data = self._get_block(check_block_name(name))
        return data + bytes(self.block_size - len(data))

    def read_block(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a block from ``offset`` (zero-padded); backends read only those."""
        if name == ZERO_HASH:
            return bytes(length)
        data = self._read_block(check_block_name(name), offset, length)
        return data + bytes(length - len(data))

    def _read_block(self, name: str, offset: int, length: int) -> bytes:
        return self._get_block(name)[offset : offset + length]

    def has_block(self, name: str) -> bool:
        return name == ZERO_HASH or self._has_block(check_block_name(name))

    def delete_block(self, name: str) -> None:
        self._delete_block(check_block_name(name))

    @abstractmethod
    def _put_block(self, name: str, data: bytes, *, durable: bool = True) -> None: ...
    @abstractmethod
    def _get_block(self, name: str) -> bytes: ...
    @abstractmethod
    def _has_block(self, name: str) -> bool: ...
    @abstractmethod
    def _delete_block(self, name: str) -> None: ...
    @abstractmethod
    def _touch_block(self, name: str) -> None:
        """Renew an existing block's modification time (the collector's safety window)."""

    @abstractmethod
    def iter_blocks(self) -> Iterator[tuple[str, int, float]]:
        """(name, stored size, modification time) of every block."""

    @abstractmethod
    def block_mtime(self, name: str) -> float | None:
        """A block's modification time (None if it is gone)."""

    # --- private objects -------------------------------------------------------------------

    @abstractmethod
    def create_object(self, oid: str, data: bytes) -> None:
        """Create object ``oid`` holding ``data`` (short data reads back zero-padded), durably."""

    @abstractmethod
    def read_object(self, oid: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (zeros past the written end)."""

    @abstractmethod
    def write_object(self, oid: str, offset: int, data: bytes | memoryview) -> None: ...
    @abstractmethod
    def sync_objects(self, oids: set[str]) -> None:
        """Make every write to these objects durable."""

    @abstractmethod
    def delete_object(self, oid: str) -> None: ...
    @abstractmethod
    def iter_objects(self) -> Iterator[tuple[str, int, float]]: ...
    @abstractmethod
    def object_mtime(self, oid: str) -> float | None: ...

    # --- maps and their metadata -------------------------------------------------------------

    @abstractmethod
    def put_map(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        """Replace map ``name`` atomically (``exclusive``: fail with Conflict if it exists)."""

    @abstractmethod
    def get_map(self, name: str) -> bytes: ...
    @abstractmethod
    def patch_map(self, name: str, offset: int, data: bytes) -> None:
        """Overwrite bytes of an existing map in place (one entry at a time)."""

    @abstractmethod
    def sync_map(self, name: str) -> None: ...
    @abstractmethod
    def has_map(self, name: str) -> bool: ...
    @abstractmethod
    def delete_map(self, name: str) -> None:
        """Remove a map and its metadata."""

    @abstractmethod
    def list_maps(self) -> list[str]: ...
    @abstractmethod
    def put_meta(self, name: str, meta: dict[str, Any]) -> None: ...
    @abstractmethod
    def get_meta(self, name: str) -> dict[str, Any]:
        """A map's metadata ({} when it has none)."""

    @abstractmethod
    def put_index(self, kind: str, key: str, value: str | None) -> None:
        """Set (or, with None, clear) a small lookup entry, e.g. disk UUID -> volume."""

    @abstractmethod
    def get_index(self, kind: str, key: str) -> str | None: ...

    # --- locks and requests -------------------------------------------------------------------

    @abstractmethod
    def lock(self, name: str, owner: str, *, stale_after: float | None = None) -> None:
        """Take volume ``name``'s lock for ``owner``; raise LockHeld if someone else has it.

        A lock not refreshed for ``stale_after`` seconds is broken and taken over.
        """

    @abstractmethod
    def refresh_lock(self, name: str, owner: str) -> None: ...
    @abstractmethod
    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (no error if it is free)."""

    @abstractmethod
    def lock_info(self, name: str) -> LockInfo | None: ...

    @abstractmethod
    def post_request(self, name: str, request: dict[str, Any]) -> str:
        """Leave a request for the holder of volume ``name``; return its id."""

    @abstractmethod
    def take_requests(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Holder side: the requests waiting for volume ``name`` (each returned once)."""

    @abstractmethod
    def answer_request(self, name: str, request_id: str, answer: dict[str, Any]) -> None: ...
    @abstractmethod
    def poll_answer(self, name: str, request_id: str) -> dict[str, Any] | None:
        """The answer, once given (and then forgotten), else None."""

    @abstractmethod
    def cancel_request(self, name: str, request_id: str) -> None: ...

    def wake_on_request(self, name: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (from any thread) whenever a request for volume ``name`` is posted,
        where the backend can tell (RADOS watch/notify); return a function that stops this.
        Holders still poll :meth:`take_requests`; this only makes them answer sooner."""
        return lambda: None

    # --- reports -------------------------------------------------------------------------------

    def usage(self) -> Usage:
        blocks = list(self.iter_blocks())
        objects = list(self.iter_objects())
        return Usage(
            blocks=len(blocks),
            block_bytes=sum(size for _, size, _ in blocks),
            objects=len(objects),
            object_bytes=sum(size for _, size, _ in objects),
            maps=len(self.list_maps()),
        )

    def close(self) -> None:  # noqa: B027 - backends with connections override this
        """Release connections."""
