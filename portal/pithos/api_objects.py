"""The object-store API's objects: ``/object-store/v1/<account>/<container>/<object>``
(GET, HEAD, PUT, POST, DELETE, COPY, MOVE) and container listings."""

from __future__ import annotations

import json
import mimetypes
from typing import Any
from urllib.parse import unquote

from flask import Response, current_app, request

from snf.archipelago.hashing import ZERO_HASH

from ..extensions import db
from . import access, containers, md5_jobs, objects, updates
from .accounting import room as quota_room
from .api import (
    apply_meta,
    bp,
    caller,
    is_service,
    json_request,
    limit_arg,
    owner_of,
    resolve_member,
    settings,
    store,
)
from .conditions import Validators, evaluate, iso_time
from .content import check_hashmap, missing_blocks, store_stream
from .errors import (
    BadRequest,
    Forbidden,
    ItemNotFound,
    LengthRequired,
    OverQuota,
    PreconditionFailed,
    Unprocessable,
)
from .models import Container, Object, Version
from .names import check_container, check_object, header_text, user_metadata
from .objects import NewVersion
from .responses import listing, object_headers, output_format, serve
from .sharing import format_sharing, parse_sharing

METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "MOVE"]


@bp.route("/v1/<account>/<container>/<path:name>", methods=METHODS)
def object_view(account: str, container: str, name: str) -> Response:
    owner = owner_of(account)
    found = containers.get(db.session, owner, check_container(container))
    name = check_object(name)
    handler = {
        "GET": _get,
        "HEAD": _get,
        "PUT": _put,
        "POST": _post,
        "DELETE": _delete,
        "COPY": _copy_method,
        "MOVE": _copy_method,
    }[request.method]
    return handler(found, name)


def _check(found: Container, name: str, action: str) -> None:
    if action == "read" and is_service():
        return
    access.check(db.session, caller(), found, name, action)


# --- reading -------------------------------------------------------------------------------------


def _get(found: Container, name: str) -> Response:
    _check(found, name, "read")
    obj = objects.find(db.session, found, name)
    if request.args.get("version") == "list":
        return _versions(obj)
    version = objects.version_of(db.session, obj, request.args.get("version"))
    if "hashmap" in request.args:
        return _hashmap(found, obj, version)
    if request.args.get("multipart-manifest") == "get" and version.kind == "slo":
        items = json.loads(version.manifest or "[]")
        return Response(json.dumps(items), mimetype="application/json")
    return serve_version(found, obj, version)


