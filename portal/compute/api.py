"""The compute API (``/compute/v2.0``, and ``/compute/v2.1`` for microversion-aware
clients): servers, their actions and metadata, and flavors.  Views check and translate;
:mod:`.lifecycle` does the work."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import select

from snf.common.config import ComputeConfig

from ..errors import ApiError
from ..extensions import db
from ..jsonapi import json_body, user_uuid, version_entry
from ..pithos.api import store as pithos_store
from ..volumes.rows import volumes_of
from . import consoles, lifecycle, requests, snapshots, views
from .models import Flavor, Server

bp = Blueprint("compute", __name__)
VERSIONS = {"v2.0": ("", ""), "v2.1": ("2.1", "2.1")}


def settings() -> ComputeConfig:
    return current_app.config["SNF"].compute


def base() -> str:
    version = "v2.1" if request.path.startswith("/compute/v2.1") else "v2.0"
    return f"{current_app.config['SNF'].portal.base_url.rstrip('/')}/compute/{version}"


def user() -> uuid.UUID:
    return user_uuid("compute")


def _version(version: str) -> dict[str, Any]:
    micro, minimum = VERSIONS[version]
    return version_entry(f"/compute/{version}", version, micro, minimum)


def version_document() -> Response:
    version = "v2.1" if request.path.startswith("/compute/v2.1") else "v2.0"
    return jsonify(version=_version(version))


def versions_document() -> Response:
    response = jsonify(versions=[_version(v) for v in VERSIONS])
    response.status_code = 300
    return response


def server_of(server_id: str, *, deleted: bool = True) -> Server:
    """The caller's server; 404 for an unknown id, someone else's, or a name."""
    if not server_id.isdigit():
        raise ApiError(404, f"server {server_id} not found")
    server = db.session.get(Server, int(server_id))
    if server is None or server.user_uuid != user() or (server.deleted and not deleted):
        raise ApiError(404, f"server {server_id} not found")
    return server


def _listing() -> list[Server]:
    query = select(Server).where(Server.user_uuid == user()).order_by(Server.id)
    since = request.args.get("changes-since")
    if since:
        query = query.where(Server.updated >= _timestamp(since))
    else:
        query = query.where(~Server.deleted)
    if name := request.args.get("name"):
        query = query.where(Server.name == name)
    servers = list(db.session.scalars(query))
    if wanted := request.args.get("status"):
        servers = [s for s in servers if views.status(s) == wanted.upper()]
    return servers


def _timestamp(value: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, f"bad changes-since {value!r}: use ISO 8601") from None


@bp.get("/servers")
def list_servers() -> Response:
    return jsonify(servers=[views.server_brief(s, base()) for s in _listing()])


def _details(servers: list[Server]) -> list[dict[str, Any]]:
    attached = volumes_of(db.session, [s.id for s in servers])
    return [views.server_detail(s, base(), attached.get(s.id, [])) for s in servers]


@bp.get("/servers/detail")
def list_servers_detail() -> Response:
    return jsonify(servers=_details(_listing()))


@bp.post("/servers")
def create_server() -> tuple[Response, int]:
    create = requests.create_request(json_body())
    server, password = lifecycle.create(db.session, settings(), user(), create)
    shown = _details([server])[0] | {"adminPass": password}
    response = jsonify(server=shown)
    response.headers["Location"] = f"{base()}/servers/{server.id}"
    return response, 202


@bp.get("/servers/<server_id>")
def show_server(server_id: str) -> Response:
    return jsonify(server=_details([server_of(server_id)])[0])


@bp.put("/servers/<server_id>")
def rename_server(server_id: str) -> tuple[str, int]:
    server = server_of(server_id, deleted=False)
    body = json_body().get("server")
    if not isinstance(body, dict) or set(body) != {"name"}:
        raise ApiError(400, 'send {"server": {"name": "..."}}')
    server.name = requests.text(body["name"], "server.name")
    server.updated = time.time()
    db.session.commit()
    return "", 204


@bp.delete("/servers/<server_id>")
def delete_server(server_id: str) -> tuple[str, int]:
    lifecycle.destroy(db.session, settings(), server_of(server_id, deleted=False))
    return "", 204


ACTION_NAMES = {"start": "start", "os-start": "start", "shutdown": "stop", "os-stop": "stop",
                "reboot": "reboot", "resize": "resize"}  # fmt: skip


@bp.post("/servers/<server_id>/action")
def server_action(server_id: str) -> tuple[str | Response, int]:
    server = server_of(server_id, deleted=False)
    body = json_body()
    if len(body) != 1:
        raise ApiError(400, "send exactly one action")
    ((name, args),) = body.items()
    if name == "createImage":
        return create_image(server, args)
    action = ACTION_NAMES.get(name)
    if name == "console":
        return jsonify(console=consoles.console(db.session, settings(), server, args)), 200
    if name in ("rebuild", "changePassword"):
        raise ApiError(501, f"{name} is not supported", fault="notImplemented")
    if action is None:
        raise ApiError(400, f"unknown action {name!r}")
    session, config = db.session, settings()
    if action == "start":
        lifecycle.start(session, config, server)
    elif action == "stop":
        lifecycle.stop(session, config, server)
    elif action == "reboot":
        kind = (args or {}).get("type", "SOFT") if isinstance(args, dict | None) else None
        if kind not in ("SOFT", "HARD"):
            raise ApiError(400, 'reboot needs {"type": "SOFT"} or {"type": "HARD"}')
        lifecycle.reboot(session, config, server, hard=kind == "HARD")
    else:
        ref = args.get("flavorRef") if isinstance(args, dict) else None
        flavor = lifecycle.flavor_for_create(session, requests.flavor_ref(ref))
        lifecycle.resize(session, config, server, flavor)
    return "", 202


def create_image(server: Server, args: Any) -> tuple[Response, int]:
    """Snapshot the server's disk into a new image (OpenStack's createImage)."""
    if not isinstance(args, dict) or "name" not in args:
        raise ApiError(400, 'createImage needs {"name": ...}')
    name = requests.text(args["name"], "image name")
    metadata = requests.metadata(args.get("metadata", {}))
    image = snapshots.snapshot_server(db.session, settings(), pithos_store(), server, name,
                                      metadata)  # fmt: skip
    response = jsonify(image_id=str(image.id))
    response.headers["Location"] = f"{base()}/images/{image.id}"
    return response, 202


# --- metadata ------------------------------------------------------------------------------


@bp.get("/servers/<server_id>/metadata")
def get_metadata(server_id: str) -> Response:
    return jsonify(metadata=dict(server_of(server_id).meta))


@bp.route("/servers/<server_id>/metadata", methods=["POST", "PUT"])
def set_metadata(server_id: str) -> tuple[Response, int]:
    server = server_of(server_id, deleted=False)
    items = json_body().get("metadata")
    present = dict(server.meta) if request.method == "POST" else {}
    server.meta = requests.metadata(items, present=present)
    server.updated = time.time()
    db.session.commit()
    return jsonify(metadata=dict(server.meta)), 201


@bp.get("/servers/<server_id>/metadata/<key>")
def get_meta_item(server_id: str, key: str) -> Response:
    meta = server_of(server_id).meta
    if key not in meta:
        raise ApiError(404, f"no metadata item {key!r}")
    return jsonify(meta={key: meta[key]})


@bp.put("/servers/<server_id>/metadata/<key>")
def set_meta_item(server_id: str, key: str) -> tuple[Response, int]:
    server = server_of(server_id, deleted=False)
    item = json_body().get("meta")
    if not isinstance(item, dict) or list(item) != [key]:
        raise ApiError(400, f'send {{"meta": {{"{key}": "value"}}}}')
    server.meta = requests.metadata(item, present=dict(server.meta))
    server.updated = time.time()
    db.session.commit()
    return jsonify(meta=item), 201


@bp.delete("/servers/<server_id>/metadata/<key>")
def delete_meta_item(server_id: str, key: str) -> tuple[str, int]:
    server = server_of(server_id, deleted=False)
    if key not in server.meta:
        raise ApiError(404, f"no metadata item {key!r}")
    server.meta = {k: v for k, v in server.meta.items() if k != key}
    server.updated = time.time()
    db.session.commit()
    return "", 204


# --- flavors -------------------------------------------------------------------------------


def _flavors() -> list[Flavor]:
    user()
    query = select(Flavor).where(~Flavor.deleted).order_by(Flavor.id)
    return list(db.session.scalars(query))


@bp.get("/flavors")
def list_flavors() -> Response:
    return jsonify(flavors=[{"id": f.id, "name": f.name, "links": views.flavor_detail(f, base())
                             ["links"]} for f in _flavors()])  # fmt: skip


@bp.get("/flavors/detail")
def list_flavors_detail() -> Response:
    return jsonify(flavors=[views.flavor_detail(f, base()) for f in _flavors()])


@bp.get("/flavors/<flavor_id>")
def show_flavor(flavor_id: str) -> Response:
    user()
    flavor = db.session.get(Flavor, int(flavor_id)) if flavor_id.isdigit() else None
    if flavor is None:  # a deleted flavor stays readable: servers still point at it
        raise ApiError(404, f"flavor {flavor_id} not found")
    return jsonify(flavor=views.flavor_detail(flavor, base()))


def init_app(app: Flask) -> None:
    from ..volumes import api as volume_api
    from ..volumes import attachments_api  # noqa: F401 - its routes join the blueprint
    from . import events_api, images, quota_api  # noqa: F401 - images' routes join the blueprint

    quota_api.init_app(app)
    events_api.init_app(app)
    volume_api.init_app(app)

    for version in VERSIONS:
        prefix = f"/compute/{version}"
        app.register_blueprint(bp, url_prefix=prefix, name=f"compute_{version.replace('.', '_')}")
        app.add_url_rule(prefix, f"compute_{version.replace('.', '_')}_doc", version_document)
        app.add_url_rule(
            f"{prefix}/", f"compute_{version.replace('.', '_')}_doc_slash", version_document
        )
    app.add_url_rule("/compute", "compute_versions", versions_document)
    app.add_url_rule("/compute/", "compute_versions_slash", versions_document)
