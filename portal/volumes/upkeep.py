"""Volume housekeeping, run with every reconciler pass (``snf-portal reconcile``):

- frozen maps that no volume needs any more are dropped (a volume's map holds its data only
  while it is detached or being attached; after the attach, a failed detach or a delete
  the map is garbage; its blocks go at the next collection);
- snapshots still ``creating`` after ``grace`` seconds (their serving process died before
  it finished them) are completed.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from snf.archipelago.store import Store

from . import disks, snapshots
from .models import Snapshot, Volume
from .rows import KEEPS_MAP


def run(session: Session, store: Store, grace: float) -> list[str]:
    lines = []
    stale = select(Volume).where(Volume.map_name.is_not(None), Volume.status.not_in(KEEPS_MAP))
    for volume in session.scalars(stale).all():
        disks.drop_map(store, volume.map_name)
        lines.append(f"volume {volume.id} ({volume.status}): map {volume.map_name} dropped")
        volume.map_name = None
    session.commit()
    cutoff = time.time() - grace
    pending = select(Snapshot).where(Snapshot.status == "creating", Snapshot.updated < cutoff)
    for snap in session.scalars(pending).all():
        if snapshots.complete(session, store, snap, older_than=cutoff):
            lines.append(f"snapshot {snap.id} of volume {snap.volume_id}: {snap.status}")
    return lines
