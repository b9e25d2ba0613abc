"""``createImage``: a server's root volume, snapshotted while it runs, registered as an image.

The snapshot is a volume snapshot (:mod:`snf.portal.volumes.snapshots`: frozen in O(map),
then written as a file in the owner's ``snapshots`` container), completed before the answer
so that the image exists when the client looks; it is registered as a private image that
carries the source image's properties.  Only servers on archipelago volumes (the
``ext_archipelago`` flavors) can be snapshotted without copying; others are refused.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from snf.archipelago.store import Store
from snf.common.config import ComputeConfig

from ..errors import ApiError
from ..images import registry
from ..images.models import Image
from ..volumes import rows, snapshots
from .models import Server

log = logging.getLogger(__name__)


def snapshot_server(
    session: Session,
    config: ComputeConfig,
    store: Store,
    server: Server,
    name: str,
    metadata: dict[str, str],
) -> Image:
    """Snapshot ``server``'s root volume into a registered image; commits."""
    if server.deleted or server.operstate not in ("STARTED", "STOPPED"):
        raise ApiError(409, f"cannot snapshot server {server.id} while it is {server.operstate}")
    root = next((v for v in rows.of_server(session, server.id) if v.root), None)
    if root is None:
        raise ApiError(409, f"server {server.id} has no root volume")
    t0 = time.monotonic()
    snap = snapshots.take(session, config, store, root, name=name, meta=metadata)
    snapshots.complete(session, store, snap)
    if snap.status != "available":
        raise ApiError(500, f"the snapshot of server {server.id} failed: {snap.fault}")
    source = registry.parse_id(server.image_id)
    image = session.get(Image, source) if source else None
    properties = {**(image.properties if image else {}), **metadata}
    properties = {str(k).upper(): str(v) for k, v in properties.items()}
    location = registry.location_of(server.user_uuid, snapshots.CONTAINER, snap.file_name)
    new = registry.register(session, server.user_uuid, registry.Registration(
        name=name, location=location, disk_format="diskdump", properties=properties))  # fmt: skip
    session.commit()
    log.info("server %s: image %s from snapshot %s (%d GiB) in %.1f s", server.id, new.id,
             snap.id, snap.size, time.monotonic() - t0)  # fmt: skip
    return new
