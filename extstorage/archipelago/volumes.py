"""Volume operations by name: create (thin, or a clone of a read-only map), snapshot, grow,
remove, hash a snapshot into content blocks, import an image, look volumes up.

Each operation that changes a volume takes the volume's lock for its duration.  If the
volume is held by a volume daemon (it is attached somewhere), a snapshot or grow is sent
to that holder as a request through the store and the holder answers; a remove is refused.
Metadata kept with each map (``Store.get_meta``)::

    {"kind": "volume" | "snapshot" | "image", "size": bytes, "origin": map or None,
     "disk_uuid": Ganeti's disk UUID or None, "created": epoch seconds, ...}
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from snf.common.errors import Conflict, InvalidInput, NotFound

from .hashing import BLOCK_SIZE, ZERO_HASH, block_hash, content_length
from .mapfile import CONTENT, OBJECT, READONLY, ZERO, Entry, VolumeMap
from .store import BlockNotFound, LockHeld, Store, check_map_name, default_owner
from .volume import Volume

#: A holder refreshes its locks at least this often ...
LOCK_REFRESH = 10.0
#: ... so a lock older than this belongs to a holder that died.
LOCK_STALE = 60.0
DISK_INDEX = "disk-uuid"


def load_map(store: Store, name: str) -> VolumeMap:
    try:
        return VolumeMap.decode(store.get_map(check_map_name(name)))
    except BlockNotFound:
        raise NotFound(f"no volume, snapshot or image named {name}") from None


def create_volume(
    store: Store,
    name: str,
    size: int,
    *,
    origin: str | None = None,
    disk_uuid: str | None = None,
    meta: dict[str, Any] | None = None,
) -> VolumeMap:
    """A new volume: all zeros, or a thin clone of the read-only map ``origin`` (O(map))."""
    check_map_name(name)
    if size <= 0:
        raise InvalidInput(f"volume size must be positive, not {size}")
    if origin is not None:
        parent = load_map(store, origin)
        if not parent.readonly:
            raise InvalidInput(f"origin {origin} is a writable volume: snapshot it first")
        if size < parent.size:
            raise InvalidInput(
                f"volume size {size} is below the size of its origin {origin} ({parent.size})"
            )
        vmap = parent.clone(size)
    else:
        vmap = VolumeMap(size)
    try:
        store.put_map(name, vmap.encode(), exclusive=True)
    except Conflict:
        raise Conflict(f"volume {name} exists") from None
    info = {"kind": "volume", "size": size, "origin": origin, "disk_uuid": disk_uuid}
    store.put_meta(name, {**info, "created": time.time(), **(meta or {})})
    if disk_uuid:
        store.put_index(DISK_INDEX, disk_uuid, name)
    return vmap


def update_meta(store: Store, name: str, **changes: Any) -> dict[str, Any]:
    load_map(store, name)
    meta = {**store.get_meta(name), **changes}
    store.put_meta(name, meta)
    return meta


def describe(store: Store, name: str) -> dict[str, Any]:
    """Everything an operator wants to know about one map."""
    vmap = load_map(store, name)
    counts = {"zero": 0, "content": 0, "shared_objects": 0, "private_objects": 0}
    for kind, _ in vmap.references():
        counts["content" if kind == CONTENT else "shared_objects"] += 1
    counts["private_objects"] = len(vmap.writable_objects())
    counts["shared_objects"] -= counts["private_objects"]
    counts["zero"] = vmap.count - sum(counts.values())
    lock = store.lock_info(name)
    return {
        "name": name,
        "size": vmap.size,
        "readonly": vmap.readonly,
        "epoch": vmap.epoch,
        "blocks": counts,
        "holder": lock.owner if lock else None,
        **store.get_meta(name),
    }


def peek(store: Store, name: str, offset: int, length: int) -> bytes:
    """Read any map's bytes without taking its lock (operators, tests): while a holder writes
    the volume, the result may mix old and new data, as reading a disk under a writer does."""
    vmap = load_map(store, name)
    if offset < 0 or length < 0 or offset + length > vmap.size:
        raise InvalidInput(f"{length} bytes at {offset} are outside {name} ({vmap.size} bytes)")
    out = bytearray()
    bs = vmap.block_size
    while len(out) < length:
        index, within = divmod(offset + len(out), bs)
        n = min(bs - within, length - len(out))
        entry = vmap.entry(index)
        if entry.kind == ZERO:
            out += bytes(n)
        elif entry.kind == CONTENT:
            out += store.read_block(entry.ident, within, n)
        else:
            out += store.read_object(entry.ident, within, n)
    return bytes(out)


def lookup_disk(store: Store, disk_uuid: str) -> dict[str, Any] | None:
    """Which volume is Ganeti's disk ``disk_uuid``, and what is its origin?  None if no volume."""
    name = store.get_index(DISK_INDEX, disk_uuid)
    if name is None or not store.has_map(name):
        return None
    meta = store.get_meta(name)
    return {"volume": name, "origin": meta.get("origin"), "size": meta.get("size")}


