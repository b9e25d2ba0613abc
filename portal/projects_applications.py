"""Project applications: asking for a new project or a change to one, and deciding
(Astakos' ``submit_application``, ``approve_application``, ... in ``astakos/im/functions.py``).

Like :mod:`snf.portal.projects_service` (whose conventions these functions share: the
acting ``user``, snf errors, a SAVEPOINT, the caller commits):

===================================  ===============================================
apply for a new project              any user; a pending application counts against
                                     their ``astakos.pending_app`` (not an admin's)
apply to modify a project            its owner, administrators
approve, deny an application         administrators
cancel (pending) or dismiss          its applicant, administrators
(denied) an application
suspend, unsuspend, terminate,       administrators
reinstate a project
===================================  ===============================================

A new project waits ``uninitialized`` until its application is approved (administrators'
own applications too, as in Astakos). Approving a modification applies the fields it
names and leaves the project's state alone. Cancelling or dismissing a new project's
application deletes the project and frees its name. Only a project's latest application
can be decided; a new modification replaces (``replaced``) a pending one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from snf.common.db import utcnow
from snf.common.errors import Conflict, InvalidInput, NotFound
from snf.quota import engine as quota
from snf.quota import projects as qp
from snf.quota import resources
from snf.quota.errors import NoCapacity
from snf.quota.models import (
    POLICIES,
    PROJECT_ACTIVE,
    PROJECT_DELETED,
    PROJECT_SUSPENDED,
    PROJECT_TERMINATED,
    PROJECT_UNINITIALIZED,
    Project,
)

from .identity.models import User
from .projects_models import (
    APP_APPROVED,
    APP_CANCELLED,
    APP_DENIED,
    APP_DISMISSED,
    APP_PENDING,
    APP_REPLACED,
    ProjectApplication,
)
from .projects_service import (
    ALIVE,
    Forbidden,
    as_int,
    as_uuid,
    find_project,
    is_admin,
    last_application,
    locked_project,
    manages,
)

log = logging.getLogger("snf.portal.projects")

PROJECT_ACTIONS = ("suspend", "unsuspend", "terminate", "reinstate")
APPLICATION_ACTIONS = ("approve", "deny", "dismiss", "cancel")
PENDING_APP = "astakos.pending_app"
MAX_TEXT = 10_000
#: Projects an application may modify (Astakos' INITIALIZED_STATES).
_INITIALIZED = (PROJECT_ACTIVE, PROJECT_SUSPENDED, PROJECT_TERMINATED)
_APP_OUTCOME = {"approve": APP_APPROVED, "deny": APP_DENIED, "cancel": APP_CANCELLED,
                "dismiss": APP_DISMISSED}  # fmt: skip


@dataclass(frozen=True)
class Spec:
    """An application's request, checked. None: not asked for (a modification leaves it)."""

    name: str | None = None
    owner: uuid.UUID | None = None
    homepage: str | None = None
    description: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    join_policy: str | None = None
    leave_policy: str | None = None
    max_members: int | None = None
    private: bool | None = None
    comments: str | None = None
    resources: dict[str, dict[str, int]] | None = None


#: The Spec fields that are Project columns too (what approving a modification sets).
_PROJECT_FIELDS = ("name", "owner", "homepage", "description", "start_date", "end_date",
                   "join_policy", "leave_policy", "max_members", "private")  # fmt: skip


def pending_applications(session: Session, user: User | None) -> list[ProjectApplication]:
    """Pending applications, oldest first: all of them for administrators, else the user's."""
    query = select(ProjectApplication).where(ProjectApplication.state == APP_PENDING)
    if not is_admin(user):
        assert user is not None
        query = query.where(ProjectApplication.applicant == user.uuid)
    return list(session.scalars(query.order_by(ProjectApplication.id)))


# --- applications -----------------------------------------------------------------------------


def apply(session: Session, user: User, spec: Mapping[str, Any]) -> tuple[uuid.UUID, int]:
    """Apply for a new project (Astakos' create body); return (project id, application id).

    The project exists at once, ``uninitialized``, granting nothing until approved.
    """
    s = parse_spec(session, spec, new=True, admin=user.is_admin)
    assert s.name is not None
    with session.begin_nested():
        pid = qp.create_project(session, name=s.name, owner=s.owner or user.uuid,
                                grants=s.resources or {}, state=PROJECT_UNINITIALIZED)  # fmt: skip
        project = find_project(session, pid)
        _set_fields(project, s)
        asked = {f: getattr(project, f) for f in _PROJECT_FIELDS}
        app = _submit(session, user, project, {**asked, "comments": s.comments,
                                              "resources": s.resources or {}})  # fmt: skip
    log.info("%s applied for project %s (%s)", user.email, s.name, pid)
    return pid, app.id


