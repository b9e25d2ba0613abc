"""The ``rados`` backend: the block store in two Ceph pools, reached through librados.

Configuration (``[store]``): ``backend = "rados"``, ``ceph_conf`` (default
``/etc/ceph/ceph.conf``), ``rados_id`` (the Ceph user without ``client.``, default ``admin``,
its keyring found through ceph.conf), ``blocks_pool`` and ``maps_pool``.

Object names, one prefix per kind (map names never hold ``/``, block names are 64 hex
characters, so no two kinds can share a name)::

    blocks pool  <64-hex sha256>     content blocks, without trailing zeros
                 obj.<32-hex id>     volumes' private blocks (written in place)
    maps pool    map.<name>          maps;  meta.<name>  their metadata (JSON)
                 idx.<kind>/<key>    lookups (disk UUID -> volume)
                 lock.<name>         a volume's lock: the RADOS exclusive lock "snf" on it
                 req.<name>          requests to a volume's holder (omap entries q.<id>,
                                     answers a.<id>); the holder watches it for notifies

A lock's cookie is its owner string and its description records the last refresh; with
``stale_after`` it also gets that duration, so Ceph drops it by itself when it is not
refreshed.  A lock belongs to the connection that took it: refresh it through the same store.

Both pools must be replicated (writes to objects and maps are guarded by an omap compare,
which erasure-coded pools lack).  Create them once, e.g.::

    ceph osd pool create blocks 128 && ceph osd pool application enable blocks rados
    ceph osd pool create maps 32 && ceph osd pool application enable maps rados

The Ceph user needs ``mon 'allow r'`` and ``osd 'allow rwx pool=blocks, allow rwx pool=maps'``
(``x`` for the lock class).  librados comes from Debian's python3-rados.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rados

from snf.common.errors import Conflict, InvalidInput, SnfError

from .hashing import BLOCK_SIZE, is_block_name
from .store import BlockNotFound, LockHeld, LockInfo, Store, check_map_name, check_object_id

_LOCK = "snf"  # the cls_lock name on every lock object
_MAY_RENEW, _MUST_RENEW = 1, 2  # cls_lock flags
_EQ = rados.LIBRADOS_CMPXATTR_OP_EQ
_REQUEST_ID = re.compile(r"[0-9a-f]{24}")
_PAGE = 1024  # omap entries read at once
_NOTIFY_MS = 1000


class StoreUnavailable(SnfError):
    """The Ceph cluster cannot be reached, or a pool of the store is missing."""

    http_status = 503
    openstack_name = "serviceUnavailable"


def _check_request_id(request_id: str) -> str:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise InvalidInput(f"bad request id {request_id!r}")
    return request_id


# --- cls_lock's wire format (the binding has no list_lockers or break_lock) -----------------


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<I", len(raw)) + raw


def _struct(payload: bytes) -> bytes:
    """Ceph's ENCODE_START(1, 1) ... ENCODE_FINISH framing."""
    return struct.pack("<BBI", 1, 1, len(payload)) + payload


def _lockers(data: bytes) -> list[tuple[tuple[int, int], str, str]]:
    """Decode a cls_lock_get_info_reply: [((entity type, number), cookie, description)]."""
    pos, found = 6, []  # past the reply's ENCODE_START header

    def take(fmt: str) -> Any:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string() -> str:
        nonlocal pos
        n = take("<I")
        pos += n
        return data[pos - n : pos].decode(errors="replace")

    for _ in range(take("<I")):
        end = take("<2xI") + pos  # locker_id_t: entity name, cookie
        entity, cookie = take("<Bq"), string()
        pos = end
        end = take("<2xI") + pos  # locker_info_t: expiration, address, description
        if take("<8xB") != 1:
            raise SnfError("Ceph sent a lock holder address in an encoding older than msgr2")
        skip = take("<2xI")  # the address itself
        pos += skip
        found.append((entity, cookie, string()))
        pos = end
    return found


