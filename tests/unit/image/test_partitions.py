"""snf.image.partitions: round trips, growing, real sfdisk/sgdisk, hostile tables."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from snf.common.errors import InvalidInput
from snf.image import partitions as pt
from snf.image.partitions import HEAD_BYTES, SECTOR, Partition, Table, Write
from tests.conftest import require

MiB = 1 << 20
LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"
ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    require(Path(path).exists(), f"{name} is not installed")
    return path


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [tool(argv[0]), *argv[1:]], input=stdin, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done


def sfdisk_json(image: Path) -> dict:
    done = run("sfdisk", "--json", str(image))
    assert "mismatch" not in done.stderr and "not on the end" not in done.stderr, done.stderr
    return json.loads(done.stdout)["partitiontable"]


def sfdisk_parts(image: Path) -> list[tuple[int, int, int, str, bool]]:
    """(number, start, size, type, bootable) in bytes, as sfdisk sees them."""
    table = sfdisk_json(image)
    out = []
    for p in table["partitions"]:
        number = int(p["node"].removeprefix(str(image)))
        kind = p["type"].lower() if table["label"] == "gpt" else f"{int(p['type'], 16):02x}"
        start, size = p["start"] * SECTOR, p["size"] * SECTOR
        out.append((number, start, size, kind, p.get("bootable", False)))
    return out


def ours(table: Table) -> list[tuple[int, int, int, str, bool]]:
    return [(p.number, p.start, p.size, p.type, p.bootable) for p in table.partitions]


def image(tmp_path: Path, size: int, writes: Sequence[Write] = ()) -> Path:
    path = tmp_path / "disk.img"
    with path.open("wb") as f:
        f.truncate(size)
    apply(path, writes)
    return path


def apply(path: Path, writes: Sequence[Write]) -> None:
    with path.open("r+b") as f:
        for w in writes:
            f.seek(w.offset)
            f.write(w.data)


def head_of(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEAD_BYTES)


def memory(size: int, writes: list[Write]) -> bytes:
    """The first HEAD_BYTES of a disk after ``writes`` (those within it)."""
    head = bytearray(min(size, HEAD_BYTES))
    for w in writes:
        if w.offset < len(head):
            head[w.offset : w.offset + len(w.data)] = w.data
    return bytes(head)


# -- round trips ----------------------------------------------------------------------------


def test_make_mbr_round_trip() -> None:
    sector0 = pt.make_mbr([(MiB, 16 * MiB, "83"), (17 * MiB, 8 * MiB, "8E")], signature=7)
    assert len(sector0) == SECTOR and sector0[510:] == b"\x55\xaa"
    assert sector0[440:444] == (7).to_bytes(4, "little")
    table = pt.read_table(sector0, 64 * MiB)
    assert table == Table(
        "mbr",
        64 * MiB,
        (Partition(1, MiB, 16 * MiB, "83"), Partition(2, 17 * MiB, 8 * MiB, "8e")),
    )


def test_chs_is_computed_and_capped() -> None:
    sector0 = pt.make_mbr([(2048 * SECTOR, 600 * 1024 * MiB, "83")])
    entry = sector0[446:462]
    assert entry[1:4] == bytes((32, 33, 0))  # LBA 2048 = C0 H32 S33
    assert entry[5:8] == b"\xfe\xff\xff"  # beyond cylinder 1023


def test_make_gpt_round_trip(tmp_path: Path) -> None:
    parts = [(MiB, 8 * MiB, ESP), (9 * MiB, 4 * MiB, SWAP), (13 * MiB, 40 * MiB, LINUX)]
    writes = pt.make_gpt(parts, 64 * MiB)
    table = pt.read_table(memory(64 * MiB, writes), 64 * MiB)
    assert table.kind == "gpt"
    assert ours(table) == [(i + 1, s, n, t, False) for i, (s, n, t) in enumerate(parts)]
    disk = image(tmp_path, 64 * MiB, writes)
    assert sfdisk_parts(disk) == ours(table)
    assert "No problems found" in run("sgdisk", "-v", str(disk)).stdout


def test_single_partition_mbr(tmp_path: Path) -> None:
    sector0 = pt.single_partition_mbr(10 * MiB + 1)
    assert sector0 == pt.single_partition_mbr(10 * MiB + 1)  # deterministic
    size = 10 * MiB + SECTOR  # rounded up to whole sectors
    disk = image(tmp_path, MiB + size, [Write(0, sector0)])
    table = pt.read_table(head_of(disk), MiB + size)
    assert ours(table) == [(1, MiB, size, "83", False)]
    assert sfdisk_parts(disk) == ours(table)
    assert sfdisk_json(disk)["id"] == "0x534e4631"
    with pytest.raises(InvalidInput, match="filesystem size 0"):
        pt.single_partition_mbr(0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pt.make_mbr([(MiB, MiB, "83")] * 5), "at most 4"),
        (lambda: pt.make_mbr([(MiB, MiB, "zz")]), "type 'zz'"),
        (lambda: pt.make_mbr([(MiB, MiB, "00")]), "type '00'"),
        (lambda: pt.make_mbr([(MiB, MiB, "+8")]), "type '\\+8'"),
        (lambda: pt.make_mbr([(0, MiB, "83")]), "at byte 0 "),
        (lambda: pt.make_mbr([(MiB + 1, MiB, "83")]), "not whole 512-byte"),
        (lambda: pt.make_mbr([(MiB, 4 * MiB, "83"), (2 * MiB, MiB, "83")]), "overlap"),
        (lambda: pt.make_mbr([(MiB, 2 << 40, "83")]), "beyond sector 2\\^32"),
        (lambda: pt.make_gpt([(MiB, MiB, "linux")], 64 * MiB), "not a GUID"),
        (lambda: pt.make_gpt([(MiB, 64 * MiB, LINUX)], 64 * MiB), "not within the usable"),
        (lambda: pt.make_gpt([], 16 * SECTOR), "too small"),
    ],
)
def test_builders_refuse(call: Callable[[], object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        call()


# -- tables that sfdisk made ----------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        "label: gpt\n,32MiB\n,\n",
        "label: gpt\n,8MiB,U\n,4MiB,S\n,,L\n",
        "label: dos\n,32MiB,83,*\n,\n",
        "label: dos\n,16MiB,83\n,8MiB,8e,*\n,4MiB,82\n,,b\n",
    ],
)
def test_reads_what_sfdisk_writes(tmp_path: Path, script: str) -> None:
    disk = image(tmp_path, 64 * MiB)
    run("sfdisk", "--quiet", str(disk), stdin=script)
    table = pt.read_table(head_of(disk), 64 * MiB)
    assert table.kind == ("gpt" if "gpt" in script else "mbr")
    assert ours(table) == sfdisk_parts(disk)


def test_extended_partition_is_listed_but_not_grown(tmp_path: Path) -> None:
    disk = image(tmp_path, 64 * MiB)
    run("sfdisk", "--quiet", str(disk), stdin="label: dos\n,16MiB,83\n,,5\n,8MiB,83\n")
    head = head_of(disk)
    table = pt.read_table(head, 64 * MiB)
    primary = [p for p in sfdisk_parts(disk) if p[0] <= 4]
    assert ours(table) == primary
    assert [p.type for p in table.partitions] == ["83", "05"]
    assert any(p[0] == 5 for p in sfdisk_parts(disk))  # the logical one exists but isn't read
    with pytest.raises(InvalidInput, match="extended partition"):
        pt.grow_last(table, head, 256 * MiB)


# -- growing --------------------------------------------------------------------------------


def test_grow_mbr(tmp_path: Path) -> None:
    disk = image(tmp_path, 64 * MiB)
    run("sfdisk", "--quiet", str(disk), stdin="label: dos\n,16MiB,83,*\n,8MiB,8e\n")
    head = head_of(disk)
    table = pt.read_table(head, 64 * MiB)
    with disk.open("r+b") as f:
        f.truncate(256 * MiB)
    new, writes = pt.grow_last(table, head, 256 * MiB)
    assert [w.offset for w in writes] == [0] and len(writes[0].data) == SECTOR
    assert writes[0].data[:446] == head[:446] and writes[0].data[510:] == head[510:512]
    apply(disk, writes)
    assert new.disk_size == 256 * MiB
    assert ours(new) == [(1, MiB, 16 * MiB, "83", True), (2, 17 * MiB, 239 * MiB, "8e", False)]
    assert sfdisk_parts(disk) == ours(new)
    assert pt.read_table(head_of(disk), 256 * MiB) == new
    assert pt.grow_last(new, head_of(disk), 256 * MiB) == (new, [])


def test_grow_mbr_last_by_end_not_by_slot() -> None:
    head = pt.make_mbr([(32 * MiB, 8 * MiB, "83"), (MiB, 8 * MiB, "82")])
    table = pt.read_table(head, 64 * MiB)
    new, writes = pt.grow_last(table, head, 64 * MiB + 1000)
    assert ours(new) == [(2, MiB, 8 * MiB, "82", False), (1, 32 * MiB, 32 * MiB + 512, "83", False)]
    assert pt.read_table(writes[0].data, 64 * MiB + 1000) == new


def test_grow_mbr_stops_at_2_tib() -> None:
    head = pt.make_mbr([(MiB, MiB, "83")])
    table = pt.read_table(head, 64 * MiB)
    new, writes = pt.grow_last(table, head, 3 << 40)
    assert new.partitions[0].start + new.partitions[0].size == 2**32 * SECTOR
    assert writes[0].data[446 + 5 : 446 + 8] == b"\xfe\xff\xff"
    again = pt.grow_last(new, writes[0].data, 4 << 40)
    assert again == (Table("mbr", 4 << 40, new.partitions), [])


@pytest.mark.parametrize("made_by", ["sfdisk", "make_gpt"])
def test_grow_gpt(tmp_path: Path, made_by: str) -> None:
    if made_by == "sfdisk":
        disk = image(tmp_path, 64 * MiB)
        run("sfdisk", "--quiet", str(disk), stdin="label: gpt\n,32MiB\n,16MiB,S\n")
    else:
        disk = image(tmp_path, 64 * MiB, pt.make_gpt([(MiB, 32 * MiB, LINUX)], 64 * MiB))
    head = head_of(disk)
    table = pt.read_table(head, 64 * MiB)
    with disk.open("r+b") as f:
        f.truncate(256 * MiB)
    new, writes = pt.grow_last(table, head, 256 * MiB)
    apply(disk, writes)
    last = new.partitions[-1]
    assert last.start == table.partitions[-1].start
    assert last.start + last.size == (256 * MiB // SECTOR - 33) * SECTOR  # last usable LBA + 1
    assert new.partitions[:-1] == table.partitions[:-1]
    assert sfdisk_parts(disk) == ours(new)
    assert sfdisk_json(disk)["lastlba"] == 256 * MiB // SECTOR - 34
    verify = run("sgdisk", "-v", str(disk)).stdout
    assert "No problems found" in verify, verify
    printed = run("sgdisk", "-p", str(disk)).stdout
    rows = {r[0]: r[1:5] for r in map(str.split, printed.splitlines()) if r and r[0].isdigit()}
    first, end = last.start // SECTOR, (last.start + last.size) // SECTOR - 1
    want = [str(first), str(end), f"{last.size / MiB:.1f}", "MiB"]
    assert rows[str(last.number)] == want, printed
    assert f"Disk {disk}: {256 * MiB // SECTOR} sectors" in printed
    assert pt.read_table(head_of(disk), 256 * MiB) == new
    assert pt.grow_last(new, head_of(disk), 256 * MiB) == (new, [])


def test_grow_gpt_on_the_same_disk_moves_nothing_else(tmp_path: Path) -> None:
    writes = pt.make_gpt([(MiB, 8 * MiB, LINUX)], 64 * MiB)
    head = memory(64 * MiB, writes)
    table = pt.read_table(head, 64 * MiB)
    new, grow = pt.grow_last(table, head, 64 * MiB)
    assert [w.offset for w in grow] == [w.offset for w in writes]
    assert grow[0].data == head[:SECTOR]  # the protective MBR already covered the disk
    disk = image(tmp_path, 64 * MiB, writes)
    apply(disk, grow)
    assert "No problems found" in run("sgdisk", "-v", str(disk)).stdout
    assert sfdisk_parts(disk) == ours(new) == [(1, MiB, 63 * MiB - 33 * SECTOR, LINUX, False)]


@pytest.mark.parametrize(
    ("new_size", "match"),
    [
        (32 * MiB, "33554432 is not within 67108864..2"),
        (64 * MiB - 1, "67108863"),
        (2**64, "18446744073709551616 is not"),
    ],
)
def test_grow_refuses_bad_disk_sizes(new_size: int, match: str) -> None:
    for head in (pt.make_mbr([(MiB, MiB, "83")]), memory(64 * MiB, pt.make_gpt([], 64 * MiB))):
        table = pt.read_table(head, 64 * MiB)
        with pytest.raises(InvalidInput, match=match):
            pt.grow_last(table, head, new_size)


def test_grow_refuses_empty_and_foreign_tables() -> None:
    head = memory(64 * MiB, pt.make_gpt([], 64 * MiB))
    with pytest.raises(InvalidInput, match="no partition to grow"):
        pt.grow_last(pt.read_table(head, 64 * MiB), head, 128 * MiB)
    other = pt.read_table(pt.make_mbr([(MiB, MiB, "83")]), 64 * MiB)
    with pytest.raises(InvalidInput, match="does not match the head"):
        pt.grow_last(other, pt.make_mbr([(MiB, 2 * MiB, "83")]), 128 * MiB)


# -- hostile tables -------------------------------------------------------------------------


def gpt_head(
    header: dict[int, tuple[str, int]] | None = None,
    entry: dict[int, tuple[str, int]] | None = None,
    crc: bool = True,
) -> bytes:
    """A 64 MiB disk's GPT head with header/first-entry fields {offset: (format, value)}
    replaced; the CRCs are recomputed (entries first, then header) when ``crc``."""
    head = bytearray(memory(64 * MiB, pt.make_gpt([(MiB, 8 * MiB, LINUX)], 64 * MiB)))
    for offset, (fmt, value) in (entry or {}).items():
        struct.pack_into(fmt, head, 2 * SECTOR + offset, value)
    for offset, (fmt, value) in (header or {}).items():
        struct.pack_into(fmt, head, SECTOR + offset, value)
    if crc:
        count, size = struct.unpack_from("<II", head, SECTOR + 80)
        lba = struct.unpack_from("<Q", head, SECTOR + 72)[0]
        array = head[lba * SECTOR : lba * SECTOR + count * size]
        struct.pack_into("<I", head, SECTOR + 88, zlib.crc32(array))
        struct.pack_into("<I", head, SECTOR + 16, 0)
        hsize = struct.unpack_from("<I", head, SECTOR + 12)[0]
        struct.pack_into("<I", head, SECTOR + 16, zlib.crc32(head[SECTOR : SECTOR + hsize]))
    return bytes(head)


def mbr_head(entries: list[tuple[int, int, int, int]]) -> bytes:
    """Sector 0 with raw (status, type, lba, count) entries."""
    sector0 = bytearray(SECTOR)
    for slot, (status, ptype, lba, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", sector0, 446 + 16 * slot, status, b"", ptype, b"", lba, count)
    sector0[510:] = b"\x55\xaa"
    return bytes(sector0)


GOOD_GPT = gpt_head()

HOSTILE = {
    "zero sector": (bytes(HEAD_BYTES), "no partition table"),
    "empty head": (b"", "head is 0 bytes"),
    "truncated MBR": (pt.make_mbr([(MiB, MiB, "83")])[:300], "head is 300 bytes"),
    "truncated GPT header": (GOOD_GPT[:700], "head is 700 bytes; the GPT header"),
    "truncated GPT entries": (GOOD_GPT[:5000], "head is 5000 bytes; the GPT entry array"),
    "boot sector, not MBR": (mbr_head([(0x29, 0x83, 2048, 10)]), "boot flag 0x29"),
    "MBR over sector 0": (mbr_head([(0, 0x83, 0, 10)]), "starts at sector 0"),
    "MBR beyond disk": (mbr_head([(0, 0x83, 2048, 131072)]), "ends beyond the disk"),
    "MBR huge": (mbr_head([(0, 0x83, 2**32 - 1, 2**32 - 1)]), "ends beyond the disk"),
    "MBR overlap": (
        mbr_head([(0, 0x83, 2048, 8192), (0, 0x83, 4096, 8192)]),
        "partitions 1 .* and 2 .* overlap",
    ),
    "no GPT header": (GOOD_GPT[:SECTOR] + bytes(SECTOR), "no 'EFI PART'"),
    "GPT header CRC": (gpt_head({88: ("<I", 1)}, crc=False), "GPT header CRC32"),
    "GPT entries CRC": (gpt_head(entry={32: ("<Q", 4096)}, crc=False), "entry array CRC32"),
    "GPT header size small": (gpt_head({12: ("<I", 20)}), "header size 20"),
    "GPT header size big": (gpt_head({12: ("<I", 4096)}), "header size 4096"),
    "GPT not at LBA 1": (gpt_head({24: ("<Q", 5)}), "at LBA 5, not 1"),
    "GPT absurd count": (gpt_head({80: ("<I", 2**32 - 1)}), "use at most 8184 entries"),
    "GPT zero count": (gpt_head({80: ("<I", 0)}), "0 partition entries"),
    "GPT absurd entry size": (gpt_head({84: ("<I", 2**31)}), "entry size 2147483648"),
    "GPT odd entry size": (gpt_head({84: ("<I", 200)}), "entry size 200"),
    "GPT entries far away": (gpt_head({72: ("<Q", 2**60)}), "at LBA 1152921504606846976"),
    "GPT entries over header": (gpt_head({72: ("<Q", 1)}), "use at most"),
    "GPT usable over entries": (gpt_head({40: ("<Q", 20)}), "overlap the entry array"),
    "GPT usable empty": (gpt_head({48: ("<Q", 33)}), "are empty"),
    "GPT backup beyond disk": (gpt_head({32: ("<Q", 131072)}), "backup header LBA 131072"),
    "GPT backup in usable": (gpt_head({32: ("<Q", 1000)}), "backup header LBA 1000"),
    "GPT entry beyond disk": (gpt_head(entry={40: ("<Q", 2**64 - 1)}), "partition 1 .LBAs"),
    "GPT entry before usable": (gpt_head(entry={32: ("<Q", 2)}), "not within the usable"),
    "GPT entry reversed": (gpt_head(entry={32: ("<Q", 20000)}), "LBAs 20000..18431. is not"),
    "GPT overlap": (
        gpt_head(entry={128: ("<16s", bytes(range(16))), 160: ("<Q", 4096), 168: ("<Q", 9000)}),
        "GPT partitions 1 .* and 2 .* overlap",
    ),
}


@pytest.mark.parametrize(("head", "match"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_tables(head: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as caught:
        pt.read_table(head, 64 * MiB)
    assert "\n" not in str(caught.value)


def test_disk_too_small_for_its_table() -> None:
    with pytest.raises(InvalidInput, match="disk size 100"):
        pt.read_table(GOOD_GPT, 100)
    with pytest.raises(InvalidInput, match="backup header LBA 131071"):
        pt.read_table(GOOD_GPT, 32 * MiB)


def test_protective_mbr_wins_over_other_entries() -> None:
    head = bytearray(GOOD_GPT)
    head[446 + 16 : 446 + 32] = pt.make_mbr([(MiB, MiB, "83")])[446:462]  # a hybrid MBR
    assert pt.read_table(bytes(head), 64 * MiB).kind == "gpt"


HEADER_FIELDS = {12: "<I", 24: "<Q", 32: "<Q", 40: "<Q", 48: "<Q", 72: "<Q", 80: "<I", 84: "<I"}
ENTRY_FIELDS = {0: "<16s", 32: "<Q", 40: "<Q"}
VALUES = [0, 1, 2, 33, 34, 92, 128, 2048, 18431, 131038, 131071, 131072, 2**31, 2**64 - 1]


@pytest.mark.parametrize("seed", range(4))
def test_mutations_raise_only_invalid_input(seed: int) -> None:
    """Random damage to valid tables gives a table or InvalidInput, never another exception."""
    rng = random.Random(seed)

    def field(fmt: str) -> tuple[str, int | bytes]:
        if fmt == "<16s":
            return fmt, rng.choice([bytes(16), rng.randbytes(16)])
        return fmt, rng.choice(VALUES) & (2 ** (8 * struct.calcsize(fmt)) - 1)

    mbr = pt.make_mbr([(MiB, 8 * MiB, "83"), (9 * MiB, 8 * MiB, "8e")])
    for _ in range(400):
        header = {
            o: field(f) for o, f in rng.sample(sorted(HEADER_FIELDS.items()), rng.randrange(3))
        }
        entries = {128 * rng.randrange(3) + o: field(f) for o, f in ENTRY_FIELDS.items()}
        gpt = gpt_head(header, entries, crc=rng.random() < 0.9)
        for base in (gpt, mbr + gpt[SECTOR:]):
            head = bytearray(base[: rng.choice([len(base), rng.randrange(len(base))])])
            for _ in range(rng.choice([0, 0, 1, 3])):
                if len(head) > 600:
                    head[rng.randrange(440, 600)] = rng.randrange(256)
            size = rng.choice([64 * MiB, 64 * MiB, 64 * MiB, SECTOR, 0, 2**40, 17 * MiB + 3])
            try:
                table = pt.read_table(bytes(head), size)
                pt.grow_last(table, bytes(head), size * 2)
            except InvalidInput:
                pass
