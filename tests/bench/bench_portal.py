"""Benchmark: token validation per request, in-process (issue 4: goal ≤ 1 ms median).

Measured three ways on SQLite: the bare lookup (``accounts.authenticate``), a whole request
to ``POST /identity/v2.0/tokens`` through Flask's test client (routing, JSON, catalog), and,
as the comparison, a request to an unknown path (the framework's own floor).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from snf.common.config import load_config
from snf.portal import migrate
from snf.portal.app import create_app
from snf.portal.extensions import db
from snf.portal.identity import accounts

from .machine import describe


def _median_ms(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(smoke: bool = False) -> list[str]:
    rounds = 200 if smoke else 5000
    with tempfile.TemporaryDirectory(prefix="snf-bench-portal-") as tmp:
        etc = Path(tmp) / "etc"
        etc.mkdir()
        url = f"sqlite:///{tmp}/portal.db"
        (etc / "snf.toml").write_text(
            f'[portal]\ndatabase_url = "{url}"\nsecret_key_file = "{tmp}/secret"\n'
        )
        migrate.upgrade(url)
        app = create_app(load_config(etc))
        with app.app_context():
            users = [accounts.create_user(db.session, f"u{i}@bench.test", f"U{i}", active=True)
                     for i in range(1000)]  # fmt: skip
            tokens = [accounts.issue_user_token(db.session, u, kind="api", hours=1)[0]
                      for u in users]  # fmt: skip
            db.session.commit()
            token = tokens[500]
            bare = _median_ms(lambda: accounts.authenticate(db.session, token), rounds)
        client = app.test_client()
        body = {"auth": {"token": {"id": token}}}
        full = _median_ms(lambda: client.post("/identity/v2.0/tokens", json=body), rounds // 5)
        floor = _median_ms(lambda: client.get("/no/such/path"), rounds // 5)
    return [
        f"Machine: {describe()}",
        "",
        "| token validation (SQLite, 1,000 users with tokens) | median |",
        "|---|---|",
        f"| `accounts.authenticate` (hash + primary-key lookup) | {bare:.3f} ms |",
        f"| whole `POST /identity/v2.0/tokens` request, in-process | {full:.3f} ms |",
        f"| the comparison: a request to an unknown path (Flask's floor) | {floor:.3f} ms |",
        "",
        "(goal: validation ≤ 1 ms per request)",
    ]
