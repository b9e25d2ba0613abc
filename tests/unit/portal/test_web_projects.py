"""The dashboard's projects page: apply, approve, join (open and moderated), accept, leave."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.quota import engine as quota

from .web_client import login, post_form


def _user(app: Flask, email: str, *, admin: bool = False) -> str:
    with app.app_context():
        user = accounts.create_user(db.session, email, email.split("@")[0], password="pass word 1",
                                    active=True, admin=admin)  # fmt: skip
        db.session.commit()
        return str(user.uuid)


def _browser(app: Flask, like: FlaskClient, email: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(like.environ_base)
    assert login(client, email, "pass word 1").status_code == 302
    return client


def _vm_limit(app: Flask, uuid: str) -> int:
    with app.app_context():
        return sum(q["cyclades.vm"]["limit"] for q in quota.quotas(db.session, uuid).values())


def _project_id(page: str, name: str) -> str:
    match = re.search(rf'data-project="{name}".*?/ui/projects/([0-9a-f-]{{36}})/', page, re.S)
    assert match, page
    return match.group(1)


def test_project_lifecycle_from_the_dashboard(app: Flask, browser: FlaskClient) -> None:
    _user(app, "owner@example.test")
    _user(app, "root@example.test", admin=True)
    joiner = _user(app, "joiner@example.test")
    owner = _browser(app, browser, "owner@example.test")
    admin = _browser(app, browser, "root@example.test")
    member = _browser(app, browser, "joiner@example.test")

    r = post_form(owner, "/ui/projects", {
        "name": "lab", "description": "a lab", "end_date": "2030-01-01",
        "join_policy": "auto", "member:cyclades.vm": "3", "total:cyclades.vm": "10",
        "member:cyclades.disk": "20"}, form_page="/ui/projects")  # fmt: skip
    assert r.status_code == 302
    assert "waits for an administrator" in owner.get("/ui/projects").text
    page = admin.get("/ui/projects").text
    assert 'id="applications"' in page and "lab" in page
    project = re.search(r"/ui/projects/([0-9a-f-]{36})/decide", page).group(1)  # type: ignore[union-attr]
    r = post_form(admin, f"/ui/projects/{project}/decide", {"action": "approve"},
                  form_page="/ui/projects")  # fmt: skip
    assert r.status_code == 302

    before = _vm_limit(app, joiner)
    page = member.get("/ui/projects").text
    assert _project_id(page, "lab") == project
    post_form(member, f"/ui/projects/{project}/join", {}, form_page="/ui/projects")
    assert "You joined the project" in member.get("/ui/projects").text
    assert _vm_limit(app, joiner) == before + 3
    quotas = member.get("/ui/quotas").text
    assert 'data-resource="cyclades.vm"' in quotas
    post_form(member, f"/ui/projects/{project}/leave", {}, form_page="/ui/projects")
    assert _vm_limit(app, joiner) == before


def test_moderated_join_is_accepted_by_the_owner(app: Flask, browser: FlaskClient) -> None:
    owner_uuid = _user(app, "boss@example.test")
    joiner = _user(app, "asker@example.test")
    with app.app_context():
        pid = quota.create_project(db.session, name="closed-ish", owner=owner_uuid,
                                   grants={"cyclades.vm": {"project_capacity": 5,
                                                           "member_capacity": 1}})  # fmt: skip
        db.session.commit()
    owner = _browser(app, browser, "boss@example.test")
    member = _browser(app, browser, "asker@example.test")
    post_form(member, f"/ui/projects/{pid}/join", {}, form_page="/ui/projects")
    assert "owner decides" in member.get("/ui/projects").text
    before = _vm_limit(app, joiner)
    page = owner.get("/ui/projects").text
    assert "asker@example.test" in page
    m = re.search(r"/ui/memberships/(\d+)/accept", page).group(1)  # type: ignore[union-attr]
    assert post_form(member, f"/ui/memberships/{m}/accept", {}, form_page="/ui/projects"
                     ).status_code == 302  # fmt: skip
    assert "flash error" in member.get("/ui/projects").text  # not the member's to accept
    post_form(owner, f"/ui/memberships/{m}/accept", {}, form_page="/ui/projects")
    assert _vm_limit(app, joiner) == before + 1


def test_bad_applications_are_refused(app: Flask, browser: FlaskClient) -> None:
    _user(app, "x@example.test")
    client = _browser(app, browser, "x@example.test")
    r = post_form(client, "/ui/projects", {"name": "p", "end_date": "2030-01-01",
                  "member:cyclades.vm": "-1"}, form_page="/ui/projects")  # fmt: skip
    assert r.status_code == 302
    assert 'class="flash error"' in client.get("/ui/projects").text
    post_form(client, "/ui/projects", {"name": "q", "end_date": "2030-01-01",
              "member:cyclades.vm": "two"}, form_page="/ui/projects")  # fmt: skip
    assert "whole numbers" in client.get("/ui/projects").text
