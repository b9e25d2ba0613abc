"""The garbage collector: the project's one way to free blocks and private objects.

A block or object is kept while any map references it; volumes, snapshots and object
versions all have maps, so the maps alone tell what is in use.  Whatever no map references
and was not written (or, for blocks, stored again) within the safety window is deleted, so
an upload or a copy-on-write in flight, whose map does not exist yet, is never collected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .mapfile import CONTENT, OBJECT, VolumeMap
from .store import BlockNotFound, Store

log = logging.getLogger("snf.archipelago.gc")
#: The default safety window: one hour.
WINDOW = 3600.0


@dataclass
class Collection:
    maps: int = 0
    kept_blocks: int = 0
    kept_objects: int = 0
    young: int = 0
    deleted_blocks: int = 0
    deleted_objects: int = 0
    freed_bytes: int = 0


def referenced(store: Store) -> tuple[set[str], set[str], int]:
    """(content block names, object ids, maps read) that some map references."""
    blocks: set[str] = set()
    objects: set[str] = set()
    count = 0
    for name in store.list_maps():
        try:
            vmap = VolumeMap.decode(store.get_map(name))
        except BlockNotFound:
            continue  # removed while we looked
        count += 1
        for kind, ident in vmap.references():
            if kind == CONTENT:
                blocks.add(ident)
            elif kind == OBJECT:
                objects.add(ident)
    return blocks, objects, count


def collect(
    store: Store,
    *,
    window: float = WINDOW,
    dry_run: bool = False,
    now: Callable[[], float] = time.time,
) -> Collection:
    """Delete unreferenced blocks and objects older than ``window`` seconds."""
    result = Collection()
    # Read the maps first, then list: whatever a map made after this reading references was
    # written, or (a block stored again) touched, after it, so it is young when listed.  Each
    # candidate's age is checked once more right before it is deleted.
    used_blocks, used_objects, result.maps = referenced(store)
    cutoff = now() - window
    kept, deleted, freed = _sweep(store.iter_blocks(), used_blocks, store.block_mtime,
                                  store.delete_block, cutoff, dry_run, result)  # fmt: skip
    result.kept_blocks, result.deleted_blocks = kept, deleted
    kept, deleted, freed_objects = _sweep(store.iter_objects(), used_objects, store.object_mtime,
                                          store.delete_object, cutoff, dry_run, result)  # fmt: skip
    result.kept_objects, result.deleted_objects = kept, deleted
    result.freed_bytes = freed + freed_objects
    log.info("gc%s: %s", " (dry run)" if dry_run else "", result)
    return result


def _sweep(
    found: Iterable[tuple[str, int, float]],
    used: set[str],
    mtime_of: Callable[[str], float | None],
    delete: Callable[[str], None],
    cutoff: float,
    dry_run: bool,
    result: Collection,
) -> tuple[int, int, int]:
    """Delete what is neither used nor young; return (kept, deleted, bytes freed)."""
    kept = deleted = freed = 0
    for name, size, mtime in found:
        if name in used:
            kept += 1
        elif mtime > cutoff or (mtime_of(name) or 0) > cutoff:
            result.young += 1
        else:
            if not dry_run:
                delete(name)
            deleted += 1
            freed += size
    return kept, deleted, freed
