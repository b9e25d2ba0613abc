"""One Alembic history, run on SQLite and on the testbed's PostgreSQL: one head, upgrade to
it, no difference between the models and the migrated schema, down to nothing and back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from snf.common.db import Base
from snf.portal import migrate
from snf.portal.models import load_all
from tests.testbed.postgres import empty_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    pg_url = request.getfixturevalue("postgres")
    empty_schema(pg_url)  # other tests share this database
    yield pg_url
    empty_schema(pg_url)


def _engine(url: str):  # type: ignore[no-untyped-def]
    if url.startswith("postgresql"):
        from tests.testbed.postgres import create_engine as pg_engine

        return pg_engine(url)
    return create_engine(url)


def test_one_head() -> None:
    assert len(migrate.heads()) == 1


def test_upgrade_matches_the_models_and_downgrades_cleanly(url: str) -> None:
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    engine = _engine(url)
    load_all()
    with engine.begin() as conn:
        cfg = migrate.alembic_config(url)
        cfg.attributes["connection"] = conn
        from alembic import command

        command.upgrade(cfg, "head")
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        assert {"users", "tokens", "quota_holdings", "quota_commissions"} <= set(
            inspect(conn).get_table_names()
        )
        command.downgrade(cfg, "base")
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
    engine.dispose()
