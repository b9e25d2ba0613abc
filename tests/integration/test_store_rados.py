"""The ``rados`` block store against a real single-node Ceph in the testbed's services host.

The store's client runs in this process: each store is opened while the calling thread is
in the services host's network namespace, so librados' threads (started then) stay there.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store import BlockNotFound, LockHeld, Store, new_object_id
from tests.testbed import plan
from tests.testbed.ceph import Ceph, conf_text
from tests.testbed.namespaces import thread_in_netns
from tests.unit.archipelago.store_contract import StoreContract

if TYPE_CHECKING:
    from snf.archipelago.store_rados import RadosStore


def open_store(conf: Path, **kwargs: Any) -> RadosStore:
    from snf.archipelago.store_rados import RadosStore

    with thread_in_netns(plan.LAN_NS):
        return RadosStore(conf, **kwargs)


@pytest.fixture(scope="session")
def admin(ceph: Ceph) -> Iterator[Any]:
    """A plain librados connection to the test cluster, for emptying and inspecting pools."""
    import rados

    with thread_in_netns(plan.LAN_NS):
        cluster = rados.Rados(conffile=str(ceph.conf))
        cluster.conf_set("client_mount_timeout", "10")
        cluster.connect(timeout=10)
    yield cluster
    cluster.shutdown()


def pool_objects(admin: Any, pool: str) -> list[str]:
    with admin.open_ioctx(pool) as ioctx:
        return sorted(o.key for o in ioctx.list_objects())


def purge(admin: Any) -> None:
    for pool in ("blocks", "maps"):
        with admin.open_ioctx(pool) as ioctx:
            for obj in list(ioctx.list_objects()):
                ioctx.remove_object(obj.key)


class TestRadosStore(StoreContract):
    @pytest.fixture
    def store(self, ceph: Ceph, admin: Any) -> Iterator[Store]:
        purge(admin)
        s = open_store(ceph.conf)
        yield s
        s.close()

    @pytest.fixture
    def other(self, ceph: Ceph, store: Store) -> Iterator[RadosStore]:
        """A second client of the same cluster (another node, say)."""
        s = open_store(ceph.conf)
        yield s
        s.close()

    def test_the_client_runs_in_the_services_host(self, store: RadosStore) -> None:
        lan = os.stat(f"/run/netns/{plan.LAN_NS}").st_ino
        assert os.stat("/proc/thread-self/ns/net").st_ino != lan  # this thread came back
        threads_in_lan = [
            task
            for task in os.listdir("/proc/self/task")
            if os.stat(f"/proc/self/task/{task}/ns/net").st_ino == lan
        ]
        assert threads_in_lan  # librados' threads stayed there
        name = store.put_block(b"through the bridge")
        assert store.get_block(name).startswith(b"through the bridge")

    def test_wake_on_request_fires_through_notify(
        self, store: RadosStore, other: RadosStore
    ) -> None:
        woken = threading.Event()
        stop = store.wake_on_request("vol-1", woken.set)
        assert not woken.wait(0.3)
        rid = other.post_request("vol-1", {"op": "snapshot", "name": "s1"})
        assert woken.wait(5), "no notify reached the watcher"
        assert store.take_requests("vol-1") == [(rid, {"op": "snapshot", "name": "s1"})]
        store.answer_request("vol-1", rid, {"ok": True})
        assert other.poll_answer("vol-1", rid) == {"ok": True}
        stop()
        stop()  # idempotent
        woken.clear()
        other.post_request("vol-1", {"op": "x"})
        assert not woken.wait(1)
        assert [r for _, r in store.take_requests("vol-1")] == [{"op": "x"}]

    def test_a_request_is_taken_by_one_holder_only(
        self, store: RadosStore, other: RadosStore
    ) -> None:
        ids = {store.post_request("vol-1", {"n": n}) for n in range(20)}
        got: list[list[tuple[str, dict[str, Any]]]] = [[], []]
        threads = [
            threading.Thread(target=lambda i=i, s=s: got[i].extend(s.take_requests("vol-1")))
            for i, s in enumerate((store, other))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        taken = [rid for rid, _ in got[0] + got[1]]
        assert sorted(taken) == sorted(ids)

    def test_a_lock_whose_duration_ran_out_is_taken_over(
        self, store: RadosStore, other: RadosStore
    ) -> None:
        store.lock("vol-1", "node-a:1", stale_after=2)
        with pytest.raises(LockHeld) as held:
            other.lock("vol-1", "node-b:2")
        assert held.value.owner == "node-a:1"
        store.refresh_lock("vol-1", "node-a:1")  # keeps the duration
        time.sleep(1.2)
        with pytest.raises(LockHeld):
            other.lock("vol-1", "node-b:2")
        time.sleep(1.3)
        other.lock("vol-1", "node-b:2")  # no stale_after here: Ceph dropped the lock itself
        assert other.lock_info("vol-1").owner == "node-b:2"
        with pytest.raises(LockHeld) as held:
            store.refresh_lock("vol-1", "node-a:1")
        assert held.value.owner == "node-b:2"

    def test_a_stale_lock_without_duration_is_broken_from_another_client(
        self, store: RadosStore, other: RadosStore
    ) -> None:
        store.lock("vol-1", "node-a:1")
        time.sleep(1.1)
        with pytest.raises(LockHeld):
            other.lock("vol-1", "node-b:2", stale_after=30)
        other.lock("vol-1", "node-b:2", stale_after=1)
        with pytest.raises(LockHeld) as held:
            store.refresh_lock("vol-1", "node-a:1")
        assert held.value.owner == "node-b:2"
        store.unlock("vol-1", "node-a:1")  # not the holder any more: nothing happens
        assert store.lock_info("vol-1").owner == "node-b:2"

    def test_the_same_owner_through_another_client(
        self, store: RadosStore, other: RadosStore
    ) -> None:
        store.lock("vol-1", "node-a:1")
        other.lock("vol-1", "node-a:1")
        assert store.lock_info("vol-1").owner == "node-a:1"
        other.unlock("vol-1", "node-a:1")
        assert store.lock_info("vol-1") is None
        store.lock("vol-1", "node-a:1")
        other.unlock("vol-1", "node-a:1")  # the owner releases it, whichever client asks
        assert store.lock_info("vol-1") is None

    def test_kinds_share_pools_without_colliding(self, store: RadosStore, admin: Any) -> None:
        block = store.put_block(b"block")
        oid = new_object_id()
        store.create_object(oid, b"object")
        for name in ("meta.x", "x", "map.x", "lock.x", "req.x"):
            store.put_map(name, name.encode())
        store.put_meta("x", {"m": 1})
        store.put_index("a.b", "c", "one")
        store.put_index("a", "b.c", "two")
        assert [n for n, _, _ in store.iter_blocks()] == [block]
        assert [o for o, _, _ in store.iter_objects()] == [oid]
        assert store.list_maps() == ["lock.x", "map.x", "meta.x", "req.x", "x"]
        assert [store.get_map(n) for n in ("meta.x", "x")] == [b"meta.x", b"x"]
        assert store.get_meta("x") == {"m": 1} and store.get_meta("meta.x") == {}
        assert (store.get_index("a.b", "c"), store.get_index("a", "b.c")) == ("one", "two")
        assert pool_objects(admin, "blocks") == sorted([block, f"obj.{oid}"])
        assert "map.meta.x" in pool_objects(admin, "maps")

    def test_writes_never_recreate_a_deleted_object_or_map(self, store: RadosStore) -> None:
        oid = new_object_id()
        with pytest.raises(BlockNotFound):
            store.write_object(oid, 0, b"x")
        with pytest.raises(BlockNotFound):
            store.patch_map("gone", 0, b"x")
        assert list(store.iter_objects()) == [] and not store.has_map("gone")

    def test_empty_large_and_timestamped_things(self, store: RadosStore) -> None:
        store.put_map("empty", b"")
        store.put_map("empty2", b"", exclusive=True)
        assert store.get_map("empty") == b"" == store.get_map("empty2")
        big = os.urandom(3 * BLOCK_SIZE // 2)  # more than one read's first guess
        store.put_map("big", big)
        assert store.get_map("big") == big
        oid = new_object_id()
        store.create_object(oid, b"")
        assert store.read_object(oid, 0, 4) == bytes(4)
        store.write_object(oid, 0, b"")
        store.put_index("disk", "u-1", "")
        assert store.get_index("disk", "u-1") == ""
        name = store.put_block(b"now")
        for _, _, mtime in [*store.iter_blocks(), *store.iter_objects()]:
            assert abs(mtime - time.time()) < 60  # not 0, the binding's default
        first = store.block_mtime(name)
        assert first is not None and store.object_mtime(oid) is not None
        time.sleep(1.1)
        assert store.put_block(b"now") == name  # stored again: touched, for the collector
        assert store.block_mtime(name) > first
        assert store.block_mtime("ab" * 32) is None


def test_a_dead_monitor_gives_store_unavailable_quickly(ceph: Ceph, tmp_path: Path) -> None:
    from snf.archipelago.store_rados import StoreUnavailable

    conf = tmp_path / "ceph.conf"  # a monitor address on the bridge that nothing answers
    conf.write_text(conf_text(tmp_path, str(uuid.uuid4()), address="192.0.2.250"))
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"cannot reach Ceph via {conf}: "):
        open_store(conf, connect_timeout=2)
    assert time.monotonic() - t0 < 10


def test_a_missing_pool_or_conf_is_named(ceph: Ceph, tmp_path: Path) -> None:
    from snf.archipelago.store_rados import StoreUnavailable

    with pytest.raises(StoreUnavailable, match="pool nope does not exist"):
        open_store(ceph.conf, maps_pool="nope")
    with pytest.raises(StoreUnavailable, match="cannot reach Ceph via"):
        open_store(tmp_path / "missing.conf", connect_timeout=2)


def test_lock_holders_are_decoded_from_cls_lock_replies(ceph: Ceph) -> None:
    from snf.archipelago.store_rados import _lockers

    # A get_info reply from Ceph 16.2: client.4131 holds cookie owner-a, description {"x":2}.
    reply = bytes.fromhex(
        "01015f00000001000000010114000000082310000000000000070000006f776e65722d61010136000000"
        "00000000000000000101011c00000001000000b51a90511000000002000000c000020100000000000000"
        "00070000007b2278223a327d0100000000"
    )
    assert _lockers(reply) == [((8, 4131), "owner-a", '{"x":2}')]
    assert _lockers(bytes.fromhex("010109000000000000000000000000")) == []
