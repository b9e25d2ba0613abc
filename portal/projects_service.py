"""Projects and memberships as people use them: Astakos' rules
(``astakos/im/functions.py``) over the quota engine (:mod:`snf.quota.projects`).
Applications (apply, modify, approve, ...) are :mod:`snf.portal.projects_applications`.

The account API (:mod:`snf.portal.projects_api`) and the dashboard call these functions.
Each takes the session and the acting ``user`` (None where allowed: the operator at the
command line, who may do anything), raises snf errors that carry their HTTP status (400
bad input, 403 not allowed, 404 unknown, 409 not in this state), has changed nothing when
it raises (a SAVEPOINT), and leaves committing to its caller. Every change to a project
locks its row first (:func:`locked_project`), so its checks and the change see one state.

===================================  ===============================================
see a project                        administrators, its owner, its applicants and
                                     members; anyone while it is active and public
see a membership                     its member, the project's owner, administrators
join                                 anyone, unless the join policy is ``closed``;
                                     ``auto`` accepts at once while there is room
enroll; accept, reject, remove       the owner, administrators
leave; cancel a request to join      the member, administrators; leave policy ``auto``
                                     removes at once, ``moderated`` asks the owner
===================================  ===============================================

Only active or suspended projects change members; ``max_members`` counts accepted
members (and those asking to leave).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from snf.common.errors import Conflict, InvalidInput, NotFound, SnfError
from snf.quota import projects as qp
from snf.quota.errors import ProjectNotFound
from snf.quota.models import (
    MEMBER_ACCEPTED,
    MEMBER_ACTIVE_STATES,
    MEMBER_CANCELLED,
    MEMBER_LEAVE_REQUESTED,
    MEMBER_REJECTED,
    MEMBER_REMOVED,
    MEMBER_REQUESTED,
    MEMBER_SUSPENDED,
    POLICY_AUTO,
    POLICY_CLOSED,
    POLICY_MODERATED,
    PROJECT_ACTIVE,
    PROJECT_STATES,
    PROJECT_SUSPENDED,
    Membership,
    Project,
)

from .identity.models import User
from .projects_models import ProjectApplication

log = logging.getLogger("snf.portal.projects")

MODES = ("default", "member", "related", "active")
MEMBERSHIP_ACTIONS = ("leave", "cancel", "accept", "reject", "remove")
#: Projects whose members may change (Astakos' ``is_alive``).
ALIVE = (PROJECT_ACTIVE, PROJECT_SUSPENDED)
#: Memberships that let their user see a private project (Astakos' ACCEPTED_STATES).
_ACCEPTED = (MEMBER_ACCEPTED, MEMBER_LEAVE_REQUESTED, MEMBER_SUSPENDED)
_ENDS = {"leave": MEMBER_REMOVED, "remove": MEMBER_REMOVED, "reject": MEMBER_REJECTED,
         "cancel": MEMBER_CANCELLED}  # fmt: skip


class Forbidden(SnfError):
    """The caller may not do this (403)."""

    http_status = 403
    openstack_name = "forbidden"


# --- who may see what -------------------------------------------------------------------------


def is_admin(user: User | None) -> bool:
    return user is None or user.is_admin


def manages(user: User | None, project: Project) -> bool:
    """Administrators and the project's owner (Astakos' OWNER_LEVEL)."""
    return is_admin(user) or (user is not None and project.owner == user.uuid)


def sees_applications(
    user: User | None, project: Project, application: ProjectApplication | None
) -> bool:
    """Whether ``user`` sees the project's last application (its managers, its applicant)."""
    if manages(user, project):
        return True
    return user is not None and application is not None and application.applicant == user.uuid


def may_see(session: Session, user: User | None, project: Project) -> bool:
    if manages(user, project) or (project.state == PROJECT_ACTIVE and not project.private):
        return True
    assert user is not None
    query = select(Project.id).where(Project.id == project.id, _related(user.uuid))
    return session.scalar(query) is not None


def _related(uid: uuid.UUID) -> ColumnElement[bool]:
    """The projects ``uid`` owns, applied for, or is an (accepted) member of."""
    members = select(Membership.project_id).where(
        Membership.user_uuid == uid, Membership.state.in_(_ACCEPTED)
    )
    applied = select(ProjectApplication.project_id).where(ProjectApplication.applicant == uid)
    return or_(Project.owner == uid, Project.id.in_(members), Project.id.in_(applied))


# --- reading ----------------------------------------------------------------------------------


def find_project(session: Session, project_id: object) -> Project:
    """The project with this id (a UUID or its text); ProjectNotFound (404) otherwise."""
    try:
        pid = project_id if isinstance(project_id, uuid.UUID) else uuid.UUID(str(project_id))
    except ValueError:
        raise ProjectNotFound(project_id) from None
    project = session.get(Project, pid)
    if project is None:
        raise ProjectNotFound(pid)
    return project