def serve_version(
    found: Container, obj: Object, version: Version, *, public: bool = False
) -> Response:
    body = objects.open_content(db.session, store(), found, version)
    etag = body.etag
    owner = not public and caller() == found.account
    shared_by = None
    if not owner and not public and not is_service():
        source = access.governing(db.session, found, obj.name)
        if source is not None and source.name != obj.name:
            shared_by = source.name
    headers = object_headers(
        obj=obj,
        version=version,
        etag=etag,
        owner=owner,
        public_url=public_url(obj),
        shared_by=shared_by,
    )
    if public:
        headers = [(k, v) for k, v in headers if not k.startswith("X-Object-Sharing")]
    # Served from the portal's own origin: never let an uploaded HTML or SVG run script here.
    headers += [("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "sandbox")]
    validators = Validators(frozenset(e for e in (etag, version.hash) if e), version.mtime)
    if version.kind == "data" and version.md5 is None:
        md5_jobs.schedule(version.id)
    db.session.commit()
    return serve(
        store(), body, headers, validators, version.content_type, head=request.method == "HEAD"
    )


def public_url(obj: Object) -> str | None:
    if obj.public_token is None:
        return None
    base = current_app.config["SNF"].portal.base_url.rstrip("/")
    return f"{base}/public/{obj.public_token}"


def _versions(obj: Object) -> Response:
    found = objects.versions(db.session, obj)
    if output_format("json") == "json":
        return Response(json.dumps({"versions": found}), mimetype="application/json")
    return Response("".join(f"{v} {t}\n" for v, t in found), mimetype="text/plain")


def _hashmap(found: Container, obj: Object, version: Version) -> Response:
    if version.kind != "data":
        raise BadRequest("a manifest has no hashmap of its own")
    body = {
        "block_size": store().block_size,
        "block_hash": "sha256",
        "bytes": version.size,
        "hashes": objects.hashes(store(), version),
    }
    headers = [("X-Object-Hash", version.hash), ("X-Object-Version", str(version.id))]
    return Response(json.dumps(body), mimetype="application/json", headers=headers)


def list_container(found: Container, paths: list[str] | None) -> Response:
    """GET of a container: its objects (for another user: the ones they may read)."""
    args = request.args
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter")
    if "path" in args:
        prefix, delimiter = args["path"].rstrip("/") + "/" if args["path"] else "", "/"
    conds = containers.parse_meta_filter(args["meta"]) if args.get("meta") else None
    shared_only = "shared" in args
    public_only = "public" in args

    def keep(obj: Object, version: Version) -> bool:
        if paths is not None and not access.is_readable(obj.name, paths):
            return False
        if shared_only and not obj.shared:
            return False
        if public_only and obj.public_token is None:
            return False
        return conds is None or containers.meta_matches(conds, version.meta)

    entries = containers.list_objects(
        db.session,
        found,
        prefix=prefix,
        delimiter=delimiter,
        marker=args.get("marker"),
        end_marker=args.get("end_marker"),
        limit=limit_arg(),
        keep=keep,
    )
    if paths is not None:
        entries = [e for e in entries if not e.is_subdir or _subdir_readable(e.name, paths)]
    owner = caller() == found.account
    items = [_item(e, owner) for e in entries]
    return listing("container", found.name, items, [e.name for e in entries], output_format())


def _subdir_readable(subdir: str, paths: list[str]) -> bool:
    return any(p.startswith(subdir) or subdir.startswith(p.rstrip("/") + "/") for p in paths)


def _item(entry: containers.Listed, owner: bool) -> dict[str, Any]:
    if entry.is_subdir:
        return {"subdir": entry.name}
    obj, version = entry.obj, entry.version
    assert obj is not None and version is not None
    item: dict[str, Any] = {
        "name": obj.name,
        "bytes": version.size,
        "hash": version.md5 or "",
        "content_type": version.content_type,
        "last_modified": iso_time(version.mtime),
        "x_object_hash": version.hash,
        "x_object_uuid": str(obj.uuid),
        "x_object_version": version.id,
        "x_object_version_timestamp": f"{version.mtime:.5f}",
        "x_object_modified_by": str(version.modified_by),
    }
    if obj.sharing:
        item["x_object_sharing"] = format_sharing(obj.sharing)
    if owner and obj.public_token:
        item["x_object_public"] = public_url(obj)
    for key, value in version.meta.items():
        item[f"x_object_meta_{key}"] = value
    return item


# --- writing -------------------------------------------------------------------------------------


def _content_type(name: str) -> str:
    given = request.headers.get("Content-Type")
    if given:
        return header_text(given, "Content-Type")[:256]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _write_conditions(found: Container, name: str) -> None:
    """If-Match / If-None-Match on a write (412), e.g. ``If-None-Match: *`` to never replace."""
    if not any(h in request.headers for h in ("If-Match", "If-None-Match")):
        return
    try:
        obj = objects.find(db.session, found, name)
        v = objects.current(db.session, obj)
        validators = Validators(frozenset(e for e in (v.md5, v.hash) if e), v.mtime)
    except ItemNotFound:
        validators = Validators(frozenset(), 0.0, exists=False)
    if evaluate(request.headers, validators, request.method) is not None:
        raise PreconditionFailed("the object does not match the request's conditions")


def _sharing_header() -> dict[str, Any] | None:
    raw = request.headers.get("X-Object-Sharing")
    if raw is None:
        return None
    perms = parse_sharing(header_text(raw, "X-Object-Sharing"))
    return {k: [resolve_member(m) for m in v] for k, v in perms.items()}


def _created(version: Version, etag: str | None) -> Response:
    headers = [("X-Object-Version", str(version.id)), ("X-Object-Hash", version.hash)]
    if etag is not None:
        headers.append(("ETag", f'"{etag}"'))
    return Response(status=201, headers=headers)


def _put(found: Container, name: str) -> Response:
    user = caller()
    if user is None:
        raise Forbidden("a service may not write objects")
    _check(found, name, "write")
    _write_conditions(found, name)
    source = request.headers.get("X-Copy-From") or request.headers.get("X-Move-From")
    if source is not None:
        move = "X-Move-From" in request.headers
        account = request.headers.get("X-Source-Account") or request.headers.get(
            "X-Copy-From-Account"
        )
        return _copy(_source(account, source), found, name, move=move)
    meta = {k: v for k, v in user_metadata(request.headers.items(), "Object").items() if v}
    sharing = _sharing_header()
    if "hashmap" in request.args:
        return _put_hashmap(found, name, meta, sharing)
    if request.args.get("multipart-manifest") == "put":
        return updates.put_slo(found, name, meta, _content_type(name), user)
    manifest = request.headers.get("X-Object-Manifest")
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    length = request.content_length
    if length is None and not chunked:
        raise LengthRequired("send Content-Length or use chunked transfer encoding")
    cfg = settings()
    if length is not None and length > cfg.max_object_bytes:
        raise OverQuota(f"an object holds at most {cfg.max_object_bytes} bytes")
    if length:
        room = quota_room(db.session, found.account, found)
        if room is not None and length > room:
            raise OverQuota(f"over quota: {length} bytes do not fit in the {room} left")
    db.session.commit()  # hold no transaction while the body streams in
    stored = store_stream(
        store(),
        request.stream,
        length=None if chunked else length,
        limit=cfg.max_object_bytes,
        threads=cfg.upload_threads,
    )
    expected = request.headers.get("ETag", "").strip('"').lower()
    if expected and expected != stored.md5:
        raise Unprocessable(f"the body's MD5 is {stored.md5}, not {expected}")
    kind, text = ("data", None)
    if manifest is not None:
        manifest = header_text(unquote(manifest), "X-Object-Manifest").lstrip("/")
        check_container(manifest.partition("/")[0])
        kind, text = "dlo", manifest
    new = NewVersion(
        stored.hashes,
        stored.size,
        stored.md5,
        _content_type(name),
        meta,
        kind=kind,
        manifest=text,
        sharing=sharing,
    )
    version = objects.put(db.session, store(), found, name, new, user)
    _set_public_from_header(found, name)
    return _created(version, objects.etag_of(db.session, found, version))


def _set_public_from_header(found: Container, name: str) -> None:
    raw = request.headers.get("X-Object-Public")
    if raw is None:
        return
    obj = objects.find(db.session, found, name)
    objects.set_public(obj, _flag(raw, "X-Object-Public"))
    db.session.commit()


def _flag(raw: str, what: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise BadRequest(f"{what} must be true or false")


def _put_hashmap(
    found: Container, name: str, meta: dict[str, str], sharing: dict[str, Any] | None
) -> Response:
    body = json_request("the hashmap")
    if not isinstance(body, dict):
        raise BadRequest("the hashmap must be a JSON object with bytes and hashes")
    size, hashes = check_hashmap(body.get("bytes"), body.get("hashes"), settings().max_object_bytes)
    missing = missing_blocks(store(), hashes)
    if missing:
        return Response(json.dumps(missing), status=409, mimetype="application/json")
    user = caller()
    assert user is not None
    new = NewVersion(hashes, size, None, _content_type(name), meta, sharing=sharing)
    version = objects.put(db.session, store(), found, name, new, user)
    md5_jobs.schedule(version.id)
    _set_public_from_header(found, name)
    return _created(version, None)


def _source(account: str | None, path: str) -> tuple[Container, Object, Version]:
    """The object an X-Copy-From / X-Move-From / COPY names, checked for reading."""
    owner = owner_of(unquote(account)) if account else None
    cname, _, oname = unquote(path).lstrip("/").partition("/")
    if not oname:
        raise BadRequest(f"the source must be /container/object, not {path!r}")
    user = caller()
    src_owner = owner or user
    assert src_owner is not None
    src = containers.get(db.session, src_owner, check_container(cname))
    oname = check_object(oname)
    _check(src, oname, "read")
    obj = objects.find(db.session, src, oname)
    version = objects.version_of(db.session, obj, request.headers.get("X-Source-Version"))
    return src, obj, version


def _copy(
    source: tuple[Container, Object, Version], dest: Container, name: str, *, move: bool
) -> Response:
    src, obj, version = source
    user = caller()
    assert user is not None
    if move:
        _check(src, obj.name, "write")
    if move and src.id == dest.id and obj.name == name:
        return _created(version, objects.etag_of(db.session, src, version))
    given = {k: v for k, v in user_metadata(request.headers.items(), "Object").items() if v}
    fresh = request.headers.get("X-Fresh-Metadata", "").lower() == "true"
    meta = given if fresh else {**version.meta, **given}
    ctype = request.headers.get("Content-Type")
    new = NewVersion(
        objects.hashes(store(), version) if version.kind == "data" else [],
        version.size,
        version.md5,
        header_text(ctype, "Content-Type") if ctype else version.content_type,
        meta,
        kind=version.kind,
        manifest=version.manifest,
        uuid=obj.uuid if move else None,
        sharing=_sharing_header(),
    )
    if not new.hashes:
        new.hashes = [ZERO_HASH]
    src_id = obj.id
    db.session.commit()
    created = objects.put(db.session, store(), dest, name, new, user)
    if move:
        moved = db.session.get(Object, src_id)
        if moved is not None and moved.id != db.session.get(Version, created.id).object_id:
            objects.delete(db.session, store(), src, moved)
    return _created(created, objects.etag_of(db.session, dest, created))


def _copy_method(found: Container, name: str) -> Response:
    """COPY / MOVE with ``Destination: /container/object`` (and Destination-Account)."""
    dest_path = request.headers.get("Destination")
    if not dest_path:
        raise BadRequest("COPY and MOVE need a Destination header")
    account = request.headers.get("Destination-Account")
    dest_owner = owner_of(unquote(account)) if account else found.account
    cname, _, oname = unquote(dest_path).lstrip("/").partition("/")
    dest = containers.get(db.session, dest_owner, check_container(cname))
    oname = check_object(oname)
    _check(dest, oname, "write")
    _check(found, name, "read")
    obj = objects.find(db.session, found, name)
    version = objects.version_of(db.session, obj, request.headers.get("X-Source-Version"))
    return _copy((found, obj, version), dest, oname, move=request.method == "MOVE")


def _post(found: Container, name: str) -> Response:
    """Metadata, sharing and publishing (202); with Content-Range, a data update (204)."""
    user = caller()
    if user is None:
        raise Forbidden("a service may not write objects")
    if "Content-Range" in request.headers or "X-Object-Bytes" in request.headers:
        _check(found, name, "write")
        return updates.partial_update(found, name, user)
    obj = objects.find(db.session, found, name)
    is_owner = user == found.account
    if not is_owner:
        _check(found, name, "write")
    version = objects.current(db.session, obj)
    given = user_metadata(request.headers.items(), "Object")
    replace = "update" not in request.args
    version.meta = apply_meta(version.meta, given, replace=replace)
    if "Content-Type" in request.headers and request.mimetype not in ("", None):
        version.content_type = header_text(request.headers["Content-Type"], "Content-Type")[:256]
    if "X-Object-Sharing" in request.headers or "X-Object-Public" in request.headers:
        if not is_owner:
            raise Forbidden("only the owner may share or publish an object")
        sharing = _sharing_header()
        if sharing is not None:
            obj.sharing, obj.shared = sharing, bool(sharing)
        if "X-Object-Public" in request.headers:
            objects.set_public(obj, _flag(request.headers["X-Object-Public"], "X-Object-Public"))
    db.session.commit()
    return Response(status=202)


def _delete(found: Container, name: str) -> Response:
    user = caller()
    if user is None:
        raise Forbidden("a service may not delete objects")
    _check(found, name, "write")
    obj = objects.find(db.session, found, name)
    version = objects.current(db.session, obj)
    segments: list[tuple[Container, Object]] = []
    if request.args.get("multipart-manifest") == "delete" and version.kind == "slo":
        for part in json.loads(version.manifest or "[]"):
            cname, _, oname = part["name"].lstrip("/").partition("/")
            try:
                seg_c = containers.get(db.session, found.account, cname)
                segments.append((seg_c, objects.find(db.session, seg_c, oname)))
            except ItemNotFound:
                continue
    objects.delete(db.session, store(), found, obj)
    for seg_c, seg in segments:
        objects.delete(db.session, store(), seg_c, db.session.merge(seg))
    return Response(status=204)


def delete_all(found: Container) -> None:
    """Delete every object of a container (DELETE with ``delimiter``)."""
    while True:
        batch = db.session.query(Object).filter(Object.container_id == found.id).limit(500).all()
        if not batch:
            return
        for obj in batch:
            objects.delete(db.session, store(), found, obj)
