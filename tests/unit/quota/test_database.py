"""snf.quota.database: SQLite transactions begin IMMEDIATE; other databases are left alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from snf.quota import database


def test_sqlite_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    engine = database.configure(create_engine(f"sqlite:///{tmp_path / 'x.db'}"), busy_timeout=5)
    assert database.configure(engine) is engine  # idempotent
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    order: list[str] = []

    def writer() -> None:
        with Session(engine) as s, s.begin():
            s.execute(text("SELECT count(*) FROM t")).scalar()  # a read first
            order.append("second in")

    with Session(engine) as s, s.begin():
        s.execute(text("SELECT 1"))  # only reads so far, yet the lock is ours
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.3)
        assert order == []  # the other transaction waits at BEGIN
        s.execute(text("INSERT INTO t VALUES (1)"))
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second in"]
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    engine.dispose()


def test_other_databases_are_left_alone() -> None:
    engine = create_engine("postgresql+psycopg://u:p@192.0.2.1/db")
    database.configure(engine)
    assert not event.contains(engine, "begin", database._begin_immediate)
