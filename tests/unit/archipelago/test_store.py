from pathlib import Path

import pytest

from snf.archipelago.store import Store
from snf.archipelago.store_dir import DirStore
from snf.archipelago.store_memory import MemoryStore

from .store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return MemoryStore()


class TestDirStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        s = DirStore(tmp_path / "store")
        yield s
        s.close()

    def test_layout_fans_out_and_leaves_no_temporary_files(self, store: DirStore) -> None:
        name = store.put_block(b"hello")
        assert (store.root / "blocks" / name[:2] / name[2:4] / name).read_bytes() == b"hello"
        store.put_map("m", b"x")
        store.put_map("m", b"y")
        leftovers = [p for p in store.root.rglob(".tmp-*")]
        assert leftovers == []

    def test_two_stores_on_one_directory_see_each_other(self, tmp_path: Path) -> None:
        a, b = DirStore(tmp_path), DirStore(tmp_path)
        name = a.put_block(b"shared")
        assert b.get_block(name)[:6] == b"shared"
        a.lock("vol", "a")
        with pytest.raises(Exception, match="held by a"):
            b.lock("vol", "b")


def test_dir_store_descriptors_are_never_closed_under_a_user(tmp_path: Path, monkeypatch) -> None:
    """More files in use than the descriptor cache holds, from many threads: every read
    sees its own object's bytes (a descriptor closed and reused under a reader would not)."""
    import random
    import threading

    from snf.archipelago import store_dir
    from snf.archipelago.store import new_object_id

    monkeypatch.setattr(store_dir, "_MAX_OPEN", 2)
    store = DirStore(tmp_path / "store")
    oids = [new_object_id() for _ in range(24)]
    for i, oid in enumerate(oids):
        store.create_object(oid, bytes([i + 1]) * 65536)
    errors: list[str] = []

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(300):
            i = rnd.randrange(len(oids))
            if rnd.random() < 0.3:
                store.write_object(oids[i], rnd.randrange(0, 65536 - 8), bytes([i + 1]) * 8)
            elif store.read_object(oids[i], 0, 65536) != bytes([i + 1]) * 65536:
                errors.append(f"object {i} read wrong bytes")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store._fds) <= 2 + 8 + 1  # idle descriptors are trimmed near the limit
    store.close()
