"""The quota engine on a real PostgreSQL 15 in the testbed's services host, beside SQLite.

One ``db`` fixture, parametrized over both databases, runs the unit suite's contracts
(tests/unit/quota: semantics and races) on each. PostgreSQL is reached through
``tests.testbed.postgres.create_engine``, whose connection factory makes every connection
inside the lan namespace from whichever thread asks (the race tests' worker threads too).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import IntegrityError

from snf.quota.models import Holding
from tests.testbed import plan
from tests.testbed import postgres as tb_postgres
from tests.testbed.namespaces import thread_in_netns
from tests.unit.quota.dbs import POOL, Db, clear, create_tables, sqlite_engine
from tests.unit.quota.engine_contract import EngineContract
from tests.unit.quota.race_contract import RaceContract


@pytest.fixture(scope="module")
def pg_engine(postgres: str) -> Iterator[Engine]:
    engine = tb_postgres.create_engine(postgres, **POOL)
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        engine = sqlite_engine(tmp_path / "quota.db")
        create_tables(engine)
        yield Db(engine)
        engine.dispose()
    else:
        engine = request.getfixturevalue("pg_engine")
        clear(engine)
        yield Db(engine)


class TestEngine(EngineContract):
    pass


class TestRaces(RaceContract):
    pass


# --- the PostgreSQL server and the way the tests reach it -------------------------------------


def test_the_server_address_exists_only_in_the_services_host(postgres: str) -> None:
    with socket.socket() as s, pytest.raises(OSError) as outside:
        s.bind((plan.SVC_ADDRESS, 0))
    assert outside.value.errno == errno.EADDRNOTAVAIL
    with thread_in_netns(plan.LAN_NS):
        socket.create_connection((plan.SVC_ADDRESS, 5432), timeout=5).close()


def test_connections_are_made_in_the_lan_from_any_thread(pg_engine: Engine) -> None:
    own_netns = os.stat("/proc/thread-self/ns/net").st_ino
    seen: list[Any] = []

    def work() -> None:
        pg_engine.dispose(close=False)  # this thread's checkout makes a new connection
        with pg_engine.connect() as conn:
            seen.append(conn.execute(text("SELECT host(inet_server_addr())")).scalar())
        seen.append(os.stat("/proc/thread-self/ns/net").st_ino)  # and the thread came back

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert seen == [plan.SVC_ADDRESS, own_netns]


def test_the_role_snf_reaches_only_its_database(postgres: str) -> None:
    engine = tb_postgres.create_engine(postgres.rsplit("/", 1)[0] + "/postgres")
    with pytest.raises(Exception, match=r"no pg_hba\.conf entry"):
        engine.connect()
    engine.dispose()


def test_a_holding_without_source_is_unique(pg_engine: Engine) -> None:
    clear(pg_engine)
    row = {"holder": "project:x", "source": None, "resource": "cyclades.vm", "limit": 1,
           "usage_min": 0, "usage_max": 0}  # fmt: skip
    with pg_engine.begin() as conn:
        conn.execute(insert(Holding), [row])
    with pytest.raises(IntegrityError), pg_engine.begin() as conn:
        conn.execute(insert(Holding), [row])
