"""The compute API's view of the image service (``/compute/v2.0/images``), which kamaki
reads before creating a server: the images the caller may boot, with their properties as
metadata.  Registration and changes go through the image API (:mod:`snf.portal.images`)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ..extensions import db
from ..images import registry
from ..images.models import Image
from .api import base, bp, user
from .views import iso


def image_detail(image: Image, root: str) -> dict[str, Any]:
    link = f"{root}/images/{image.id}"
    return {
        "id": str(image.id),
        "name": image.name,
        "status": "ACTIVE" if image.status == "AVAILABLE" else image.status,
        "progress": 100,
        "created": iso(image.created),
        "updated": iso(image.updated),
        "user_id": str(image.owner),
        "tenant_id": str(image.owner),
        "is_public": image.is_public,
        "minDisk": 0,
        "minRam": 0,
        "metadata": {str(k): str(v) for k, v in image.properties.items()},
        "links": [{"rel": "self", "href": link}, {"rel": "bookmark", "href": link}],
    }


def _images() -> list[Image]:
    return registry.list_images(db.session, user(), registry.Filters(sort_key="name",
                                                                     sort_dir="asc"))  # fmt: skip


@bp.get("/images")
def list_images() -> Response:
    root = base()
    return jsonify(images=[{k: v for k, v in image_detail(i, root).items()
                            if k in ("id", "name", "links")} for i in _images()])  # fmt: skip


@bp.get("/images/detail")
def list_images_detail() -> Response:
    root = base()
    return jsonify(images=[image_detail(i, root) for i in _images()])


@bp.get("/images/<image_id>")
def show_image(image_id: str) -> Response:
    return jsonify(image=image_detail(registry.visible(db.session, image_id, user()), base()))


@bp.get("/images/<image_id>/metadata")
def image_metadata(image_id: str) -> Response:
    image = registry.visible(db.session, image_id, user())
    return jsonify(metadata=image_detail(image, base())["metadata"])
