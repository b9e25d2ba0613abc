"""Projects, their grants and members, and the holding limits that follow from them.

Holding limits are derived, never set by hand: :func:`sync_project` recomputes every holding
of one project from its state, its grants and its active memberships (Astakos'
``qh_sync_project``), and every change here ends with it:

- the project's own holdings (``"project:P"``, no source): ``project_capacity``;
- each active member's holdings (``"user:U"`` from ``"project:P"``): ``member_capacity``;
- a member who left, or any member of a project that is not active: limit 0. Their holdings
  stay (usage is never forgotten), so a later commission can still release what they use.

Memberships move as in Astakos: a user asks to join (``requested``, no quota yet,
:func:`request_membership`), is accepted (:func:`add_member`: the grant follows), may ask to
leave (``leave_requested``, :func:`request_leave`: the grant stays until removal), and is
removed, rejected or cancels (:func:`remove_member`). Who may do which, and when, is the
portal's business (``snf.portal.projects_service``); the engine keeps the states and the
holdings consistent, and counts members against ``max_members`` when told to.

Transactions follow :mod:`snf.quota.engine`'s rule: the caller owns them; each function
here runs in a SAVEPOINT and has changed nothing when it raises. A caller that checks a
project's state before changing it takes :func:`lock_project` first, so its checks and
the engine's changes see the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import resources
from .errors import InvalidData, ProjectConflict, ProjectNotFound
from .models import (
    MEMBER_ACCEPTED,
    MEMBER_ACTIVE_STATES,
    MEMBER_LEAVE_REQUESTED,
    MEMBER_REMOVED,
    MEMBER_REQUESTED,
    MEMBER_STATES,
    MEMBER_SUSPENDED,
    POLICY_CLOSED,
    PROJECT_ACTIVE,
    PROJECT_STATES,
    Holding,
    Membership,
    Project,
    ProjectResource,
)
from .provisions import HoldingKey, lock_order, parse_uuid, project_ref, user_ref

#: ``{resource: {"project_capacity": n, "member_capacity": m}}``, as the projects API sends.
Grants = Mapping[str, Mapping[str, int]]

_NO_SYNC = {"synchronize_session": False}

#: Memberships that stand in the way of a new request to join (Astakos' ASSOCIATED_STATES).
MEMBER_ASSOCIATED_STATES = (
    MEMBER_REQUESTED,
    MEMBER_ACCEPTED,
    MEMBER_LEAVE_REQUESTED,
    MEMBER_SUSPENDED,
)


def ensure_user(
    session: Session, user_uuid: uuid.UUID | str, *, base: Mapping[str, int] | None = None
) -> uuid.UUID:
    """Give a user their system project (id = the user's UUID), membership and holdings.

    ``base`` overrides the registry's default base quota per resource. Idempotent: for a
    user who has a system project already nothing changes (see :func:`set_grants`), and two
    concurrent calls for the same new user both succeed. Returns the system project's id.
    """
    uid = parse_uuid(user_uuid, "user")
    quota = resources.base_quota(base)
    if _exists(session, uid):
        return uid
    try:
        with session.begin_nested():
            session.add(
                Project(
                    id=uid,
                    name=f"system:{uid}",
                    is_base=True,
                    owner=None,
                    description="system project",
                    state=PROJECT_ACTIVE,
                    join_policy=POLICY_CLOSED,
                    leave_policy=POLICY_CLOSED,
                    max_members=1,
                    private=True,
                    grants=[
                        ProjectResource(
                            resource=name, project_capacity=value, member_capacity=value
                        )
                        for name, value in quota.items()
                    ],
                )
            )
            session.add(Membership(project_id=uid, user_uuid=uid, state=MEMBER_ACCEPTED))
            session.flush()
            sync_project(session, uid)
    except IntegrityError:
        if not _exists(session, uid):  # not a concurrent creation of the same user
            raise
    return uid


def create_project(
    session: Session,
    *,
    name: str,
    owner: uuid.UUID | str | None = None,
    grants: Grants | None = None,
    project_id: uuid.UUID | str | None = None,
    state: str = PROJECT_ACTIVE,
) -> uuid.UUID:
    """Create an ordinary project granting ``grants``; return its id.

    Resources left out of ``grants`` grant nothing. The portal sets the descriptive columns
    (description, policies, dates) on the :class:`Project` row itself.
    """
    if not isinstance(name, str) or not 0 < len(name) <= 255 or name.startswith("system:"):
        raise InvalidData(f"invalid project name {name!r}")
    if state not in PROJECT_STATES:
        raise InvalidData(f"invalid project state {state!r}")
    pid = uuid.uuid4() if project_id is None else parse_uuid(project_id, "project")
    owner_id = None if owner is None else parse_uuid(owner, "owner")
    checked = _check_grants(grants or {})
    try:
        with session.begin_nested():
            session.add(Project(id=pid, name=name, owner=owner_id, state=state))
            session.flush()
            _write_grants(session, pid, checked)
            sync_project(session, pid)
    except IntegrityError:
        raise ProjectConflict(f"a project named {name!r} or with id {pid} exists") from None
    return pid


def set_grants(session: Session, project_id: uuid.UUID | str, grants: Grants) -> None:
    """Change what a project grants of the named resources (others stay as they are).

    For a system project this sets the user's base quota (member = project capacity).
    """
    pid = parse_uuid(project_id, "project")
    checked = _check_grants(grants)
    with session.begin_nested():
        _lock_project(session, pid)
        _write_grants(session, pid, checked)
        sync_project(session, pid)


def set_project_state(session: Session, project_id: uuid.UUID | str, state: str) -> None:
    """Move a project to ``state``; only an active project grants anything."""
    if state not in PROJECT_STATES:
        raise InvalidData(f"invalid project state {state!r}")
    pid = parse_uuid(project_id, "project")
    with session.begin_nested():
        project = _lock_project(session, pid)
        if project.is_base and state != PROJECT_ACTIVE:
            raise ProjectConflict(f"system project {pid} is always active")
        session.execute(
            update(Project).where(Project.id == pid).values(state=state), execution_options=_NO_SYNC
        )
        sync_project(session, pid)


def add_member(
    session: Session,
    project_id: uuid.UUID | str,
    user_uuid: uuid.UUID | str,
    *,
    enforce_max_members: bool = False,
) -> int:
    """Make the user an accepted member: the project's member_capacity becomes their limit.

    Idempotent; returns the membership's id. With ``enforce_max_members``, a user who is
    not a member yet is refused (ProjectConflict) when the project's active members have
    reached its ``max_members``; the count is taken under the project's lock.
    """
    pid = parse_uuid(project_id, "project")
    uid = parse_uuid(user_uuid, "user")
    with session.begin_nested():
        project = _lock_project(session, pid)
        if project.is_base and uid != pid:
            raise ProjectConflict(f"system project {pid} has no other members")
        membership = _membership(session, pid, uid)
        joining = membership is None or membership.state not in MEMBER_ACTIVE_STATES
        limit = project.max_members if enforce_max_members and joining else None
        if limit is not None and member_count(session, pid) >= limit:
            raise ProjectConflict(f"project {pid} has reached its limit of {limit} members")
        if membership is None:
            membership = Membership(project_id=pid, user_uuid=uid, state=MEMBER_ACCEPTED)
            session.add(membership)
        else:
            membership.state = MEMBER_ACCEPTED
        session.flush()
        sync_project(session, pid, member=uid)
        return membership.id


def remove_member(
    session: Session,
    project_id: uuid.UUID | str,
    user_uuid: uuid.UUID | str,
    *,
    state: str = MEMBER_REMOVED,
) -> None:
    """End the user's membership (``state``: removed, suspended, ...): their limits from the
    project drop to 0; their usage stays until released. Idempotent."""
    if state not in MEMBER_STATES or state in MEMBER_ACTIVE_STATES:
        raise InvalidData(f"a membership cannot end in state {state!r}")
    pid = parse_uuid(project_id, "project")
    uid = parse_uuid(user_uuid, "user")
    with session.begin_nested():
        project = _lock_project(session, pid)
        if project.is_base:
            raise ProjectConflict(f"nobody leaves system project {pid}")
        membership = _membership(session, pid, uid)
        if membership is None:
            raise ProjectConflict(f"user {uid} is not a member of project {pid}")
        membership.state = state
        session.flush()
        sync_project(session, pid, member=uid)


def request_membership(
    session: Session, project_id: uuid.UUID | str, user_uuid: uuid.UUID | str
) -> int:
    """Record the user's request to join (``requested``): no quota until accepted.

    A user whose membership ended (rejected, cancelled, removed) may ask again; one who has
    asked already, is a member or is suspended may not (ProjectConflict), nor may anyone
    ask to join a system project. Returns the membership's id.
    """
    pid = parse_uuid(project_id, "project")
    uid = parse_uuid(user_uuid, "user")
    with session.begin_nested():
        project = _lock_project(session, pid)
        if project.is_base:
            raise ProjectConflict(f"nobody joins system project {pid}")
        membership = _membership(session, pid, uid)
        if membership is None:
            membership = Membership(project_id=pid, user_uuid=uid, state=MEMBER_REQUESTED)
            session.add(membership)
        elif membership.state in MEMBER_ASSOCIATED_STATES:
            raise ProjectConflict(
                f"user {uid} has a membership of project {pid} already ({membership.state})"
            )
        else:
            membership.state = MEMBER_REQUESTED
        session.flush()
        return membership.id


def request_leave(
    session: Session, project_id: uuid.UUID | str, user_uuid: uuid.UUID | str
) -> None:
    """Record an accepted member's request to leave (``leave_requested``).

    The member keeps the project's grant until removed (:func:`remove_member`). Idempotent;
    ProjectConflict for anyone who is not an accepted member.
    """
    pid = parse_uuid(project_id, "project")
    uid = parse_uuid(user_uuid, "user")
    with session.begin_nested():
        project = _lock_project(session, pid)
        if project.is_base:
            raise ProjectConflict(f"nobody leaves system project {pid}")
        membership = _membership(session, pid, uid)
        if membership is None or membership.state not in MEMBER_ACTIVE_STATES:
            raise ProjectConflict(f"user {uid} is not an accepted member of project {pid}")
        membership.state = MEMBER_LEAVE_REQUESTED
        session.flush()


def member_count(session: Session, project_id: uuid.UUID | str) -> int:
    """How many members draw on the project's grant (accepted or asking to leave)."""
    pid = parse_uuid(project_id, "project")
    count = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.project_id == pid, Membership.state.in_(MEMBER_ACTIVE_STATES))
    )
    return int(count or 0)


