"""Databases for the quota engine's tests: a SQLite file here, PostgreSQL in integration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from snf.common.db import Base
from snf.quota import database, models

#: Enough pooled connections for the race tests' 16 threads.
POOL = {"pool_size": 20, "max_overflow": 10}


@dataclass(frozen=True)
class Db:
    engine: Engine

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction, committed at the end (rolled back if the block raises)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session


def sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False}, **POOL)
    return database.configure(engine)


def create_tables(engine: Engine) -> None:
    Base.metadata.drop_all(engine, tables=models.TABLES)
    Base.metadata.create_all(engine, tables=models.TABLES)


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(models.TABLES):  # children first
            conn.execute(table.delete())


def pair(user: uuid.UUID, project: uuid.UUID, resource: str, quantity: Any) -> list[dict[str, Any]]:
    """The two provisions astakosclient sends for one (user, project, resource)."""
    return [
        {"holder": f"user:{user}", "source": f"project:{project}", "resource": resource,
         "quantity": quantity},
        {"holder": f"project:{project}", "source": None, "resource": resource,
         "quantity": quantity},
    ]  # fmt: skip
