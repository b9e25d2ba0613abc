"""Concurrent commissions never over-allocate.  Subclass with a ``db`` fixture (a ``Db``).

Each test starts THREADS threads at one barrier; each thread has its own session and
connection from the engine's pool, as the portal's request threads have.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from snf.quota import engine as q

from .dbs import Db, pair
from .engine_contract import VM, new_user, vm_quota

THREADS = 16
LIMIT = 5
T = TypeVar("T")


def run_concurrently(n: int, work: Callable[[int], T]) -> tuple[list[T | BaseException], float]:
    """Run ``work(i)`` for i in range(n) in n threads started together; their results (or
    exceptions) and the wall time."""
    barrier = threading.Barrier(n)
    results: list[T | BaseException] = [RuntimeError("did not run")] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, time.monotonic() - t0


def report(what: str, seconds: float) -> None:
    print(f"{what}: {THREADS} threads in {seconds * 1000:.0f} ms")


class RaceContract:
    def test_commissions_at_the_limit_never_over_allocate(self, db: Db) -> None:
        user = new_user(db, **{VM: LIMIT})

        def issue_and_accept(_: int) -> int:
            with db.tx() as s:
                serial = q.issue_commission(s, pair(user, user, VM, 1), name="vm")
                q.accept(s, serial)
                return serial

        results, seconds = run_concurrently(THREADS, issue_and_accept)
        report("issue+accept at the limit", seconds)
        ok = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, q.NoCapacity)]
        assert len(ok) == LIMIT, results
        assert len(refused) == THREADS - LIMIT, results
        assert vm_quota(db, user) == {
            "limit": LIMIT, "usage": LIMIT, "pending": 0,
            "project_limit": LIMIT, "project_usage": LIMIT, "project_pending": 0,
        }  # fmt: skip

    def test_two_phase_commissions_at_the_limit(self, db: Db) -> None:
        """Issue in one transaction, accept in another: pending usage counts at once."""
        user = new_user(db, **{VM: LIMIT})

        def issue_then_accept(i: int) -> int:
            with db.tx() as s:
                serial = q.issue_commission(s, pair(user, user, VM, 1), client_key=f"vm-{i}")
            with db.tx() as s:
                q.accept(s, serial)
            return serial

        results, seconds = run_concurrently(THREADS, issue_then_accept)
        report("issue, then accept, at the limit", seconds)
        assert sum(isinstance(r, int) for r in results) == LIMIT, results
        assert sum(isinstance(r, q.NoCapacity) for r in results) == THREADS - LIMIT, results
        assert vm_quota(db, user)["usage"] == LIMIT
        assert vm_quota(db, user)["pending"] == 0

    def test_distinct_users_all_succeed(self, db: Db) -> None:
        users = [new_user(db, **{VM: LIMIT}) for _ in range(THREADS)]

        def issue_and_accept(i: int) -> int:
            with db.tx() as s:
                serial = q.issue_commission(s, pair(users[i], users[i], VM, 1))
                q.accept(s, serial)
                return serial

        results, seconds = run_concurrently(THREADS, issue_and_accept)
        report("issue+accept for distinct users", seconds)
        assert all(isinstance(r, int) for r in results), results
        assert len(set(results)) == THREADS
        assert all(vm_quota(db, u)["usage"] == 1 for u in users)

    def test_retries_with_one_client_key_charge_once(self, db: Db) -> None:
        user = new_user(db, **{VM: LIMIT})

        def issue(_: int) -> int:
            with db.tx() as s:
                return q.issue_commission(s, pair(user, user, VM, 1), client_key="one")

        results, seconds = run_concurrently(THREADS, issue)
        report("one client key", seconds)
        assert all(isinstance(r, int) for r in results), results
        assert len(set(results)) == 1
        assert vm_quota(db, user)["usage"] == 1
        assert vm_quota(db, user)["pending"] == 1

    def test_concurrent_resolutions_settle_once(self, db: Db) -> None:
        user = new_user(db, **{VM: LIMIT})
        with db.tx() as s:
            serial = q.issue_commission(s, pair(user, user, VM, 2))

        def resolve(i: int) -> str:
            with db.tx() as s:
                if i % 2:
                    q.accept(s, serial)
                    return "accepted"
                q.reject(s, serial)
                return "rejected"

        results, _ = run_concurrently(THREADS, resolve)
        won = {r for r in results if isinstance(r, str)}
        assert len(won) == 1, results  # the first one decides; the others repeat or conflict
        lost = [r for r in results if not isinstance(r, str)]
        assert all(isinstance(r, q.CommissionConflict) for r in lost), results
        expected = 2 if won == {"accepted"} else 0
        assert vm_quota(db, user)["usage"] == expected
        assert vm_quota(db, user)["pending"] == 0

    def test_concurrent_first_logins_create_one_system_project(self, db: Db) -> None:
        user = uuid.uuid4()

        def ensure(_: int) -> uuid.UUID:
            with db.tx() as s:
                return q.ensure_user(s, user)

        results, _ = run_concurrently(THREADS, ensure)
        assert results == [user] * THREADS
        assert vm_quota(db, user)["limit"] == 2