def is_clone_of(store: Store, disk_uuid: str, origin: str) -> bool:
    found = lookup_disk(store, disk_uuid)
    return found is not None and found["origin"] == origin


# --- operations that need the volume's lock ----------------------------------------------------


def _holder_alive(store: Store, name: str) -> bool:
    lock = store.lock_info(name)
    return lock is not None and time.time() - lock.refreshed < LOCK_STALE


def ask_holder(
    store: Store, name: str, request: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """Send ``request`` to the process holding volume ``name`` and wait for its answer."""
    request_id = store.post_request(name, request)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = store.poll_answer(name, request_id)
        if answer is not None:
            if not answer.get("ok"):
                raise Conflict(f"{name}: {answer.get('error', 'the holder refused')}")
            return answer
        time.sleep(0.02)
    store.cancel_request(name, request_id)
    raise Conflict(f"the holder of volume {name} did not answer within {timeout:.0f} s")


def _with_volume(store: Store, name: str, action: Callable[[Volume], Any]) -> Any:
    owner = default_owner()
    with Volume(store, name, owner, stale_after=LOCK_STALE) as vol:
        return action(vol)


def snapshot_volume(
    store: Store, name: str, snap_name: str, *, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Freeze volume ``name`` into read-only map ``snap_name``, live if it is attached."""
    check_map_name(snap_name)
    load_map(store, name)
    if store.has_map(snap_name):
        raise Conflict(f"{snap_name} exists")
    request = {"op": "snapshot", "snapshot": snap_name, "meta": meta or {}}
    for _ in range(3):
        if _holder_alive(store, name):
            ask_holder(store, name, request)
            return describe(store, snap_name)
        try:
            _with_volume(store, name, lambda v: v.snapshot(snap_name, meta))
            return describe(store, snap_name)
        except LockHeld:
            continue  # attached meanwhile: ask the new holder
    raise Conflict(f"volume {name} changed hands too often to snapshot it")


def grow_volume(store: Store, name: str, size: int) -> None:
    vmap = load_map(store, name)
    if size < vmap.size:
        raise InvalidInput(f"cannot shrink {name} from {vmap.size} to {size} bytes")
    if _holder_alive(store, name):
        ask_holder(store, name, {"op": "grow", "size": size})
    else:
        _with_volume(store, name, lambda v: v.grow(size))
    update_meta(store, name, size=size)


def remove_volume(store: Store, name: str) -> None:
    """Delete a volume's map and its private (writable) objects.  Blocks it shares with
    images, snapshots or clones stay; the garbage collector frees what nobody references."""
    vmap = load_map(store, name)
    if vmap.readonly:
        kind = store.get_meta(name).get("kind", "read-only map")
        raise InvalidInput(f"{name} is a {kind}, not a volume: use remove-map")
    owner = default_owner()
    store.lock(name, owner, stale_after=LOCK_STALE)
    try:
        vmap = load_map(store, name)
        disk_uuid = store.get_meta(name).get("disk_uuid")
        for oid in vmap.writable_objects():
            store.delete_object(oid)
        store.delete_map(name)
        if disk_uuid and store.get_index(DISK_INDEX, disk_uuid) == name:
            store.put_index(DISK_INDEX, disk_uuid, None)
    finally:
        store.unlock(name, owner)


def create_zero_map(
    store: Store, name: str, size: int, *, meta: dict[str, Any] | None = None
) -> None:
    """A read-only map of ``size`` zero bytes (what a blank volume clones)."""
    check_map_name(name)
    vmap = VolumeMap(size, flags=READONLY, epoch=0)
    try:
        store.put_map(name, vmap.encode(), exclusive=True)
    except Conflict:
        raise Conflict(f"{name} exists") from None
    store.put_meta(name, {"kind": "snapshot", "size": size, "created": time.time(), **(meta or {})})


def copy_map(store: Store, name: str, copy: str, *, meta: dict[str, Any] | None = None) -> None:
    """A second name for read-only map ``name`` (O(map)): each can be removed on its own."""
    check_map_name(copy)
    if not load_map(store, name).readonly:
        raise InvalidInput(f"{name} is a writable volume: snapshot it instead")
    try:
        store.put_map(copy, store.get_map(name), exclusive=True)
    except Conflict:
        raise Conflict(f"{copy} exists") from None
    store.put_meta(copy, {**store.get_meta(name), "created": time.time(), **(meta or {})})


def remove_map(store: Store, name: str) -> None:
    """Delete a read-only map (a snapshot or an image): its blocks go at the next collection."""
    if not load_map(store, name).readonly:
        raise InvalidInput(f"{name} is a volume: use remove")
    store.delete_map(name)


# --- images -------------------------------------------------------------------------------------


def create_image_map(
    store: Store,
    name: str,
    hashes: Iterable[str],
    size: int,
    *,
    meta: dict[str, Any] | None = None,
) -> VolumeMap:
    """A read-only map over content blocks that are already stored (an object version)."""
    hashes = list(hashes)
    vmap = VolumeMap(size, flags=READONLY, epoch=0)
    if len(hashes) != vmap.count and not (size == 0 and hashes == [ZERO_HASH]):
        raise InvalidInput(f"{len(hashes)} hashes for {size} bytes ({vmap.count} blocks)")
    for index, digest in enumerate(hashes[: vmap.count]):
        if digest != ZERO_HASH:
            if not store.has_block(digest):
                raise NotFound(f"block {digest} is not in the store")
            vmap.set_entry(index, Entry(CONTENT, digest))
    store.put_map(name, vmap.encode(), exclusive=True)
    store.put_meta(name, {"kind": "image", "size": size, "created": time.time(), **(meta or {})})
    return vmap


def import_image(
    store: Store,
    name: str,
    source: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
) -> VolumeMap:
    """Store a raw disk image's blocks and make a read-only map of them."""
    hashes: list[str] = []
    size = 0
    while True:
        chunk = source.read(BLOCK_SIZE)
        if not chunk:
            break
        hashes.append(store.put_block(chunk))
        size += len(chunk)
        if progress is not None:
            progress(size)
    return create_image_map(store, name, hashes, size, meta={"source": "import"})


def hash_snapshot(store: Store, name: str, *, workers: int = 0) -> dict[str, int]:
    """Turn a snapshot's private blocks into content blocks, so that it reads exactly like an
    object-store file (an image).  Returns {"blocks": hashed, "bytes": hashed bytes}.

    Blocks are read and hashed by ``workers`` threads (hashing and I/O release the GIL). A
    block that is content to its end becomes a content block without a copy where the store
    can (a hard link to the frozen object); others are stored without waiting for the disk.
    Then all are made durable and only then is the map rewritten, once.
    """
    vmap = load_map(store, name)
    if not vmap.readonly:
        raise InvalidInput(f"{name} is a writable volume: snapshot it first")
    bs = vmap.block_size
    private = [(index, entry.ident) for index, entry in vmap.entries() if entry.kind == OBJECT]
    workers = workers or max(2, os.cpu_count() or 1)

    def hash_one(item: tuple[int, str]) -> tuple[int, str]:
        index, oid = item
        data = store.read_object(oid, 0, bs)
        if content_length(data) == bs:  # full of content: the object can become the block
            digest = block_hash(data)
            if store.adopt_object(oid, digest):
                return index, digest
        return index, store.put_block(data, durable=False)

    stored: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, digest in pool.map(hash_one, private):
            if digest == ZERO_HASH:
                vmap.set_entry(index, Entry(ZERO, ""))
            else:
                vmap.set_entry(index, Entry(CONTENT, digest))
                stored.append(digest)
        # Every block (and every link) durable before the map names it.
        list(pool.map(store.sync_blocks, [stored[i::workers] for i in range(workers)]))
    if private:
        store.put_map(name, vmap.encode())
    return {"blocks": len(private), "bytes": len(private) * bs}


def content_hashes(vmap: VolumeMap) -> list[str]:
    """The Pithos hashmap of a hashed read-only map (one hash per block)."""
    out = []
    for _, entry in vmap.entries():
        if entry.kind == OBJECT:
            raise InvalidInput("the map still has private blocks: hash it first")
        out.append(entry.ident if entry.kind == CONTENT else ZERO_HASH)
    return out
