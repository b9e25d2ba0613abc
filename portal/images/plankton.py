"""Plankton, Synnefo's image API (``/image/v1.0``), what kamaki's ``image`` commands call.

An image travels in ``X-Image-Meta-<field>`` headers (register, update, HEAD) with its
properties as ``X-Image-Meta-Property-<KEY>``; the name and the properties are URL-quoted
on the wire (kamaki quotes them and unquotes the answer).  Listings are JSON lists.
Property keys are kept upper-case (``OSFAMILY``, ``ROOT_PARTITION``: what snf-image reads),
whatever case a header arrived in.
"""

from __future__ import annotations

import string
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..extensions import db
from ..jsonapi import json_body, principal
from ..pithos.names import header_text
from . import registry
from .models import Image

bp = Blueprint("plankton", __name__, url_prefix="/image/v1.0")

META = "x-image-meta-"
PROPERTY = "x-image-meta-property-"
LIST_FIELDS = ("status", "name", "disk_format", "container_format", "size", "id")
DETAIL_FIELDS = ("name", "disk_format", "container_format", "size", "checksum", "location",
                 "created_at", "updated_at", "deleted_at", "status", "is_public", "owner",
                 "properties", "id")  # fmt: skip
ADD_FIELDS = {"name", "location", "id", "store", "disk_format", "container_format", "size",
              "checksum", "is_public", "owner"}  # fmt: skip
UPDATE_FIELDS = {"name", "disk_format", "container_format", "is_public", "owner", "status"}


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_dict(image: Image, fields: tuple[str, ...] = DETAIL_FIELDS) -> dict[str, Any]:
    full = {
        "id": str(image.id),
        "name": image.name,
        "status": image.status,
        "location": image.location,
        "checksum": image.checksum,
        "size": image.size,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "is_public": image.is_public,
        "owner": str(image.owner),
        "created_at": iso_time(image.created),
        "updated_at": iso_time(image.updated),
        "deleted_at": "",
        "properties": dict(image.properties or {}),
    }
    return {key: full[key] for key in fields}


def image_headers(image: Image) -> list[tuple[str, str]]:
    """The image as Plankton's ``X-Image-Meta-*`` headers (name and properties quoted)."""
    headers = []
    for key, value in image_dict(image).items():
        if key == "properties":
            for pkey, pval in value.items():
                name = quote(f"X-Image-Meta-Property-{pkey.replace('_', '-')}")
                headers.append((name, quote(str(pval))))
            continue
        if key == "name":
            value = quote(value)
        elif isinstance(value, bool):
            value = str(value)
        headers.append((f"X-Image-Meta-{key.replace('_', '-').title()}", str(value)))
    return headers


def _key(text: str) -> str:
    return "".join("_" if c in string.punctuation else c for c in text)


def _unquote(text: str, header: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, f"the {header} header is not quoted UTF-8") from None


def meta_from_headers() -> tuple[dict[str, str], dict[str, str]]:
    """The request's ``X-Image-Meta-*`` headers: (fields by lower-case name, properties by
    upper-case key); the name and the properties unquoted."""
    params: dict[str, str] = {}
    properties: dict[str, str] = {}
    for header, raw in request.headers.items():
        lower = header.lower()
        if not lower.startswith(META):
            continue
        value = header_text(raw, header).strip()
        if lower.startswith(PROPERTY):
            key = _key(_unquote(header[len(PROPERTY) :], header)).upper()
            if not key:
                raise ApiError(400, "a property needs a key: X-Image-Meta-Property-<KEY>")
            properties[key] = _unquote(value, header)
            continue
        key = _key(lower[len(META) :])
        params[key] = _unquote(value, header) if key == "name" else value
    return params, properties


def _flag(value: str) -> bool:
    return value.lower() == "true"


def _size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise ApiError(400, f"invalid size {value!r}: give a number of bytes") from None
    if size < 0:
        raise ApiError(400, "the size must not be negative")
    return size


