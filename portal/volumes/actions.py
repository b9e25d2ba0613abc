"""Creating, attaching, detaching and deleting volumes: each one a server action (a quota
commission and one ``OP_INSTANCE_SET_PARAMS`` job adding or removing an archipelago disk),
so that a server has one job in flight at a time and events and the reconciler finish
volume jobs as they finish every other (:mod:`.rows`).

- **create**: a new disk on the server, blank or a thin clone (O(map)) of an image, a
  snapshot or another volume; charges ``cyclades.disk``.
- **detach** (the server stopped): the disk is frozen into the volume's own map (O(map)),
  then removed from the instance; the volume keeps its data and its quota.
- **attach**: a new disk cloned from the detached volume's map; its quota moves back to the
  server.
- **delete**: an attached volume's disk is removed (the server stopped; releases its quota);
  a detached one's map is dropped at once.  A root volume goes with its server.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from snf.archipelago import volumes as archipelago
from snf.archipelago.store import Store
from snf.common.config import ComputeConfig
from snf.quota import engine as quota

from ..compute import charges, lifecycle
from ..compute.models import Flavor, Server
from ..errors import ApiError
from ..images.registry import image_for_server
from ..pithos.models import Version
from . import disks, rows
from .models import Snapshot, Volume

log = logging.getLogger(__name__)
GiB = 1 << 30


@dataclass
class NewVolume:
    size: int
    server: Server | None = None
    project: uuid.UUID | None = None
    name: str = ""
    description: str = ""
    image_id: str | None = None
    snapshot: Snapshot | None = None
    source: Volume | None = None
    meta: dict[str, str] | None = None


def _attachable(session: Session, server: Server) -> None:
    lifecycle.not_busy(server)
    if server.deleted or server.operstate not in ("STARTED", "STOPPED"):
        raise ApiError(409, f"cannot change the disks of server {server.id} while it is "
                       f"{'DELETED' if server.deleted else server.operstate}")  # fmt: skip
    flavor = session.get_one(Flavor, server.flavor_id)
    if flavor.disk_template != disks.ARCHIPELAGO:
        raise ApiError(409, f"server {server.id} has {flavor.disk_template} disks: volumes "
                       "attach to servers on archipelago disks only")  # fmt: skip


def _add_disk(server: Server, volume: Volume) -> Any:
    """A new disk on the server: a thin clone of the volume's own map."""
    disk = {"size": volume.size * 1024, "provider": "archipelago", "name": volume.disk_name,
            "origin": volume.map_name}  # fmt: skip
    return lambda rapi: rapi.modify_instance(
        server.instance_name, disks=[["add", -1, disk]], hotplug_if_possible=True
    )


def _remove_disk(server: Server, volume: Volume) -> Any:
    return lambda rapi: rapi.modify_instance(
        server.instance_name, disks=[["remove", volume.disk_name, {}]]
    )


def _submit(session: Session, config: ComputeConfig, server: Server, volume: Volume,
            call: Any, on_refusal: str) -> None:  # fmt: skip
    try:
        lifecycle.submit(session, config, server, call)
    except ApiError:
        volume.status, volume.updated = on_refusal, time.time()
        if on_refusal != "in-use":
            volume.server_id, volume.deleted = None, on_refusal == "deleted"
        session.commit()
        raise


def _fill(session: Session, config: ComputeConfig, store: Store, user: uuid.UUID,
          new: NewVolume, volume: Volume) -> None:  # fmt: skip
    """Make the new volume's own map (O(map)): a copy of the image's or the snapshot's, a
    frozen copy of the source volume, or zeros."""
    name = volume.map_name
    assert name is not None
    if new.image_id is not None:
        image = image_for_server(session, new.image_id, user)
        _fits(new.size, image.size, f"image {image.id}")
        archipelago.copy_map(store, image.map_name, name, meta={"kind": "snapshot"})
    elif new.snapshot is not None:
        version = session.get(Version, new.snapshot.version_id or 0)
        if new.snapshot.status != "available" or version is None:
            raise ApiError(409, f"snapshot {new.snapshot.id} is {new.snapshot.status}")
        _fits(new.size, version.size, f"snapshot {new.snapshot.id}")
        archipelago.copy_map(store, version.map_name, name, meta={"kind": "snapshot"})
    elif new.source is not None:
        _fits(new.size, new.source.size * GiB, f"volume {new.source.id}")
        disks.freeze(session, config, store, new.source, name)
    else:
        archipelago.create_zero_map(store, name, new.size * GiB)


def _fits(size_gib: int, source_bytes: int, what: str) -> None:
    if size_gib * GiB < source_bytes:
        need = math.ceil(source_bytes / GiB)
        raise ApiError(400, f"a volume from {what} needs at least {need} GiB, not {size_gib}")


