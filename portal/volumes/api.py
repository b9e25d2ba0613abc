"""The volume API (``/volume/v2.0``, ``/volume/v2`` and ``/volume/v3``, Cinder-like with
Synnefo's ``server_id``): volumes, their metadata, snapshots and the volume types.  Views
check and translate; :mod:`.actions` and :mod:`.snapshots` do the work.  ``/volume/v2.0``
is Synnefo's endpoint (kamaki's), where an attached volume is ``in_use``; OpenStack's
clients use the others, where it is Cinder's ``in-use``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import select

from snf.common.config import ComputeConfig

from ..compute import requests
from ..compute.models import Server
from ..errors import ApiError
from ..extensions import db
from ..images.registry import location_of
from ..jsonapi import json_body, user_uuid, version_entry
from ..pithos.api import store
from . import actions, rows, snapshots, views
from .models import Snapshot, Volume

bp = Blueprint("volume", __name__)
#: URL version -> (id, microversion) advertised.
VERSIONS = {"v2.0": ("v2.0", ""), "v2": ("v2.0", ""), "v3": ("v3.0", "3.0")}
MAX_SIZE_GIB = 1024


def settings() -> ComputeConfig:
    return current_app.config["SNF"].compute


def _root() -> str:
    return current_app.config["SNF"].portal.base_url.rstrip("/")


def base() -> str:
    version = request.path.split("/")[2]
    return f"{_root()}/volume/{version}"


def user() -> uuid.UUID:
    return user_uuid("volume")


def _version(version: str) -> dict[str, Any]:
    ident, micro = VERSIONS[version]
    return version_entry(f"/volume/{version}", ident, micro, micro)


def version_document() -> Response:
    return jsonify(versions=[_version(request.path.split("/")[2])])


def versions_document() -> Response:
    response = jsonify(versions=[_version(v) for v in ("v2.0", "v3")])
    response.status_code = 300
    return response


# --- lookups -------------------------------------------------------------------------------


def volume_of(volume_id: Any, *, what: str = "volume") -> Volume:
    """The caller's volume; 404 for an unknown id or someone else's."""
    text = str(volume_id)
    volume = db.session.get(Volume, int(text)) if text.isdigit() else None
    if volume is None or volume.user_uuid != user() or volume.deleted:
        raise ApiError(404, f"{what} {text} not found")
    return volume


def snapshot_of(snapshot_id: Any) -> Snapshot:
    try:
        ident = uuid.UUID(str(snapshot_id))
    except ValueError:
        raise ApiError(404, f"snapshot {snapshot_id} not found") from None
    snap = db.session.get(Snapshot, ident)
    if snap is None or snap.user_uuid != user() or snap.deleted:
        raise ApiError(404, f"snapshot {snapshot_id} not found")
    return snap


def server_for(server_id: Any) -> Server:
    text = str(server_id)
    server = db.session.get(Server, int(text)) if text.isdigit() else None
    if server is None or server.user_uuid != user() or server.deleted:
        raise ApiError(404, f"server {text} not found")
    return server


def disk_indexes(server_ids: set[int]) -> dict[int, int]:
    """volume id -> its place among its server's disks, for the given servers."""
    out: dict[int, int] = {}
    for server_id in server_ids:
        for index, volume in enumerate(rows.of_server(db.session, server_id)):
            out[volume.id] = index
    return out


def _detail(volumes: list[Volume]) -> list[dict[str, Any]]:
    indexes = disk_indexes({v.server_id for v in volumes if v.server_id is not None})
    synnefo = request.path.startswith("/volume/v2.0")  # kamaki's endpoint
    return [views.volume_detail(v, base(), indexes.get(v.id), synnefo=synnefo) for v in volumes]


# --- volumes -------------------------------------------------------------------------------


def _listing() -> list[Volume]:
    query = select(Volume).where(Volume.user_uuid == user(), ~Volume.deleted)
    return list(db.session.scalars(query.order_by(Volume.id)))


