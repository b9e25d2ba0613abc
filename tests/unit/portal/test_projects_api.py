"""The Astakos projects API (/account/v1.0/projects...) through the Flask test client, as
an owner, a member, an outsider and an administrator; and the dashboard's Python API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.common.config import load_config
from snf.portal import migrate
from snf.portal import projects_applications as apps
from snf.portal import projects_service as svc
from snf.portal.app import create_app
from snf.portal.cli import main
from snf.portal.extensions import db
from snf.portal.identity import accounts

API = "/account/v1.0"
VM = "cyclades.vm"
END = "2030-01-01T00:00:00Z"


@dataclass(frozen=True)
class Person:
    uuid: str
    email: str
    token: str

    @property
    def h(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


def person(app: Flask, name: str, *, admin: bool = False) -> Person:
    with app.app_context():
        user = accounts.create_user(db.session, f"{name}@example.test", name.title(),
                                    active=True, admin=admin)  # fmt: skip
        token, _ = accounts.issue_user_token(db.session, user, kind="api", hours=24)
        db.session.commit()
        return Person(str(user.uuid), user.email, token)


@pytest.fixture
def owner(app: Flask) -> Person:
    return person(app, "olga")


@pytest.fixture
def member(app: Flask) -> Person:
    return person(app, "mike")


@pytest.fixture
def outsider(app: Flask) -> Person:
    return person(app, "otto")


@pytest.fixture
def admin(app: Flask) -> Person:
    return person(app, "ada", admin=True)


def spec(name: str = "lab.example.org", **extra: Any) -> dict[str, Any]:
    return {"name": name, "end_date": END, "description": "a lab", "homepage": "https://lab",
            "resources": {VM: {"project_capacity": 10, "member_capacity": 3}}, **extra}  # fmt: skip


def apply(client: FlaskClient, who: Person, **extra: Any) -> tuple[str, int]:
    r = client.post(f"{API}/projects", headers=who.h, json=spec(**extra))
    assert r.status_code == 201, r.json
    return r.json["id"], r.json["application"]


def act(client: FlaskClient, who: Person, project: str, body: dict[str, Any]) -> int:
    return client.post(f"{API}/projects/{project}/action", headers=who.h, json=body).status_code


def approve(client: FlaskClient, admin: Person, project: str, app_id: int) -> None:
    assert act(client, admin, project, {"approve": {"app_id": app_id, "reason": "ok"}}) == 200


def active_project(client: FlaskClient, owner: Person, admin: Person, **extra: Any) -> str:
    project, app_id = apply(client, owner, **extra)
    approve(client, admin, project, app_id)
    return project


def join(client: FlaskClient, who: Person, project: str) -> tuple[int, Any]:
    body = {"join": {"project": project}}
    r = client.post(f"{API}/projects/memberships", headers=who.h, json=body)
    return r.status_code, r.json


def membership(client: FlaskClient, who: Person, mid: int) -> dict[str, Any]:
    r = client.get(f"{API}/projects/memberships/{mid}", headers=who.h)
    assert r.status_code == 200, r.json
    return r.json


def m_act(client: FlaskClient, who: Person, mid: int, action: str) -> int:
    r = client.post(f"{API}/projects/memberships/{mid}/action", headers=who.h,
                    json={action: "because"})  # fmt: skip
    return r.status_code


def vm_quota(client: FlaskClient, who: Person, project: str) -> dict[str, int] | None:
    quotas = client.get(f"{API}/quotas", headers=who.h).json
    return quotas[project][VM] if project in quotas else None


def fault(r: Any) -> str:
    """The OpenStack fault name of an error response."""
    (name,) = r.json
    return name


# --- the lifecycle ----------------------------------------------------------------------------


def test_apply_approve_auto_join_and_leave(
    client: FlaskClient, owner: Person, member: Person, outsider: Person, admin: Person
) -> None:
    project, app_id = apply(client, owner, join_policy="auto", leave_policy="auto",
                            private=True)  # fmt: skip
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["state"] == "uninitialized" and shown["owner"] == owner.uuid
    assert shown["last_application"]["state"] == "pending"
    assert shown["last_application"]["id"] == app_id
    assert shown["resources"] == {VM: {"member_capacity": 3, "project_capacity": 10}}
    assert shown["system_project"] is False and shown["private"] is True
    # Nobody else sees a private project that is not theirs; nobody may join it yet.
    assert client.get(f"{API}/projects/{project}", headers=outsider.h).status_code == 403
    assert join(client, member, project)[0] == 409
    # The owner may not approve their own application; an administrator may.
    assert act(client, owner, project, {"approve": {"app_id": app_id}}) == 403
    approve(client, admin, project, app_id)
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["state"] == "active" and shown["last_application"]["state"] == "approved"
    assert shown["end_date"].startswith("2030-01-01T00:00:00")
    # Joining with the auto policy makes a member at once, and the quotas follow.
    status, body = join(client, member, project)
    assert status == 200
    mid = body["id"]
    seen = membership(client, member, mid)
    assert seen["state"] == "accepted" and seen["user"] == member.uuid
    assert seen["project"] == project and "accepted" in seen
    assert seen["allowed_actions"] == ["leave"]
    assert vm_quota(client, member, project) == {
        "limit": 3, "usage": 0, "pending": 0,
        "project_limit": 10, "project_usage": 0, "project_pending": 0,
    }  # fmt: skip
    # Now the member sees the private project, without its applications.
    seen = client.get(f"{API}/projects/{project}", headers=member.h).json
    assert seen["id"] == project and "last_application" not in seen
    # Leaving with the auto policy removes at once: the project's grant is gone.
    assert m_act(client, member, mid, "leave") == 200
    assert membership(client, member, mid)["state"] == "removed"
    assert vm_quota(client, member, project) is None
    assert client.get(f"{API}/projects/{project}", headers=member.h).status_code == 403


def test_moderated_join_accept_leave_request_and_remove(
    client: FlaskClient, owner: Person, member: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, leave_policy="moderated")
    status, body = join(client, member, project)
    mid = body["id"]
    assert status == 200 and membership(client, member, mid)["state"] == "requested"
    assert membership(client, member, mid)["allowed_actions"] == ["cancel"]
    assert membership(client, owner, mid)["allowed_actions"] == ["accept", "reject"]
    assert vm_quota(client, member, project) is None
    assert m_act(client, member, mid, "accept") == 403  # only the owner or an admin
    assert m_act(client, owner, mid, "accept") == 200
    assert vm_quota(client, member, project)["limit"] == 3
    assert m_act(client, owner, mid, "accept") == 409  # accepted already
    # A moderated leave asks the owner; the member keeps the grant meanwhile.
    assert m_act(client, member, mid, "leave") == 200
    assert membership(client, member, mid)["state"] == "leave_requested"
    assert vm_quota(client, member, project)["limit"] == 3
    assert m_act(client, owner, mid, "remove") == 200
    assert membership(client, owner, mid)["state"] == "removed"
    assert vm_quota(client, member, project) is None
    # A removed member may ask again; the owner may reject, the member cancel.
    assert join(client, member, project) == (200, {"id": mid})
    assert m_act(client, owner, mid, "reject") == 200
    assert join(client, member, project)[0] == 200
    assert m_act(client, member, mid, "cancel") == 200
    assert membership(client, member, mid)["state"] == "cancelled"


def test_enroll_and_max_members(
    client: FlaskClient, owner: Person, member: Person, outsider: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, max_members=1, join_policy="auto")
    body = {"enroll": {"project": project, "user": member.email}}
    r = client.post(f"{API}/projects/memberships", headers=outsider.h, json=body)
    assert r.status_code == 403
    r = client.post(f"{API}/projects/memberships", headers=owner.h, json=body)
    assert r.status_code == 200
    assert membership(client, owner, r.json["id"])["state"] == "accepted"
    assert client.post(f"{API}/projects/memberships", headers=owner.h, json=body).status_code == 409
    # The project is full: an auto join waits as a request, and accepting it is refused.
    status, joined = join(client, outsider, project)
    assert status == 200 and membership(client, outsider, joined["id"])["state"] == "requested"
    assert m_act(client, owner, joined["id"], "accept") == 409
    unknown = {"enroll": {"project": project, "user": "nobody@example.test"}}
    r = client.post(f"{API}/projects/memberships", headers=owner.h, json=unknown)
    assert r.status_code == 404


def test_modification_application(
    client: FlaskClient, owner: Person, member: Person, outsider: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, join_policy="auto")
    mid = join(client, member, project)[1]["id"]
    change = {"name": "bigger.example.org", "max_members": 5,
              "resources": {VM: {"project_capacity": 20, "member_capacity": 5}}}  # fmt: skip
    r = client.put(f"{API}/projects/{project}", headers=outsider.h, json=change)
    assert r.status_code == 403
    r = client.put(f"{API}/projects/{project}", headers=owner.h, json=change)
    assert r.status_code == 201 and r.json["id"] == project
    app_id = r.json["application"]
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["name"] == "lab.example.org"  # nothing changes before approval
    assert shown["last_application"]["name"] == "bigger.example.org"
    assert shown["last_application"]["description"] is None  # left as it is
    approve(client, admin, project, app_id)
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["name"] == "bigger.example.org" and shown["max_members"] == 5
    assert shown["description"] == "a lab" and shown["state"] == "active"
    assert vm_quota(client, member, project)["limit"] == 5
    assert membership(client, member, mid)["state"] == "accepted"
    # A second modification replaces a pending first one; only the latest is decided.
    first = client.put(f"{API}/projects/{project}", headers=owner.h, json={"homepage": "a"})
    second = client.put(f"{API}/projects/{project}", headers=owner.h, json={"homepage": "b"})
    old, new = first.json["application"], second.json["application"]
    assert act(client, admin, project, {"approve": {"app_id": old}}) == 409
    assert act(client, admin, project, {"deny": {"app_id": str(new), "reasons": "no"}}) == 200
    assert (
        client.get(f"{API}/projects/{project}", headers=owner.h).json["homepage"] == "https://lab"
    )


def test_cancel_deny_and_dismiss(
    client: FlaskClient, owner: Person, outsider: Person, admin: Person
) -> None:
    project, app_id = apply(client, owner)
    assert act(client, outsider, project, {"cancel": {"app_id": app_id}}) == 403
    assert act(client, owner, project, {"dismiss": {"app_id": app_id}}) == 409  # not denied
    assert act(client, owner, project, {"cancel": {"app_id": app_id}}) == 200
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["state"] == "deleted" and shown["name"] == "lab.example.org"
    assert act(client, admin, project, {"approve": {"app_id": app_id}}) == 409
    # The name is free again; a denied application is dismissed by its applicant.
    project, app_id = apply(client, owner)
    assert act(client, owner, project, {"deny": {"app_id": app_id}}) == 403
    assert act(client, admin, project, {"deny": {"app_id": app_id, "reason": "no"}}) == 200
    shown = client.get(f"{API}/projects/{project}", headers=owner.h).json
    assert shown["state"] == "uninitialized"
    assert shown["last_application"]["state"] == "denied"
    assert act(client, owner, project, {"dismiss": {"app_id": app_id}}) == 200
    assert client.get(f"{API}/projects/{project}", headers=owner.h).json["state"] == "deleted"


def test_pending_applications_are_limited_but_not_for_admins(
    client: FlaskClient, owner: Person, admin: Person
) -> None:
    first, app_id = apply(client, owner, name="one")
    apply(client, owner, name="two")  # the default limit is 2
    r = client.post(f"{API}/projects", headers=owner.h, json=spec(name="three"))
    assert r.status_code == 409 and "pending" in r.json[fault(r)]["message"]
    approve(client, admin, first, app_id)  # frees one
    apply(client, owner, name="three")
    for n in range(3):
        project, _ = apply(client, admin, name=f"admin-{n}")
        shown = client.get(f"{API}/projects/{project}", headers=admin.h).json
        assert shown["state"] == "uninitialized"  # admins' applications wait too


def test_suspend_terminate_and_back(
    client: FlaskClient, owner: Person, member: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, join_policy="auto")
    join(client, member, project)
    for action in ("suspend", "terminate", "unsuspend", "reinstate"):
        assert act(client, owner, project, {action: {"reason": "x"}}) == 403
    assert act(client, admin, project, {"unsuspend": {}}) == 409
    assert act(client, admin, project, {"suspend": {"reason": "abuse"}}) == 200
    assert vm_quota(client, member, project)["limit"] == 0
    assert act(client, admin, project, {"unsuspend": {}}) == 200
    assert vm_quota(client, member, project)["limit"] == 3
    assert act(client, admin, project, {"terminate": {}}) == 200
    assert vm_quota(client, member, project)["project_limit"] == 0
    assert act(client, admin, project, {"suspend": {}}) == 409
    assert join(client, member, project)[0] == 409
    assert act(client, admin, project, {"reinstate": {}}) == 200
    assert client.get(f"{API}/projects/{project}", headers=member.h).json["state"] == "active"
    # A system project is never terminated.
    assert act(client, admin, member.uuid, {"terminate": {}}) == 409


# --- listing ----------------------------------------------------------------------------------


def test_project_listing_modes_and_filters(
    client: FlaskClient, owner: Person, member: Person, outsider: Person, admin: Person
) -> None:
    public = active_project(client, owner, admin, name="public", join_policy="auto")
    private = active_project(client, owner, admin, name="private", private=True)
    pending, _ = apply(client, owner, name="pending")
    join(client, member, public)

    def ids(who: Person, query: str = "") -> set[str]:
        r = client.get(f"{API}/projects{query}", headers=who.h)
        assert r.status_code == 200, r.json
        return {p["id"] for p in r.json}

    assert ids(owner) == {owner.uuid, public, private, pending}
    assert ids(member) == {member.uuid, public}
    assert ids(outsider) == {outsider.uuid, public}
    assert ids(member, "?mode=member") == {member.uuid, public}
    assert ids(outsider, "?mode=related") == {outsider.uuid}
    assert ids(outsider, "?mode=active") == {public}
    assert {public, private, pending, owner.uuid, member.uuid} <= ids(admin)
    assert ids(owner, "?name=private") == {private}
    assert ids(owner, "?state=uninitialized") == {pending}
    assert ids(outsider, f"?owner={owner.uuid}") == {public}
    listed = client.get(f"{API}/projects", headers=outsider.h).json
    mine = next(p for p in listed if p["id"] == outsider.uuid)
    assert mine["system_project"] is True and mine["owner"] is None
    for query in ("?mode=everything", "?state=happy", "?owner=olga"):
        r = client.get(f"{API}/projects{query}", headers=owner.h)
        assert r.status_code == 400 and fault(r) == "badRequest"


def test_membership_listing(
    client: FlaskClient, owner: Person, member: Person, outsider: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, join_policy="auto")
    mid = join(client, member, project)[1]["id"]

    def listed(who: Person, query: str = "") -> set[tuple[str, str]]:
        r = client.get(f"{API}/projects/memberships{query}", headers=who.h)
        assert r.status_code == 200, r.json
        return {(m["project"], m["user"]) for m in r.json}

    assert listed(member) == {(member.uuid, member.uuid), (project, member.uuid)}
    assert listed(owner) == {(owner.uuid, owner.uuid), (project, member.uuid)}
    assert listed(outsider) == {(outsider.uuid, outsider.uuid)}
    assert listed(owner, f"?project={project}") == {(project, member.uuid)}
    assert (project, member.uuid) in listed(admin)
    assert client.get(f"{API}/projects/memberships/{mid}", headers=outsider.h).status_code == 403
    assert m_act(client, outsider, mid, "remove") == 403
    assert membership(client, owner, mid)["allowed_actions"] == ["remove"]
    assert membership(client, admin, mid)["allowed_actions"] == ["leave", "remove"]
    r = client.get(f"{API}/projects/memberships?project=x", headers=owner.h)
    assert r.status_code == 400


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"end_date": END},  # no name
        {"name": "x"},  # no end date
        {"name": "x", "end_date": "next week"},
        {"name": "x", "end_date": END, "start_date": "2031-01-01"},  # ends before it starts
        {"name": "x", "end_date": END, "join_policy": "anyone"},
        {"name": "x", "end_date": END, "private": "yes"},
        {"name": "x", "end_date": END, "max_members": -1},
        {"name": "x", "end_date": END, "owner": str(uuid.uuid4())},
        {"name": "system:x", "end_date": END},
        {"name": "x", "end_date": END, "resources": {"no.such": {"project_capacity": 1,
                                                                 "member_capacity": 1}}},
        {"name": "x", "end_date": END, "resources": {VM: {"project_capacity": -1,
                                                          "member_capacity": 0}}},
        {"name": "x", "end_date": END, "resources": {VM: {"project_capacity": "5",
                                                          "member_capacity": 1}}},
        {"name": "x", "end_date": END, "resources": {VM: {"project_capacity": 1,
                                                          "member_capacity": 2}}},
        {"name": "x", "end_date": END, "resources": {VM: 5}},
        {"name": "x", "end_date": END, "resources": {"cyclades.total_ram": {
            "project_capacity": 1, "member_capacity": 1}}},  # not API-visible
    ],
)  # fmt: skip
def test_bad_applications_are_400(client: FlaskClient, owner: Person, body: dict) -> None:
    r = client.post(f"{API}/projects", headers=owner.h, json=body)
    assert r.status_code == 400 and fault(r) == "badRequest", r.json


def test_bad_requests_are_400(
    client: FlaskClient, owner: Person, member: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin)
    mid = join(client, member, project)[1]["id"]
    raw = {"data": b"{", "content_type": "application/json", "headers": owner.h}
    assert client.post(f"{API}/projects", **raw).status_code == 400
    assert client.put(f"{API}/projects/{project}", **raw).status_code == 400
    r = client.post(f"{API}/projects", headers=owner.h, data="name=x")
    assert r.status_code == 400  # not JSON
    for body in ({}, {"fly": {}}, {"suspend": {}, "terminate": {}}, {"approve": {}},
                 {"approve": {"app_id": "one"}}):  # fmt: skip
        assert act(client, admin, project, body) == 400, body
    for body in ({}, {"join": {}}, {"join": "x"}, {"enroll": {"project": project}}):
        r = client.post(f"{API}/projects/memberships", headers=owner.h, json=body)
        assert r.status_code == 400, body
    r = client.post(f"{API}/projects/memberships/{mid}/action", headers=owner.h, json={"x": ""})
    assert r.status_code == 400
    fractional = {"resources": {VM: {"project_capacity": 1.5, "member_capacity": 1}}}
    r = client.put(f"{API}/projects/{project}", headers=owner.h, json=fractional)
    assert r.status_code == 400


def test_unknown_things_are_404(client: FlaskClient, owner: Person, admin: Person) -> None:
    project = active_project(client, owner, admin)
    for path in (f"/projects/{uuid.uuid4()}", "/projects/not-a-uuid",
                 "/projects/memberships/999", "/projects/memberships/x"):  # fmt: skip
        r = client.get(API + path, headers=owner.h)
        assert r.status_code == 404 and fault(r) == "itemNotFound", path
    assert join(client, owner, str(uuid.uuid4()))[0] == 404
    assert act(client, admin, str(uuid.uuid4()), {"suspend": {}}) == 404
    assert act(client, admin, project, {"approve": {"app_id": 12345}}) == 404
    assert m_act(client, owner, 999, "leave") == 404


def test_conflicts_are_409(
    client: FlaskClient, owner: Person, member: Person, admin: Person
) -> None:
    project = active_project(client, owner, admin, join_policy="auto", leave_policy="closed")
    closed = active_project(client, owner, admin, name="closed", join_policy="closed")
    mid = join(client, member, project)[1]["id"]
    assert join(client, member, project)[0] == 409  # a member already
    assert join(client, member, closed)[0] == 409
    assert join(client, member, member.uuid)[0] == 409  # a system project
    assert m_act(client, member, mid, "leave") == 409  # leave policy closed
    assert m_act(client, owner, mid, "remove") == 409
    r = client.post(f"{API}/projects", headers=owner.h, json=spec())  # the name is taken
    assert r.status_code == 409
    r = client.put(f"{API}/projects/{member.uuid}", headers=admin.h, json={"homepage": "x"})
    assert r.status_code == 409
    r = client.put(f"{API}/projects/{project}", headers=owner.h, json={"name": "closed"})
    assert r.status_code == 201
    assert act(client, admin, project, {"approve": {"app_id": r.json["application"]}}) == 409


def test_tokens(client: FlaskClient, app: Flask, owner: Person) -> None:
    assert client.get(f"{API}/projects").status_code == 401
    with app.app_context():
        token, _ = accounts.add_service(db.session, "cyclades")
        db.session.commit()
    r = client.get(f"{API}/projects", headers={"X-Auth-Token": token})
    assert r.status_code == 403


# --- the dashboard's Python API and the CLI ---------------------------------------------------


def test_python_api(app: Flask, owner: Person, member: Person, admin: Person) -> None:
    with app.app_context():
        s = db.session
        olga = accounts.find_user(s, owner.email)
        mike = accounts.find_user(s, member.email)
        ada = accounts.find_user(s, admin.email)
        pid, app_id = apps.apply(s, olga, spec(join_policy="moderated"))
        assert [a.id for a in apps.pending_applications(s, ada)] == [app_id]
        assert apps.pending_applications(s, mike) == []
        with pytest.raises(svc.Forbidden):
            apps.decide(s, olga, pid, "approve")
        apps.decide(s, ada, pid, "approve", "fine")  # app_id: the latest application
        assert svc.get_project(s, mike, pid).state == "active"
        m = svc.join(s, mike, pid)
        assert m.state == "requested"
        assert svc.allowed_actions(s, olga, m) == ["accept", "reject"]
        svc.membership_action(s, olga, m.id, "accept")
        assert [p.id for p in svc.list_projects_for(s, mike, mode="member")] == [mike.uuid, pid]
        assert svc.leave(s, mike, pid).state == "removed"
        with pytest.raises(svc.Conflict):
            svc.leave(s, mike, pid)
        s.commit()


def test_cli_applications_approve_and_deny(tmp_path: Path, capsys) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    (etc / "snf.toml").write_text(
        f'[portal]\ndatabase_url = "{url}"\nsecret_key_file = "{tmp_path / "secret"}"\n'
    )
    migrate.upgrade(url)
    conf = ["--config-dir", str(etc)]
    main([*conf, "user", "add", "pat@example.test", "--active"])
    capsys.readouterr()
    app = create_app(load_config(etc))
    with app.app_context():
        pat = accounts.find_user(db.session, "pat@example.test")
        first, _ = apps.apply(db.session, pat, spec(name="first"))
        second, _ = apps.apply(db.session, pat, spec(name="second"))
        db.session.commit()
    main([*conf, "project", "applications"])
    out = capsys.readouterr().out
    assert str(first) in out and "second" in out and "pat@example.test" in out
    assert main([*conf, "project", "approve", str(first)]) == 0
    assert main([*conf, "project", "deny", str(second), "--reason", "no"]) == 0
    main([*conf, "project", "list"])
    out = capsys.readouterr().out
    assert f"{first}\tfirst\tactive" in out and f"{second}\tsecond\tuninitialized" in out
    main([*conf, "project", "applications"])
    assert capsys.readouterr().out == ""


def test_migration_0004_up_and_down(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, inspect

    from snf.common.db import Base
    from snf.portal.models import load_all

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    load_all()
    with engine.connect() as conn:
        assert "project_applications" in inspect(conn).get_table_names()
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    migrate.downgrade(url, "0003")
    with engine.connect() as conn:
        assert "project_applications" not in inspect(conn).get_table_names()
    migrate.upgrade(url, "0004")
    assert migrate.current(url) == "0004"
    engine.dispose()
