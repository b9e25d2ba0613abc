"""Partition tables of disk images: read, grow the last partition, build new ones.

Pure functions over bytes; the caller reads the first :data:`HEAD_BYTES` of the disk (or
the whole disk when smaller) and applies the returned :class:`Write` list. The input comes
from untrusted images: every bound is checked and every problem is an :class:`InvalidInput`.
Partitions that overlap, start in the table's own sectors or end beyond the disk are
refused, as is sector 0 with a boot flag other than 0x00/0x80 (a boot sector, not an MBR).

* MBR: the four primary entries, numbered 1..4 by slot as Linux does (an entry of 0 sectors
  is empty). An extended partition (type 05, 0f or 85) is listed as itself; the logical
  partitions in its EBR chain (elsewhere on the disk) are not read, and :func:`grow_last`
  refuses when the extended partition ends last. MBR partitions never grow past sector 2^32.
* GPT (any 0xEE entry in sector 0): the primary header at LBA 1 with both CRC32s; the entry
  array must lie within the first :data:`HEAD_BYTES`. The backup GPT is not read (a damaged
  primary is an error). Numbers are entry index + 1. Hybrid MBR entries but 0xEE stay.

CHS fields are computed for 255 heads / 63 sectors and capped at (1023, 254, 63), bytes
fe ff ff, as fdisk does. Built MBRs carry a fixed disk signature (0x534E4631, "SNF1") and are
byte-identical for the same input; built GPTs get random (uuid4) disk and partition GUIDs.
"""

from __future__ import annotations

import string
import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal, NamedTuple

from snf.common.errors import InvalidInput

SECTOR = 512
HEAD_BYTES = 1 << 20
MBR_MAX_SECTORS = 1 << 32
EXTENDED_TYPES = frozenset({"05", "0f", "85"})
GPT_ENTRIES = 128

_MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS first, type, CHS last, LBA, sectors
_MBR_TABLE = 446
_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # 92 bytes, field order as in UEFI
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")  # type, unique GUID, first, last, attrs, name
_NIL = bytes(16)


@dataclass(frozen=True)
class Partition:
    number: int  # Linux partition number
    start: int  # bytes
    size: int  # bytes
    type: str  # MBR: two lower-case hex digits; GPT: the type GUID, lower case
    bootable: bool = False  # MBR active flag; False for GPT

    @property
    def end(self) -> int:
        """The byte just after the partition."""
        return self.start + self.size


@dataclass(frozen=True)
class Table:
    kind: Literal["mbr", "gpt"]
    disk_size: int  # bytes, as given by the caller
    partitions: tuple[Partition, ...]  # sorted by start


@dataclass(frozen=True)
class Write:
    offset: int
    data: bytes


class _Header(NamedTuple):
    """The 92 bytes of a GPT header, in UEFI order."""

    signature: bytes
    revision: int
    size: int
    crc: int
    reserved: int
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: bytes
    entries_lba: int
    count: int
    entry_size: int
    entries_crc: int


@dataclass(frozen=True)
class _Gpt:
    header: _Header
    sector: bytes  # the whole header sector (LBA 1)
    entries: bytes  # the whole entry array


def _gpt_sector(sector: bytes, header: _Header, entries: bytes) -> bytes:
    """``sector`` with ``header`` in it, both CRC32s computed."""
    out = bytearray(sector)
    _GPT_HEADER.pack_into(out, 0, *header._replace(crc=0, entries_crc=zlib.crc32(entries)))
    struct.pack_into("<I", out, 16, zlib.crc32(out[: header.size]))
    return bytes(out)


def _chs(lba: int) -> bytes:
    cyl, rest = divmod(lba, 255 * 63)
    head, sec = divmod(rest, 63)
    if cyl > 1023:
        cyl, head, sec = 1023, 254, 62
    return bytes((head, (sec + 1) | ((cyl >> 2) & 0xC0), cyl & 0xFF))


