"""The ``dir`` backend: the block store in a directory, local or shared over NFS.

Layout below ``[store] path``::

    blocks/ab/cd/<64-hex name>     content blocks, without trailing zeros
    objects/ab/cd/<32-hex id>      volumes' private blocks (written in place)
    maps/<name>                    maps;  meta/<name>.json  their metadata
    index/<kind>/<key>             lookups (disk UUID -> volume)
    locks/<name>                   volume locks: owner in the file, liveness in its mtime
    requests/<name>/<id>.req|.taken|.ans

Every whole-file write goes to a temporary file in the same directory and is renamed into
place, so readers on any node see the old or the new file, never a part.  Exclusive
creation uses link(2), which is atomic on NFS too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snf.common.errors import Conflict, InvalidInput

from .store import (
    BlockNotFound,
    LockHeld,
    LockInfo,
    Store,
    check_block_name,
    check_map_name,
    check_object_id,
)

_MAX_OPEN = 512
_REQUEST_ID_CHARS = set("0123456789abcdef")


def _fanout(root: Path, name: str) -> Path:
    return root / name[0:2] / name[2:4] / name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, *, durable: bool) -> Path:
    """Write ``data`` to a fresh temporary file beside ``path``; return the temporary path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _replace(path: Path, data: bytes, *, durable: bool = True) -> None:
    tmp = _write_new(path, data, durable=durable)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists (atomic, NFS-safe); True if created."""
    tmp = _write_new(path, data, durable=True)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _walk(root: Path) -> Iterator[tuple[str, int, float]]:
    if not root.is_dir():
        return
    for first in os.scandir(root):
        if not first.is_dir():
            continue
        for second in os.scandir(first.path):
            if not second.is_dir():
                continue
            for entry in os.scandir(second.path):
                if entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                yield entry.name, st.st_size, st.st_mtime


@dataclass
class _Open:
    fd: int
    users: int = 0
    closing: bool = False


class DirStore(Store):
    local_io = True

    def __init__(self, path: Path | str) -> None:
        self.root = Path(path)
        for sub in ("blocks", "objects", "maps", "meta", "index", "locks", "requests"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._fds: OrderedDict[Path, _Open] = OrderedDict()
        self._fd_lock = threading.Lock()

    # --- open files (objects and maps written in place, blocks read in part) ---------------

    @contextlib.contextmanager
    def _open(self, path: Path, flags: int = os.O_RDWR) -> Iterator[int]:
        """A cached descriptor for ``path``, never closed while a caller uses it."""
        with self._fd_lock:
            entry = self._fds.pop(path, None)
            if entry is None:
                try:
                    entry = _Open(os.open(path, flags))
                except FileNotFoundError:
                    raise BlockNotFound(
                        f"{path.relative_to(self.root)} is not in the store"
                    ) from None
            entry.users += 1
            self._fds[path] = entry
            if len(self._fds) > _MAX_OPEN:  # trim to 3/4, oldest idle first: amortised
                excess = len(self._fds) - _MAX_OPEN * 3 // 4
                idle = [p for p, e in self._fds.items() if e.users == 0][:excess]
                for victim in idle:
                    os.close(self._fds.pop(victim).fd)
        try:
            yield entry.fd
        finally:
            with self._fd_lock:
                entry.users -= 1
                if entry.closing and entry.users == 0:
                    os.close(entry.fd)

    def _forget(self, path: Path) -> None:
        """Close ``path``'s cached descriptor (now, or when its last user is done)."""
        with self._fd_lock:
            entry = self._fds.pop(path, None)
            if entry is not None:
                if entry.users == 0:
                    os.close(entry.fd)
                else:
                    entry.closing = True

    def close(self) -> None:
        with self._fd_lock:
            while self._fds:
                entry = self._fds.popitem()[1]
                if entry.users == 0:
                    os.close(entry.fd)
                else:
                    entry.closing = True

    # --- blocks --------------------------------------------------------------------------------

    def _put_block(self, name: str, data: bytes, *, durable: bool = True) -> None:
        _replace(_fanout(self.root / "blocks", name), data, durable=durable)

    def sync_blocks(self, names: Iterable[str]) -> None:
        paths = [_fanout(self.root / "blocks", check_block_name(n)) for n in set(names)]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
        for folder in {p.parent for p in paths}:
            _fsync_dir(folder)

    def _get_block(self, name: str) -> bytes:
        try:
            return _fanout(self.root / "blocks", name).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block {name} is not in the store") from None

    def _read_block(self, name: str, offset: int, length: int) -> bytes:
        # Content blocks never change: a cached descriptor stays right even after a delete.
        with self._open(_fanout(self.root / "blocks", name), os.O_RDONLY) as fd:
            if offset == 0 and length < self.block_size:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # a reader starting a block
            return os.pread(fd, length, offset)

    def _has_block(self, name: str) -> bool:
        return _fanout(self.root / "blocks", name).exists()

    def _touch_block(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(_fanout(self.root / "blocks", name))

    def _delete_block(self, name: str) -> None:
        _fanout(self.root / "blocks", name).unlink(missing_ok=True)

    def iter_blocks(self) -> Iterator[tuple[str, int, float]]:
        return _walk(self.root / "blocks")

    def block_mtime(self, name: str) -> float | None:
        return _mtime(_fanout(self.root / "blocks", name))

    # --- objects -------------------------------------------------------------------------------

    def _object(self, oid: str) -> Path:
        return _fanout(self.root / "objects", check_object_id(oid))

    def create_object(self, oid: str, data: bytes) -> None:
        if not _create_exclusive(self._object(oid), data):
            raise Conflict(f"object {oid} exists")

    def read_object(self, oid: str, offset: int, length: int) -> bytes:
        with self._open(self._object(oid)) as fd:
            if offset == 0 and length < self.block_size:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # read the rest ahead
            data = os.pread(fd, length, offset)
        return data + bytes(length - len(data))

    def write_object(self, oid: str, offset: int, data: bytes | memoryview) -> None:
        with self._open(self._object(oid)) as fd:
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n

    def sync_objects(self, oids: set[str]) -> None:
        for oid in oids:
            with self._open(self._object(oid)) as fd:
                os.fdatasync(fd)

    def adopt_object(self, oid: str, name: str) -> bool:
        source, target = self._object(oid), _fanout(self.root / "blocks", check_block_name(name))
        if source.stat().st_size != self.block_size:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            os.utime(target)  # stored already: renew it, as put_block does
        return True

    def delete_object(self, oid: str) -> None:
        path = self._object(oid)
        self._forget(path)
        path.unlink(missing_ok=True)

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        return _walk(self.root / "objects")

    def object_mtime(self, oid: str) -> float | None:
        return _mtime(self._object(oid))

    # --- maps, metadata, index ----------------------------------------------------------------

    def _map(self, name: str) -> Path:
        return self.root / "maps" / check_map_name(name)

    def put_map(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        path = self._map(name)
        self._forget(path)
        if exclusive:
            if not _create_exclusive(path, data):
                raise Conflict(f"map {name} exists")
        else:
            _replace(path, data)

    def get_map(self, name: str) -> bytes:
        try:
            return self._map(name).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"map {name} does not exist") from None

    def patch_map(self, name: str, offset: int, data: bytes) -> None:
        with self._open(self._map(name)) as fd:
            os.pwrite(fd, data, offset)

    def sync_map(self, name: str) -> None:
        with self._open(self._map(name)) as fd:
            os.fdatasync(fd)

    def has_map(self, name: str) -> bool:
        return self._map(name).exists()

    def delete_map(self, name: str) -> None:
        path = self._map(name)
        self._forget(path)
        path.unlink(missing_ok=True)
        (self.root / "meta" / f"{name}.json").unlink(missing_ok=True)

    def list_maps(self) -> list[str]:
        return sorted(p.name for p in (self.root / "maps").iterdir() if not p.name.startswith("."))

    def put_meta(self, name: str, meta: dict[str, Any]) -> None:
        _replace(self.root / "meta" / f"{check_map_name(name)}.json", json.dumps(meta).encode())

    def get_meta(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / "meta" / f"{check_map_name(name)}.json").read_text())
        except FileNotFoundError:
            return {}

    def _index(self, kind: str, key: str) -> Path:
        return self.root / "index" / check_map_name(kind) / check_map_name(key)

    def put_index(self, kind: str, key: str, value: str | None) -> None:
        path = self._index(kind, key)
        if value is None:
            path.unlink(missing_ok=True)
        else:
            _replace(path, value.encode())

    def get_index(self, kind: str, key: str) -> str | None:
        try:
            return self._index(kind, key).read_text()
        except FileNotFoundError:
            return None

    # --- locks ---------------------------------------------------------------------------------

    def _lock(self, name: str) -> Path:
        return self.root / "locks" / check_map_name(name)

    def lock(self, name: str, owner: str, *, stale_after: float | None = None) -> None:
        path = self._lock(name)
        for _ in range(3):
            if _create_exclusive(path, owner.encode()):
                return
            info = self.lock_info(name)
            if info is None:
                continue  # released meanwhile: try again
            if info.owner == owner:
                return
            if stale_after is None or time.time() - info.refreshed < stale_after:
                raise LockHeld(name, info.owner)
            self._break(path, info.owner)
        raise LockHeld(name, "another owner (the lock changed hands while it was broken)")

    def _break(self, path: Path, stale_owner: str) -> None:
        """Move a stale lock aside, unless it changed since it was found stale."""
        broken = path.parent / f".broken-{path.name}-{secrets.token_hex(6)}"
        try:
            os.rename(path, broken)
        except FileNotFoundError:
            return
        if broken.read_text() != stale_owner:  # someone else broke and retook it meanwhile
            with contextlib.suppress(FileExistsError):
                os.link(broken, path)
        broken.unlink(missing_ok=True)

    def refresh_lock(self, name: str, owner: str) -> None:
        info = self.lock_info(name)
        if info is None or info.owner != owner:
            raise LockHeld(name, info.owner if info else "nobody (the lock was broken)")
        os.utime(self._lock(name))

    def unlock(self, name: str, owner: str) -> None:
        info = self.lock_info(name)
        if info is not None and info.owner == owner:
            self._lock(name).unlink(missing_ok=True)

    def lock_info(self, name: str) -> LockInfo | None:
        path = self._lock(name)
        try:
            owner = path.read_text()
            return LockInfo(owner=owner, refreshed=path.stat().st_mtime)
        except FileNotFoundError:
            return None

    # --- requests ------------------------------------------------------------------------------

    def _requests(self, name: str) -> Path:
        return self.root / "requests" / check_map_name(name)

    @staticmethod
    def _check_request_id(request_id: str) -> str:
        if len(request_id) != 24 or not set(request_id) <= _REQUEST_ID_CHARS:
            raise InvalidInput(f"bad request id {request_id!r}")
        return request_id

    def post_request(self, name: str, request: dict[str, Any]) -> str:
        request_id = secrets.token_hex(12)
        _replace(self._requests(name) / f"{request_id}.req", json.dumps(request).encode())
        return request_id

    def take_requests(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        folder = self._requests(name)
        if not folder.is_dir():
            return []
        taken = []
        for path in sorted(folder.glob("*.req")):
            claimed = path.with_suffix(".taken")
            try:
                os.rename(path, claimed)
                taken.append((path.stem, json.loads(claimed.read_text())))
            except FileNotFoundError:
                continue  # cancelled, or taken by another holder
            except ValueError:
                claimed.unlink(missing_ok=True)  # not a request we wrote: drop it
        return taken

    def answer_request(self, name: str, request_id: str, answer: dict[str, Any]) -> None:
        folder = self._requests(name)
        self._check_request_id(request_id)
        _replace(folder / f"{request_id}.ans", json.dumps(answer).encode())
        (folder / f"{request_id}.taken").unlink(missing_ok=True)

    def poll_answer(self, name: str, request_id: str) -> dict[str, Any] | None:
        path = self._requests(name) / f"{self._check_request_id(request_id)}.ans"
        try:
            answer = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return answer

    def cancel_request(self, name: str, request_id: str) -> None:
        folder = self._requests(name)
        self._check_request_id(request_id)
        for suffix in (".req", ".taken", ".ans"):
            (folder / f"{request_id}{suffix}").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
