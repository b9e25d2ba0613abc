"""The engine's membership requests, leave requests and member limits, on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from snf.quota import engine as q
from snf.quota import projects as qp
from snf.quota.models import Membership, Project

from .dbs import Db, create_tables, sqlite_engine

VM = "cyclades.vm"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    engine = sqlite_engine(tmp_path / "quota.db")
    create_tables(engine)
    yield Db(engine)
    engine.dispose()


def setup(db: Db, *, max_members: int | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """A project granting 2 VMs a member, and a user who is not a member yet."""
    user = uuid.uuid4()
    with db.tx() as s:
        q.ensure_user(s, user)
        project = q.create_project(s, name=f"p-{uuid.uuid4()}", grants={VM: {
            "project_capacity": 10, "member_capacity": 2}})  # fmt: skip
        s.get(Project, project).max_members = max_members  # type: ignore[union-attr]
    return project, user


def state(db: Db, project: uuid.UUID, user: uuid.UUID) -> str | None:
    with db.tx() as s:
        m = s.query(Membership).filter_by(project_id=project, user_uuid=user).one_or_none()
        return None if m is None else m.state


def limit(db: Db, project: uuid.UUID, user: uuid.UUID) -> int | None:
    with db.tx() as s:
        vm = q.quotas(s, user).get(str(project), {}).get(VM)
        return None if vm is None else vm["limit"]


def test_a_request_grants_nothing_until_accepted(db: Db) -> None:
    project, user = setup(db)
    with db.tx() as s:
        mid = qp.request_membership(s, project, user)
    assert state(db, project, user) == "requested" and limit(db, project, user) is None
    with db.tx() as s:
        assert q.add_member(s, project, user) == mid
    assert state(db, project, user) == "accepted" and limit(db, project, user) == 2


def test_one_request_at_a_time_and_again_after_it_ended(db: Db) -> None:
    project, user = setup(db)
    with db.tx() as s:
        mid = qp.request_membership(s, project, user)
    for end in ("requested", "accepted", "suspended"):
        with db.tx() as s:
            s.get(Membership, mid).state = end  # type: ignore[union-attr]
        with db.tx() as s, pytest.raises(q.ProjectConflict):
            qp.request_membership(s, project, user)
    for end in ("rejected", "cancelled", "removed"):
        with db.tx() as s:
            s.get(Membership, mid).state = end  # type: ignore[union-attr]
        with db.tx() as s:
            assert qp.request_membership(s, project, user) == mid
        assert state(db, project, user) == "requested"


def test_a_leave_request_keeps_the_grant_until_removal(db: Db) -> None:
    project, user = setup(db)
    with db.tx() as s:
        with pytest.raises(q.ProjectConflict):
            qp.request_leave(s, project, user)  # not a member
        q.add_member(s, project, user)
        qp.request_leave(s, project, user)
        qp.request_leave(s, project, user)  # idempotent
        assert qp.member_count(s, project) == 1
    assert state(db, project, user) == "leave_requested" and limit(db, project, user) == 2
    with db.tx() as s:
        q.remove_member(s, project, user)
        assert qp.member_count(s, project) == 0
    assert state(db, project, user) == "removed" and limit(db, project, user) is None
    with db.tx() as s, pytest.raises(q.ProjectConflict):
        qp.request_leave(s, project, user)


def test_system_projects_take_no_requests(db: Db) -> None:
    _, user = setup(db)
    with db.tx() as s:
        for call in (qp.request_membership, qp.request_leave):
            with pytest.raises(q.ProjectConflict):
                call(s, user, user)
        with pytest.raises(q.ProjectNotFound):
            qp.request_membership(s, uuid.uuid4(), user)
        with pytest.raises(q.ProjectNotFound):
            qp.lock_project(s, uuid.uuid4())


def test_max_members_is_enforced_when_asked(db: Db) -> None:
    project, first = setup(db, max_members=1)
    second = uuid.uuid4()
    with db.tx() as s:
        q.add_member(s, project, first, enforce_max_members=True)
        q.add_member(s, project, first, enforce_max_members=True)  # a member already
        qp.request_membership(s, project, second)
        with pytest.raises(q.ProjectConflict, match="limit of 1 members"):
            q.add_member(s, project, second, enforce_max_members=True)
    assert state(db, project, second) == "requested"  # the refusal changed nothing
    with db.tx() as s:
        q.add_member(s, project, second)  # the operator may go past it
        assert qp.member_count(s, project) == 2
