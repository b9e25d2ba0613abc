"""The object-store API's accounts and containers (``/object-store/v1/<account>[/<container>]``),
the shared-accounts listing and ``/object-store/info``.  Objects are in api_objects.py."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from snf.archipelago.backends import open_store
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store import Store
from snf.common.config import PithosConfig
from snf.quota import engine as quota

from ..extensions import db
from ..identity.models import User
from ..jsonapi import principal
from . import access, conditions, containers, content
from .errors import BadRequest, Forbidden, ItemNotFound
from .models import Account, Container
from .names import check_account, check_container, header_text, meta_headers, user_metadata
from .responses import listing, output_format
from .sharing import check_group_name, parse_group_members

bp = Blueprint("pithos", __name__, url_prefix="/object-store")


def store() -> Store:
    found = current_app.extensions.get("pithos_store")
    if found is None:
        found = current_app.extensions["pithos_store"] = open_store(current_app.config["SNF"].store)
    return found


def settings() -> PithosConfig:
    return current_app.config["SNF"].pithos


def caller() -> uuid.UUID | None:
    """The calling user's UUID; None for a service (which may read everything)."""
    if "pithos_caller" not in g:
        who = principal()
        g.pithos_caller = who.user.uuid if who.user is not None else None
    return g.pithos_caller


def is_service() -> bool:
    return caller() is None


def owner_of(account: str) -> uuid.UUID:
    return uuid.UUID(check_account(account))


def require_owner(owner: uuid.UUID) -> None:
    if caller() != owner:
        raise Forbidden("only the account's owner may do this")


def limit_arg() -> int:
    most = settings().list_limit
    raw = request.args.get("limit")
    if raw is None:
        return most
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {raw!r}") from None
    if value < 0:
        raise BadRequest("limit must not be negative")
    return min(value, most)


#: The largest JSON body read (a hashmap of a 5 GiB object is about 90 KB; an SLO manifest
#: of 1000 segments a few hundred KB).
MAX_JSON_BODY = 8 << 20