def lock_project(session: Session, project_id: uuid.UUID | str) -> Project:
    """The project's row, locked until the caller's transaction ends (PostgreSQL: FOR
    UPDATE) and freshly read; ProjectNotFound if there is none."""
    return _lock_project(session, parse_uuid(project_id, "project"))


def sync_project(
    session: Session, project_id: uuid.UUID, *, member: uuid.UUID | None = None
) -> None:
    """Bring the project's holdings to the limits its state, grants and members give.

    With ``member``, only the project's own holdings and that user's (a membership change);
    otherwise every member's. Locks the project row first (PostgreSQL: FOR UPDATE), so syncs
    of one project run one after the other; holdings are written in lock order, like
    commissions write them.
    """
    project = _lock_project(session, project_id)
    ref = project_ref(project_id)
    active = project.state == PROJECT_ACTIVE
    grants = {
        row.resource: row
        for row in session.execute(
            select(
                ProjectResource.resource,
                ProjectResource.project_capacity,
                ProjectResource.member_capacity,
            ).where(ProjectResource.project_id == project_id)
        )
    }
    query = select(Membership.user_uuid).where(
        Membership.project_id == project_id, Membership.state.in_(MEMBER_ACTIVE_STATES)
    )
    if member is not None:
        query = query.where(Membership.user_uuid == member)
    members = session.scalars(query).all()
    wanted: dict[HoldingKey, int] = {}
    for name in resources.RESOURCES:
        grant = grants.get(name)
        wanted[(ref, None, name)] = grant.project_capacity if grant and active else 0
        for user in members:
            wanted[(user_ref(user), ref, name)] = grant.member_capacity if grant and active else 0
    h = Holding
    theirs = (
        h.source == ref if member is None else and_(h.source == ref, h.holder == user_ref(member))
    )
    existing = {
        (row.holder, row.source, row.resource): (row.id, row.limit)
        for row in session.execute(
            select(h.id, h.holder, h.source, h.resource, h.limit).where(
                or_(and_(h.holder == ref, h.source.is_(None)), theirs)
            )
        )
    }
    for key in existing.keys() - wanted.keys():
        wanted[key] = 0  # a former member, or a resource no longer in the registry
    new = []
    for key in sorted(wanted, key=lock_order):
        if key not in existing:
            holder, source, resource = key
            new.append(
                {
                    "holder": holder,
                    "source": source,
                    "resource": resource,
                    "limit": wanted[key],
                    "usage_min": 0,
                    "usage_max": 0,
                }
            )
        elif existing[key][1] != wanted[key]:
            session.execute(
                update(h).where(h.id == existing[key][0]).values(limit=wanted[key]),
                execution_options=_NO_SYNC,
            )
    if new:
        session.execute(insert(h), new)


