"""Benchmark: quota commissions over HTTP (issue 4: goal ≥ 500 commissions/s on PostgreSQL,
0 over-allocations).

The portal runs under gunicorn in the testbed's services host on a real PostgreSQL 15; 16
client processes (in the same namespace) each loop ``POST /account/v1.0/commissions`` then
``POST /commissions/<serial>/action {"accept": ""}`` with a service token, each over
one connection, reopened whenever gunicorn's sync workers close it.  Two runs:

- **distinct**: each client charges its own user (no contention on holdings);
- **edge**: all 16 clients charge one user whose limit is L, until each gets 413; exactly L
  commissions may succeed: more would be an over-allocation.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import statistics
import time
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from snf.portal.identity import accounts
from snf.quota import engine as quota
from tests.testbed import plan, postgres
from tests.testbed import portal as tb_portal
from tests.testbed.cluster import lan
from tests.testbed.namespaces import thread_in_netns

from .machine import describe

CLIENTS = 16
WORKERS = 3
RESOURCE = "cyclades.vm"


def _provisions(user: str) -> list[dict[str, Any]]:
    return [
        {"holder": f"user:{user}", "source": f"project:{user}", "resource": RESOURCE,
         "quantity": 1},
        {"holder": f"project:{user}", "source": None, "resource": RESOURCE, "quantity": 1},
    ]  # fmt: skip


class _Client:
    """A connection to the portal, reopened when the server closes it."""

    def __init__(self, token: str) -> None:
        self.headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(plan.SVC_ADDRESS, tb_portal.PORT, timeout=30)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, json.dumps(body), self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _client(token: str, user: str, seconds: float, until_full: bool) -> dict[str, Any]:
    """One client's loop (runs in a pool process inside the services host)."""
    accepted = overlimit = errors = 0
    latencies: list[float] = []
    body = {"provisions": _provisions(user), "name": "bench"}
    client = _Client(token)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        status, answer = client.post("/account/v1.0/commissions", body)
        if status == 413:
            overlimit += 1
            if until_full:
                break
            continue
        if status != 201:
            errors += 1
            continue
        status, _ = client.post(f"/account/v1.0/commissions/{answer['serial']}/action",
                                {"accept": ""})  # fmt: skip
        if status == 200:
            accepted += 1
            latencies.append(time.perf_counter() - t0)
        else:
            errors += 1
    return {"accepted": accepted, "overlimit": overlimit, "errors": errors,
            "latencies": latencies}  # fmt: skip


def _load(token: str, users: list[str], seconds: float, until_full: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(users), initializer=lan().enter) as pool:
        t0 = time.perf_counter()
        results = pool.starmap(_client, [(token, u, seconds, until_full) for u in users])
        elapsed = time.perf_counter() - t0
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "accepted": sum(r["accepted"] for r in results),
        "overlimit": sum(r["overlimit"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "elapsed": elapsed,
        "median_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95_ms": statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) > 1 else 0,
    }


def _engine(url: str) -> Engine:
    return postgres.create_engine(url) if url.startswith("postgresql") else create_engine(url)


def _setup(url: str, edge_limit: int) -> tuple[str, list[str], str]:
    engine = _engine(url)
    try:
        with Session(engine) as session:
            token, _ = accounts.add_service(session, "bench-commissions")
            users = []
            for i in range(CLIENTS + 1):
                user = accounts.create_user(session, f"bench{i}@example.test", f"Bench {i}",
                                            active=True)  # fmt: skip
                limit = edge_limit if i == CLIENTS else 10**9
                grant = {"project_capacity": limit, "member_capacity": limit}
                quota.set_grants(session, user.uuid, {RESOURCE: grant})
                users.append(str(user.uuid))
            session.commit()
        return token, users[:CLIENTS], users[CLIENTS]
    finally:
        engine.dispose()


def _usage(url: str, user: str) -> int:
    engine = _engine(url)
    try:
        with Session(engine) as session:
            (holdings,) = quota.quotas(session, user).values()
            return int(holdings[RESOURCE]["usage"])
    finally:
        engine.dispose()


def _in_process(url: str, user: str, seconds: float) -> float:
    """The engine alone, one thread, no HTTP: issue + accept, committed each time."""
    engine = _engine(url)
    done = 0
    try:
        with Session(engine) as session:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                serial = quota.issue_commission(session, _provisions(user), service="bench")
                session.commit()
                quota.accept(session, serial, service="bench")
                session.commit()
                done += 1
            return done / (time.perf_counter() - t0)
    finally:
        engine.dispose()


def _scenario(name: str, url: str, seconds: float, edge_limit: int) -> tuple[list[str], int]:
    """Both runs against a portal on ``url``: table rows, and the over-allocations."""
    tb_portal.start(database_url=url, workers=WORKERS)
    try:
        token, users, edge_user = _setup(url, edge_limit)
        distinct = _load(token, users, seconds, until_full=False)
        edge = _load(token, [edge_user] * CLIENTS, 10 * seconds + 60, until_full=True)
        used = _usage(url, edge_user)
    finally:
        tb_portal.stop()
    with thread_in_netns(lan().netns):
        alone = _in_process(url, users[0], seconds / 2)
    rows = []
    for run, r in (("16 distinct users", distinct), (f"one user, limit {edge_limit}", edge)):
        rate = r["accepted"] / r["elapsed"] if r["elapsed"] else 0.0
        rows.append(f"| {name} | {run} | {r['accepted']} | {rate:.0f}/s | "
                    f"{r['median_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['overlimit']} | "
                    f"{r['errors']} |")  # fmt: skip
    rows.append(f"| {name} | the comparison: the engine alone, in-process, 1 thread | | "
                f"{alone:.0f}/s | | | | |")  # fmt: skip
    over = max(0, edge["accepted"] - edge_limit) + max(0, used - edge_limit)
    return rows, over


def run(smoke: bool = False) -> list[str]:
    seconds = 2.0 if smoke else 20.0
    edge_limit = 200 if smoke else 5000
    sqlite = plan.STATE_DIR / "bench-commissions.db"
    sqlite.unlink(missing_ok=True)
    server = postgres.start()
    try:
        pg_rows, pg_over = _scenario("PostgreSQL 15", server.url, seconds, edge_limit)
    finally:
        postgres.stop()
    try:
        lite_rows, lite_over = _scenario("SQLite", f"sqlite:///{sqlite}", seconds, edge_limit)
    finally:
        sqlite.unlink(missing_ok=True)
    return [
        f"Machine: {describe()}",
        "",
        f"Commission issue + accept over HTTP: gunicorn ({WORKERS} sync workers), "
        f"{CLIENTS} client processes, all in the testbed's services host.",
        "",
        "| database | run | accepted | commissions/s | median | p95 | 413 overLimit | errors |",
        "|---|---|---|---|---|---|---|---|",
        *pg_rows,
        *lite_rows,
        "",
        f"Over-allocations at the limit: PostgreSQL {pg_over}, SQLite {lite_over} (must be 0)."
        "  (goal: ≥ 500 commissions/s on PostgreSQL)",
    ]
