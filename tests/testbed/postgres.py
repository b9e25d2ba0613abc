"""A real PostgreSQL 15 server inside the testbed's services host, for the portal and quota tests.

Debian's ``postgresql-15`` binaries (``/usr/lib/postgresql/15/bin``), not its cluster
tooling: a private cluster whose every file (data, log, unix socket, password) is under
``plan.STATE_DIR / "postgres"``. It listens on the services host's address (192.0.2.1:5432)
inside the ``snftb-lan`` namespace, so nodes and clients reach it over the bridge and nothing
listens on the machine's own interfaces, and on a unix socket in its own directory
(``run/``, mode 0700). ``initdb`` refuses root, so the server runs as the ``postgres`` user.
Authentication: ``peer`` on the socket for ``postgres`` (the administrator); from
192.0.2.0/24 only the role ``snf`` to the database ``snf``, with a password (scram-sha-256)
generated at each start. Durability is off (``fsync``, ``synchronous_commit``): test data.

``start()`` clears an earlier run (its server and data) and brings up a fresh one within
``timeout`` seconds; ``stop()`` ends the server. ``cluster.down()`` also ends it (it kills
every process in the lan namespace) and keeps the lan namespace while it runs.

**Connecting from the test process.** The process lives in the host's network namespace,
where 192.0.2.1 does not exist. A network namespace belongs to a *thread* on Linux, and a
socket stays in the namespace it was created in, so :func:`create_engine` gives SQLAlchemy
a connection factory (``creator=``) that moves the calling thread into the lan namespace
around ``psycopg.connect()`` and back again. Every new pooled connection is made that way,
from whichever thread asks, worker threads included (tests/integration/
test_quota_postgres.py checks it). Creating the engine while the thread is inside the
namespace (what tests/integration/test_store_rados.py does for librados, whose threads start
at connect time) is not enough here: SQLAlchemy's pool connects lazily, from the thread that
first needs a new connection, which may well be outside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snf.common.errors import CommandFailed

from . import namespaces, plan
from .cluster import TestbedError
from .namespaces import CLEAN_ENV, Host, thread_in_netns

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("snf.testbed")

VERSION = 15
BIN = Path(f"/usr/lib/postgresql/{VERSION}/bin")
PG_DIR = plan.STATE_DIR / "postgres"
DATA_DIR = PG_DIR / "data"
SOCKET_DIR = PG_DIR / "run"
LOG_DIR = PG_DIR / "log"
PASSWORD_FILE = PG_DIR / "password"
PORT = 5432
DATABASE = "snf"
ROLE = "snf"
OS_USER = "postgres"
POSTGRES_HOME = "/var/lib/postgresql"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Postgres:
    """A running server: the host it runs in and the ``snf`` role's password."""

    host: Host
    password: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``snf`` database (reachable from the lan namespace)."""
        return f"postgresql+psycopg://{ROLE}:{self.password}@{plan.SVC_ADDRESS}:{PORT}/{DATABASE}"

    def psql(self, sql: str, *, database: str = "postgres", timeout: float = 30) -> str:
        """Run SQL as the administrator, over the unix socket; psql's output."""
        return _psql(self.host, sql, database=database, timeout=timeout)


def installed() -> bool:
    return all((BIN / cmd).exists() for cmd in ("initdb", "pg_ctl", "postgres", "psql"))


def start(
    *, timeout: float = START_TIMEOUT, progress: Callable[[str], None] = log.info
) -> Postgres:
    """Bring up a fresh server (clearing an earlier run first); fail after ``timeout`` s with
    the end of its log."""
    if not installed():
        raise TestbedError(f"PostgreSQL {VERSION} is not installed: no {BIN}/initdb")
    host = namespaces.create_lan()
    stop()
    shutil.rmtree(PG_DIR, ignore_errors=True)
    for d in (DATA_DIR, SOCKET_DIR, LOG_DIR):
        d.mkdir(parents=True)
    # The server runs as postgres: it must be able to walk down to its directories.
    for d in (plan.STATE_DIR, PG_DIR):
        d.chmod(d.stat().st_mode | 0o011)
    for d in (DATA_DIR, SOCKET_DIR, LOG_DIR):
        shutil.chown(d, OS_USER, OS_USER)
        d.chmod(0o700)
    password = secrets.token_hex(16)
    PASSWORD_FILE.write_text(password + "\n")
    PASSWORD_FILE.chmod(0o600)
    server = Postgres(host, password)
    t0 = time.monotonic()
    deadline = t0 + timeout

    def left(most: float = 30) -> float:  # every command ends by the deadline
        return min(most, max(1.0, deadline - time.monotonic()))

    try:
        _as_postgres(host, [str(BIN / "initdb"), "--pgdata", str(DATA_DIR), "--username",
                            OS_USER, "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
                            "--auth-local", "peer", "--auth-host", "reject"], left())  # fmt: skip
        _configure()
        progress(f"postgres: initdb done ({time.monotonic() - t0:.1f} s)")
        _as_postgres(host, [str(BIN / "pg_ctl"), "start", "--pgdata", str(DATA_DIR), "--wait",
                            "--timeout", str(int(left(60))), "--log",
                            str(LOG_DIR / "postgres.log")], left(60))  # fmt: skip
        progress(f"postgres: server up ({time.monotonic() - t0:.1f} s)")
        server.psql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD :'password';\n"
            f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n",
            timeout=left(),
        )
    except (CommandFailed, TimeoutError) as exc:
        tails = _log_tails()
        stop()
        raise TestbedError(f"PostgreSQL did not start within {timeout} s: {exc}\n{tails}") from exc
    progress(f"postgres: database {DATABASE} ready ({time.monotonic() - t0:.1f} s)")
    return server


