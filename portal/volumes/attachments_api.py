"""``/compute/v2.0/servers/<id>/os-volume_attachments``: Nova's (and kamaki's) way to list,
attach and detach a server's volumes.  An attachment's id is its volume's id."""

from __future__ import annotations

from flask import Response, jsonify

from ..compute.api import bp, server_of, settings
from ..errors import ApiError
from ..extensions import db
from ..jsonapi import json_body
from ..pithos.api import store
from . import actions, rows, views
from .api import volume_of


def _attached(server_id: int) -> list[dict]:
    volumes = rows.of_server(db.session, server_id)
    return [views.attachment(v, i) for i, v in enumerate(volumes) if v.status != "creating"]


@bp.get("/servers/<server_id>/os-volume_attachments")
def list_attachments(server_id: str) -> Response:
    return jsonify(volumeAttachments=_attached(server_of(server_id).id))


@bp.get("/servers/<server_id>/os-volume_attachments/<volume_id>")
def show_attachment(server_id: str, volume_id: str) -> Response:
    server = server_of(server_id)
    found = [a for a in _attached(server.id) if a["volumeId"] == volume_id]
    if not found:
        raise ApiError(404, f"volume {volume_id} is not attached to server {server_id}")
    return jsonify(volumeAttachment=found[0])


@bp.post("/servers/<server_id>/os-volume_attachments")
def attach(server_id: str) -> tuple[Response, int]:
    server = server_of(server_id, deleted=False)
    body = json_body().get("volumeAttachment")
    if not isinstance(body, dict) or "volumeId" not in body:
        raise ApiError(400, 'send {"volumeAttachment": {"volumeId": "..."}}')
    volume = volume_of(body["volumeId"])
    actions.attach(db.session, settings(), server, volume)
    index = len(rows.of_server(db.session, server.id)) - 1
    return jsonify(volumeAttachment=views.attachment(volume, index)), 202


@bp.delete("/servers/<server_id>/os-volume_attachments/<volume_id>")
def detach(server_id: str, volume_id: str) -> tuple[str, int]:
    server = server_of(server_id, deleted=False)
    volume = volume_of(volume_id)
    if volume.server_id != server.id:
        raise ApiError(404, f"volume {volume_id} is not attached to server {server_id}")
    actions.detach(db.session, settings(), store(), server, volume)
    return "", 202
