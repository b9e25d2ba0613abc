"""Public objects: ``GET|HEAD /public/<token>`` serves an object its owner published
(X-Object-Public: true), without a token.  Unpublishing invalidates the URL."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import select

from ..extensions import db
from . import objects
from .errors import ItemNotFound
from .models import Container, Object

bp = Blueprint("pithos_public", __name__, url_prefix="/public")


@bp.route("/<token>", methods=["GET", "HEAD"])
def public_object(token: str) -> Response:
    from .api_objects import serve_version

    obj = db.session.scalars(select(Object).where(Object.public_token == token)).first()
    if obj is None or obj.version_id is None:
        raise ItemNotFound("no public object has this URL")
    container = db.session.get(Container, obj.container_id)
    assert container is not None
    return serve_version(container, obj, objects.current(db.session, obj), public=True)