@bp.get("/volumes")
def list_volumes() -> Response:
    return jsonify(volumes=[views.volume_brief(v, base()) for v in _listing()])


@bp.get("/volumes/detail")
def list_volumes_detail() -> Response:
    return jsonify(volumes=_detail(_listing()))


def _size(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE_GIB:
        raise ApiError(400, f"volume.size must be a whole number of GiB, 1 to {MAX_SIZE_GIB}")
    return value


def _names(body: dict[str, Any], what: str) -> dict[str, str]:
    out = {}
    for key, alias in (("name", "display_name"), ("description", "display_description")):
        value = body[key] if body.get(key) is not None else body.get(alias)
        if value is not None:
            if not isinstance(value, str) or len(value) > (256 if key == "name" else 1024):
                raise ApiError(400, f"{what}.{key} must be a string of at most "
                               f"{256 if key == 'name' else 1024} characters")  # fmt: skip
            out[key] = value
    return out


def _body(key: str) -> dict[str, Any]:
    body = json_body().get(key)
    if not isinstance(body, dict):
        raise ApiError(400, f'send {{"{key}": {{...}}}}')
    return body


@bp.post("/volumes")
def create_volume() -> tuple[Response, int]:
    body = _body("volume")
    sources = [k for k in ("imageRef", "snapshot_id", "source_volid") if body.get(k)]
    if len(sources) > 1:
        raise ApiError(
            400, f"give at most one of imageRef, snapshot_id, source_volid, not {sources}"
        )
    kind = body.get("volume_type")
    if kind not in (None, "", *views.VOLUME_TYPES, *views.VOLUME_TYPES.values()):
        raise ApiError(404, f"volume type {kind} not found")
    size = body.get("size")
    snapshot = snapshot_of(body["snapshot_id"]) if body.get("snapshot_id") else None
    source = volume_of(body["source_volid"]) if body.get("source_volid") else None
    if size is None and (snapshot or source):
        size = (snapshot or source).size  # type: ignore[union-attr]
    project = body.get("project")
    new = actions.NewVolume(
        size=_size(size),
        server=server_for(body["server_id"]) if body.get("server_id") else None,
        project=_project(project) if project else None,
        image_id=str(body["imageRef"]) if body.get("imageRef") else None,
        snapshot=snapshot, source=source,
        meta=requests.metadata(body.get("metadata") or {}),
        **_names(body, "volume"),
    )  # fmt: skip
    if new.server is not None and new.project not in (None, new.server.project):
        raise ApiError(400, "a volume created on a server is charged to the server's project")
    volume = actions.create(db.session, settings(), store(), user(), new)
    return jsonify(volume=_detail([volume])[0]), 202


def _project(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ApiError(400, f"invalid project {value!r}") from None


@bp.get("/volumes/<volume_id>")
def show_volume(volume_id: str) -> Response:
    return jsonify(volume=_detail([volume_of(volume_id)])[0])


@bp.put("/volumes/<volume_id>")
def update_volume(volume_id: str) -> Response:
    volume = volume_of(volume_id)
    body = _body("volume")
    for key, value in _names(body, "volume").items():
        setattr(volume, key, value)
    if "metadata" in body:
        volume.meta = requests.metadata(body["metadata"])
    volume.updated = time.time()
    db.session.commit()
    return jsonify(volume=_detail([volume])[0])


@bp.delete("/volumes/<volume_id>")
def delete_volume(volume_id: str) -> tuple[str, int]:
    actions.delete(db.session, settings(), store(), volume_of(volume_id))
    return "", 202


@bp.get("/volumes/<volume_id>/metadata")
def volume_metadata(volume_id: str) -> Response:
    return jsonify(metadata=dict(volume_of(volume_id).meta))


@bp.route("/volumes/<volume_id>/metadata", methods=["POST", "PUT"])
def set_volume_metadata(volume_id: str) -> Response:
    volume = volume_of(volume_id)
    present = dict(volume.meta) if request.method == "POST" else {}
    volume.meta = requests.metadata(json_body().get("metadata"), present=present)
    volume.updated = time.time()
    db.session.commit()
    return jsonify(metadata=dict(volume.meta))


@bp.delete("/volumes/<volume_id>/metadata/<key>")
def delete_volume_meta_item(volume_id: str, key: str) -> tuple[str, int]:
    volume = volume_of(volume_id)
    if key not in volume.meta:
        raise ApiError(404, f"no metadata item {key!r}")
    volume.meta = {k: v for k, v in volume.meta.items() if k != key}
    volume.updated = time.time()
    db.session.commit()
    return "", 200


# --- volume types --------------------------------------------------------------------------


@bp.get("/types")
def list_types() -> Response:
    user()
    return jsonify(volume_types=[views.volume_type(k, t) for k, t in views.VOLUME_TYPES.items()])


@bp.get("/types/<type_id>")
def show_type(type_id: str) -> Response:
    user()
    if type_id not in views.VOLUME_TYPES:
        raise ApiError(404, f"volume type {type_id} not found")
    return jsonify(volume_type=views.volume_type(type_id, views.VOLUME_TYPES[type_id]))


# --- snapshots -----------------------------------------------------------------------------


def _snapshot_view(snap: Snapshot) -> dict[str, Any]:
    where = location_of(snap.user_uuid, snapshots.CONTAINER, snap.file_name)
    return views.snapshot_detail(snap, base(), where if snap.status == "available" else None)


def _snapshots() -> list[Snapshot]:
    query = select(Snapshot).where(Snapshot.user_uuid == user(), ~Snapshot.deleted)
    return list(db.session.scalars(query.order_by(Snapshot.created)))


@bp.get("/snapshots")
@bp.get("/snapshots/detail")
def list_snapshots() -> Response:
    return jsonify(snapshots=[_snapshot_view(s) for s in _snapshots()])


@bp.post("/snapshots")
def create_snapshot() -> tuple[Response, int]:
    body = _body("snapshot")
    if "volume_id" not in body:
        raise ApiError(400, "snapshot.volume_id is required")
    volume = volume_of(body["volume_id"])
    names = _names(body, "snapshot")
    snap = snapshots.take(db.session, settings(), store(), volume, **names,
                          meta=requests.metadata(body.get("metadata") or {}))  # fmt: skip
    snapshots.complete_later(current_app._get_current_object(), snap.id)  # type: ignore[attr-defined]
    return jsonify(snapshot=_snapshot_view(snap)), 202


@bp.get("/snapshots/<snapshot_id>")
def show_snapshot(snapshot_id: str) -> Response:
    return jsonify(snapshot=_snapshot_view(snapshot_of(snapshot_id)))


@bp.put("/snapshots/<snapshot_id>")
def update_snapshot(snapshot_id: str) -> Response:
    snap = snapshot_of(snapshot_id)
    for key, value in _names(_body("snapshot"), "snapshot").items():
        setattr(snap, key, value)
    snap.updated = time.time()
    db.session.commit()
    return jsonify(snapshot=_snapshot_view(snap))


@bp.delete("/snapshots/<snapshot_id>")
def delete_snapshot(snapshot_id: str) -> tuple[str, int]:
    snapshots.delete(db.session, store(), snapshot_of(snapshot_id))
    return "", 202


def init_app(app: Flask) -> None:
    for version in VERSIONS:
        prefix = f"/volume/{version}"
        ident = f"volume_{version.replace('.', '_')}"
        app.register_blueprint(bp, url_prefix=prefix, name=ident)
        app.add_url_rule(prefix, f"{ident}_doc", version_document)
        app.add_url_rule(f"{prefix}/", f"{ident}_doc_slash", version_document)
    app.add_url_rule("/volume", "volume_versions", versions_document)
    app.add_url_rule("/volume/", "volume_versions_slash", versions_document)
