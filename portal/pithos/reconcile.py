"""Maps without versions: what a crash between writing a version's map and committing its
row (or between dropping a version and deleting its map) leaves behind.  Removing them lets
the garbage collector free their blocks; maps younger than the window may belong to an
upload still committing and are kept."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from snf.archipelago.store import BlockNotFound, Store

from .models import Version

log = logging.getLogger("snf.portal.pithos")
PREFIX = "pithos-"


@dataclass
class Reconciled:
    checked: int = 0
    young: int = 0
    removed: list[str] = field(default_factory=list)


def orphan_maps(
    session: Session,
    store: Store,
    *,
    window: float,
    dry_run: bool = False,
    now: float | None = None,
) -> Reconciled:
    now = time.time() if now is None else now
    result = Reconciled()
    names = [n for n in store.list_maps() if n.startswith(PREFIX)]
    known = set(session.scalars(select(Version.map_name).where(Version.map_name.in_(names))))
    for name in names:
        result.checked += 1
        if name in known:
            continue
        created = store.get_meta(name).get("created", 0.0)
        if now - float(created) < window:
            result.young += 1
            continue
        # Still unknown now that it is old enough: no transaction can commit it any more.
        if session.scalar(select(Version.id).where(Version.map_name == name)) is not None:
            continue
        result.removed.append(name)
        if not dry_run:
            with contextlib.suppress(BlockNotFound):
                store.delete_map(name)
            log.info("removed map %s: no object version names it", name)
    return result
