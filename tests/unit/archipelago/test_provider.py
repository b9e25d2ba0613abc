"""The ExtStorage actions as functions of (environment, store, configuration)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snf.archipelago import provider, volumes
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store_dir import DirStore
from snf.common.config import load_config
from snf.common.errors import InvalidInput, NotFound

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "snf.toml").write_text(
        f'[store]\npath = "{tmp_path / "store"}"\n'
        f'[archipelagod]\nrun_dir = "{tmp_path / "run"}"\nlog_file = "{tmp_path / "log"}"\n'
    )
    return etc


def run(conf: Path, action: str, **env: str) -> str:
    return provider.run(action, env, load_config(conf))


def store_of(conf: Path) -> DirStore:
    return DirStore(load_config(conf).store.path)


def test_create_grow_snapshot_setinfo_remove(conf: Path) -> None:
    run(conf, "create", VOL_NAME="u-1.ext.disk0", VOL_SIZE="64", VOL_UUID="aa-bb")
    store = store_of(conf)
    assert volumes.describe(store, "u-1.ext.disk0")["size"] == 64 * MiB
    assert volumes.lookup_disk(store, "aa-bb")["volume"] == "u-1.ext.disk0"
    run(conf, "grow", VOL_NAME="u-1.ext.disk0", VOL_SIZE="64", VOL_NEW_SIZE="96")
    assert volumes.describe(store, "u-1.ext.disk0")["size"] == 96 * MiB
    run(conf, "setinfo", VOL_NAME="u-1.ext.disk0", VOL_METADATA="originstname+vm1.example.test")
    assert volumes.describe(store, "u-1.ext.disk0")["instance"] == "vm1.example.test"
    run(conf, "snapshot", VOL_NAME="u-1.ext.disk0", VOL_SNAPSHOT_NAME="u-1.ext.disk0.snap")
    assert volumes.load_map(store, "u-1.ext.disk0.snap").readonly
    assert run(conf, "verify", VOL_NAME="u-1.ext.disk0") == ""
    assert run(conf, "open", VOL_NAME="u-1.ext.disk0", VOL_OPEN_EXCLUSIVE="True") == ""
    assert run(conf, "detach", VOL_NAME="u-1.ext.disk0") == ""  # no daemon: nothing attached
    run(conf, "remove", VOL_NAME="u-1.ext.disk0")
    run(conf, "remove", VOL_NAME="u-1.ext.disk0")  # twice is fine
    assert not store.has_map("u-1.ext.disk0")
    assert volumes.lookup_disk(store, "aa-bb") is None


def test_create_with_origin_is_a_clone(conf: Path) -> None:
    store = store_of(conf)
    volumes.import_image(store, "img", io.BytesIO(os.urandom(BLOCK_SIZE + 1)))
    run(conf, "create", VOL_NAME="vol-c", VOL_SIZE="16", EXTP_ORIGIN="img", VOL_UUID="cc")
    assert volumes.is_clone_of(store, "cc", "img")


@pytest.mark.parametrize(
    "action,env,error",
    [
        ("create", {"VOL_SIZE": "64"}, "VOL_NAME is missing"),
        ("create", {"VOL_NAME": "a/b", "VOL_SIZE": "64"}, "bad volume or map name"),
        ("create", {"VOL_NAME": "vol-x", "VOL_SIZE": "-1"}, "positive number of MiB"),
        ("create", {"VOL_NAME": "vol-x", "VOL_SIZE": "0"}, "positive number of MiB"),
        ("create", {"VOL_NAME": "vol-x", "VOL_SIZE": "8", "VOL_UUID": "x y"}, "not a UUID"),
        ("create", {"VOL_NAME": "vol-x", "VOL_SIZE": "8", "EXTP_ORIGIN": "../etc"}, "bad volume"),
        ("grow", {"VOL_NAME": "vol-x"}, "VOL_NEW_SIZE is missing"),
        ("snapshot", {"VOL_NAME": "vol-x"}, "VOL_SNAPSHOT_NAME is missing"),
        ("frobnicate", {"VOL_NAME": "vol-x"}, "unknown ExtStorage action"),
    ],
)
def test_bad_environment_is_refused_and_changes_nothing(
    conf: Path, action: str, env: dict[str, str], error: str
) -> None:
    with pytest.raises(InvalidInput, match=error):
        run(conf, action, **env)
    assert store_of(conf).list_maps() == []


def test_unknown_origin_and_volume(conf: Path) -> None:
    with pytest.raises(NotFound):
        run(conf, "create", VOL_NAME="vol-x", VOL_SIZE="8", EXTP_ORIGIN="nope")
    with pytest.raises(NotFound):
        run(conf, "attach", VOL_NAME="vol-missing")
    assert store_of(conf).list_maps() == []


def test_the_shim_prints_one_line_and_exits_1(conf: Path) -> None:
    script = REPO / "extstorage" / "archipelago" / "provider" / "create"
    env = {**os.environ, "SNF_CONFIG_DIR": str(conf), "VOL_NAME": "bad/name", "VOL_SIZE": "8"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("archipelago create: bad volume or map name 'bad/name'")
    assert proc.stdout == ""