def modify(
    session: Session, user: User, project_id: object, spec: Mapping[str, Any]
) -> tuple[uuid.UUID, int]:
    """Apply to modify a project (only the fields given); return (project id, application
    id). It replaces the project's pending application, if any."""
    with session.begin_nested():
        project = locked_project(session, project_id)
        if project.is_base:
            raise Conflict(f"{project.id} is a system project: set base quotas instead")
        if not manages(user, project):
            raise Forbidden(f"only the owner or an administrator may modify project {project.id}")
        if project.state not in _INITIALIZED:
            raise Conflict(f"project {project.id} is {project.state}: it cannot be modified")
        s = parse_spec(session, spec, new=False, admin=user.is_admin)
        for app in _pending_of(session, project.id):
            _pending_app_charge(session, app.applicant, -1)
            app.state, app.decided_at = APP_REPLACED, utcnow()
        app = _submit(session, user, project, {f.name: getattr(s, f.name) for f in fields(s)})
    log.info("%s applied to modify project %s", user.email, project.id)
    return project.id, app.id


def decide(
    session: Session,
    user: User | None,
    project_id: object,
    action: str,
    reason: str = "",
    app_id: object = None,
) -> None:
    """Act on a project (``suspend``, ``unsuspend``, ``terminate``, ``reinstate``) or on its
    latest application (``approve``, ``deny``, ``dismiss``, ``cancel``; ``app_id``, when
    given, must name that application)."""
    if not isinstance(reason, str) or len(reason) > MAX_TEXT:
        raise InvalidInput(f"a reason is a string of at most {MAX_TEXT} characters")
    if action in PROJECT_ACTIONS:
        _project_action(session, user, project_id, action)
    elif action in APPLICATION_ACTIONS:
        _application_action(session, user, project_id, action, reason, app_id)
    else:
        raise InvalidInput(f"unknown project action {action!r}")
    who = user.email if user is not None else "the operator"
    log.info("%s: %s project %s (%s)", who, action, project_id, reason or "no reason given")


def _project_action(session: Session, user: User | None, project_id: object, action: str) -> None:
    with session.begin_nested():
        project = locked_project(session, project_id)
        if not is_admin(user):
            raise Forbidden(f"only administrators may {action} a project")
        wanted = {"unsuspend": (PROJECT_SUSPENDED,), "reinstate": (PROJECT_TERMINATED,)}
        if project.state not in wanted.get(action, ALIVE):
            raise Conflict(f"project {project.id} is {project.state}: it cannot {action}")
        if project.is_base and action == "terminate":
            raise Conflict(f"system project {project.id} cannot be terminated")
        target = {"suspend": PROJECT_SUSPENDED, "terminate": PROJECT_TERMINATED}
        qp.set_project_state(session, project.id, target.get(action, PROJECT_ACTIVE))


def _application_action(
    session: Session, user: User | None, project_id: object, action: str, reason: str,
    app_id: object,
) -> None:  # fmt: skip
    with session.begin_nested():
        project = locked_project(session, project_id)
        last = last_application(session, project.id)
        app = last if app_id is None else session.get(ProjectApplication, as_int(app_id, "app_id"))
        if app is None:
            which = "no application" if app_id is None else f"no application {app_id}"
            raise NotFound(f"{which} of project {project.id}")
        if last is None or app.id != last.id:
            raise Conflict(f"application {app.id} is not project {project.id}'s latest")
        if action in ("approve", "deny") and not is_admin(user):
            raise Forbidden(f"only administrators may {action} an application")
        if not (is_admin(user) or (user is not None and app.applicant == user.uuid)):
            raise Forbidden(f"only the applicant or an administrator may {action} it")
        if app.state != (APP_DENIED if action == "dismiss" else APP_PENDING):
            raise Conflict(f"application {app.id} is {app.state}: it cannot {action}")
        if action != "dismiss":
            _pending_app_charge(session, app.applicant, -1)
        if action == "approve":
            _approve(session, project, app)
        elif action != "deny" and project.state == PROJECT_UNINITIALIZED:
            qp.set_project_state(session, project.id, PROJECT_DELETED)
            project.name = f"deleted:{project.id}"  # free the name for a new application
        app.state, app.reason = _APP_OUTCOME[action], reason
        app.decided_at, app.decided_by = utcnow(), user.uuid if user is not None else None
        session.flush()


def _approve(session: Session, project: Project, app: ProjectApplication) -> None:
    if not app.is_modification:
        qp.set_project_state(session, project.id, PROJECT_ACTIVE)
        return
    if app.name is not None and app.name != project.name:
        taken = select(Project.id).where(Project.name == app.name, Project.id != project.id)
        if session.scalar(taken) is not None:
            raise Conflict(f"cannot approve: a project named {app.name!r} exists")
    _set_fields(project, app)
    session.flush()
    if app.resources:
        qp.set_grants(session, project.id, app.resources)