def stop(grace: float = 10.0) -> None:
    """End a running (or an earlier) server: fast shutdown (SIGINT), then immediate
    (SIGQUIT), then SIGKILL, ``grace`` seconds apart at most."""
    pid = _postmaster_pid()
    if pid is None:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        end = time.monotonic() + grace
        while _is_postgres(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if not _is_postgres(pid):
            return


def running() -> bool:
    return _postmaster_pid() is not None


def create_engine(url: str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url`` whose connections are made inside the lan namespace,
    from any thread (see the module docstring); ``kwargs`` go to ``create_engine``."""
    import psycopg
    import sqlalchemy

    parts = sqlalchemy.make_url(url)
    params: dict[str, Any] = {
        "host": parts.host,
        "port": parts.port or PORT,
        "user": parts.username,
        "password": parts.password,
        "dbname": parts.database,
        "connect_timeout": 10,
    }

    def connect() -> psycopg.Connection[Any]:
        with thread_in_netns(plan.LAN_NS):
            return psycopg.connect(**params)

    return sqlalchemy.create_engine(url, creator=connect, **kwargs)


def empty_schema(url: str) -> None:
    """Drop every table of the database (tests share it: each starts from nothing)."""
    import sqlalchemy

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    finally:
        engine.dispose()


# --- helpers ----------------------------------------------------------------------------------


def _configure() -> None:
    """Our settings after initdb's, and an access list that replaces initdb's."""
    with (DATA_DIR / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# tests/testbed/postgres.py\n"
            f"listen_addresses = '{plan.SVC_ADDRESS}'\n"
            f"port = {PORT}\n"
            f"unix_socket_directories = '{SOCKET_DIR}'\n"
            "unix_socket_permissions = 0700\n"
            "max_connections = 200\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            "deadlock_timeout = 100ms\n"
        )
    (DATA_DIR / "pg_hba.conf").write_text(
        "# tests/testbed/postgres.py: the administrator over the socket, snf from the lan\n"
        f"local all      {OS_USER}                 peer\n"
        f"host  {DATABASE} {ROLE} {plan.SUBNET}  scram-sha-256\n"
    )


def _as_postgres(host: Host, argv: Sequence[str], timeout: float) -> None:
    """Run a command as the postgres user inside ``host``; its output goes to a file (pg_ctl
    starts a server that must not keep our pipe open)."""
    out = LOG_DIR / "commands.log"
    env = [f"{k}={v}" for k, v in {**CLEAN_ENV, "HOME": POSTGRES_HOME}.items()]
    full = [*host.enter_argv(), "env", "-i", *env, "runuser", "-u", OS_USER, "--", *argv]
    with out.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        try:
            rc = subprocess.run(
                full, stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=timeout, cwd="/"
            ).returncode
        except subprocess.TimeoutExpired:
            raise CommandFailed(list(argv), -1, f"timed out after {timeout:.1f} s") from None
    if rc != 0:
        tail = out.read_text().splitlines()[-5:]
        raise CommandFailed(list(argv), rc, "\n".join(tail))


def _psql(host: Host, sql: str, *, database: str, timeout: float) -> str:
    password = PASSWORD_FILE.read_text().strip()
    argv = ["runuser", "-u", OS_USER, "--", str(BIN / "psql"), "--no-psqlrc", "--quiet",
            "--tuples-only", "--no-align", "--host", str(SOCKET_DIR), "--port", str(PORT),
            "--username", OS_USER, "--dbname", database, "--set", "ON_ERROR_STOP=1",
            "--set", f"password={password}", "--file", "-"]  # fmt: skip
    return host.run(argv, input=sql, timeout=timeout, env={"HOME": POSTGRES_HOME}).stdout


def _postmaster_pid() -> int | None:
    """The pid of our server, if it runs (its pid file names it, and it is a postgres)."""
    try:
        pid = int((DATA_DIR / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _is_postgres(pid) else None


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is still a postgres server process (and not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and bool(cmdline) and os.path.basename(cmdline[0]) == b"postgres"


def _log_tails(lines: int = 15) -> str:
    parts = []
    for name in ("postgres.log", "commands.log"):
        path = LOG_DIR / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no logs in {LOG_DIR})"