def _set_entry(sector0: bytearray, slot: int, lba: int, count: int, ptype: int | None) -> None:
    """Set MBR entry ``slot``'s extent; a new non-bootable entry when ``ptype`` is given."""
    at = _MBR_TABLE + 16 * slot
    if ptype is not None:
        sector0[at : at + 5] = bytes((0, *_chs(lba), ptype))
    sector0[at + 5 : at + 8] = _chs(lba + count - 1)
    struct.pack_into("<II", sector0, at + 8, lba, count)


def _check_layout(parts: Iterable[Partition], what: str) -> tuple[Partition, ...]:
    ordered = tuple(sorted(parts, key=lambda p: p.start))
    for a, b in pairwise(ordered):
        if b.start < a.end:
            raise InvalidInput(
                f"{what} partitions {a.number} (bytes {a.start}..{a.end}) and "
                f"{b.number} (bytes {b.start}..{b.end}) overlap"
            )
    return ordered


def _mbr_entries(sector0: bytes) -> list[tuple[int, int, int, int, int]]:
    """(slot, status, type, first LBA, sectors) of the four primary entries."""
    out = []
    for slot in range(4):
        status, _, ptype, _, lba, count = _MBR_ENTRY.unpack_from(sector0, _MBR_TABLE + 16 * slot)
        out.append((slot, status, ptype, lba, count))
    return out


def read_table(head: bytes, disk_size: int) -> Table:
    """The partition table in ``head`` (the disk's first bytes) of a ``disk_size``-byte disk."""
    return _parse(head, disk_size)[0]


def _parse(head: bytes, disk_size: int) -> tuple[Table, _Gpt | None]:
    if disk_size < SECTOR:
        raise InvalidInput(f"disk size {disk_size} is less than one {SECTOR}-byte sector")
    if len(head) < SECTOR:
        raise InvalidInput(f"head is {len(head)} bytes; the partition table needs {SECTOR}")
    if head[510:512] != b"\x55\xaa":
        raise InvalidInput("no partition table: sector 0 has no 0x55AA signature")
    entries = _mbr_entries(head)
    if any(ptype == 0xEE for _, _, ptype, _, _ in entries):
        return _parse_gpt(head, disk_size)
    sectors = disk_size // SECTOR
    parts = []
    for slot, status, ptype, lba, count in entries:
        if status not in (0x00, 0x80):
            raise InvalidInput(
                f"MBR entry {slot + 1} has boot flag 0x{status:02x} (not 0x00 or 0x80): "
                "sector 0 is not a partition table"
            )
        if count == 0:
            continue
        if lba == 0:
            raise InvalidInput(f"MBR partition {slot + 1} starts at sector 0, over the MBR")
        if lba + count > sectors:
            raise InvalidInput(
                f"MBR partition {slot + 1} (sectors {lba}..{lba + count - 1}) ends beyond "
                f"the disk of {sectors} sectors"
            )
        parts.append(
            Partition(slot + 1, lba * SECTOR, count * SECTOR, f"{ptype:02x}", status == 0x80)
        )
    return Table("mbr", disk_size, _check_layout(parts, "MBR")), None