# --- helpers ----------------------------------------------------------------------------------


def _exists(session: Session, project_id: uuid.UUID) -> bool:
    return session.scalar(select(Project.id).where(Project.id == project_id)) is not None


def _lock_project(session: Session, project_id: uuid.UUID) -> Project:
    project = session.scalars(
        select(Project)
        .where(Project.id == project_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if project is None:
        raise ProjectNotFound(project_id)
    return project


def _membership(session: Session, project_id: uuid.UUID, user: uuid.UUID) -> Membership | None:
    return session.scalars(
        select(Membership)
        .where(Membership.project_id == project_id, Membership.user_uuid == user)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _check_grants(grants: object) -> dict[str, tuple[int, int]]:
    """``{resource: (project_capacity, member_capacity)}``; InvalidData for bad input."""
    if not isinstance(grants, Mapping):
        raise InvalidData("resources must be an object of resource names")
    checked = {}
    for name, spec in grants.items():
        resource = resources.get(name).name
        if not isinstance(spec, Mapping):
            raise InvalidData(f"malformed grant of {resource}: {spec!r}")
        p = resources.check_capacity(spec.get("project_capacity"), f"{resource} project_capacity")
        m = resources.check_capacity(spec.get("member_capacity"), f"{resource} member_capacity")
        if m > p:
            raise InvalidData(f"{resource}: member_capacity {m} exceeds project_capacity {p}")
        checked[resource] = (p, m)
    return checked


def _write_grants(
    session: Session, project_id: uuid.UUID, grants: dict[str, tuple[int, int]]
) -> None:
    current = {
        g.resource: g
        for g in session.scalars(
            select(ProjectResource)
            .where(ProjectResource.project_id == project_id)
            .execution_options(populate_existing=True)
        )
    }
    for resource, (p, m) in grants.items():
        grant = current.get(resource)
        if grant is None:
            session.add(
                ProjectResource(
                    project_id=project_id, resource=resource, project_capacity=p, member_capacity=m
                )
            )
        else:
            grant.project_capacity, grant.member_capacity = p, m
    session.flush()
    project = session.get(Project, project_id)
    if project is not None:
        session.expire(project, ["grants"])
