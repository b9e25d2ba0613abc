import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snf.archipelago import gc, volumes
from snf.archipelago.cli import main, parse_size
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store_dir import DirStore
from snf.archipelago.store_memory import MemoryStore
from snf.archipelago.volume import Volume
from snf.common.errors import InvalidInput


def test_gc_keeps_what_maps_reference_and_young_garbage() -> None:
    store = MemoryStore()
    volumes.import_image(store, "img", io.BytesIO(os.urandom(BLOCK_SIZE * 2)))
    volumes.create_volume(store, "vol", BLOCK_SIZE * 2, origin="img")
    with Volume(store, "vol", "me") as vol:
        vol.write(0, b"private")
        vol.snapshot("snap")
        vol.write(0, b"newer")
    orphan = store.put_block(b"an upload whose map is not written yet")
    assert gc.collect(store, window=60).deleted_blocks == 0  # all referenced or young
    later = time.time() + 120
    result = gc.collect(store, window=60, now=lambda: later)
    assert (result.deleted_blocks, result.deleted_objects) == (1, 0)
    assert not store.has_block(orphan)
    volumes.remove_map(store, "snap")
    volumes.remove_volume(store, "vol")
    result = gc.collect(store, window=60, now=lambda: later)
    assert result.deleted_objects == 1  # the snapshot's frozen block
    volumes.remove_map(store, "img")
    assert gc.collect(store, window=60, now=lambda: later).deleted_blocks == 2
    assert store.usage().blocks == store.usage().objects == 0


def test_a_block_stored_again_is_young_again() -> None:
    store = MemoryStore()
    name = store.put_block(b"x")
    store.blocks[name] = (store.blocks[name][0], 0.0)  # ancient
    store.put_block(b"x")  # an upload dedups against it
    assert gc.collect(store, window=60).deleted_blocks == 0


def test_dry_run_deletes_nothing() -> None:
    store = MemoryStore()
    store.put_block(b"x")
    later = time.time() + 10
    assert gc.collect(store, window=1, dry_run=True, now=lambda: later).deleted_blocks == 1
    assert store.usage().blocks == 1


@pytest.mark.parametrize("text,size", [("64M", 64 << 20), ("1G", 1 << 30), ("4096", 4096),
                                       ("2GiB", 2 << 30)])  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size() -> None:
    with pytest.raises(InvalidInput):
        parse_size("12X")


def test_cli_end_to_end(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "snf.toml").write_text(f'[store]\npath = "{tmp_path / "store"}"\n')
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(BLOCK_SIZE + 10))
    base = ["--config-dir", str(conf)]
    assert main([*base, "import", "img", str(image)]) == 0
    assert main([*base, "create", "vol", "8M", "--origin", "img"]) == 0
    assert main([*base, "snapshot", "vol", "snap"]) == 0
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "img " in out and "vol " in out and "snap " in out
    assert main([*base, "show", "vol", "--entries"]) == 0
    assert '"origin": "img"' in capsys.readouterr().out
    assert main([*base, "remove", "vol"]) == 0
    assert main([*base, "remove", "snap"]) == 0
    assert main([*base, "gc", "--window", "0"]) == 0
    assert "deleted 0 blocks" in capsys.readouterr().out
    assert DirStore(tmp_path / "store").list_maps() == ["img"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "snf.toml").write_text(f'[store]\npath = "{tmp_path / "store"}"\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from snf.archipelago.cli import cli; cli()",
         "--config-dir", str(conf), "create", "vol", "8M", "--origin", "missing"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "snf-archipelago: error: no volume, snapshot or image named missing"
    )
