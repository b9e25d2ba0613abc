import pytest

from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.mapfile import (
    CONTENT,
    ENTRY_SIZE,
    HEADER_SIZE,
    OBJECT,
    ZERO,
    Entry,
    MapError,
    VolumeMap,
)
from snf.common.errors import InvalidInput

H = "ab" * 32
OID = "cd" * 16


def test_new_map_is_a_header_and_zeros() -> None:
    vmap = VolumeMap(10 * BLOCK_SIZE + 1)
    assert vmap.count == 11
    data = vmap.encode()
    assert len(data) == HEADER_SIZE + 11 * ENTRY_SIZE
    assert data[HEADER_SIZE:] == bytes(11 * ENTRY_SIZE)
    assert all(e.kind == ZERO for _, e in vmap.entries())


def test_round_trip_and_patch_offsets() -> None:
    vmap = VolumeMap(3 * BLOCK_SIZE, epoch=7)
    vmap.set_entry(0, Entry(CONTENT, H))
    offset, packed = vmap.set_entry(2, Entry(OBJECT, OID, writable=True))
    data = bytearray(vmap.encode())
    assert data[offset : offset + len(packed)] == packed
    again = VolumeMap.decode(bytes(data))
    assert (again.size, again.epoch, again.readonly) == (3 * BLOCK_SIZE, 7, False)
    assert again.entry(0) == Entry(CONTENT, H)
    assert again.entry(1) == Entry(ZERO, "")
    assert again.entry(2) == Entry(OBJECT, OID, True)
    assert list(again.references()) == [(CONTENT, H), (OBJECT, OID)]
    assert again.writable_objects() == [OID]


def test_snapshot_freezes_and_bumps_the_epoch() -> None:
    vmap = VolumeMap(2 * BLOCK_SIZE)
    vmap.set_entry(0, Entry(OBJECT, OID, writable=True))
    snap = vmap.frozen()
    vmap.release_writable()
    assert snap.readonly and vmap.epoch == 2
    assert snap.entry(0) == vmap.entry(0) == Entry(OBJECT, OID, False)
    assert vmap.writable_objects() == []


def test_clone_needs_a_read_only_origin_and_never_shrinks() -> None:
    vmap = VolumeMap(2 * BLOCK_SIZE)
    vmap.set_entry(1, Entry(CONTENT, H))
    with pytest.raises(InvalidInput):
        vmap.clone()
    image = vmap.frozen()
    child = image.clone(5 * BLOCK_SIZE)
    assert not child.readonly and child.count == 5
    assert child.entry(1) == Entry(CONTENT, H) and child.entry(4).kind == ZERO
    with pytest.raises(InvalidInput):
        image.clone(BLOCK_SIZE)


@pytest.mark.parametrize(
    "data",
    [b"", b"XXXX" + bytes(60), VolumeMap(BLOCK_SIZE).encode()[:-1]],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(MapError):
        VolumeMap.decode(data)


def test_unknown_version_is_refused() -> None:
    data = bytearray(VolumeMap(BLOCK_SIZE).encode())
    data[5] = 9
    with pytest.raises(MapError, match="version 9"):
        VolumeMap.decode(bytes(data))
