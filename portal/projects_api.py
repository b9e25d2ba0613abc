"""The Astakos projects API on the account blueprint (``/account/v1.0``), as kamaki 0.16
and astakosclient call it (``astakos/api/projects.py``): thin views over
:mod:`snf.portal.projects_service` and :mod:`snf.portal.projects_applications`, and the
pure functions that shape Astakos' JSON.

==========================================  ================================================
GET  /projects?name,state,owner,mode        the projects the caller sees
POST /projects                              apply for one → 201 ``{"id", "application"}``
GET  /projects/<id>                         one project (``last_application`` for its
                                            owner, applicant and administrators)
PUT  /projects/<id>                         apply to modify it → 201 ``{"id", "application"}``
POST /projects/<id>/action                  ``{"approve"|"deny"|"dismiss"|"cancel":
                                            {"app_id", "reason"}}`` or ``{"suspend"|
                                            "unsuspend"|"terminate"|"reinstate": {"reason"}}``
GET  /projects/memberships?project=         the memberships the caller sees
POST /projects/memberships                  ``{"join": {"project"}}`` or ``{"enroll":
                                            {"project", "user": email}}`` → ``{"id"}``
GET  /projects/memberships/<m>              one membership, with its ``allowed_actions``
POST /projects/memberships/<m>/action       ``{"leave"|"cancel"|"accept"|"reject"|"remove":
                                            reason}``
==========================================  ================================================

Actions answer 200 with an empty body, as Astakos does. Errors are snf errors in the
OpenStack shape (:mod:`snf.portal.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request

from snf.common.errors import InvalidInput
from snf.quota import resources
from snf.quota.models import PROJECT_DELETED, Membership, Project, ProjectResource

from . import projects_applications as apps
from . import projects_service as svc
from .account import bp
from .errors import ApiError
from .extensions import db
from .identity.models import User
from .jsonapi import json_body, principal
from .projects_models import ProjectApplication

# --- JSON shapes (pure) -----------------------------------------------------------------------


def project_json(
    project: Project, last: ProjectApplication | None, *, with_application: bool
) -> dict[str, Any]:
    """A project as Astakos shows it; ``last_application`` only ``with_application``."""
    name = project.name
    if project.state == PROJECT_DELETED and last is not None and last.name:
        name = last.name  # a deleted project gave its name back
    body: dict[str, Any] = {
        "id": str(project.id),
        "state": project.state,
        "creation_date": _date(project.created_at),
        "name": name,
        "owner": _text(project.owner),
        "homepage": project.homepage,
        "description": project.description,
        "start_date": _date(project.start_date),
        "end_date": _date(project.end_date),
        "join_policy": project.join_policy,
        "leave_policy": project.leave_policy,
        "max_members": project.max_members,
        "private": project.private,
        "system_project": project.is_base,
        "resources": grants_json(project.grants),
    }
    if with_application and last is not None:
        body["last_application"] = application_json(last)
    return body


def grants_json(grants: Iterable[ProjectResource]) -> dict[str, dict[str, int]]:
    """``{resource: {member_capacity, project_capacity}}``, API-visible resources only."""
    visible = set(resources.api_visible_names())
    return {
        g.resource: {"member_capacity": g.member_capacity, "project_capacity": g.project_capacity}
        for g in sorted(grants, key=lambda g: g.resource)
        if g.resource in visible
    }


def application_json(app: ProjectApplication) -> dict[str, Any]:
    """An application; for a modification, null fields are the ones it leaves alone."""
    return {
        "id": app.id,
        "project": str(app.project_id),
        "state": app.state,
        "name": app.name,
        "owner": _text(app.owner),
        "applicant": str(app.applicant),
        "homepage": app.homepage,
        "description": app.description,
        "start_date": _date(app.start_date),
        "end_date": _date(app.end_date),
        "comments": app.comments,
        "join_policy": app.join_policy,
        "leave_policy": app.leave_policy,
        "max_members": app.max_members,
        "private": app.private,
        "resources": app.resources or {},
    }


def membership_json(membership: Membership, allowed: list[str]) -> dict[str, Any]:
    """A membership; the key named after its state holds when it got there."""
    return {
        "id": membership.id,
        "user": str(membership.user_uuid),
        "project": str(membership.project_id),
        "state": membership.state,
        "allowed_actions": allowed,
        membership.state: _date(membership.updated_at),
    }


def one_action(body: Mapping[str, Any], names: Iterable[str]) -> tuple[str, Any]:
    """The one action a body names, and its argument (Astakos' ``get_action``)."""
    found = [name for name in names if name in body]
    if not found:
        raise InvalidInput("No recognized action")
    if len(found) > 1:
        raise InvalidInput("Multiple actions not supported")
    return found[0], body[found[0]]


def reason_of(data: object) -> str:
    """The reason given with an action: the argument itself, or its ``reason`` (kamaki's
    astakosclient sends ``reasons`` with application actions)."""
    if isinstance(data, Mapping):
        data = data.get("reason", data.get("reasons", ""))
    return data if isinstance(data, str) else ""


def _date(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# --- views ------------------------------------------------------------------------------------


def _caller() -> User:
    who = principal()
    if who.user is None:
        raise ApiError(403, "this call needs a user's token")
    return who.user


def _projects(user: User, projects: list[Project]) -> list[dict[str, Any]]:
    last = svc.last_applications(db.session, [p.id for p in projects])
    return [
        project_json(
            p, last.get(p.id), with_application=svc.sees_applications(user, p, last.get(p.id))
        )
        for p in projects
    ]


def _done() -> Response:
    db.session.commit()
    return Response(status=200)


@bp.get("/projects")
def list_projects() -> Response:
    user, args = _caller(), request.args
    projects = svc.list_projects_for(db.session, user, mode=args.get("mode", "default"),
                                     name=args.get("name"), state=args.get("state"),
                                     owner=args.get("owner"))  # fmt: skip
    return jsonify(_projects(user, projects))


@bp.post("/projects")
def apply() -> tuple[Response, int]:
    project_id, app_id = apps.apply(db.session, _caller(), json_body())
    db.session.commit()
    return jsonify({"id": str(project_id), "application": app_id}), 201


@bp.get("/projects/<project_id>")
def show_project(project_id: str) -> Response:
    user = _caller()
    return jsonify(_projects(user, [svc.get_project(db.session, user, project_id)])[0])


@bp.put("/projects/<project_id>")
def modify_project(project_id: str) -> tuple[Response, int]:
    pid, app_id = apps.modify(db.session, _caller(), project_id, json_body())
    db.session.commit()
    return jsonify({"id": str(pid), "application": app_id}), 201


@bp.post("/projects/<project_id>/action")
def project_action(project_id: str) -> Response:
    user = _caller()
    action, data = one_action(json_body(), apps.PROJECT_ACTIONS + apps.APPLICATION_ACTIONS)
    app_id = None
    if action in apps.APPLICATION_ACTIONS:
        app_id = data.get("app_id") if isinstance(data, Mapping) else None
        if app_id is None:
            raise InvalidInput(f"{action} needs the app_id of the application")
    apps.decide(db.session, user, project_id, action, reason_of(data), app_id=app_id)
    return _done()


@bp.get("/projects/memberships")
def list_memberships() -> Response:
    user = _caller()
    found = svc.list_memberships_for(db.session, user, request.args.get("project"))
    return jsonify([_membership(user, m) for m in found])


@bp.post("/projects/memberships")
def join_or_enroll() -> Response:
    user = _caller()
    action, data = one_action(json_body(), ("join", "enroll"))
    if not isinstance(data, Mapping) or data.get("project") is None:
        raise InvalidInput(f'{action} needs {{"project": <project id>}}')
    if action == "join":
        membership = svc.join(db.session, user, data["project"])
    else:
        membership = svc.enroll(db.session, user, data["project"], data.get("user"))
    db.session.commit()
    return jsonify({"id": membership.id})


@bp.get("/projects/memberships/<membership_id>")
def show_membership(membership_id: str) -> Response:
    user = _caller()
    return jsonify(_membership(user, svc.get_membership(db.session, user, membership_id)))


@bp.post("/projects/memberships/<membership_id>/action")
def membership_action(membership_id: str) -> Response:
    user = _caller()
    action, data = one_action(json_body(), svc.MEMBERSHIP_ACTIONS)
    svc.membership_action(db.session, user, membership_id, action, reason_of(data))
    return _done()


def _membership(user: User, membership: Membership) -> dict[str, Any]:
    return membership_json(membership, svc.allowed_actions(db.session, user, membership))
