"""Shared fixtures: the real Ganeti testbed (session-scoped) and the CI rule for skips.

Locally, a test whose component is missing (not root, Ganeti not installed, ...) is skipped
with the reason; under CI=true it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from snf.common.errors import SnfError
from tests.testbed import cluster as tb
from tests.testbed import plan, test_providers

IN_CI = os.environ.get("CI") == "true"


def require(ok: bool, why: str) -> None:
    """Skip (locally) or fail (under CI=true) when a component is missing."""
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (CI=true: a missing component is a failure)")
        pytest.skip(why)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Callable[[int], tb.Cluster]]:
    """A factory for testbed clusters: ``testbed(2)`` brings up cluster 2 once per session.

    The whole testbed is cleared before the first cluster and removed at the end.
    """
    try:
        tb.check_prerequisites()
    except SnfError as exc:
        require(False, str(exc))
    tb.down()
    clusters: dict[int, tb.Cluster] = {}

    def get(index: int) -> tb.Cluster:
        if index not in clusters:
            c = tb.up(plan.ClusterPlan(index))
            for node in c.plan.nodes:
                test_providers.install(node)
            clusters[index] = c
        return clusters[index]

    yield get
    tb.down()


@pytest.fixture(scope="session")
def cluster1(testbed: Callable[[int], tb.Cluster]) -> tb.Cluster:
    return testbed(1)


@pytest.fixture(scope="session")
def cluster2(testbed: Callable[[int], tb.Cluster]) -> tb.Cluster:
    return testbed(2)


@pytest.fixture(scope="session")
def svc() -> tb.Host:
    """The services host (where clients, the portal and databases run)."""
    return tb.lan()


@pytest.fixture(scope="session")
def ceph(testbed: Callable[[int], tb.Cluster]) -> Iterator[object]:
    """A single-node Ceph 16.2 in the services host (tests/testbed/ceph.py) with the pools
    ``blocks`` and ``maps``: a ``tests.testbed.ceph.Ceph`` whose ``.conf`` clients use."""
    import importlib.util
    import shutil

    from tests.testbed import ceph as tb_ceph

    missing = [cmd for cmd in ("ceph-mon", "ceph-osd") if shutil.which(cmd) is None]
    require(not missing, f"Ceph is not installed: no {', '.join(missing)} (run `make deps`)")
    require(
        importlib.util.find_spec("rados") is not None,
        "python3-rados is not importable from the virtual environment (run `make deps`)",
    )
    yield tb_ceph.start()
    tb_ceph.stop()


@pytest.fixture(scope="session")
def portal(testbed: Callable[[int], tb.Cluster]) -> Iterator[object]:
    """The portal under gunicorn in the services host, on SQLite: a tests.testbed.portal.Portal."""
    from tests.testbed import portal as tb_portal

    tb.namespaces.create_lan()
    yield tb_portal.start()
    tb_portal.stop()


@pytest.fixture(scope="session")
def postgres(testbed: Callable[[int], tb.Cluster]) -> Iterator[str]:
    """A PostgreSQL 15 server in the services host (tests/testbed/postgres.py) with the role
    and database ``snf``: its SQLAlchemy URL, ``postgresql+psycopg://snf:...@192.0.2.1:5432/snf``.

    The address exists only inside the lan namespace: connect through
    ``tests.testbed.postgres.create_engine(url)``, which makes each connection there.
    """
    from tests.testbed import postgres as tb_postgres

    require(
        tb_postgres.installed(),
        f"PostgreSQL {tb_postgres.VERSION} is not installed: no {tb_postgres.BIN}/initdb "
        "(run `make deps`)",
    )
    server = tb_postgres.start()
    yield server.url
    tb_postgres.stop()
