"""Where a volume's data is, and freezing it into a read-only map (O(map)).

An attached volume is a Ganeti disk (named ``vol-<id>``; a root volume of a server made
before disks had names is disk 0) whose archipelago volume the provider indexed by Ganeti's
disk UUID.  A detached volume is its frozen map.  Freezing an attached volume goes through
the volume daemon that holds it when the server runs (live), or directly under its lock.
"""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy.orm import Session

from snf.archipelago import volumes as archipelago
from snf.archipelago.store import Store
from snf.common.config import ComputeConfig
from snf.common.errors import Conflict, NotFound

from ..compute import backends
from ..compute.models import Server
from ..errors import ApiError
from .models import Volume

ARCHIPELAGO = "ext_archipelago"


def new_map_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def disk_uuid(session: Session, config: ComputeConfig, server: Server, volume: Volume) -> str:
    """Ganeti's UUID of the disk behind an attached volume (one RAPI read)."""
    info = backends.ask(session, config, server, lambda rapi: rapi.instance(server.instance_name))
    names = info.get("disk.names") or []
    uuids = [str(u) for u in info.get("disk.uuids") or []]
    for name, found in zip(names, uuids, strict=False):
        if name == volume.disk_name:
            return found
    if volume.root and uuids:
        return uuids[0]
    raise ApiError(409, f"volume {volume.id} is not among server {server.id}'s disks")


def archipelago_volume(
    session: Session, config: ComputeConfig, store: Store, server: Server, volume: Volume
) -> str:
    """The archipelago volume behind an attached volume."""
    if volume.volume_type != ARCHIPELAGO:
        raise ApiError(409, f"volume {volume.id} is a {volume.volume_type} disk: only "
                       "archipelago volumes can be snapshotted or detached")  # fmt: skip
    found = archipelago.lookup_disk(store, disk_uuid(session, config, server, volume))
    if found is None:
        raise ApiError(409, f"volume {volume.id} has no archipelago volume behind it")
    return str(found["volume"])


def freeze(
    session: Session, config: ComputeConfig, store: Store, volume: Volume, name: str
) -> None:
    """Freeze ``volume``'s current data into the read-only map ``name`` (O(map))."""
    try:
        if volume.server_id is None:
            if not volume.map_name:
                raise ApiError(409, f"volume {volume.id} has no data (status {volume.status})")
            archipelago.copy_map(store, volume.map_name, name, meta={"kind": "snapshot"})
            return
        server = session.get_one(Server, volume.server_id)
        source = archipelago_volume(session, config, store, server, volume)
        archipelago.snapshot_volume(store, source, name, meta={"volume": volume.id})
    except Conflict as exc:
        raise ApiError(409, f"cannot freeze volume {volume.id} now: {exc}") from None
    except NotFound as exc:
        raise ApiError(409, f"volume {volume.id}'s data is missing: {exc}") from None


def drop_map(store: Store, name: str | None) -> None:
    """Remove a frozen map the portal made (already gone is fine)."""
    if name:
        with contextlib.suppress(NotFound):
            archipelago.remove_map(store, name)
