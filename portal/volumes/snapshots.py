"""Volume snapshots: frozen at once (O(map), while the server runs), then made a file.

:func:`take` freezes the volume into a read-only map and records the snapshot (``creating``);
that is all the request waits for.  :func:`complete` then hashes the blocks written since
the volume's origin into content blocks (the only data read) and writes the result as a new
file in the owner's ``snapshots`` container (an object version with its own map, charged to
``pithos.diskspace`` like any upload): the snapshot is ``available``, and the file can be
registered as an image or give new volumes.  The frozen map is dropped either way.

:func:`complete_later` runs :func:`complete` in a thread of the serving process; a snapshot
whose process died first is completed by ``snf-portal reconcile`` (:mod:`.upkeep`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from snf.archipelago import volumes as archipelago
from snf.archipelago.store import Store
from snf.common.config import ComputeConfig
from snf.common.errors import SnfError

from ..compute.models import Server
from ..errors import ApiError
from ..images.models import Image
from ..pithos import containers, objects
from ..pithos.errors import ItemNotFound
from ..pithos.models import Version
from . import disks
from .models import Snapshot, Volume

log = logging.getLogger(__name__)
CONTAINER = "snapshots"


def _file_name(volume: Volume, when: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    return f"volume-{volume.id}-{stamp}-{uuid.uuid4().hex[:8]}.diskdump"


def take(
    session: Session,
    config: ComputeConfig,
    store: Store,
    volume: Volume,
    *,
    name: str = "",
    description: str = "",
    meta: dict[str, Any] | None = None,
) -> Snapshot:
    """Freeze ``volume`` and record the snapshot (``creating``); commits."""
    if volume.deleted or volume.status not in ("in-use", "available"):
        raise ApiError(409, f"cannot snapshot volume {volume.id} while it is {volume.status}")
    if volume.server_id is not None:
        server = session.get_one(Server, volume.server_id)
        if server.operstate not in ("STARTED", "STOPPED") or server.action == "CREATE":
            raise ApiError(409, f"cannot snapshot volume {volume.id} while its server is "
                           f"{server.operstate}")  # fmt: skip
    now = time.time()
    name = name or f"volume {volume.id} at {time.strftime('%F %T', time.gmtime(now))}"
    snap = Snapshot(id=uuid.uuid4(), user_uuid=volume.user_uuid, volume_id=volume.id, name=name,
                    description=description, size=volume.size, status="creating",
                    frozen_map=disks.new_map_name("snap"), file_name=_file_name(volume, now),
                    meta=meta or {}, created=now, updated=now)  # fmt: skip
    assert snap.frozen_map is not None
    disks.freeze(session, config, store, volume, snap.frozen_map)
    session.add(snap)
    session.commit()
    log.info("volume %s: snapshot %s frozen in %.3f s", volume.id, snap.id, time.time() - now)
    return snap


def _container(session: Session, owner: uuid.UUID) -> Any:
    try:
        return containers.get(session, owner, CONTAINER)
    except ItemNotFound:
        return containers.create(session, owner, CONTAINER, versioning="auto")


def _claim(session: Session, snap: Snapshot, older_than: float | None) -> bool:
    """Take the snapshot for completion (one completer at a time)."""
    query = update(Snapshot).where(Snapshot.id == snap.id, Snapshot.status == "creating")
    if older_than is not None:
        query = query.where(Snapshot.updated < older_than)
    claimed = session.execute(query.values(updated=time.time())).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return claimed


def complete(
    session: Session, store: Store, snap: Snapshot, *, older_than: float | None = None
) -> bool:
    """Make a frozen snapshot a file; False if someone else is at it.  Commits."""
    if not _claim(session, snap, older_than):
        return False
    session.refresh(snap)
    t0 = time.time()
    try:
        assert snap.frozen_map is not None
        hashed = archipelago.hash_snapshot(store, snap.frozen_map)
        vmap = archipelago.load_map(store, snap.frozen_map)
        new = objects.NewVersion(hashes=archipelago.content_hashes(vmap), size=vmap.size,
                                 md5=None, content_type="application/octet-stream",
                                 meta={"source-volume": str(snap.volume_id),
                                       "snapshot": str(snap.id)})  # fmt: skip
        container = _container(session, snap.user_uuid)
        version = objects.put(session, store, container, snap.file_name, new, snap.user_uuid)
    except (SnfError, ApiError) as exc:
        session.rollback()
        snap.status, snap.fault = "error", str(exc)[:1000]
        log.warning("snapshot %s of volume %s failed: %s", snap.id, snap.volume_id, exc)
    else:
        snap.status, snap.version_id, snap.bytes = "available", version.id, vmap.size
        log.info("snapshot %s of volume %s: %s/%s, %d written blocks hashed in %.1f s",
                 snap.id, snap.volume_id, CONTAINER, snap.file_name, hashed["blocks"],
                 time.time() - t0)  # fmt: skip
    disks.drop_map(store, snap.frozen_map)
    snap.frozen_map, snap.updated = None, time.time()
    session.commit()
    return True


def delete(session: Session, store: Store, snap: Snapshot) -> None:
    """Forget a snapshot and delete its file (refused while it is being made, or while an
    image is registered on the file: unregister it first); commits."""
    if snap.status == "creating":
        raise ApiError(409, f"snapshot {snap.id} is still being made")
    if snap.version_id is not None:
        image = session.scalars(select(Image).where(Image.version_id == snap.version_id)).first()
        if image is not None:
            raise ApiError(409, f"snapshot {snap.id} is registered as image {image.id}: "
                           "unregister the image first")  # fmt: skip
        try:
            container = containers.get(session, snap.user_uuid, CONTAINER)
            obj = objects.find(session, container, snap.file_name)
            if session.get(Version, snap.version_id) is not None:
                objects.delete(session, store, container, obj)
        except ItemNotFound:
            pass  # the owner deleted the file already
    snap.status, snap.deleted, snap.updated = "deleted", True, time.time()
    session.commit()
    log.info("snapshot %s of volume %s deleted", snap.id, snap.volume_id)


def complete_later(app: Flask, snapshot_id: uuid.UUID) -> threading.Thread:
    def run() -> None:
        from ..extensions import db
        from ..pithos.api import store

        with app.app_context():
            try:
                snap = db.session.get(Snapshot, snapshot_id)
                if snap is not None:
                    complete(db.session, store(), snap)
            except Exception:  # the reconciler completes it later
                log.exception("snapshot %s: completion failed", snapshot_id)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run, name=f"snapshot-{snapshot_id}", daemon=True)
    thread.start()
    return thread
