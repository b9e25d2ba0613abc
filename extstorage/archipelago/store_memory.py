"""The in-memory backend: a real store behind the same interface, for unit tests and tools
that need a scratch store.  Thread-safe; nothing survives the process."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from snf.common.errors import Conflict

from .store import (
    BlockNotFound,
    LockHeld,
    LockInfo,
    Store,
    check_map_name,
    check_object_id,
)


class MemoryStore(Store):
    local_io = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.blocks: dict[str, tuple[bytes, float]] = {}
        self.objects: dict[str, tuple[bytearray, float]] = {}
        self.maps: dict[str, bytearray] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.index: dict[tuple[str, str], str] = {}
        self.locks: dict[str, LockInfo] = {}
        self.requests: dict[str, dict[str, dict[str, Any]]] = {}
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}

    def _put_block(self, name: str, data: bytes, *, durable: bool = True) -> None:
        with self._lock:
            self.blocks.setdefault(name, (data, time.time()))

    def _get_block(self, name: str) -> bytes:
        try:
            return self.blocks[name][0]
        except KeyError:
            raise BlockNotFound(f"block {name} is not in the store") from None

    def _has_block(self, name: str) -> bool:
        return name in self.blocks

    def _touch_block(self, name: str) -> None:
        with self._lock:
            if name in self.blocks:
                self.blocks[name] = (self.blocks[name][0], time.time())

    def _delete_block(self, name: str) -> None:
        self.blocks.pop(name, None)

    def iter_blocks(self) -> Iterator[tuple[str, int, float]]:
        with self._lock:
            items = list(self.blocks.items())
        return iter([(n, len(d), t) for n, (d, t) in items])

    def block_mtime(self, name: str) -> float | None:
        found = self.blocks.get(name)
        return found[1] if found else None

    def object_mtime(self, oid: str) -> float | None:
        found = self.objects.get(oid)
        return found[1] if found else None

    def create_object(self, oid: str, data: bytes) -> None:
        with self._lock:
            if check_object_id(oid) in self.objects:
                raise Conflict(f"object {oid} exists")
            self.objects[oid] = (bytearray(data), time.time())

    def _obj(self, oid: str) -> bytearray:
        try:
            return self.objects[check_object_id(oid)][0]
        except KeyError:
            raise BlockNotFound(f"object {oid} is not in the store") from None

    def read_object(self, oid: str, offset: int, length: int) -> bytes:
        with self._lock:
            data = bytes(self._obj(oid)[offset : offset + length])
        return data + bytes(length - len(data))

    def write_object(self, oid: str, offset: int, data: bytes | memoryview) -> None:
        with self._lock:
            obj = self._obj(oid)
            if len(obj) < offset:
                obj.extend(bytes(offset - len(obj)))
            obj[offset : offset + len(data)] = data
            self.objects[oid] = (obj, time.time())

    def sync_objects(self, oids: set[str]) -> None:
        for oid in oids:
            self._obj(oid)

    def delete_object(self, oid: str) -> None:
        with self._lock:
            self.objects.pop(check_object_id(oid), None)

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        with self._lock:
            return iter([(o, len(d), t) for o, (d, t) in self.objects.items()])

    def put_map(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        with self._lock:
            if exclusive and check_map_name(name) in self.maps:
                raise Conflict(f"map {name} exists")
            self.maps[check_map_name(name)] = bytearray(data)

    def get_map(self, name: str) -> bytes:
        try:
            return bytes(self.maps[check_map_name(name)])
        except KeyError:
            raise BlockNotFound(f"map {name} does not exist") from None

    def patch_map(self, name: str, offset: int, data: bytes) -> None:
        with self._lock:
            try:
                self.maps[check_map_name(name)][offset : offset + len(data)] = data
            except KeyError:
                raise BlockNotFound(f"map {name} does not exist") from None

    def sync_map(self, name: str) -> None:
        self.get_map(name)

    def has_map(self, name: str) -> bool:
        return check_map_name(name) in self.maps

    def delete_map(self, name: str) -> None:
        with self._lock:
            self.maps.pop(check_map_name(name), None)
            self.meta.pop(name, None)

    def list_maps(self) -> list[str]:
        return sorted(self.maps)

    def put_meta(self, name: str, meta: dict[str, Any]) -> None:
        self.meta[check_map_name(name)] = dict(meta)

    def get_meta(self, name: str) -> dict[str, Any]:
        return dict(self.meta.get(check_map_name(name), {}))

    def put_index(self, kind: str, key: str, value: str | None) -> None:
        k = (check_map_name(kind), check_map_name(key))
        if value is None:
            self.index.pop(k, None)
        else:
            self.index[k] = value

    def get_index(self, kind: str, key: str) -> str | None:
        return self.index.get((check_map_name(kind), check_map_name(key)))

    def lock(self, name: str, owner: str, *, stale_after: float | None = None) -> None:
        with self._lock:
            held = self.locks.get(check_map_name(name))
            fresh = held and (stale_after is None or time.time() - held.refreshed < stale_after)
            if held and held.owner != owner and fresh:
                raise LockHeld(name, held.owner)
            self.locks[name] = LockInfo(owner, time.time())

    def refresh_lock(self, name: str, owner: str) -> None:
        with self._lock:
            held = self.locks.get(check_map_name(name))
            if held is None or held.owner != owner:
                raise LockHeld(name, held.owner if held else "nobody (the lock was broken)")
            self.locks[name] = LockInfo(owner, time.time())

    def unlock(self, name: str, owner: str) -> None:
        with self._lock:
            held = self.locks.get(check_map_name(name))
            if held and held.owner == owner:
                del self.locks[name]

    def lock_info(self, name: str) -> LockInfo | None:
        return self.locks.get(check_map_name(name))

    def post_request(self, name: str, request: dict[str, Any]) -> str:
        request_id = secrets.token_hex(12)
        with self._lock:
            self.requests.setdefault(check_map_name(name), {})[request_id] = dict(request)
        return request_id

    def take_requests(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            waiting = self.requests.pop(check_map_name(name), {})
        return list(waiting.items())

    def answer_request(self, name: str, request_id: str, answer: dict[str, Any]) -> None:
        self.answers[(check_map_name(name), request_id)] = dict(answer)

    def poll_answer(self, name: str, request_id: str) -> dict[str, Any] | None:
        return self.answers.pop((check_map_name(name), request_id), None)

    def cancel_request(self, name: str, request_id: str) -> None:
        with self._lock:
            self.requests.get(check_map_name(name), {}).pop(request_id, None)
            self.answers.pop((name, request_id), None)
