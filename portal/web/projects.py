"""The dashboard's projects page: list, apply for a new one, join, leave; owners accept or
reject join requests, administrators approve or deny applications.  Every action goes
through the same service functions as the projects API."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from snf.common.errors import InvalidInput, SnfError
from snf.quota import resources
from snf.quota.models import MEMBER_ACTIVE_STATES, MEMBER_REQUESTED

from .. import projects_applications as applications
from .. import projects_service as service
from ..extensions import db
from ..identity.models import User
from .blueprint import bp

#: What a user may ask for in the form, and the unit the form speaks.
FORM_RESOURCES = ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.disk",
                  "pithos.diskspace")  # fmt: skip
GIB = 2**30


def _me() -> User:
    return current_user.user  # type: ignore[no-any-return]


@bp.get("/projects")
@login_required
def projects() -> str:
    user = _me()
    listed = service.list_projects_for(db.session, user, mode="default")
    mine = {m.project_id: m for m in service.list_memberships_for(db.session, user)
            if m.user_uuid == user.uuid}  # fmt: skip
    requests = [m for m in service.list_memberships_for(db.session, user)
                if m.state == MEMBER_REQUESTED and m.user_uuid != user.uuid]  # fmt: skip
    names = {p.id: p.name for p in listed}
    return render_template(
        "projects.html",
        rows=[_row(p, mine.get(p.id)) for p in listed if not p.is_base],
        requests=[
            (m, names.get(m.project_id, m.project_id), _email(m.user_uuid)) for m in requests
        ],
        pending=applications.pending_applications(db.session, user) if user.is_admin else [],
        form_resources=[(name, resources.get(name)) for name in FORM_RESOURCES],
        is_admin=user.is_admin,
    )


def _row(project: Any, membership: Any) -> dict[str, Any]:
    state = membership.state if membership is not None else None
    return {
        "project": project,
        "membership": state,
        "can_join": project.state == "active" and project.join_policy != "closed"
        and (state is None or state not in (*MEMBER_ACTIVE_STATES, MEMBER_REQUESTED)),
        "can_leave": state in MEMBER_ACTIVE_STATES and state != "leave_requested",
    }  # fmt: skip


def _email(user_uuid: Any) -> str:
    user = db.session.get(User, user_uuid)
    return user.email if user is not None else str(user_uuid)


def _done(message: str) -> Response:
    db.session.commit()
    flash(message)
    return redirect(url_for("ui.projects"))


def _failed(exc: SnfError) -> Response:
    db.session.rollback()
    flash(str(exc), "error")
    return redirect(url_for("ui.projects"))


@bp.post("/projects")
@login_required
def apply_project() -> Response:
    form = request.form
    try:
        spec: dict[str, Any] = {
            "name": form.get("name", "").strip(),
            "description": form.get("description", ""),
            "end_date": form.get("end_date") or None,
            "join_policy": form.get("join_policy", "moderated"),
            "leave_policy": "auto",
            "resources": _grants(form),
        }
        if form.get("max_members"):
            spec["max_members"] = form["max_members"]
        applications.apply(db.session, _me(), spec)
    except SnfError as exc:
        return _failed(exc)
    return _done(f"Your application for {spec['name']} waits for an administrator.")


def _grants(form: Any) -> dict[str, dict[str, int]]:
    """Per member and in total, in the form's units (GiB for bytes)."""
    grants = {}
    for name in FORM_RESOURCES:
        member, total = form.get(f"member:{name}", "").strip(), form.get(f"total:{name}", "")
        if not member and not total.strip():
            continue
        scale = GIB if resources.get(name).unit == "bytes" else 1
        try:
            m = int(member or 0) * scale
            t = int(total.strip() or 0) * scale if total.strip() else m
        except ValueError:
            raise InvalidInput(f"{name}: give whole numbers") from None
        grants[name] = {"member_capacity": m, "project_capacity": max(t, m)}
    return grants


@bp.post("/projects/<project_id>/join")
@login_required
def join_project(project_id: str) -> Response:
    try:
        membership = service.join(db.session, _me(), project_id)
    except SnfError as exc:
        return _failed(exc)
    if membership.state in MEMBER_ACTIVE_STATES:
        return _done("You joined the project: its quota is yours to use.")
    return _done("You asked to join: the project's owner decides.")


@bp.post("/projects/<project_id>/leave")
@login_required
def leave_project(project_id: str) -> Response:
    try:
        membership = service.leave(db.session, _me(), project_id)
    except SnfError as exc:
        return _failed(exc)
    if membership.state == "leave_requested":
        return _done("You asked to leave: the project's owner decides.")
    return _done("You left the project.")


@bp.post("/projects/<project_id>/decide")
@login_required
def decide_project(project_id: str) -> Response:
    action = request.form.get("action", "")
    if action not in ("approve", "deny"):
        return _failed(InvalidInput(f"unknown action {action!r}"))
    try:
        applications.decide(db.session, _me(), project_id, action,
                            request.form.get("reason", ""))  # fmt: skip
    except SnfError as exc:
        return _failed(exc)
    return _done("Approved." if action == "approve" else "Denied.")


@bp.post("/memberships/<int:membership_id>/<action>")
@login_required
def membership(membership_id: int, action: str) -> Response:
    if action not in ("accept", "reject", "remove"):
        return _failed(InvalidInput(f"unknown action {action!r}"))
    try:
        service.membership_action(db.session, _me(), membership_id, action)
    except SnfError as exc:
        return _failed(exc)
    done = {"accept": "accepted", "reject": "rejected", "remove": "removed"}[action]
    return _done(f"The membership was {done}.")
