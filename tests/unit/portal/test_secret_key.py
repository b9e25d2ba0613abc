"""The session secret on a first start: gunicorn's workers all create the app at once, and
must all end up with the same, whole secret (one of them used to fail to boot, taking the
whole server down, or to read the file before it was written)."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from snf.portal.app import _secret_key


def _read(path: str) -> str:
    return _secret_key(Path(path))


def test_workers_starting_together_share_one_whole_secret(tmp_path: Path) -> None:
    for round_ in range(5):
        path = tmp_path / f"round{round_}" / "secret"
        with multiprocessing.get_context("fork").Pool(8) as pool:
            secrets = pool.map(_read, [str(path)] * 32)
        assert len(set(secrets)) == 1 and len(secrets[0]) >= 60
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["secret"]  # nothing left aside