def json_request(what: str) -> Any:
    """The request's body as JSON, read at most MAX_JSON_BODY bytes; 400 for a body that is
    too large, cut off or not JSON."""
    data = content.read_body(request.stream, MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise BadRequest(f"{what} is larger than {MAX_JSON_BODY} bytes")
    try:
        return json.loads(data or b"null")
    except ValueError:
        raise BadRequest(f"{what} is not valid JSON") from None


def policy_from_headers(kind: str) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    for name, value in request.headers.items():
        key = name.lower().removeprefix(f"x-{kind}-policy-")
        if key == name.lower():
            continue
        value = header_text(value, name).strip()
        if key == "quota":
            try:
                policy["quota"] = int(value)
            except ValueError:
                raise BadRequest(f"{name} must be a number of bytes") from None
            if policy["quota"] < 0:
                raise BadRequest(f"{name} must not be negative")
        elif key == "versioning":
            if value not in ("auto", "none"):
                raise BadRequest(f"{name} must be auto or none")
            policy["versioning"] = value
        elif key == "project":
            try:
                policy["project"] = uuid.UUID(value)
            except ValueError:
                raise BadRequest(f"{name} must be a project UUID") from None
        else:
            raise BadRequest(f"unknown policy {name}")
    return policy


def apply_meta(current: dict[str, Any], given: dict[str, str], *, replace: bool) -> dict[str, Any]:
    merged = {} if replace else dict(current)
    for key, value in given.items():
        if value:
            merged[key] = value
        else:
            merged.pop(key, None)
    return merged


# --- info and the accounts that share with the caller ---------------------------------------


@bp.get("/info")
def info() -> Response:
    cfg = settings()
    return jsonify(
        {
            "swift": {
                "version": "2.30.1-snf",
                "max_file_size": cfg.max_object_bytes,
                "container_listing_limit": cfg.list_limit,
                "max_meta_count": 90,
                "max_meta_value_length": 256,
                "max_meta_name_length": 128,
                "max_object_name_length": 1024,
                "max_container_name_length": 256,
            },
            "slo": {
                "max_manifest_segments": 1000,
                "max_manifest_size": 8 << 20,
                "min_segment_size": 1,
            },
            "pithos": {"block_size": BLOCK_SIZE, "block_hash": "sha256"},
        }
    )


@bp.route("/v1", methods=["GET", "HEAD"])
@bp.route("/v1/", methods=["GET", "HEAD"])
def sharing_accounts() -> Response:
    user = caller()
    if user is None:
        raise Forbidden("a service has no accounts")
    marker = request.args.get("marker", "")
    found = [a for a in access.sharing_accounts(db.session, user) if str(a) > marker]
    found = found[: limit_arg()]
    fmt = output_format()
    # kamaki's `sharer list` wants each account's last_modified (as Pithos gives it)
    items = [] if fmt == "text" else [_sharer_item(user, a) for a in found]
    return listing("accounts", "", items, [str(a) for a in found], fmt)


def _sharer_item(user: uuid.UUID, owner: uuid.UUID) -> dict[str, Any]:
    """An account that shares with ``user``, modified when what it shares last was."""
    shared = access.shared_containers(db.session, user, owner)
    mtime = max((containers.container_stats(db.session, c).mtime for c in shared), default=0.0)
    return {"name": str(owner), "last_modified": conditions.iso_time(mtime)}


# --- accounts -----------------------------------------------------------------------------------


def _account_headers(owner: uuid.UUID, account: Account | None) -> list[tuple[str, str]]:
    count, objs, size = containers.account_stats(db.session, owner)
    headers = [
        ("X-Account-Container-Count", str(count)),
        ("X-Account-Object-Count", str(objs)),
        ("X-Account-Bytes-Used", str(size)),
    ]
    if account is not None:
        headers.append(("Last-Modified", conditions.http_date(account.mtime)))
        headers += meta_headers(account.meta, "Account")
        headers += [(f"X-Account-Group-{g}", ",".join(m)) for g, m in account.groups.items()]
    room = _quota_limit(owner)
    if room is not None:
        headers.append(("X-Account-Policy-Quota", str(room)))
    return headers


def _quota_limit(owner: uuid.UUID) -> int | None:
    holding = quota.quotas(db.session, owner).get(str(owner), {}).get("pithos.diskspace")
    return None if holding is None else holding["limit"]


@bp.route("/v1/<account>", methods=["HEAD"])
def account_head(account: str) -> Response:
    owner = owner_of(account)
    user = caller()
    if user != owner and not is_service():
        if user is None or not access.shared_containers(db.session, user, owner):
            raise Forbidden("this account shares nothing with you")
        return Response(status=204)
    found = containers.account(db.session, owner, create=user == owner)
    headers = _account_headers(owner, found)
    db.session.commit()
    return Response(status=204, headers=headers)


@bp.get("/v1/<account>")
def account_get(account: str) -> Response:
    owner = owner_of(account)
    user = caller()
    if user == owner or is_service():
        found = containers.list_containers(db.session, owner)
    else:
        assert user is not None
        found = access.shared_containers(db.session, user, owner)
        if not found:
            raise Forbidden("this account shares nothing with you")
    marker = request.args.get("marker", "")
    end_marker = request.args.get("end_marker")
    prefix = request.args.get("prefix", "")
    found = [
        c
        for c in found
        if c.name > marker
        and c.name.startswith(prefix)
        and (end_marker is None or c.name < end_marker)
    ][: limit_arg()]
    items = []
    for c in found:
        stats = containers.container_stats(db.session, c)
        items.append(
            {
                "name": c.name,
                "count": stats.objects,
                "bytes": stats.bytes,
                "last_modified": conditions.iso_time(stats.mtime),
                "x_container_policy": {"quota": str(c.quota), "versioning": c.versioning},
            }
        )
    fmt = output_format()
    response = listing("account", account, items, [c.name for c in found], fmt)
    response.headers.extend(_account_headers(owner, db.session.get(Account, owner)))
    return response


@bp.post("/v1/<account>")
def account_post(account: str) -> Response:
    owner = owner_of(account)
    require_owner(owner)
    found = containers.account(db.session, owner, create=True)
    assert found is not None
    replace = "update" not in request.args
    given = user_metadata(request.headers.items(), "Account")
    if given or replace:
        found.meta = apply_meta(found.meta, given, replace=replace)
    groups = dict({} if replace else found.groups)
    for name, value in request.headers.items():
        if name.lower().startswith("x-account-group-"):
            group = check_group_name(name[len("x-account-group-") :].lower())
            members = [_resolve_user(m) for m in parse_group_members(header_text(value, name))]
            if members:
                groups[group] = members
            else:
                groups.pop(group, None)
    found.groups = groups
    found.mtime = time.time()
    db.session.commit()
    return Response(status=202)


def _resolve_user(who: str) -> str:
    """A sharing member as stored: a user's UUID (given as a UUID or an email)."""
    if who == "*":
        return who
    try:
        uid = uuid.UUID(who)
        user = db.session.get(User, uid)
    except ValueError:
        user = db.session.scalars(select(User).where(func.lower(User.email) == who.lower())).first()
    if user is None:
        raise BadRequest(f"unknown user {who!r}")
    return str(user.uuid)


def resolve_member(member: str) -> str:
    """``user``, ``owner:group`` or ``*`` with every user named by UUID."""
    if ":" in member:
        owner, _, group = member.partition(":")
        return f"{_resolve_user(owner)}:{group}"
    return _resolve_user(member)


# --- containers ----------------------------------------------------------------------------------


def _container_headers(found: Container) -> list[tuple[str, str]]:
    stats = containers.container_stats(db.session, found)
    headers = [
        ("X-Container-Object-Count", str(stats.objects)),
        ("X-Container-Bytes-Used", str(stats.bytes)),
        ("X-Container-Block-Size", str(BLOCK_SIZE)),
        ("X-Container-Block-Hash", "sha256"),
        ("X-Container-Policy-Quota", str(found.quota)),
        ("X-Container-Policy-Versioning", found.versioning),
        ("Last-Modified", conditions.http_date(stats.mtime)),
        ("X-Timestamp", f"{found.mtime:.5f}"),
        *meta_headers(found.meta, "Container"),
    ]
    if found.project is not None:
        headers.append(("X-Container-Policy-Project", str(found.project)))
    return headers


def readable_container(account: str, name: str) -> tuple[Container, list[str] | None]:
    """The container and, for a caller who is not the owner, the shared paths they may read
    (403 when there are none)."""
    owner = owner_of(account)
    found = containers.get(db.session, owner, check_container(name))
    user = caller()
    if user == owner or is_service():
        return found, None
    assert user is not None
    paths = access.readable_names(db.session, user, found)
    if not paths:
        raise Forbidden(f"container {name} is not shared with you")
    return found, paths


@bp.route("/v1/<account>/<container>", methods=["HEAD"])
def container_head(account: str, container: str) -> Response:
    found, _ = readable_container(account, container)
    return Response(status=204, headers=_container_headers(found))


@bp.get("/v1/<account>/<container>")
def container_get(account: str, container: str) -> Response:
    from .api_objects import list_container

    found, paths = readable_container(account, container)
    response = list_container(found, paths)
    response.headers.extend(_container_headers(found))
    return response


@bp.put("/v1/<account>/<container>")
def container_put(account: str, container: str) -> Response:
    owner = owner_of(account)
    require_owner(owner)
    name = check_container(container)
    policy = policy_from_headers("container")
    meta = {k: v for k, v in user_metadata(request.headers.items(), "Container").items() if v}
    try:
        found = containers.get(db.session, owner, name)
    except ItemNotFound:
        try:
            containers.create(
                db.session,
                owner,
                name,
                meta=meta,
                versioning=policy.get("versioning", settings().versioning),
                quota_bytes=policy.get("quota", 0),
                project=policy.get("project"),
            )
            db.session.commit()
            return Response(status=201)
        except IntegrityError:
            db.session.rollback()
            found = containers.get(db.session, owner, name)
    _apply_policy(found, policy)
    if meta:
        found.meta = apply_meta(found.meta, meta, replace=False)
    db.session.commit()
    return Response(status=202)


def _apply_policy(found: Container, policy: dict[str, Any]) -> None:
    if "quota" in policy:
        found.quota = policy["quota"]
    if "versioning" in policy:
        found.versioning = policy["versioning"]
    if "project" in policy:
        found.project = policy["project"]


@bp.post("/v1/<account>/<container>")
def container_post(account: str, container: str) -> Response:
    owner = owner_of(account)
    name = check_container(container)
    if request.mimetype == "application/octet-stream" and (
        request.content_length or request.headers.get("Transfer-Encoding")
    ):
        return _store_blocks(owner, name)
    found = containers.get(db.session, owner, name)
    require_owner(owner)
    replace = "update" not in request.args
    given = user_metadata(request.headers.items(), "Container")
    if given:
        found.meta = apply_meta(found.meta, given, replace=replace)
    _apply_policy(found, policy_from_headers("container"))
    db.session.commit()
    return Response(status=202)


def _store_blocks(owner: uuid.UUID, name: str) -> Response:
    """Pithos' block upload: the body cut every 4 MiB, each block stored; their hashes back.

    The account's owner needs no container of that name (blocks belong to no container):
    kamaki uploads the blocks of a file bound for another user's container into its own
    account, under that container's name, as Pithos allows."""
    user = caller()
    if user != owner:
        found = containers.get(db.session, owner, name)
        # a writer of any shared object may upload the blocks it is about to name
        if user is None or not any(
            access.may(db.session, user, found, n, "write")
            for n in access.readable_names(db.session, user, found)
        ):
            raise Forbidden("you may not write to this container")
    db.session.commit()  # hold no transaction while the body streams in
    stored = content.store_stream(
        store(),
        request.stream,
        length=request.content_length,
        limit=settings().max_object_bytes,
        md5=False,
        threads=settings().upload_threads,
    )
    names = stored.hashes if stored.size else []
    if output_format() == "json":
        return Response(json.dumps(names), status=202, mimetype="application/json")
    return Response("".join(n + "\n" for n in names), status=202, mimetype="text/plain")


@bp.delete("/v1/<account>/<container>")
def container_delete(account: str, container: str) -> Response:
    owner = owner_of(account)
    require_owner(owner)
    found = containers.get(db.session, owner, check_container(container))
    if "delimiter" in request.args:
        # as in Pithos, only the contents go (kamaki's `container empty`; its `container
        # delete -r` deletes the emptied container next)
        from .api_objects import delete_all

        delete_all(found)
        return Response(status=204)
    containers.delete(db.session, found)
    db.session.commit()
    return Response(status=204)


def init_app(app: Flask) -> None:
    from . import api_objects, public  # noqa: F401 - their routes join the blueprints

    app.register_blueprint(bp)
    app.register_blueprint(public.bp)