def get_project(session: Session, user: User | None, project_id: object) -> Project:
    """One project, if ``user`` may see it."""
    project = find_project(session, project_id)
    if not may_see(session, user, project):
        raise Forbidden(f"you may not see project {project.id}")
    return project


def list_projects_for(
    session: Session,
    user: User | None,
    *,
    mode: str = "default",
    name: str | None = None,
    state: str | None = None,
    owner: str | None = None,
) -> list[Project]:
    """The projects ``user`` sees, oldest first. ``mode``: ``member`` (active projects they
    are a member of), ``related`` (owned, applied for, member of), ``active`` (active and
    public), ``default`` (related or active and public); administrators see every project
    except in ``member`` mode."""
    if mode not in MODES:
        raise InvalidInput(f"unrecognized mode {mode!r}: one of {', '.join(MODES)}")
    query = select(Project).where(_visible(user, mode))
    if name is not None:
        query = query.where(Project.name == name)
    if state is not None:
        if state not in PROJECT_STATES:
            raise InvalidInput(f"unrecognized state {state!r}: one of {', '.join(PROJECT_STATES)}")
        query = query.where(Project.state == state)
    if owner is not None:
        query = query.where(Project.owner == as_uuid(owner, "owner"))
    return list(session.scalars(query.order_by(Project.created_at, Project.name)))


def _visible(user: User | None, mode: str) -> ColumnElement[bool]:
    if mode == "member":
        if user is None:
            return false()
        members = select(Membership.project_id).where(
            Membership.user_uuid == user.uuid, Membership.state.in_(MEMBER_ACTIVE_STATES)
        )
        return and_(Project.state == PROJECT_ACTIVE, Project.id.in_(members))
    if is_admin(user):
        return true()
    assert user is not None
    related = _related(user.uuid)
    public = and_(Project.state == PROJECT_ACTIVE, Project.private.is_(False))
    return {"related": related, "active": public}.get(mode, or_(related, public))


def last_applications(
    session: Session, project_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, ProjectApplication]:
    """Each project's latest application (projects without one are left out)."""
    ids = list(project_ids)
    if not ids:
        return {}
    pa = ProjectApplication
    latest = select(func.max(pa.id)).where(pa.project_id.in_(ids)).group_by(pa.project_id)
    return {a.project_id: a for a in session.scalars(select(pa).where(pa.id.in_(latest)))}


def last_application(session: Session, project_id: uuid.UUID) -> ProjectApplication | None:
    return last_applications(session, [project_id]).get(project_id)


def list_memberships_for(
    session: Session, user: User | None, project_id: object = None
) -> list[Membership]:
    """The user's own memberships and those of the projects they own (all of them, for
    administrators), optionally of one project only."""
    query = select(Membership).order_by(Membership.id)
    if project_id is not None:
        query = query.where(Membership.project_id == as_uuid(project_id, "project"))
    if not is_admin(user):
        assert user is not None
        owned = select(Project.id).where(Project.owner == user.uuid)
        query = query.where(
            or_(Membership.user_uuid == user.uuid, Membership.project_id.in_(owned))
        )
    return list(session.scalars(query))


def get_membership(session: Session, user: User | None, membership_id: object) -> Membership:
    """One membership, for its user and the project's managers."""
    membership = _find_membership(session, membership_id)
    project = find_project(session, membership.project_id)
    if not (manages(user, project) or _own(user, membership)):
        raise Forbidden(f"you may not see membership {membership.id}")
    return membership


def allowed_actions(session: Session, user: User | None, membership: Membership) -> list[str]:
    """What ``user`` may do to ``membership`` now (Astakos' ``allowed_actions``)."""
    project = find_project(session, membership.project_id)
    return [
        action
        for action in MEMBERSHIP_ACTIONS
        if _membership_refusal(user, project, membership, action) is None
    ]


# --- memberships ------------------------------------------------------------------------------


def join(session: Session, user: User, project_id: object) -> Membership:
    """Ask to join a project; with join policy ``auto`` (and room left) that makes the user
    a member at once."""
    with session.begin_nested():
        project = locked_project(session, project_id)
        check_alive(project)
        if project.join_policy == POLICY_CLOSED:
            raise Conflict(f"project {project.id} does not accept new members")
        mid = qp.request_membership(session, project.id, user.uuid)
        if project.join_policy == POLICY_AUTO and _has_room(session, project):
            qp.add_member(session, project.id, user.uuid, enforce_max_members=True)
        return _find_membership(session, mid)