def _submit(
    session: Session, user: User, project: Project, values: dict[str, Any]
) -> ProjectApplication:
    app = ProjectApplication(project_id=project.id, applicant=user.uuid,
                             is_modification=project.state != PROJECT_UNINITIALIZED,
                             **values)  # fmt: skip
    session.add(app)
    session.flush()
    _pending_app_charge(session, user.uuid, 1, force=user.is_admin)
    return app


def _pending_of(session: Session, project_id: uuid.UUID) -> list[ProjectApplication]:
    pa = ProjectApplication
    return list(session.scalars(select(pa).where(pa.project_id == project_id,
                                                 pa.state == APP_PENDING)))  # fmt: skip


def _pending_app_charge(
    session: Session, user_uuid: uuid.UUID, quantity: int, *, force: bool = False
) -> None:
    """Count one more (or one less) pending application against the user's base quota of
    ``astakos.pending_app``, through the quota engine as Astakos does."""
    qp.ensure_user(session, user_uuid)
    user, project = f"user:{user_uuid}", f"project:{user_uuid}"
    provisions = [
        {"holder": user, "source": project, "resource": PENDING_APP, "quantity": quantity},
        {"holder": project, "source": None, "resource": PENDING_APP, "quantity": quantity},
    ]
    try:
        quota.issue_commission(session, provisions, name="project application", force=force,
                               auto_accept=True, service="astakos")  # fmt: skip
    except NoCapacity as exc:
        if quantity < 0:  # nothing left to release: never block a decision on it
            log.warning("no pending application of %s to release", user_uuid)
            return
        raise Conflict(
            f"you have reached your limit of {exc.limit} pending project applications"
        ) from None


# --- input ------------------------------------------------------------------------------------


def parse_spec(session: Session, data: object, *, new: bool, admin: bool) -> Spec:
    """Check a project specification (Astakos' create/modify body); InvalidInput (400)."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a project specification is a JSON object")
    name = _text(data, "name", 255)
    if name is not None and (not name.strip() or name.startswith(("system:", "deleted:"))):
        raise InvalidInput(f"invalid project name {name!r}")
    start, end = _date(data, "start_date"), _date(data, "end_date")
    if new and (name is None or end is None):
        raise InvalidInput("a new project needs a name and an end_date")
    if start is not None and end is not None and end <= start:
        raise InvalidInput("end_date must come after start_date")
    return Spec(
        name=name, owner=_owner(session, data.get("owner")),
        homepage=_text(data, "homepage", 255), description=_text(data, "description", MAX_TEXT),
        start_date=start, end_date=end, join_policy=_policy(data, "join_policy"),
        leave_policy=_policy(data, "leave_policy"),
        max_members=_count(data.get("max_members"), "max_members"),
        private=_bool(data, "private"), comments=_text(data, "comments", MAX_TEXT),
        resources=_grants(data.get("resources"), admin=admin),
    )  # fmt: skip


def _text(data: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise InvalidInput(f"{key} must be a string of at most {limit} characters")
    return value


def _bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false, not {value!r}")
    return value


def _policy(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and value not in POLICIES:
        raise InvalidInput(f"{key} must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


def _date(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise InvalidInput(f"{key} must be an ISO 8601 date, not {value!r}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return resources.check_capacity(value, what)


def _owner(session: Session, value: object) -> uuid.UUID | None:
    if value is None:
        return None
    user = session.get(User, as_uuid(value, "owner"))
    if user is None or not user.is_active:
        raise InvalidInput(f"owner {value} is not an active user")
    return user.uuid


def _grants(value: object, *, admin: bool) -> dict[str, dict[str, int]] | None:
    """``{resource: {project_capacity, member_capacity}}``: known resources (API-visible
    ones, for users), whole non-negative capacities, member ≤ project."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("resources must be an object of resource names")
    grants = {}
    for name, spec in value.items():
        resource = resources.get(name)
        if not (resource.api_visible or admin):
            raise InvalidInput(f"unknown resource {name!r}")
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"malformed grant of {name}: {spec!r}")
        p = resources.check_capacity(spec.get("project_capacity"), f"{name} project_capacity")
        m = resources.check_capacity(spec.get("member_capacity"), f"{name} member_capacity")
        if m > p:
            raise InvalidInput(f"{name}: member_capacity {m} exceeds project_capacity {p}")
        grants[resource.name] = {"project_capacity": p, "member_capacity": m}
    return grants


def _set_fields(project: Project, source: Spec | ProjectApplication) -> None:
    for field in _PROJECT_FIELDS:
        value = getattr(source, field)
        if value is not None:
            setattr(project, field, value)