def _parse_gpt(head: bytes, disk_size: int) -> tuple[Table, _Gpt]:
    if len(head) < 2 * SECTOR:
        raise InvalidInput(f"head is {len(head)} bytes; the GPT header needs {2 * SECTOR}")
    h = _Header._make(_GPT_HEADER.unpack_from(head, SECTOR))
    if h.signature != b"EFI PART":
        raise InvalidInput("protective MBR (type ee) but no 'EFI PART' GPT header at LBA 1")
    if not _GPT_HEADER.size <= h.size <= SECTOR:
        raise InvalidInput(f"GPT header size {h.size} is not within 92..{SECTOR}")
    sector = bytes(head[SECTOR : 2 * SECTOR])
    if (crc := zlib.crc32(sector[:16] + bytes(4) + sector[20 : h.size])) != h.crc:
        raise InvalidInput(f"GPT header CRC32 0x{h.crc:08x} is wrong (computed 0x{crc:08x})")
    if h.my_lba != 1:
        raise InvalidInput(f"GPT primary header says it is at LBA {h.my_lba}, not 1")
    esize, count = h.entry_size, h.count
    if esize < _GPT_ENTRY.size or esize & (esize - 1) or esize > 4096:
        raise InvalidInput(f"GPT entry size {esize} is not a power of 2 within 128..4096")
    if count == 0:
        raise InvalidInput("GPT header has 0 partition entries")
    start, end = h.entries_lba * SECTOR, h.entries_lba * SECTOR + count * esize
    if h.entries_lba < 2 or end > HEAD_BYTES:
        limit = max(0, (HEAD_BYTES - max(start, 2 * SECTOR)) // esize)
        raise InvalidInput(
            f"GPT entry array ({count} entries of {esize} bytes at LBA {h.entries_lba}) is not "
            f"within LBA 2 and the first {HEAD_BYTES} bytes; use at most {limit} entries"
        )
    if end > len(head):
        raise InvalidInput(f"head is {len(head)} bytes; the GPT entry array ends at byte {end}")
    array = bytes(head[start:end])
    if zlib.crc32(array) != h.entries_crc:
        raise InvalidInput(
            f"GPT entry array CRC32 0x{h.entries_crc:08x} is wrong "
            f"(computed 0x{zlib.crc32(array):08x})"
        )
    array_end = -(-end // SECTOR)
    first_usable, last_usable, sectors = h.first_usable, h.last_usable, disk_size // SECTOR
    if first_usable < array_end or last_usable < first_usable:
        raise InvalidInput(
            f"GPT usable LBAs {first_usable}..{last_usable} are empty or overlap the entry "
            f"array (LBAs {h.entries_lba}..{array_end - 1})"
        )
    if not last_usable < h.alternate_lba < sectors:
        raise InvalidInput(
            f"GPT backup header LBA {h.alternate_lba} is not after the last usable LBA "
            f"{last_usable} and within the disk of {sectors} sectors"
        )
    parts = []
    for i in range(count):
        ptype, _uniq, first, last, _attrs, _name = _GPT_ENTRY.unpack_from(array, i * esize)
        if ptype == _NIL:
            continue
        if not first_usable <= first <= last <= last_usable:
            raise InvalidInput(
                f"GPT partition {i + 1} (LBAs {first}..{last}) is not within the usable "
                f"LBAs {first_usable}..{last_usable}"
            )
        size = (last - first + 1) * SECTOR
        parts.append(Partition(i + 1, first * SECTOR, size, str(uuid.UUID(bytes_le=ptype))))
    return Table("gpt", disk_size, _check_layout(parts, "GPT")), _Gpt(h, sector, array)


def grow_last(table: Table, head: bytes, new_disk_size: int) -> tuple[Table, list[Write]]:
    """Grow the partition that ends last to the end of a ``new_disk_size``-byte disk.

    ``table`` must be ``read_table(head, table.disk_size)``. Returns the new table and the
    writes that make it so; no writes when nothing changes. Nothing moves. MBR: the
    partition ends at the last whole sector, at most at sector 2^32. GPT: it ends at the new
    last usable LBA; the backup entries and header move to the end of the new disk and the
    protective MBR's 0xEE entry is extended when it covered the old disk.
    """
    parsed, gpt = _parse(head, table.disk_size)
    if parsed != table:
        raise InvalidInput("the partition table given does not match the head it came from")
    if not table.disk_size <= new_disk_size < 2**64:
        raise InvalidInput(f"new disk size {new_disk_size} is not within {table.disk_size}..2^64")
    if not table.partitions:
        raise InvalidInput(f"the {table.kind.upper()} has no partition to grow")
    last = max(table.partitions, key=lambda p: p.end)
    lba, sectors = last.start // SECTOR, new_disk_size // SECTOR
    new_table = replace(table, disk_size=new_disk_size)
    if gpt is None:
        if last.type in EXTENDED_TYPES:
            raise InvalidInput(
                f"the last partition is in an extended partition ({last.number}, type "
                f"{last.type}); growing logical partitions is not supported"
            )
        end = min(sectors, MBR_MAX_SECTORS)
        if end * SECTOR <= last.end:
            return new_table, []
        sector0 = bytearray(head[:SECTOR])
        _set_entry(sector0, last.number - 1, lba, end - lba, None)
        grown = replace(last, size=end * SECTOR - last.start)
        return _with(new_table, grown), [Write(0, bytes(sector0))]
    h, entries = gpt.header, bytearray(gpt.entries)
    last_usable = sectors - 2 - -(-len(entries) // SECTOR)
    if last_usable < last.end // SECTOR - 1:
        raise InvalidInput(
            f"disk size {new_disk_size} leaves GPT last usable LBA {last_usable}, before the "
            f"end of partition {last.number} (LBA {last.end // SECTOR - 1})"
        )
    struct.pack_into("<Q", entries, (last.number - 1) * h.entry_size + 40, last_usable)
    pmbr, size = bytearray(head[:SECTOR]), min(sectors - 1, 2**32 - 1)
    for slot, _status, ptype, first, count in _mbr_entries(head):
        if ptype == 0xEE and first == 1 and count != size and 1 + count > h.alternate_lba:
            _set_entry(pmbr, slot, 1, size, None)
    new = h._replace(alternate_lba=sectors - 1, last_usable=last_usable)
    writes = _gpt_writes(bytes(pmbr), gpt.sector, new, bytes(entries))
    new_table = _with(new_table, replace(last, size=(last_usable + 1 - lba) * SECTOR))
    if writes[0].data == head[:SECTOR] and writes[1].data == gpt.sector:
        return new_table, []
    return new_table, writes


def _gpt_writes(pmbr: bytes, sector: bytes, h: _Header, entries: bytes) -> list[Write]:
    """The protective MBR, the primary GPT ``h`` and its backup at ``h.alternate_lba``."""
    backup_lba = h.alternate_lba - -(-len(entries) // SECTOR)
    backup = h._replace(my_lba=h.alternate_lba, alternate_lba=1, entries_lba=backup_lba)
    padded = entries.ljust((h.alternate_lba - backup_lba) * SECTOR, b"\0")
    return [
        Write(0, pmbr),
        Write(SECTOR, _gpt_sector(sector, h, entries)),
        Write(h.entries_lba * SECTOR, entries),
        Write(backup_lba * SECTOR, padded),
        Write(h.alternate_lba * SECTOR, _gpt_sector(sector, backup, entries)),
    ]


def _with(table: Table, grown: Partition) -> Table:
    parts = tuple(grown if p.number == grown.number else p for p in table.partitions)
    return replace(table, partitions=parts)


def _mbr_type(ptype: str) -> int:
    if len(ptype) != 2 or ptype == "00" or not all(c in string.hexdigits for c in ptype):
        raise InvalidInput(f"MBR partition type {ptype!r} is not two hex digits other than 00")
    return int(ptype, 16)


def _sectors_of(start: int, size: int, what: str) -> tuple[int, int]:
    if start % SECTOR or size % SECTOR or size <= 0 or start < SECTOR:
        raise InvalidInput(
            f"{what} partition at byte {start} of {size} bytes is not whole {SECTOR}-byte "
            "sectors after sector 0"
        )
    return start // SECTOR, size // SECTOR


def make_mbr(parts: list[tuple[int, int, str]], *, signature: int = 0x534E4631) -> bytes:
    """Sector 0 with primary partitions ``(start, size, type)`` in bytes, none bootable."""
    if len(parts) > 4:
        raise InvalidInput(f"an MBR holds at most 4 primary partitions, not {len(parts)}")
    if not 0 <= signature < 2**32:
        raise InvalidInput(f"MBR disk signature {signature} is not a 32-bit number")
    sector0 = bytearray(SECTOR)
    struct.pack_into("<I", sector0, 440, signature)
    layout = []
    for slot, (start, size, ptype) in enumerate(parts):
        lba, count = _sectors_of(start, size, "MBR")
        if lba + count > MBR_MAX_SECTORS:
            raise InvalidInput(f"MBR partition {slot + 1} ends beyond sector 2^32 (2 TiB)")
        _set_entry(sector0, slot, lba, count, _mbr_type(ptype))
        layout.append(Partition(slot + 1, start, size, ptype))
    _check_layout(layout, "MBR")
    sector0[510:512] = b"\x55\xaa"
    return bytes(sector0)


def single_partition_mbr(fs_size: int, *, start: int = 2048 * SECTOR, type: str = "83") -> bytes:
    """The MBR of an extdump image: one partition at ``start`` of ``fs_size`` bytes rounded
    up to whole sectors, with :func:`make_mbr`'s fixed disk signature."""
    if fs_size <= 0:
        raise InvalidInput(f"filesystem size {fs_size} is not positive")
    return make_mbr([(start, -(-fs_size // SECTOR) * SECTOR, type)])


def make_gpt(parts: list[tuple[int, int, str]], disk_size: int) -> list[Write]:
    """The writes of a new GPT (protective MBR, primary and backup with 128 entries) holding
    ``(start, size, type GUID)`` partitions in bytes, numbered in the given order."""
    sectors = disk_size // SECTOR
    array_sectors = GPT_ENTRIES * _GPT_ENTRY.size // SECTOR
    first_usable, last_usable = 2 + array_sectors, sectors - 2 - array_sectors
    if last_usable < first_usable:
        raise InvalidInput(f"disk size {disk_size} is too small for a GPT")
    if len(parts) > GPT_ENTRIES:
        raise InvalidInput(f"a GPT holds at most {GPT_ENTRIES} partitions, not {len(parts)}")
    entries = bytearray(GPT_ENTRIES * _GPT_ENTRY.size)
    layout = []
    for i, (start, size, ptype) in enumerate(parts):
        lba, count = _sectors_of(start, size, "GPT")
        last = lba + count - 1
        if lba < first_usable or last > last_usable:
            raise InvalidInput(
                f"GPT partition {i + 1} (LBAs {lba}..{last}) is not within the usable "
                f"LBAs {first_usable}..{last_usable}"
            )
        try:
            guid = uuid.UUID(ptype)
        except ValueError:
            raise InvalidInput(f"GPT partition type {ptype!r} is not a GUID") from None
        if guid.int == 0:
            raise InvalidInput(f"GPT partition {i + 1} has the nil type GUID (unused entry)")
        unique = uuid.uuid4().bytes_le
        _GPT_ENTRY.pack_into(entries, i * _GPT_ENTRY.size, guid.bytes_le, unique, lba, last, 0, b"")
        layout.append(Partition(i + 1, start, size, str(guid)))
    _check_layout(layout, "GPT")
    ident = (b"EFI PART", 0x10000, _GPT_HEADER.size, 0, 0, 1, sectors - 1, first_usable)
    h = _Header(*ident, last_usable, uuid.uuid4().bytes_le, 2, GPT_ENTRIES, _GPT_ENTRY.size, 0)
    pmbr = bytearray(SECTOR)
    _set_entry(pmbr, 0, 1, min(sectors - 1, 2**32 - 1), 0xEE)
    pmbr[510:512] = b"\x55\xaa"
    return _gpt_writes(bytes(pmbr), bytes(SECTOR), h, bytes(entries))