# --- librados calls shared by both pools --------------------------------------------------------


def _write(ioctx: Any, key: str, fill: Callable[[Any], object], *, guard: bool = False) -> bool:
    """One atomic compound write, setting the object's mtime (the binding's default is 0).
    ``guard``: only to an existing object (False if there is none: it is never recreated)."""
    with rados.WriteOpCtx() as op:
        if guard:
            op.omap_cmp("snf", "", _EQ)  # true for any object of ours; ENOENT if missing
        fill(op)
        try:
            ioctx.operate_write_op(op, key, mtime=int(time.time()))
        except rados.ObjectNotFound:
            if guard:
                return False
            raise
    return True


def _put(ioctx: Any, key: str, data: bytes, *, exclusive: bool = False) -> bool:
    """Replace (or create) ``key`` holding ``data``, atomically; ``exclusive``: only create
    it (False if it exists)."""

    def fill(op: Any) -> None:
        op.new(rados.LIBRADOS_CREATE_EXCLUSIVE if exclusive else rados.LIBRADOS_CREATE_IDEMPOTENT)
        op.write_full(data) if data else op.truncate(0)  # (zero-length data ops can crash OSDs)

    try:
        return _write(ioctx, key, fill)
    except rados.ObjectExists:
        return False


def _read(ioctx: Any, key: str, length: int, offset: int = 0) -> bytes | None:
    with contextlib.suppress(rados.ObjectNotFound):
        return ioctx.read(key, length, offset)
    return None


def _read_all(ioctx: Any, key: str) -> bytes | None:
    """A whole object in one read (a read is atomic against write_full), or None."""
    length = 1 << 20
    while (data := _read(ioctx, key, length)) is not None and len(data) == length:
        length *= 4
    return data


def _mtime(ioctx: Any, key: str) -> float | None:
    with contextlib.suppress(rados.ObjectNotFound):
        return time.mktime(ioctx.stat(key)[1])  # the binding gives local time
    return None


def _remove(ioctx: Any, key: str) -> None:
    with contextlib.suppress(rados.ObjectNotFound):
        ioctx.remove_object(key)


def _listing(ioctx: Any, prefix: str) -> Iterator[tuple[str, int, float]]:
    for obj in ioctx.list_objects():
        name: str = obj.key
        if not (name.startswith(prefix) if prefix else is_block_name(name)):
            continue  # the other kind sharing the pool
        with contextlib.suppress(rados.ObjectNotFound):  # deleted meanwhile
            size, mtime = ioctx.stat(name)
            yield name[len(prefix) :], size, time.mktime(mtime)


def _patch(ioctx: Any, key: str, offset: int, data: bytes | memoryview) -> bool:
    """Write into an existing object; False if there is none."""
    if not len(data):
        return _mtime(ioctx, key) is not None
    return _write(ioctx, key, lambda op: op.write(bytes(data), offset), guard=True)


def _found(data: bytes | None, what: str) -> bytes:
    if data is None:
        raise BlockNotFound(f"{what} is not in the store")
    return data


# --- the store -------------------------------------------------------------------------------


