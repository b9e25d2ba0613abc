"""The quota engine on SQLite (a file per test, configured as the portal configures it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .dbs import Db, create_tables, sqlite_engine
from .engine_contract import EngineContract
from .race_contract import RaceContract


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    engine = sqlite_engine(tmp_path / "quota.db")
    create_tables(engine)
    yield Db(engine)
    engine.dispose()


class TestEngineOnSqlite(EngineContract):
    pass


class TestRacesOnSqlite(RaceContract):
    pass