def enroll(session: Session, user: User | None, project_id: object, email: object) -> Membership:
    """Make the active user with this email a member (the owner or an administrator)."""
    if not isinstance(email, str):
        raise InvalidInput("enroll needs the user's email")
    with session.begin_nested():
        project = locked_project(session, project_id)
        if not manages(user, project):
            raise Forbidden(f"only the owner or an administrator may enroll in {project.id}")
        check_alive(project)
        if project.join_policy == POLICY_CLOSED:
            raise Conflict(f"project {project.id} does not accept new members")
        member = session.scalar(select(User).where(User.email == email.strip().lower()))
        if member is None or not member.is_active:
            raise NotFound(f"no active user {email}")
        existing = _membership_of(session, project.id, member.uuid)
        if existing is not None and existing.state in _ACCEPTED:
            raise Conflict(f"{email} is a member of project {project.id} already")
        mid = qp.add_member(session, project.id, member.uuid, enforce_max_members=True)
        return _find_membership(session, mid)


def leave(session: Session, user: User, project_id: object) -> Membership:
    """Leave a project: removed at once (leave policy ``auto``) or asking the owner."""
    project = find_project(session, project_id)
    membership = _membership_of(session, project.id, user.uuid)
    if membership is None:
        raise NotFound(f"you are not a member of project {project.id}")
    return membership_action(session, user, membership.id, "leave")


def membership_action(
    session: Session, user: User | None, membership_id: object, action: str, reason: str = ""
) -> Membership:
    """``leave``, ``cancel`` (a request), ``accept``, ``reject``, ``remove``."""
    if action not in MEMBERSHIP_ACTIONS:
        raise InvalidInput(f"unknown membership action {action!r}")
    with session.begin_nested():
        project = locked_project(session, _find_membership(session, membership_id).project_id)
        membership = _find_membership(session, membership_id)  # read again, under the lock
        refusal = _membership_refusal(user, project, membership, action)
        if refusal is not None:
            raise refusal
        if action == "accept":
            qp.add_member(session, project.id, membership.user_uuid, enforce_max_members=True)
        elif action == "leave" and project.leave_policy == POLICY_MODERATED:
            qp.request_leave(session, project.id, membership.user_uuid)
        else:
            qp.remove_member(session, project.id, membership.user_uuid, state=_ENDS[action])
    who = user.email if user is not None else "the operator"
    log.info("%s: %s membership %s (%s)", who, action, membership.id, reason or "no reason")
    return membership


def _membership_refusal(
    user: User | None, project: Project, membership: Membership, action: str
) -> SnfError | None:
    """Why ``user`` may not do ``action`` to ``membership`` now; None if they may."""
    what = f"membership {membership.id}"
    if action in ("leave", "cancel"):
        if not (is_admin(user) or _own(user, membership)):
            return Forbidden(f"only its member or an administrator may {action} {what}")
    elif not manages(user, project):
        return Forbidden(f"only the project's owner or an administrator may {action} {what}")
    wanted = _ACCEPTED if action in ("leave", "remove") else (MEMBER_REQUESTED,)
    if membership.state not in wanted:
        return Conflict(f"{what} is {membership.state}: it cannot {action}")
    if project.state not in ALIVE:
        return Conflict(f"project {project.id} is {project.state}")
    if action in ("leave", "remove") and project.leave_policy == POLICY_CLOSED:
        return Conflict(f"project {project.id} does not let its members leave")
    if action == "accept" and project.join_policy == POLICY_CLOSED:
        return Conflict(f"project {project.id} does not accept new members")
    return None


# --- helpers ----------------------------------------------------------------------------------


def locked_project(session: Session, project_id: object) -> Project:
    return qp.lock_project(session, find_project(session, project_id).id)


def check_alive(project: Project) -> None:
    if project.state not in ALIVE:
        raise Conflict(f"project {project.id} is {project.state}")


def _has_room(session: Session, project: Project) -> bool:
    limit = project.max_members
    return limit is None or qp.member_count(session, project.id) < limit


def _own(user: User | None, membership: Membership) -> bool:
    return user is not None and membership.user_uuid == user.uuid


def _find_membership(session: Session, membership_id: object) -> Membership:
    try:
        mid = as_int(membership_id, "membership id")
    except InvalidInput:
        mid = None
    found = None if mid is None else session.get(Membership, mid, populate_existing=True)
    if found is None:
        raise NotFound(f"no membership {membership_id}")
    return found


def _membership_of(
    session: Session, project_id: uuid.UUID, user_uuid: uuid.UUID
) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.project_id == project_id, Membership.user_uuid == user_uuid
        )
    )


def as_uuid(value: object, what: str) -> uuid.UUID:
    """A UUID given as such or as text; InvalidInput (400) otherwise."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{what} must be a UUID, not {value!r}") from None


def as_int(value: object, what: str) -> int:
    """An integer given as such or as decimal digits; InvalidInput (400) otherwise."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if type(value) is not int:
        raise InvalidInput(f"{what} must be an integer, not {value!r}")
    return value
