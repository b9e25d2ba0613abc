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
