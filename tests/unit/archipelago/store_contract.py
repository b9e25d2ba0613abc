"""What every block-store backend must do.  Subclass with a ``store`` fixture."""

from __future__ import annotations

import os
import time

import pytest

from snf.archipelago.hashing import BLOCK_SIZE, ZERO_HASH, block_hash
from snf.archipelago.store import BlockNotFound, LockHeld, Store, new_object_id
from snf.common.errors import Conflict, InvalidInput


class StoreContract:
    def test_blocks_are_content_addressed_and_stored_without_trailing_zeros(
        self, store: Store
    ) -> None:
        data = os.urandom(1000) + bytes(5000)
        name = store.put_block(data)
        assert name == block_hash(data)
        assert store.has_block(name)
        assert store.get_block(name) == data + bytes(BLOCK_SIZE - len(data))
        assert {n: size for n, size, _ in store.iter_blocks()}[name] == 1000
        assert store.put_block(data[:1000]) == name  # the same block: stored once
        assert sum(1 for _ in store.iter_blocks()) == 1

    def test_zero_blocks_are_never_stored(self, store: Store) -> None:
        assert store.put_block(bytes(BLOCK_SIZE)) == ZERO_HASH
        assert store.put_block(b"") == ZERO_HASH
        assert list(store.iter_blocks()) == []
        assert store.get_block(ZERO_HASH) == bytes(BLOCK_SIZE)
        assert store.has_block(ZERO_HASH)

    def test_missing_and_bad_block_names(self, store: Store) -> None:
        with pytest.raises(BlockNotFound):
            store.get_block("ab" * 32)
        for bad in ("../etc/passwd", "AB" * 32, "ab" * 31, ""):
            with pytest.raises(InvalidInput):
                store.get_block(bad)
        with pytest.raises(InvalidInput):
            store.put_block(bytes(BLOCK_SIZE + 1))

    def test_delete_block(self, store: Store) -> None:
        name = store.put_block(b"x")
        store.delete_block(name)
        assert not store.has_block(name)
        store.delete_block(name)  # idempotent

    def test_objects_are_written_in_place(self, store: Store) -> None:
        oid = new_object_id()
        store.create_object(oid, b"a" * 100)
        with pytest.raises(Conflict):
            store.create_object(oid, b"b")
        store.write_object(oid, 50, b"XY")
        store.write_object(oid, BLOCK_SIZE - 2, b"ZZ")
        store.sync_objects({oid})
        assert store.read_object(oid, 48, 6) == b"aaXYaa"
        assert store.read_object(oid, 200, 4) == bytes(4)  # a hole reads as zeros
        assert store.read_object(oid, BLOCK_SIZE - 4, 4) == b"\0\0ZZ"
        assert oid in [o for o, _, _ in store.iter_objects()]
        store.delete_object(oid)
        assert oid not in [o for o, _, _ in store.iter_objects()]
        with pytest.raises(BlockNotFound):
            store.read_object(oid, 0, 1)
        with pytest.raises(InvalidInput):
            store.create_object("../x", b"")

    def test_maps_replace_patch_and_metadata(self, store: Store) -> None:
        store.put_map("vol-1", b"0123456789")
        with pytest.raises(Conflict):
            store.put_map("vol-1", b"x", exclusive=True)
        store.patch_map("vol-1", 2, b"AB")
        store.sync_map("vol-1")
        assert store.get_map("vol-1") == b"01AB456789"
        store.put_map("vol-1", b"new")
        assert store.get_map("vol-1") == b"new"
        store.patch_map("vol-1", 0, b"N")  # patches the new map, not a stale copy
        assert store.get_map("vol-1") == b"New"
        assert store.get_meta("vol-1") == {}
        store.put_meta("vol-1", {"uuid": "u", "origin": None})
        assert store.get_meta("vol-1") == {"uuid": "u", "origin": None}
        assert store.list_maps() == ["vol-1"] and store.has_map("vol-1")
        store.delete_map("vol-1")
        assert not store.has_map("vol-1") and store.get_meta("vol-1") == {}
        with pytest.raises(BlockNotFound):
            store.get_map("vol-1")
        for bad in ("../x", ".hidden", "a/b", "", "x" * 201):
            with pytest.raises(InvalidInput):
                store.put_map(bad, b"")

    def test_index(self, store: Store) -> None:
        assert store.get_index("disk", "u-1") is None
        store.put_index("disk", "u-1", "vol-1")
        assert store.get_index("disk", "u-1") == "vol-1"
        store.put_index("disk", "u-1", None)
        assert store.get_index("disk", "u-1") is None

    def test_locks_are_exclusive_and_stale_ones_are_broken(self, store: Store) -> None:
        store.lock("vol-1", "node-a:1")
        store.lock("vol-1", "node-a:1")  # the same owner again
        with pytest.raises(LockHeld) as held:
            store.lock("vol-1", "node-b:2")
        assert held.value.owner == "node-a:1"
        info = store.lock_info("vol-1")
        assert info is not None and info.owner == "node-a:1"
        store.refresh_lock("vol-1", "node-a:1")
        with pytest.raises(LockHeld):
            store.refresh_lock("vol-1", "node-b:2")
        with pytest.raises(LockHeld):
            store.lock("vol-1", "node-b:2", stale_after=60)
        time.sleep(1.1)
        store.lock("vol-1", "node-b:2", stale_after=1)
        assert store.lock_info("vol-1").owner == "node-b:2"
        store.unlock("vol-1", "node-a:1")  # not the owner: nothing happens
        assert store.lock_info("vol-1").owner == "node-b:2"
        store.unlock("vol-1", "node-b:2")
        assert store.lock_info("vol-1") is None

    def test_requests_reach_the_holder_once_and_answers_come_back(self, store: Store) -> None:
        rid = store.post_request("vol-1", {"op": "snapshot", "name": "snap-1"})
        assert store.poll_answer("vol-1", rid) is None
        assert store.take_requests("vol-1") == [(rid, {"op": "snapshot", "name": "snap-1"})]
        assert store.take_requests("vol-1") == []
        store.answer_request("vol-1", rid, {"ok": True})
        assert store.poll_answer("vol-1", rid) == {"ok": True}
        assert store.poll_answer("vol-1", rid) is None
        rid2 = store.post_request("vol-1", {"op": "x"})
        store.cancel_request("vol-1", rid2)
        assert store.take_requests("vol-1") == []

    def test_usage(self, store: Store) -> None:
        store.put_block(b"abc")
        oid = new_object_id()
        store.create_object(oid, b"12345")
        store.put_map("m1", b"map")
        usage = store.usage()
        assert (usage.blocks, usage.block_bytes, usage.objects, usage.maps) == (1, 3, 1, 1)
        assert usage.object_bytes >= 5
