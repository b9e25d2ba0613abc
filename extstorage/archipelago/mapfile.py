"""The map format: which block backs each 4 MiB of a volume, snapshot or image.

A map is a 64-byte header and one 64-byte entry per block (big-endian)::

    header: magic "SNFM" | u16 version (1) | u16 flags | u64 size in bytes | u32 block size
            | u32 reserved | u64 epoch | u64 entry count | 24 reserved bytes
    entry:  u8 kind | u8 flags | 6 reserved | 32-byte id | 24 reserved bytes

Kinds: ZERO (reads as zeros, stores nothing), CONTENT (a content block: the id is its
SHA-256), OBJECT (a private block: the id's first 16 bytes name the object).  An OBJECT
entry with the WRITABLE flag belongs to this map's volume alone and is written in place;
every other entry is shared and copied on the first write to it.  A READONLY map (an image
or a snapshot) never changes its contents, so any number of volumes may be cloned from it.

Entries are 64-byte aligned, so an entry never straddles a 512-byte sector and patching one
in place is atomic on disk.  An all-zero entry is a ZERO entry, so a new thin volume's map
is a header and zeros.  Pure code, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from snf.common.errors import InvalidInput

from .hashing import BLOCK_SIZE

MAGIC = b"SNFM"
VERSION = 1
HEADER = struct.Struct(">4sHHQIIQQ24x")
ENTRY = struct.Struct(">BB6x32s24x")
HEADER_SIZE = HEADER.size
ENTRY_SIZE = ENTRY.size
assert HEADER_SIZE == ENTRY_SIZE == 64

ZERO, CONTENT, OBJECT = 0, 1, 2
KINDS = {ZERO: "zero", CONTENT: "content", OBJECT: "object"}
WRITABLE = 0x01
READONLY = 0x0001
#: The largest volume a map describes: 16 TiB (4,194,304 entries, a 256 MiB map).
MAX_SIZE = 16 << 40


class MapError(InvalidInput):
    """Bytes that are not a map of this format."""


@dataclass(frozen=True)
class Entry:
    kind: int
    ident: str  # hex: 64 characters for CONTENT, 32 for OBJECT, "" for ZERO
    writable: bool = False


def blocks_for(size: int, block_size: int = BLOCK_SIZE) -> int:
    return -(-size // block_size)


class VolumeMap:
    """A decoded map; entries stay packed in a bytearray (a 1 TiB volume: 16 MiB, not 262,144
    Python objects)."""

    def __init__(
        self,
        size: int,
        *,
        block_size: int = BLOCK_SIZE,
        epoch: int = 1,
        flags: int = 0,
        entries: bytearray | None = None,
    ) -> None:
        if not 0 <= size <= MAX_SIZE:
            raise InvalidInput(f"volume size must be 0..{MAX_SIZE} bytes, not {size}")
        if block_size <= 0 or block_size % 4096:
            raise MapError(f"bad block size {block_size}")
        self.size = size
        self.block_size = block_size
        self.epoch = epoch
        self.flags = flags
        count = blocks_for(size, block_size)
        self.raw = entries if entries is not None else bytearray(count * ENTRY_SIZE)
        if len(self.raw) != count * ENTRY_SIZE:
            raise MapError(f"a map of {size} bytes needs {count} entries")

    # --- encoding ------------------------------------------------------------------------------

    def encode(self) -> bytes:
        header = HEADER.pack(
            MAGIC, VERSION, self.flags, self.size, self.block_size, 0, self.epoch, self.count
        )
        return header + bytes(self.raw)

    @classmethod
    def decode(cls, data: bytes) -> VolumeMap:
        if len(data) < HEADER_SIZE or data[:4] != MAGIC:
            raise MapError("not a map (no SNFM header)")
        _magic, version, flags, size, block_size, _, epoch, count = HEADER.unpack_from(data)
        if version != VERSION:
            raise MapError(f"map version {version} is not supported (this code reads {VERSION})")
        entries = bytearray(data[HEADER_SIZE:])
        if count != blocks_for(size, block_size) or len(entries) != count * ENTRY_SIZE:
            raise MapError(f"map is truncated or inconsistent: {count} entries for {size} bytes")
        return cls(size, block_size=block_size, epoch=epoch, flags=flags, entries=entries)

    # --- entries -------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self.raw) // ENTRY_SIZE

    @property
    def readonly(self) -> bool:
        return bool(self.flags & READONLY)

    def entry(self, index: int) -> Entry:
        kind, flags, ident = ENTRY.unpack_from(self.raw, index * ENTRY_SIZE)
        if kind == ZERO:
            return Entry(ZERO, "")
        if kind == CONTENT:
            return Entry(CONTENT, ident.hex())
        if kind == OBJECT:
            return Entry(OBJECT, ident[:16].hex(), bool(flags & WRITABLE))
        raise MapError(f"entry {index} has unknown kind {kind}")

    def set_entry(self, index: int, entry: Entry) -> tuple[int, bytes]:
        """Change one entry; return (offset in the encoded map, bytes) to patch in place."""
        if not 0 <= index < self.count:
            raise IndexError(f"entry {index} of {self.count}")
        ident = bytes.fromhex(entry.ident) if entry.ident else b""
        packed = ENTRY.pack(entry.kind, WRITABLE if entry.writable else 0, ident.ljust(32, b"\0"))
        offset = index * ENTRY_SIZE
        self.raw[offset : offset + ENTRY_SIZE] = packed
        return HEADER_SIZE + offset, packed

    def entries(self) -> Iterator[tuple[int, Entry]]:
        for index in range(self.count):
            yield index, self.entry(index)

    def references(self) -> Iterator[tuple[int, str]]:
        """(kind, id) of every non-zero entry: what garbage collection must keep."""
        raw = self.raw
        for offset in range(0, len(raw), ENTRY_SIZE):
            kind = raw[offset]
            if kind == CONTENT:
                yield CONTENT, raw[offset + 8 : offset + 40].hex()
            elif kind == OBJECT:
                yield OBJECT, raw[offset + 8 : offset + 24].hex()

    def writable_objects(self) -> list[str]:
        raw = self.raw
        return [
            raw[o + 8 : o + 24].hex()
            for o in range(0, len(raw), ENTRY_SIZE)
            if raw[o] == OBJECT and raw[o + 1] & WRITABLE
        ]

    # --- whole-map operations (all O(entries), no data touched) -----------------------------------

    def frozen(self) -> VolumeMap:
        """A read-only copy with no writable entries (a snapshot)."""
        raw = bytearray(self.raw)
        raw[1::ENTRY_SIZE] = bytes(self.count)
        return VolumeMap(
            self.size, block_size=self.block_size, epoch=0, flags=READONLY, entries=raw
        )

    def release_writable(self) -> None:
        """Clear every WRITABLE flag and start a new epoch (the source side of a snapshot)."""
        self.raw[1::ENTRY_SIZE] = bytes(self.count)
        self.epoch += 1

    def clone(self, size: int | None = None) -> VolumeMap:
        """A new writable map sharing every block of this read-only one, grown to ``size``."""
        if not self.readonly:
            raise InvalidInput("only a read-only map (an image or a snapshot) can be cloned")
        size = self.size if size is None else size
        if size < self.size:
            raise InvalidInput(f"a clone cannot be smaller than its origin ({self.size} bytes)")
        child = VolumeMap(
            self.size, block_size=self.block_size, epoch=1, entries=bytearray(self.raw)
        )
        child.grow(size)
        return child

    def grow(self, size: int) -> None:
        if size < self.size:
            raise InvalidInput(f"cannot shrink a volume from {self.size} to {size} bytes")
        if size > MAX_SIZE:
            raise InvalidInput(f"volume size must be at most {MAX_SIZE} bytes, not {size}")
        count = blocks_for(size, self.block_size)
        self.raw.extend(bytes((count - self.count) * ENTRY_SIZE))
        self.size = size
