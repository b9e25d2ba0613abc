"""A read-only Glance v2 subset (``/image/v2``) for ``openstack image list/show``, and the
version discovery document at ``/image`` that openstacksdk reads from the catalog URL.

Images are Plankton's, seen with Glance's names: ``active`` for AVAILABLE, ``visibility``
public, shared (it has members) or private, the Merkle top hash as ``checksum``, and the
properties as extra top-level keys (never shadowing Glance's own).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import ApiError
from ..extensions import db
from . import registry
from .models import Image
from .plankton import caller, iso_time

bp = Blueprint("glance", __name__, url_prefix="/image/v2")

STATUS = {"AVAILABLE": "active", "UNAVAILABLE": "queued", "ERROR": "killed"}
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


def versions() -> Response:
    base = current_app.config["SNF"].portal.base_url.rstrip("/")
    link = {"rel": "self", "href": f"{base}/image/v2/"}
    return jsonify({"versions": [{"id": "v2.16", "status": "CURRENT", "links": [link]}]})


def image_body(image: Image, shared: bool) -> dict[str, Any]:
    visibility = "public" if image.is_public else "shared" if shared else "private"
    body: dict[str, Any] = {
        "id": str(image.id),
        "name": image.name,
        "status": STATUS.get(image.status, "killed"),
        "visibility": visibility,
        "protected": False,
        "os_hidden": False,
        "checksum": image.checksum,
        "size": image.size,
        "virtual_size": None,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "min_disk": 0,
        "min_ram": 0,
        "owner": str(image.owner),
        "tags": [],
        "created_at": iso_time(image.created),
        "updated_at": iso_time(image.updated),
        "self": f"/v2/images/{image.id}",
        "file": f"/v2/images/{image.id}/file",
        "schema": "/v2/schemas/image",
    }
    for key, value in (image.properties or {}).items():
        body.setdefault(key, value)
    return body


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {raw!r}") from None
    if value < 0:
        raise ApiError(400, "limit must not be negative")
    return min(value, MAX_LIMIT)


def _wanted_ids() -> set[str] | None:
    raw = request.args.get("id")
    if raw is None:
        return None
    return {part.strip() for part in raw.removeprefix("in:").split(",") if part.strip()}


@bp.get("/images")
def list_images() -> Response:
    user = caller()
    args = request.args
    limit = _limit()
    found = registry.list_images(
        db.session,
        user,
        registry.Filters(name=args.get("name"), sort_key="id", sort_dir="asc"),
    )
    wanted = _wanted_ids()
    if wanted is not None:
        found = [i for i in found if str(i.id) in wanted]
    shared = registry.has_members(db.session, (i.id for i in found))
    bodies = [image_body(i, i.id in shared) for i in found]
    for key in ("visibility", "status", "owner"):
        if key in args:
            bodies = [b for b in bodies if b[key] == args[key]]
    marker = args.get("marker")
    if marker:
        bodies = [b for b in bodies if b["id"] > marker]
    page = bodies[:limit]
    reply: dict[str, Any] = {"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"}
    if len(bodies) > limit and page:
        query = {k: v for k, v in args.items() if k not in ("marker", "limit")}
        query.update(marker=page[-1]["id"], limit=str(limit))
        reply["next"] = f"/v2/images?{urlencode(query)}"
    return jsonify(reply)


@bp.get("/images/<image_id>")
def show_image(image_id: str) -> Response:
    # a name or a malformed id is "not found": openstack then lists by name
    image = registry.visible(db.session, image_id, caller())
    shared = bool(registry.has_members(db.session, [image.id]))
    return jsonify(image_body(image, shared))
