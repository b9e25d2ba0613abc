"""A server's disk, snapshotted while it runs, becomes an object-store file and an image.

The root disk is an archipelago volume (``ext_archipelago`` flavors; others cannot be
snapshotted without copying, and are refused).  The volume is frozen into a read-only map
(O(map): live, through the volume daemon that holds it, or directly under its lock), the
blocks the server wrote since its clone are hashed into content blocks (the only data
read), and the result becomes a new file in the owner's ``snapshots`` container, charged to
``pithos.diskspace`` like any upload, registered as a private image that carries the source
image's properties.  The frozen map is removed: the file's version has its own map.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy.orm import Session

from snf.archipelago import volumes
from snf.archipelago.store import Store
from snf.common.config import ComputeConfig
from snf.common.errors import Conflict, RapiError

from ..errors import ApiError
from ..images import registry
from ..images.models import Image
from ..pithos import containers, objects
from ..pithos.errors import ItemNotFound
from . import backends
from .models import Backend, Server

log = logging.getLogger(__name__)
CONTAINER = "snapshots"


def _disk_uuid(config: ComputeConfig, backend: Backend, server: Server) -> str:
    try:
        with backends.client(backend, config) as rapi:
            uuids = rapi.instance(server.instance_name).get("disk.uuids") or []
    except RapiError as exc:
        raise ApiError(503, f"cannot reach the server's cluster: {exc}",
                       fault="serviceUnavailable") from None  # fmt: skip
    if not uuids:
        raise ApiError(409, f"server {server.id} has no disk")
    return str(uuids[0])


def _container(session: Session, owner: uuid.UUID) -> Any:
    try:
        return containers.get(session, owner, CONTAINER)
    except ItemNotFound:
        return containers.create(session, owner, CONTAINER, versioning="auto")


def snapshot_server(
    session: Session,
    config: ComputeConfig,
    store: Store,
    server: Server,
    name: str,
    metadata: dict[str, str],
) -> Image:
    """Snapshot ``server``'s root disk into a registered image; commits."""
    if server.deleted or server.operstate not in ("STARTED", "STOPPED"):
        raise ApiError(409, f"cannot snapshot server {server.id} while it is {server.operstate}")
    backend = session.get(Backend, server.backend_id) if server.backend_id else None
    if backend is None:
        raise ApiError(409, f"server {server.id} has no backend")
    found = volumes.lookup_disk(store, _disk_uuid(config, backend, server))
    if found is None:
        raise ApiError(409, "only servers on archipelago volumes can be snapshotted")
    t0 = time.monotonic()
    frozen = f"snap-{uuid.uuid4().hex}"
    try:
        volumes.snapshot_volume(store, found["volume"], frozen)
    except Conflict as exc:
        raise ApiError(409, f"cannot snapshot the disk now: {exc}") from None
    try:
        volumes.hash_snapshot(store, frozen)
        vmap = volumes.load_map(store, frozen)
        new = objects.NewVersion(hashes=volumes.content_hashes(vmap), size=vmap.size, md5=None,
                                 content_type="application/octet-stream",
                                 meta={"source-server": str(server.id)})  # fmt: skip
        container = _container(session, server.user_uuid)
        file_name = f"{server.name}-{server.id}-{time.strftime('%Y%m%d-%H%M%S')}.diskdump"
        objects.put(session, store, container, file_name, new, server.user_uuid)
    finally:
        volumes.remove_map(store, frozen)
    source = session.get(Image, uuid.UUID(server.image_id)) if _is_uuid(server.image_id) else None
    properties = {**(source.properties if source else {}), **metadata}
    properties = {str(k).upper(): str(v) for k, v in properties.items()}
    image = registry.register(session, server.user_uuid, registry.Registration(
        name=name, location=registry.location_of(server.user_uuid, CONTAINER, file_name),
        disk_format="diskdump", properties=properties))  # fmt: skip
    session.commit()
    log.info("server %s: snapshot %s (%d MiB) in %.1f s", server.id, image.id,
             vmap.size >> 20, time.monotonic() - t0)  # fmt: skip
    return image


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
