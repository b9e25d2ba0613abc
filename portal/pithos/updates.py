"""Writes that build a version from another one: Pithos' partial updates (POST with
Content-Range, from the body or from another object; appends; X-Object-Bytes truncation)
and Swift's static large object manifests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from flask import Response, request

from snf.archipelago.hashing import BLOCK_SIZE, ZERO_HASH
from snf.archipelago.mapfile import blocks_for

from ..extensions import db
from . import containers, md5_jobs, objects
from .access import check
from .api import caller, json_request, settings, store
from .content import read_body
from .errors import BadRequest, RangeNotSatisfiable
from .http_ranges import parse_content_range
from .models import Container
from .names import check_container, check_object
from .objects import NewVersion

MAX_SEGMENTS = 1000


def partial_update(found: Container, name: str, user: uuid.UUID) -> Response:
    obj = objects.find(db.session, found, name)
    version = objects.current(db.session, obj)
    if version.kind != "data":
        raise BadRequest("a manifest cannot be updated in place")
    size, base = version.size, version.id
    hashes = objects.hashes(store(), version)
    start, length, data = _update_source(found, size)
    truncate = _object_bytes()
    end = size if length == 0 else max(size, start + length)
    new_size = end if truncate is None else truncate
    if new_size > settings().max_object_bytes:
        raise BadRequest(f"an object holds at most {settings().max_object_bytes} bytes")
    ctype, meta = version.content_type, dict(version.meta)
    db.session.commit()  # no transaction while blocks are rewritten
    new_hashes = _patch(hashes, size, start, length, data, new_size)
    new = NewVersion(new_hashes, new_size, None, ctype, meta, uuid=obj.uuid, based_on=base)
    created = objects.put(db.session, store(), found, name, new, user)
    md5_jobs.schedule(created.id)
    return Response(
        status=204, headers=[("X-Object-Version", str(created.id)), ("X-Object-Hash", created.hash)]
    )


def _object_bytes() -> int | None:
    raw = request.headers.get("X-Object-Bytes")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("X-Object-Bytes must be a number of bytes") from None
    if value < 0:
        raise BadRequest("X-Object-Bytes must not be negative")
    return value


def _update_source(found: Container, size: int) -> tuple[int, int, Iterator[bytes]]:
    """(offset, length, data) of the update: from X-Source-Object or from the body."""
    header = request.headers.get("Content-Range")
    if header is None:
        return size, 0, iter(())
    first, last, _total = parse_content_range(header)
    start = size if first is None else first
    if start > size:
        raise RangeNotSatisfiable(f"the update starts at {start}, past the end ({size})", size)
    wanted = None if last is None or first is None else last - first + 1
    source = request.headers.get("X-Source-Object")
    if source is not None:
        return start, *_from_object(found, source, wanted)
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if length is None and not chunked:
        raise BadRequest("a data update needs Content-Length or chunked transfer encoding")
    if wanted is not None and length is not None and wanted != length:
        raise BadRequest(f"Content-Range covers {wanted} bytes, the body has {length}")
    if length is None:  # chunked: read it all (updates are block-sized)
        body = read_body(request.stream, settings().max_object_bytes + 1)
        if wanted is not None and len(body) != wanted:
            raise BadRequest(f"Content-Range covers {wanted} bytes, the body has {len(body)}")
        return start, len(body), iter([body])
    return start, length, _body_chunks(length)


def _body_chunks(length: int) -> Iterator[bytes]:
    left = length
    while left:
        chunk = read_body(request.stream, min(left, BLOCK_SIZE))
        if not chunk:
            raise BadRequest(f"the body ended {left} bytes early")
        left -= len(chunk)
        yield chunk


def _from_object(found: Container, path: str, wanted: int | None) -> tuple[int, Iterator[bytes]]:
    account = request.headers.get("X-Source-Account")
    owner = uuid.UUID(account) if account else found.account
    cname, _, oname = unquote(path).lstrip("/").partition("/")
    src = containers.get(db.session, owner, check_container(cname))
    oname = check_object(oname)
    check(db.session, caller(), src, oname, "read")
    version = objects.current(db.session, objects.find(db.session, src, oname))
    body = objects.open_content(db.session, store(), src, version)
    length = body.size if wanted is None else min(wanted, body.size)
    return length, body.read(store(), 0, length)


def _patch(
    hashes: list[str], size: int, start: int, length: int, data: Iterator[bytes], new_size: int
) -> list[str]:
    """The block list after writing ``data`` at ``start`` and cutting (or zero-extending) the
    object to ``new_size``: only the blocks touched are read, patched and stored again."""
    st = store()
    count = blocks_for(max(size, start + length))
    out = hashes[: blocks_for(size)] + [ZERO_HASH] * (count - blocks_for(size))
    pending = b""
    offset = start
    stream = iter(data)
    while offset < start + length:
        index, within = divmod(offset, BLOCK_SIZE)
        take = min(BLOCK_SIZE - within, start + length - offset)
        while len(pending) < take:
            pending += next(stream)
        piece, pending = pending[:take], pending[take:]
        block = bytearray(st.get_block(out[index]))
        block[within : within + take] = piece
        out[index] = st.put_block(block, durable=False)
        offset += take
    keep = max(1, blocks_for(new_size))
    out = (out + [ZERO_HASH] * keep)[:keep]
    tail = new_size % BLOCK_SIZE
    if new_size < max(size, start + length) and tail:
        block = bytearray(st.get_block(out[-1]))
        block[tail:] = bytes(BLOCK_SIZE - tail)
        out[-1] = st.put_block(block, durable=False)
    if new_size == 0:
        out = [ZERO_HASH]
    st.sync_blocks(h for h in set(out) if h != ZERO_HASH)
    return out


def put_slo(
    found: Container, name: str, meta: dict[str, str], ctype: str, user: uuid.UUID
) -> Response:
    """``PUT ?multipart-manifest=put``: a static large object from existing segments."""
    items = json_request("the manifest")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_SEGMENTS:
        raise BadRequest(f"the manifest must list 1 to {MAX_SEGMENTS} segments")
    manifest: list[dict[str, Any]] = []
    total = 0
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BadRequest("each segment needs a path: /container/object")
        cname, _, oname = unquote(item["path"]).lstrip("/").partition("/")
        seg_c = containers.get(db.session, found.account, check_container(cname))
        seg = objects.find(db.session, seg_c, check_object(oname))
        version = objects.current(db.session, seg)
        if version.kind != "data":
            raise BadRequest(f"segment {item['path']} is itself a manifest")
        etag = item.get("etag")
        if etag is not None and version.md5 is None:
            version.md5 = md5_jobs.compute(version.id)
            version = objects.current(db.session, seg)
        if etag is not None and etag.strip('"') != version.md5:
            raise BadRequest(f"segment {item['path']} has ETag {version.md5}, not {etag}")
        size_bytes = item.get("size_bytes")
        if size_bytes is not None and size_bytes != version.size:
            raise BadRequest(f"segment {item['path']} has {version.size} bytes, not {size_bytes}")
        manifest.append(
            {
                "name": f"/{cname}/{oname}",
                "hash": version.md5,
                "bytes": version.size,
                "content_type": version.content_type,
            }
        )
        total += version.size
    new = NewVersion(
        [ZERO_HASH], total, None, ctype, meta, kind="slo", manifest=json.dumps(manifest)
    )
    created = objects.put(db.session, store(), found, name, new, user)
    etag = objects.etag_of(db.session, found, created)
    return Response(
        status=201, headers=[("ETag", f'"{etag}"'), ("X-Object-Version", str(created.id))]
    )