class RadosStore(Store):
    def __init__(
        self,
        ceph_conf: Path | str,
        rados_id: str = "admin",
        blocks_pool: str = "blocks",
        maps_pool: str = "maps",
        *,
        connect_timeout: float = 10,
    ) -> None:
        self.ceph_conf = Path(ceph_conf)
        self._watches: dict[int, Any] = {}
        self._held: dict[str, int | None] = {}  # durations of the locks taken here
        self._mutex = threading.Lock()
        if not self.ceph_conf.is_file():
            raise self._unavailable("no such file")
        try:
            self._cluster = rados.Rados(conffile=str(self.ceph_conf), rados_id=rados_id)
            self._cluster.conf_set("client_mount_timeout", str(connect_timeout))
        except rados.Error as exc:
            raise self._unavailable(exc) from None
        try:
            self._cluster.connect(timeout=math.ceil(connect_timeout))
            self._blocks = self._pool(blocks_pool)
            self._maps = self._pool(maps_pool)
        except (rados.Error, StoreUnavailable) as exc:
            self._cluster.shutdown()
            raise exc if isinstance(exc, StoreUnavailable) else self._unavailable(exc) from None

    def _unavailable(self, reason: object) -> StoreUnavailable:
        return StoreUnavailable(f"cannot reach Ceph via {self.ceph_conf}: {reason}")

    def _pool(self, name: str) -> Any:
        try:
            return self._cluster.open_ioctx(name)
        except rados.ObjectNotFound:
            why = f"pool {name} does not exist (create it: ceph osd pool create {name})"
            raise self._unavailable(why) from None

    def close(self) -> None:
        with self._mutex:
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.close()
        if self._cluster.state != "shutdown":
            self._blocks.close()
            self._maps.close()
            self._cluster.shutdown()

    # --- blocks and objects, in the blocks pool ----------------------------------------------

    def _put_block(self, name: str, data: bytes, *, durable: bool = True) -> None:
        _put(self._blocks, name, data, exclusive=True)  # present already: another writer won, fine

    def _get_block(self, name: str) -> bytes:
        return self._read_block(name, 0, BLOCK_SIZE)

    def _read_block(self, name: str, offset: int, length: int) -> bytes:
        return _found(_read(self._blocks, name, length, offset), f"block {name}")

    def _has_block(self, name: str) -> bool:
        return _mtime(self._blocks, name) is not None

    def _touch_block(self, name: str) -> None:
        _write(self._blocks, name, lambda op: op.set_xattr("snf.touched", b""), guard=True)

    def _delete_block(self, name: str) -> None:
        _remove(self._blocks, name)

    def iter_blocks(self) -> Iterator[tuple[str, int, float]]:
        return _listing(self._blocks, "")

    def block_mtime(self, name: str) -> float | None:
        return _mtime(self._blocks, name)

    def create_object(self, oid: str, data: bytes) -> None:
        if not _put(self._blocks, f"obj.{check_object_id(oid)}", bytes(data), exclusive=True):
            raise Conflict(f"object {oid} exists")

    def read_object(self, oid: str, offset: int, length: int) -> bytes:
        data = _read(self._blocks, f"obj.{check_object_id(oid)}", length, offset)
        return _found(data, f"object {oid}") + bytes(length - len(data or b""))

    def write_object(self, oid: str, offset: int, data: bytes | memoryview) -> None:
        if not _patch(self._blocks, f"obj.{check_object_id(oid)}", offset, data):
            raise BlockNotFound(f"object {oid} is not in the store")

    def sync_objects(self, oids: set[str]) -> None:
        """Nothing to do: RADOS acknowledges a write once every replica has it durably."""

    def delete_object(self, oid: str) -> None:
        _remove(self._blocks, f"obj.{check_object_id(oid)}")

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        return _listing(self._blocks, "obj.")

    def object_mtime(self, oid: str) -> float | None:
        return _mtime(self._blocks, f"obj.{check_object_id(oid)}")

    # --- maps, metadata, index, in the maps pool -----------------------------------------------

    def put_map(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        key, data = f"map.{check_map_name(name)}", bytes(data)
        if not _put(self._maps, key, data, exclusive=exclusive):
            raise Conflict(f"map {name} exists")

    def get_map(self, name: str) -> bytes:
        return _found(_read_all(self._maps, f"map.{check_map_name(name)}"), f"map {name}")

    def patch_map(self, name: str, offset: int, data: bytes) -> None:
        if not _patch(self._maps, f"map.{check_map_name(name)}", offset, data):
            raise BlockNotFound(f"map {name} is not in the store")

    def sync_map(self, name: str) -> None:
        if not self.has_map(name):
            raise BlockNotFound(f"map {name} is not in the store")

    def has_map(self, name: str) -> bool:
        return _mtime(self._maps, f"map.{check_map_name(name)}") is not None

    def delete_map(self, name: str) -> None:
        _remove(self._maps, f"map.{check_map_name(name)}")
        _remove(self._maps, f"meta.{name}")

    def list_maps(self) -> list[str]:
        return sorted(o.key[4:] for o in self._maps.list_objects() if o.key.startswith("map."))

    def put_meta(self, name: str, meta: dict[str, Any]) -> None:
        _put(self._maps, f"meta.{check_map_name(name)}", json.dumps(meta).encode())

    def get_meta(self, name: str) -> dict[str, Any]:
        data = _read_all(self._maps, f"meta.{check_map_name(name)}")
        return {} if data is None else json.loads(data)

    def put_index(self, kind: str, key: str, value: str | None) -> None:
        obj = f"idx.{check_map_name(kind)}/{check_map_name(key)}"
        if value is None:
            _remove(self._maps, obj)
        else:
            _put(self._maps, obj, value.encode())

    def get_index(self, kind: str, key: str) -> str | None:
        data = _read_all(self._maps, f"idx.{check_map_name(kind)}/{check_map_name(key)}")
        return None if data is None else data.decode()

    # --- locks ---------------------------------------------------------------------------------

    def _holder(self, name: str) -> tuple[tuple[int, int], str, float] | None:
        """(locker entity, owner, last refresh) of volume ``name``'s lock, if it is held."""
        try:
            _, out = self._maps.execute(f"lock.{name}", "lock", "get_info", _struct(_string(_LOCK)))
        except rados.ObjectNotFound:
            return None
        for entity, owner, description in _lockers(out):
            try:
                return entity, owner, float(json.loads(description)["refreshed"])
            except (ValueError, KeyError, TypeError):
                return entity, owner, 0.0  # not taken by us: as if never refreshed
        return None

    def _break(self, name: str, entity: tuple[int, int], owner: str) -> None:
        """Break exactly this holder's lock (not one taken since)."""
        data = _struct(_string(_LOCK) + struct.pack("<Bq", *entity) + _string(owner))
        with contextlib.suppress(rados.ObjectNotFound):  # released or broken meanwhile
            _write(self._maps, f"lock.{name}", lambda op: op.execute("lock", "break_lock", data))

    def _take(self, name: str, owner: str, duration: int | None, flags: int) -> None:
        """cls_lock's "lock", encoded here: the binding's lock_exclusive leaves the duration's
        microseconds uninitialised (the lock expires seconds late, at random)."""
        desc = json.dumps({"owner": owner, "refreshed": time.time()})
        # name, type (1: exclusive), cookie, tag, description; duration (s, ns), flags
        fields = _string(_LOCK) + b"\x01" + _string(owner) + _string("") + _string(desc)
        data = _struct(fields + struct.pack("<IIB", duration or 0, 0, flags))
        _write(self._maps, f"lock.{name}", lambda op: op.execute("lock", "lock", data))

    def lock(self, name: str, owner: str, *, stale_after: float | None = None) -> None:
        duration = math.ceil(stale_after) if stale_after else None
        for _ in range(3):
            try:
                self._take(check_map_name(name), owner, duration, _MAY_RENEW)
                self._held[name] = duration
                return
            except rados.ObjectBusy:
                holder = self._holder(name)
            if holder is None:
                continue  # released (or expired) meanwhile: try again
            entity, held_by, refreshed = holder
            if held_by != owner and (stale_after is None or time.time() - refreshed < stale_after):
                raise LockHeld(name, held_by)
            self._break(name, entity, held_by)  # stale, or this owner's through another client
        raise LockHeld(name, "another owner (the lock changed hands while it was broken)")

    def refresh_lock(self, name: str, owner: str) -> None:
        try:  # MUST_RENEW: fails unless this client holds it for this owner
            self._take(check_map_name(name), owner, self._held.get(name), _MUST_RENEW)
        except (rados.ObjectNotFound, rados.ObjectBusy):
            holder = self._holder(name)
            raise LockHeld(name, holder[1] if holder else "nobody (the lock was broken)") from None

    def unlock(self, name: str, owner: str) -> None:
        try:
            self._maps.unlock(f"lock.{check_map_name(name)}", _LOCK, owner)
            return
        except rados.ObjectNotFound:
            holder = self._holder(name)  # perhaps this owner's through another client
        if holder is not None and holder[1] == owner:
            self._break(name, holder[0], owner)

    def lock_info(self, name: str) -> LockInfo | None:
        holder = self._holder(check_map_name(name))
        return None if holder is None else LockInfo(owner=holder[1], refreshed=holder[2])

    # --- requests ------------------------------------------------------------------------------

    def _entries(self, name: str, prefix: str = "", keys: tuple[str, ...] = ()) -> list[Any]:
        with contextlib.suppress(rados.ObjectNotFound), rados.ReadOpCtx() as op:
            if keys:
                it, _ = self._maps.get_omap_vals_by_keys(op, keys)
            else:
                it, _ = self._maps.get_omap_vals(op, "", prefix, _PAGE)
            self._maps.operate_read_op(op, f"req.{name}")
            return list(it)
        return []

    def _claim(self, name: str, key: str, value: bytes) -> bool:
        """Remove omap entry ``key`` if it still holds ``value``: True for one caller only."""

        def fill(op: Any) -> None:
            op.omap_cmp(key, value.decode(), _EQ)
            self._maps.remove_omap_keys(op, (key,))

        try:
            return _write(self._maps, f"req.{name}", fill, guard=True)
        except rados.OSError as exc:
            if exc.errno == errno.ECANCELED:
                return False  # taken (or cancelled) by another caller
            raise

    def _set_entry(self, name: str, key: str, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        _write(self._maps, f"req.{name}", lambda op: self._maps.set_omap(op, (key,), (data,)))

    def post_request(self, name: str, request: dict[str, Any]) -> str:
        request_id = secrets.token_hex(12)
        self._set_entry(check_map_name(name), f"q.{request_id}", request)
        with contextlib.suppress(rados.Error):  # a watcher that does not answer: holders poll
            self._maps.notify(f"req.{name}", request_id, _NOTIFY_MS)
        return request_id

    def take_requests(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        taken = []
        for key, value in self._entries(check_map_name(name), "q."):
            if self._claim(name, key, value):
                with contextlib.suppress(ValueError):  # not a request we wrote: dropped
                    taken.append((key[2:], json.loads(value)))
        return taken

    def answer_request(self, name: str, request_id: str, answer: dict[str, Any]) -> None:
        self._set_entry(check_map_name(name), f"a.{_check_request_id(request_id)}", answer)

    def poll_answer(self, name: str, request_id: str) -> dict[str, Any] | None:
        key = f"a.{_check_request_id(request_id)}"
        for _, value in self._entries(check_map_name(name), keys=(key,)):
            if self._claim(name, key, value):
                return json.loads(value)
        return None

    def cancel_request(self, name: str, request_id: str) -> None:
        keys = (f"q.{_check_request_id(request_id)}", f"a.{request_id}")
        fill = lambda op: self._maps.remove_omap_keys(op, keys)  # noqa: E731
        _write(self._maps, f"req.{check_map_name(name)}", fill, guard=True)

    def wake_on_request(self, name: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on every notify of ``req.<name>``, i.e. every post_request (and on a
        watch error, so that the holder polls at once)."""
        key = f"req.{check_map_name(name)}"
        _write(self._maps, key, lambda op: op.new(rados.LIBRADOS_CREATE_IDEMPOTENT))
        watch = self._maps.watch(key, lambda *_: wake(), lambda *_: wake())
        with self._mutex:
            self._watches[id(watch)] = watch

        def unwatch() -> None:
            with self._mutex:
                mine = self._watches.pop(id(watch), None)
            if mine is not None:
                mine.close()

        return unwatch
