"""Volumes, snapshots, volume types and attachments as the volume API shows them (Cinder's
v2/v3 shape, with the v1 ``display_*`` names kamaki reads); pure functions of rows."""

from __future__ import annotations

from typing import Any

from ..compute.views import iso
from .models import Snapshot, Volume

#: The one volume type: every extra volume is an archipelago disk.
VOLUME_TYPES = {"archipelago": "ext_archipelago"}
TYPE_OF = {template: ident for ident, template in VOLUME_TYPES.items()}


def device(index: int) -> str:
    return f"/dev/vd{chr(ord('a') + index)}" if index < 26 else f"/dev/vd{index}"


def attachment(volume: Volume, index: int) -> dict[str, Any]:
    """A volume as attached to its server (Nova's volumeAttachment; its id is the volume's)."""
    return {"id": str(volume.id), "volumeId": str(volume.id), "serverId": volume.server_id,
            "device": device(index)}  # fmt: skip


def _links(base: str, kind: str, ident: object) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{base}/{kind}/{ident}"}]


def volume_brief(volume: Volume, base: str) -> dict[str, Any]:
    return {"id": str(volume.id), "name": volume.name, "display_name": volume.name,
            "links": _links(base, "volumes", volume.id)}  # fmt: skip


def volume_detail(
    volume: Volume, base: str, index: int | None, *, synnefo: bool = False
) -> dict[str, Any]:
    """``index``: its place among the server's disks, when attached.  ``synnefo``: spell
    the statuses as Synnefo (and kamaki) do (``in_use``), not as Cinder (``in-use``)."""
    attachments = []
    if volume.server_id is not None and index is not None:
        attachments.append({"server_id": str(volume.server_id), "id": str(volume.id),
                            "attachment_id": str(volume.id), "volume_id": str(volume.id),
                            "device": device(index)})  # fmt: skip
    out = {
        **volume_brief(volume, base),
        "description": volume.description,
        "display_description": volume.description,
        "status": volume.status.replace("-", "_") if synnefo else volume.status,
        "size": volume.size,
        "volume_type": "archipelago"
        if volume.volume_type == "ext_archipelago"
        else volume.volume_type,
        "SNF:disk_template": volume.volume_type,
        "bootable": "true" if volume.root or volume.image_id else "false",
        "attachments": attachments,
        "server_id": str(volume.server_id) if volume.server_id is not None else None,
        "user_id": str(volume.user_uuid),
        "tenant_id": str(volume.project),
        "os-vol-tenant-attr:tenant_id": str(volume.project),
        "availability_zone": "nova",
        "created_at": iso(volume.created),
        "updated_at": iso(volume.updated),
        "imageRef": volume.image_id,
        "snapshot_id": str(volume.snapshot_id) if volume.snapshot_id else None,
        "source_volid": str(volume.source_volume_id) if volume.source_volume_id else None,
        "delete_on_termination": volume.root,
        "encrypted": False,
        "multiattach": False,
        "metadata": dict(volume.meta),
        "deleted": volume.deleted,
    }
    if volume.fault and volume.status == "error":
        out["fault"] = volume.fault.get("message", "")
    return out


def snapshot_detail(snap: Snapshot, base: str, location: str | None) -> dict[str, Any]:
    """``location``: the snapshot's file (``pithos://...``), once it is written."""
    out = {
        "id": str(snap.id),
        "name": snap.name,
        "display_name": snap.name,
        "description": snap.description,
        "display_description": snap.description,
        "volume_id": str(snap.volume_id),
        "status": snap.status,
        "size": snap.size,
        "created_at": iso(snap.created),
        "updated_at": iso(snap.updated),
        "metadata": dict(snap.meta),
        "progress": "100%" if snap.status == "available" else "0%",
        "os-extended-snapshot-attributes:progress": "100%" if snap.status == "available" else "0%",
        "SNF:location": location,
        "links": _links(base, "snapshots", snap.id),
    }
    if snap.fault and snap.status == "error":
        out["fault"] = snap.fault
    return out


def volume_type(ident: str, template: str) -> dict[str, Any]:
    return {"id": ident, "name": ident, "description": f"{template} disks",
            "is_public": True, "extra_specs": {"SNF:disk_template": template},
            "SNF:disk_template": template, "deleted": False}  # fmt: skip