def create(session: Session, config: ComputeConfig, store: Store, user: uuid.UUID,
           new: NewVolume) -> Volume:  # fmt: skip
    """A new volume: on its own (``available`` at once), or added to ``new.server``."""
    server = new.server
    if server is not None:
        _attachable(session, server)
    now = time.time()
    project = server.project if server is not None else new.project or user
    volume = Volume(user_uuid=user, project=project, name=new.name, size=new.size,
                    description=new.description, status="creating", image_id=new.image_id,
                    snapshot_id=new.snapshot.id if new.snapshot else None,
                    source_volume_id=new.source.id if new.source else None,
                    map_name=disks.new_map_name("volume"), meta=new.meta or {}, created=now,
                    updated=now)  # fmt: skip
    session.add(volume)
    session.flush()
    if server is None:
        serial = charges.issue(session, volume, rows.charge_of(volume),
                               name=f"volume {volume.id} create")  # fmt: skip
        _fill(session, config, store, user, new, volume)
        if serial is not None:
            quota.accept(session, serial, service=charges.SERVICE)
        volume.status, volume.charges = "available", rows.charge_of(volume)
        session.commit()
        log.info("volume %s (%d GiB) for %s created", volume.id, volume.size, user)
        return volume
    _fill(session, config, store, user, new, volume)
    try:
        lifecycle.begin(session, server, "ATTACH", rows.charge_of(volume), volume=volume.id)
    except ApiError:
        disks.drop_map(store, volume.map_name)
        raise
    volume.server_id = server.id
    session.commit()
    _submit(session, config, server, volume, _add_disk(server, volume), "deleted")
    log.info("volume %s (%d GiB) for %s: create on server %s, job %s", volume.id, volume.size,
             user, server.id, server.job_id)  # fmt: skip
    return volume


def attach(session: Session, config: ComputeConfig, server: Server, volume: Volume) -> None:
    if volume.status != "available":
        raise ApiError(409, f"volume {volume.id} is {volume.status}, not available")
    _attachable(session, server)
    lifecycle.begin(session, server, "ATTACH", {}, volume=volume.id, reattach=True)
    volume.status, volume.server_id, volume.updated = "attaching", server.id, time.time()
    session.commit()
    _submit(session, config, server, volume, _add_disk(server, volume),
            "available")  # fmt: skip


def _detachable(session: Session, server: Server, volume: Volume, what: str) -> None:
    if volume.root:
        raise ApiError(409, f"volume {volume.id} is server {server.id}'s root volume: "
                       f"it goes with the server")  # fmt: skip
    if volume.status != "in-use" or volume.server_id != server.id:
        raise ApiError(409, f"volume {volume.id} is {volume.status}, not in use by server "
                       f"{server.id}")  # fmt: skip
    _attachable(session, server)
    lifecycle.require(server, "STOPPED", f"{what} a volume of")


def detach(session: Session, config: ComputeConfig, store: Store, server: Server,
           volume: Volume) -> None:  # fmt: skip
    _detachable(session, server, volume, "detach")
    lifecycle.begin(session, server, "DETACH", {}, volume=volume.id)
    disks.drop_map(store, volume.map_name)  # left from its last attach
    volume.map_name, volume.status = disks.new_map_name("volume"), "detaching"
    try:
        disks.freeze(session, config, store, volume, volume.map_name)
    except ApiError:
        volume.status = "in-use"
        lifecycle.fail_submit(session, server, RuntimeError("its disk could not be frozen"))
        raise
    session.commit()
    _submit(session, config, server, volume, _remove_disk(server, volume), "in-use")


def delete(session: Session, config: ComputeConfig, store: Store, volume: Volume) -> None:
    if volume.status in ("creating", "attaching", "detaching", "deleting"):
        raise ApiError(409, f"volume {volume.id} is busy ({volume.status})")
    if volume.server_id is not None and volume.status == "in-use":
        server = session.get_one(Server, volume.server_id)
        _detachable(session, server, volume, "delete")
        release = {key: -value for key, value in rows.charge_of(volume).items()}
        lifecycle.begin(session, server, "DELETE_VOLUME", release, volume=volume.id)
        volume.status = "deleting"
        session.commit()
        _submit(session, config, server, volume, _remove_disk(server, volume), "in-use")
        return
    serial = charges.issue(session, volume, {k: -v for k, v in volume.charges.items()},
                           name=f"volume {volume.id} delete")  # fmt: skip
    disks.drop_map(store, volume.map_name)
    if serial is not None:
        quota.accept(session, serial, service=charges.SERVICE)
    volume.charges, volume.map_name = {}, None
    volume.status, volume.deleted, volume.updated = "deleted", True, time.time()
    session.commit()
    log.info("volume %s deleted (it was detached)", volume.id)
