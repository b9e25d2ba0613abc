"""Preparing a SQLAlchemy engine for the quota engine: what SQLite needs, nothing else.

Call :func:`configure` once on the engine the sessions come from (the portal: on
Flask-SQLAlchemy's ``db.engine``, before the first request), before its first connection.

**SQLite.** Writers serialize on one database lock. The pysqlite driver begins
transactions lazily (DEFERRED, at the first write), so a transaction that has read first
and then writes can meet ``database is locked`` (SQLITE_BUSY) halfway instead of waiting:
SQLite cannot let it wait without a deadlock. :func:`configure` makes every transaction
``BEGIN IMMEDIATE``: it takes the write lock at its start, waiting up to ``busy_timeout``
for the current writer, so transactions run one after the other and none fails halfway.
It also turns off pysqlite's own transaction handling (so SAVEPOINTs work: the engine uses
them), and turns on foreign keys. Over-allocation is impossible even without it (one
conditional UPDATE is atomic, writers never interleave); :func:`configure` removes the
spurious failures.

**PostgreSQL** needs nothing: the engine relies on READ COMMITTED (its default), where a
conditional UPDATE that finds its row locked waits for the other transaction and then
re-checks its WHERE clause against the committed row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event

#: How long a SQLite transaction waits for the write lock (seconds).
BUSY_TIMEOUT = 30.0


def configure(engine: Engine, *, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    """Install the SQLite connection and BEGIN hooks (no-op on other databases); idempotent."""
    if engine.dialect.name != "sqlite" or event.contains(engine, "begin", _begin_immediate):
        return engine
    timeout_ms = int(busy_timeout * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook emits BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
