"""Building the object store's answers: object headers, content with ranges and
conditions, and listings in plain text, JSON or XML."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree

from flask import Response, request, stream_with_context

from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store import Store

from . import conditions, http_ranges
from .errors import RangeNotSatisfiable
from .names import header_value, meta_headers
from .objects import Content
from .sharing import format_sharing

FORMATS = ("text", "json", "xml")


def output_format(default: str = "text") -> str:
    """``?format=``, else the Accept header, else ``default``."""
    wanted = request.args.get("format", "").lower()
    if wanted in ("json", "xml"):
        return wanted
    if wanted in ("text", "plain"):
        return "text"
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "application/xml", "text/xml", "text/plain"])
    if best == "application/json" and accept[best] > accept["text/plain"]:
        return "json"
    if best in ("application/xml", "text/xml") and accept[best] > accept["text/plain"]:
        return "xml"
    return default


def listing(
    kind: str, owner: str, items: list[dict[str, Any]], names: list[str], fmt: str
) -> Response:
    """A listing.  An empty one is 204 in plain text, and ``[]`` (or an empty element) with
    200 in JSON and XML, as in Pithos: kamaki wants 200 from a JSON container listing, and
    Swift clients stop paging at either."""
    if not names and fmt == "text":
        return Response(status=204)
    if fmt == "json":
        return Response(json.dumps(items), mimetype="application/json")
    if fmt == "xml":
        root = ElementTree.Element(kind, name=owner)
        child = "container" if kind == "account" else "object"
        for item in items:
            if "subdir" in item:
                sub = ElementTree.SubElement(root, "subdir", name=item["subdir"])
                ElementTree.SubElement(sub, "name").text = item["subdir"]
                continue
            node = ElementTree.SubElement(root, child)
            for key, value in item.items():
                text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                ElementTree.SubElement(node, key).text = text
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root)
        return Response(body, mimetype="application/xml")
    return Response("".join(n + "\n" for n in names), mimetype="text/plain")


def serve(
    store: Store,
    body: Content,
    headers: list[tuple[str, str]],
    validators: conditions.Validators,
    content_type: str,
    *,
    head: bool = False,
    skip_checksum: bool = False,
) -> Response:
    """GET or HEAD of content: conditions (304/412), then Range (206, multipart, 416)."""
    status = conditions.evaluate(request.headers, validators, request.method)
    if status is not None:
        keep = {"ETag", "Last-Modified", "X-Object-Hash", "X-Object-Version"}
        return Response(status=status, headers=[(k, v) for k, v in headers if k in keep])
    size = body.size
    ranges = None
    if conditions.if_range_allows(request.headers.get("If-Range"), validators):
        try:
            ranges = http_ranges.parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            return Response(
                status=416,
                headers=[*headers, ("Content-Range", http_ranges.unsatisfied_range(size))],
            )
    headers = [*headers, ("Accept-Ranges", "bytes")]
    if ranges is None:
        response = Response(
            None if head else _stream(store, body, 0, size),
            headers=headers,
            content_type=content_type,
        )
        response.content_length = size
        return response
    if len(ranges) == 1:
        start, stop = ranges[0]
        headers.append(("Content-Range", http_ranges.content_range(start, stop, size)))
        response = Response(
            None if head else _stream(store, body, start, stop),
            status=206,
            headers=headers,
            content_type=content_type,
        )
        response.content_length = stop - start
        return response
    boundary = http_ranges.new_boundary()
    parts = ((a, b, body.read(store, a, b)) for a, b in ranges)
    response = Response(
        None
        if head
        else stream_with_context(http_ranges.multipart_body(parts, size, content_type, boundary)),
        status=206,
        headers=headers,
        content_type=f"multipart/byteranges; boundary={boundary}",
    )
    response.content_length = http_ranges.multipart_length(ranges, size, content_type, boundary)
    return response


def _stream(store: Store, body: Content, start: int, stop: int) -> Iterable[bytes]:
    """The bytes, a block at a time (never the whole object in memory)."""
    if stop - start <= BLOCK_SIZE:
        return list(body.read(store, start, stop))
    return stream_with_context(body.read(store, start, stop))


def object_headers(
    *,
    obj: Any,
    version: Any,
    etag: str | None,
    owner: bool,
    public_url: str | None,
    shared_by: str | None,
) -> list[tuple[str, str]]:
    """The headers of an object's HEAD and GET."""
    headers = [
        ("Last-Modified", conditions.http_date(version.mtime)),
        ("X-Timestamp", f"{version.mtime:.5f}"),
        ("X-Object-Hash", version.hash),
        ("X-Object-UUID", str(obj.uuid)),
        ("X-Object-Version", str(version.id)),
        ("X-Object-Version-Timestamp", f"{version.mtime:.5f}"),
        ("X-Object-Modified-By", str(version.modified_by)),
        *meta_headers(version.meta, "Object"),
    ]
    if etag is not None:
        headers.append(("ETag", f'"{etag}"'))
    if version.kind == "dlo":
        headers.append(("X-Object-Manifest", header_value(version.manifest or "")))
    elif version.kind == "slo":
        headers.append(("X-Static-Large-Object", "True"))
    if obj.sharing and (owner or shared_by is None):
        headers.append(("X-Object-Sharing", format_sharing(obj.sharing)))
    if shared_by is not None:
        headers.append(("X-Object-Shared-By", header_value(shared_by)))
    if owner and public_url is not None:
        headers.append(("X-Object-Public", public_url))
    return headers
