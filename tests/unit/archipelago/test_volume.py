import os
from pathlib import Path

import pytest

from snf.archipelago import volumes
from snf.archipelago.hashing import BLOCK_SIZE, block_hash
from snf.archipelago.mapfile import CONTENT, OBJECT, ZERO, VolumeMap
from snf.archipelago.store import LockHeld, Store
from snf.archipelago.store_dir import DirStore
from snf.archipelago.store_memory import MemoryStore
from snf.archipelago.volume import Volume
from snf.common.errors import Conflict, InvalidInput, NotFound

MiB = 1 << 20


@pytest.fixture(params=["memory", "dir"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return DirStore(tmp_path / "store")


def image(store: Store, data: bytes, name: str = "img-1") -> str:
    import io

    volumes.import_image(store, name, io.BytesIO(data))
    return name


def test_thin_volume_reads_zeros_and_stores_nothing(store: Store) -> None:
    volumes.create_volume(store, "vol-1", 64 * MiB, disk_uuid="d-1")
    with Volume(store, "vol-1", "me") as vol:
        assert vol.read(0, 4096) == bytes(4096)
        assert vol.read(64 * MiB - 10, 10) == bytes(10)
    assert store.usage().objects == 0 and store.usage().blocks == 0
    assert volumes.lookup_disk(store, "d-1") == {"volume": "vol-1", "origin": None,
                                                  "size": 64 * MiB}  # fmt: skip


def test_writes_read_back_across_block_boundaries(store: Store) -> None:
    volumes.create_volume(store, "vol-1", 3 * BLOCK_SIZE)
    data = os.urandom(BLOCK_SIZE + 5000)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(BLOCK_SIZE - 2500, data)
        assert vol.read(BLOCK_SIZE - 2500, len(data)) == data
        assert vol.read(0, 10) == bytes(10)
        vol.write(BLOCK_SIZE - 2500, b"xy")  # in place: no new object
        objects = store.usage().objects
        vol.write(BLOCK_SIZE - 2000, b"z")
        assert store.usage().objects == objects == 3
        vol.flush()
    with Volume(store, "vol-1", "me") as vol:  # reopened from the stored map
        assert vol.read(BLOCK_SIZE - 2500, 3) == b"xy" + data[2:3]


def test_out_of_range_io_is_refused(store: Store) -> None:
    volumes.create_volume(store, "vol-1", BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol, pytest.raises(InvalidInput):
        vol.write(BLOCK_SIZE - 1, b"ab")


def test_clone_shares_blocks_and_writes_never_change_the_origin(store: Store) -> None:
    data = os.urandom(2 * BLOCK_SIZE + 100)
    image(store, data)
    blocks_before = store.usage().blocks
    volumes.create_volume(store, "vol-1", 4 * BLOCK_SIZE, origin="img-1", disk_uuid="d-1")
    assert store.usage().blocks == blocks_before and store.usage().objects == 0  # no copy
    assert volumes.is_clone_of(store, "d-1", "img-1")
    with Volume(store, "vol-1", "me") as vol:
        assert vol.read(0, len(data)) == data
        assert vol.read(len(data), 50) == bytes(50)
        vol.write(10, b"NEW")
        assert vol.read(0, 20) == data[:10] + b"NEW" + data[13:20]
        assert vol.read(BLOCK_SIZE, 100) == data[BLOCK_SIZE : BLOCK_SIZE + 100]
    with _clone(store, "vol-2", "img-1") as other:
        assert other.read(0, 20) == data[:20]  # the origin is unchanged
    vmap = volumes.load_map(store, "img-1")
    assert vmap.entry(0).ident == block_hash(data[:BLOCK_SIZE])


def _clone(store: Store, name: str, origin: str) -> Volume:
    volumes.create_volume(store, name, BLOCK_SIZE * 3, origin=origin)
    return Volume(store, name, "me")


def test_bad_clones_change_nothing(store: Store) -> None:
    image(store, os.urandom(BLOCK_SIZE * 2))
    maps = store.list_maps()
    with pytest.raises(NotFound):
        volumes.create_volume(store, "vol-1", BLOCK_SIZE * 2, origin="nope")
    with pytest.raises(InvalidInput, match="below the size"):
        volumes.create_volume(store, "vol-1", BLOCK_SIZE, origin="img-1")
    volumes.create_volume(store, "vol-w", BLOCK_SIZE)
    with pytest.raises(InvalidInput, match="writable"):
        volumes.create_volume(store, "vol-1", BLOCK_SIZE, origin="vol-w")
    with pytest.raises(Conflict):
        volumes.create_volume(store, "vol-w", BLOCK_SIZE)
    assert store.list_maps() == sorted([*maps, "vol-w"])


def test_the_lock_keeps_a_second_opener_out(store: Store) -> None:
    volumes.create_volume(store, "vol-1", BLOCK_SIZE)
    with Volume(store, "vol-1", "a"):
        with pytest.raises(LockHeld):
            Volume(store, "vol-1", "b")
        with pytest.raises(Conflict):
            volumes.remove_volume(store, "vol-1")
    Volume(store, "vol-1", "b").close()


def test_snapshot_freezes_contents_and_later_writes_copy(store: Store) -> None:
    volumes.create_volume(store, "vol-1", 2 * BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, b"before")
        vol.snapshot("snap-1")
        vol.write(0, b"AFTER!")
        assert vol.read(0, 6) == b"AFTER!"
    volumes.create_volume(store, "vol-2", 2 * BLOCK_SIZE, origin="snap-1")
    with Volume(store, "vol-2", "me") as vol:
        assert vol.read(0, 6) == b"before"
    info = volumes.describe(store, "snap-1")
    assert info["readonly"] and info["kind"] == "snapshot" and info["source"] == "vol-1"


def test_snapshot_of_an_unattached_volume_takes_the_lock_itself(store: Store) -> None:
    volumes.create_volume(store, "vol-1", BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(100, b"data")
    volumes.snapshot_volume(store, "vol-1", "snap-1")
    assert volumes.load_map(store, "snap-1").readonly
    with pytest.raises(Conflict):
        volumes.snapshot_volume(store, "vol-1", "snap-1")


def test_remove_frees_only_private_objects(store: Store) -> None:
    image(store, os.urandom(BLOCK_SIZE))
    volumes.create_volume(store, "vol-1", 3 * BLOCK_SIZE, origin="img-1", disk_uuid="d-1")
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, b"x")  # copy of the image block
        vol.write(BLOCK_SIZE, b"y")
        vol.snapshot("snap-1")
        vol.write(2 * BLOCK_SIZE, b"z")  # private after the snapshot
    usage = store.usage()
    assert usage.objects == 3
    volumes.remove_volume(store, "vol-1")
    assert store.usage().objects == 2  # the two the snapshot still references
    assert store.usage().blocks == usage.blocks  # the image's block stays
    assert volumes.lookup_disk(store, "d-1") is None
    with pytest.raises(InvalidInput):
        volumes.remove_volume(store, "snap-1")


def test_zeroing_whole_blocks_frees_objects_after_flush(store: Store) -> None:
    volumes.create_volume(store, "vol-1", 2 * BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, os.urandom(2 * BLOCK_SIZE))
        vol.flush()
        assert store.usage().objects == 2
        vol.write_zeroes(0, BLOCK_SIZE)
        vol.trim(BLOCK_SIZE, 100)  # partial: left alone
        assert store.usage().objects == 2  # deleted only once the map is durable
        vol.flush()
        assert store.usage().objects == 1
        assert vol.read(0, BLOCK_SIZE) == bytes(BLOCK_SIZE)
        vol.write_zeroes(BLOCK_SIZE + 10, 5)
        assert vol.read(BLOCK_SIZE + 8, 9)[2:7] == bytes(5)


def test_grow(store: Store) -> None:
    volumes.create_volume(store, "vol-1", BLOCK_SIZE)
    volumes.grow_volume(store, "vol-1", 3 * BLOCK_SIZE + 7)
    with Volume(store, "vol-1", "me") as vol:
        assert vol.size == 3 * BLOCK_SIZE + 7
        vol.write(3 * BLOCK_SIZE, b"1234567")
    with pytest.raises(InvalidInput):
        volumes.grow_volume(store, "vol-1", BLOCK_SIZE)


def test_hash_snapshot_turns_it_into_an_image(store: Store) -> None:
    payload = os.urandom(BLOCK_SIZE + 3)
    volumes.create_volume(store, "vol-1", 3 * BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, payload)
        vol.write(2 * BLOCK_SIZE, bytes(10))  # a private block that is all zero
        vol.snapshot("snap-1")
    assert volumes.hash_snapshot(store, "snap-1") == {"blocks": 3, "bytes": 3 * BLOCK_SIZE}
    vmap = volumes.load_map(store, "snap-1")
    kinds = [e.kind for _, e in vmap.entries()]
    assert kinds == [CONTENT, CONTENT, ZERO]
    hashes = volumes.content_hashes(vmap)
    assert hashes[0] == block_hash(payload[:BLOCK_SIZE])
    assert hashes[1] == block_hash(payload[BLOCK_SIZE:])
    # A volume cloned from the hashed snapshot reads the same bytes.
    volumes.create_volume(store, "vol-2", 3 * BLOCK_SIZE, origin="snap-1")
    with Volume(store, "vol-2", "me") as vol:
        assert vol.read(0, len(payload)) == payload


def test_concurrent_writers_to_one_block_lose_nothing(store: Store) -> None:
    import threading

    volumes.create_volume(store, "vol-1", BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:

        def writer(i: int) -> None:
            vol.write(i * 4096, bytes([i + 1]) * 4096)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(32):
            assert vol.read(i * 4096, 4096) == bytes([i + 1]) * 4096
    assert len([e for _, e in VolumeMap.decode(store.get_map("vol-1")).entries()
                if e.kind == OBJECT]) == 1  # fmt: skip


def test_peek_reads_any_map_without_the_lock(store: Store) -> None:
    data = os.urandom(BLOCK_SIZE + 10)
    image(store, data)
    volumes.create_volume(store, "vol-1", 2 * BLOCK_SIZE, origin="img-1")
    with Volume(store, "vol-1", "holder") as vol:
        vol.write(5, b"abc")
        assert volumes.peek(store, "vol-1", 0, 10) == data[:5] + b"abc" + data[8:10]
    assert volumes.peek(store, "img-1", BLOCK_SIZE, 10) == data[BLOCK_SIZE:]
    with pytest.raises(InvalidInput):
        volumes.peek(store, "img-1", BLOCK_SIZE, BLOCK_SIZE)


def test_is_fast_only_for_small_local_io_without_copy_on_write(store: Store) -> None:
    volumes.create_volume(store, "vol-1", 2 * BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        assert vol.is_fast(False, 0, 4096)  # reading zeros
        assert not vol.is_fast(True, 0, 4096)  # the first write copies
        vol.write(0, b"x")
        assert vol.is_fast(True, 4096, 4096)
        assert not vol.is_fast(True, BLOCK_SIZE - 10, 20)  # touches the second block
        assert not vol.is_fast(True, 0, 1 << 20)  # large: the thread pool does it
        assert not vol.is_fast(False, 2 * BLOCK_SIZE, 1)  # out of range
        store.local_io = False  # a network store (RADOS)
        assert not vol.is_fast(False, 0, 4096)


def test_hashing_a_dir_snapshot_links_full_blocks_instead_of_copying(tmp_path: Path) -> None:
    store = DirStore(tmp_path / "store")
    full, short = os.urandom(BLOCK_SIZE), os.urandom(100)
    volumes.create_volume(store, "vol-1", 2 * BLOCK_SIZE)
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, full)
        vol.write(BLOCK_SIZE, short)  # the rest of this block is zeros: stored shortened
        vol.snapshot("snap-1")
    objects = {e.ident: i for i, e in volumes.load_map(store, "snap-1").entries()}
    volumes.hash_snapshot(store, "snap-1")
    entries = dict(volumes.load_map(store, "snap-1").entries())
    obj_of = {i: o for o, i in objects.items()}
    block0 = store.root / "blocks" / entries[0].ident[:2] / entries[0].ident[2:4] / entries[0].ident
    obj0 = store.root / "objects" / obj_of[0][:2] / obj_of[0][2:4] / obj_of[0]
    assert block0.stat().st_ino == obj0.stat().st_ino  # linked, not copied
    block1 = store.root / "blocks" / entries[1].ident[:2] / entries[1].ident[2:4] / entries[1].ident
    assert block1.stat().st_size == 100  # copied without its trailing zeros
    assert volumes.peek(store, "snap-1", 0, BLOCK_SIZE + 100) == full + short
    # The volume writes on (copy-on-write); the linked block does not change.
    with Volume(store, "vol-1", "me") as vol:
        vol.write(0, b"changed")
    assert store.get_block(entries[0].ident) == full