def _check_fields(given: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ApiError(400, f"invalid image metadata: {', '.join(unknown)}")
    if "id" in given:
        raise ApiError(400, "setting the image id is not supported: it is the object's UUID")
    if given.get("store", "pithos") != "pithos":
        raise ApiError(400, f"invalid store {given['store']!r}: only pithos is supported")


def caller() -> uuid.UUID:
    """The calling user's UUID (403 for a service token)."""
    who = principal()
    if who.user is None:
        raise ApiError(403, "this call needs a user's token")
    return who.user.uuid


def _image_response(image: Image) -> Response:
    response = jsonify({"image": image_dict(image)})
    response.headers.extend(image_headers(image))
    return response


# --- images --------------------------------------------------------------------------------


@bp.get("/images")
@bp.get("/images/")
def list_images() -> Response:
    return _listing(LIST_FIELDS)


@bp.get("/images/detail")
def list_details() -> Response:
    return _listing(DETAIL_FIELDS)


def _listing(fields: tuple[str, ...]) -> Response:
    user = caller()
    args = request.args
    filters = registry.Filters(
        name=args.get("name"),
        disk_format=args.get("disk_format"),
        container_format=args.get("container_format"),
        status=args.get("status"),
        size_min=_size(args["size_min"]) if "size_min" in args else None,
        size_max=_size(args["size_max"]) if "size_max" in args else None,
        sort_key=args.get("sort_key", "created_at"),
        sort_dir=args.get("sort_dir", "desc"),
    )
    images = registry.list_images(db.session, user, filters)
    return jsonify([image_dict(i, fields) for i in images])


@bp.post("/images")
@bp.post("/images/")
def register() -> Response:
    user = caller()
    params, properties = meta_from_headers()
    _check_fields(params, ADD_FIELDS)
    if not params.get("name"):
        raise ApiError(400, "X-Image-Meta-Name is required")
    if not params.get("location"):
        raise ApiError(400, "X-Image-Meta-Location is required")
    reg = registry.Registration(
        name=params["name"],
        location=params["location"],
        disk_format=params.get("disk_format"),
        container_format=params.get("container_format"),
        is_public=_flag(params.get("is_public", "false")),
        size=_size(params["size"]) if "size" in params else None,
        checksum=params.get("checksum"),
        properties=properties,
    )
    try:
        image = registry.register(db.session, user, reg)
        db.session.commit()
    except IntegrityError:  # registered at the same moment by another request: update it
        db.session.rollback()
        image = registry.register(db.session, user, reg)
        db.session.commit()
    return _image_response(image)


@bp.route("/images/<image_id>", methods=["GET", "HEAD"])
def image_meta(image_id: str) -> Response:
    image = registry.visible(db.session, image_id, caller())
    if request.method == "GET":  # Plankton serves no image data: the file is in Pithos
        raise ApiError(501, "GET an image's data from the object store (its location)")
    return Response(status=200, headers=image_headers(image))


@bp.put("/images/<image_id>")
def update(image_id: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    params, properties = meta_from_headers()
    _check_fields(params, UPDATE_FIELDS)
    changes: dict[str, Any] = dict(params)
    if "is_public" in params:
        changes["is_public"] = _flag(params["is_public"])
    changes["properties"] = properties
    registry.update(db.session, image, changes)
    db.session.commit()
    return _image_response(image)


@bp.delete("/images/<image_id>")
def unregister(image_id: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    registry.unregister(db.session, image)
    db.session.commit()
    return Response(status=204)


# --- members -------------------------------------------------------------------------------


@bp.get("/images/<image_id>/members")
def list_members(image_id: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    found = registry.members(db.session, image)
    return jsonify({"members": [{"member_id": str(m), "can_share": False} for m in found]})


@bp.put("/images/<image_id>/members")
def replace_members(image_id: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    memberships = json_body().get("memberships")
    if not isinstance(memberships, list):
        raise ApiError(400, 'the body must be {"memberships": [{"member_id": <uuid>}, ...]}')
    given = []
    for item in memberships:
        member = item.get("member_id") if isinstance(item, dict) else None
        if not isinstance(member, str):
            raise ApiError(400, 'each membership must be {"member_id": <user\'s uuid>}')
        given.append(member)
    registry.replace_members(db.session, image, given)
    db.session.commit()
    return Response(status=204)


@bp.put("/images/<image_id>/members/<member>")
def add_member(image_id: str, member: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    registry.add_member(db.session, image, member)
    db.session.commit()
    return Response(status=204)


@bp.delete("/images/<image_id>/members/<member>")
def remove_member(image_id: str, member: str) -> Response:
    image = registry.owned(db.session, image_id, caller())
    registry.remove_member(db.session, image, member)
    db.session.commit()
    return Response(status=204)


@bp.get("/shared-images/<member>")
def shared_images(member: str) -> Response:
    """The images ``member`` shares with the caller (Synnefo's reading of Glance v1)."""
    user = caller()
    owner = registry.parse_id(member)
    if owner is None:
        raise ApiError(400, f"invalid user {member!r}: give a user's UUID")
    found = registry.shared_by(db.session, owner, user)
    return jsonify({"shared_images": [{"image_id": str(i.id), "can_share": False} for i in found]})
