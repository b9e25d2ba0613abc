"""What the end of a server's job means for its volumes (called by the server's
:func:`~snf.portal.compute.lifecycle.finish`, so events and the reconciler settle volumes
exactly as they settle servers).  Pure row updates: frozen maps a volume no longer needs
are dropped later by :mod:`.upkeep`, which has the store."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..compute import charges
from ..compute.models import Server
from .models import Volume

#: The server actions that are about one of its volumes (``args["volume"]``).
VOLUME_ACTIONS = ("ATTACH", "DETACH", "DELETE_VOLUME")
DISK = "cyclades.disk"
GiB = 1 << 30
#: Statuses in which a volume's own frozen map (``map_name``) still holds its data.
KEEPS_MAP = ("available", "attaching", "detaching", "creating")
DISK_ORDER = (Volume.root.desc(), Volume.attached.nulls_last(), Volume.id)


def of_server(session: Session, server_id: int) -> list[Volume]:
    """The volumes attached to a server, in disk order (the root first)."""
    query = select(Volume).where(Volume.server_id == server_id, ~Volume.deleted)
    return list(session.scalars(query.order_by(*DISK_ORDER)))


def volumes_of(session: Session, server_ids: list[int]) -> dict[int, list[int]]:
    """server id -> its volumes' ids in disk order, for many servers in one query."""
    out: dict[int, list[int]] = {}
    if not server_ids:
        return out
    query = select(Volume.server_id, Volume.id).where(
        Volume.server_id.in_(server_ids), ~Volume.deleted
    )
    for server_id, volume_id in session.execute(query.order_by(*DISK_ORDER)):
        out.setdefault(server_id, []).append(volume_id)
    return out


def charge_of(volume: Volume) -> dict[str, int]:
    return {DISK: volume.size * GiB}


def settle(
    session: Session, server: Server, action: str, args: dict[str, Any], ok: bool, reason: str
) -> None:
    now = time.time()
    if action == "CREATE":
        for volume in of_server(session, server.id):
            if volume.root and volume.status == "creating":
                volume.status, volume.updated = ("in-use" if ok else "error"), now
    elif action == "DESTROY" and ok:
        for volume in of_server(session, server.id):
            volume.status, volume.deleted, volume.updated = "deleted", True, now
    elif action in VOLUME_ACTIONS:
        volume = session.get(Volume, int(args["volume"]))
        if volume is not None:
            _volume_job(server, volume, action, args, ok, reason)
            volume.updated = now


def _volume_job(
    server: Server, volume: Volume, action: str, args: dict[str, Any], ok: bool, reason: str
) -> None:
    if not ok:
        volume.fault = {"message": f"{action.lower().replace('_', ' ')} failed: {reason}",
                        "created": time.time()}  # fmt: skip
    if action == "ATTACH":
        if ok:
            volume.status, volume.server_id, volume.attached = "in-use", server.id, time.time()
            if args.get("reattach"):  # its quota moves from the volume to the server
                volume.charges = {}
                server.charges = charges.add(server.charges, charge_of(volume))
        elif args.get("reattach"):
            volume.status, volume.server_id = "available", None
        else:
            volume.status, volume.server_id = "error", None
    elif action == "DETACH":
        if ok:
            volume.status, volume.server_id, volume.attached = "available", None, None
            volume.charges = charge_of(volume)
            server.charges = charges.add(server.charges, {DISK: -volume.size * GiB})
        else:
            volume.status = "in-use"
    elif action == "DELETE_VOLUME":
        if ok:
            volume.status, volume.deleted = "deleted", True
        else:
            volume.status = "in-use"
