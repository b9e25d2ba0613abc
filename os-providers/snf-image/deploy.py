"""Put an image onto a disk: nothing to do for an archipelago clone of the image's map,
otherwise stream it (raw disk, filesystem dump behind a generated MBR, or qcow2 through
``qemu-img``), reporting progress in Ganeti's log.

Sources (``params.Source``): an archipelago map (read from the shared store), an object of
the portal's object store (``pithos://``, read over HTTP with the node's service token),
a local file, or an http(s) URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from snf.archipelago import volumes
from snf.archipelago.backends import open_store
from snf.archipelago.mapfile import CONTENT, ZERO
from snf.common.config import Config
from snf.common.errors import InvalidInput, NotFound, SnfError

from . import partitions
from .customize import disk_size
from .params import ImageParams, Source

CHUNK = 4 << 20
DUMP_START = 2048 * partitions.SECTOR
QEMU_IMG = "/usr/bin/qemu-img"
DUMP_TYPES = {"extdump": "83", "ntfsdump": "07"}


class SourceError(SnfError):
    """The image cannot be read."""


@dataclass
class Stream:
    size: int
    chunks: Iterator[bytes]


def _map_stream(config: Config, name: str) -> Stream:
    store = open_store(config.store)
    vmap = volumes.load_map(store, name)

    def chunks() -> Iterator[bytes]:
        try:
            for index in range(vmap.count):
                n = min(vmap.block_size, vmap.size - index * vmap.block_size)
                entry = vmap.entry(index)
                if entry.kind == ZERO:
                    yield bytes(n)
                elif entry.kind == CONTENT:
                    yield store.read_block(entry.ident, 0, n)
                else:
                    yield store.read_object(entry.ident, 0, n)
        finally:
            store.close()

    return Stream(vmap.size, chunks())


def _file_stream(path: str) -> Stream:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except OSError as exc:
        raise SourceError(f"cannot open the image {path}: {exc.strerror}") from None
    size = os.fstat(f.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with f:
            while data := f.read(CHUNK):
                yield data

    return Stream(size, chunks())


def _http_stream(url: str, token: str | None) -> Stream:
    request = urllib.request.Request(url, headers={"X-Auth-Token": token} if token else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"cannot read the image: {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        host = urllib.parse.urlsplit(url).hostname
        raise SourceError(f"cannot reach {host} for the image: {exc}") from None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        response.close()
        raise SourceError("the image's server sent no Content-Length")

    def chunks() -> Iterator[bytes]:
        with response:
            got = 0
            while data := response.read(CHUNK):
                got += len(data)
                yield data
            if got != int(length):
                raise SourceError(f"the image ended after {got} of {length} bytes")

    return Stream(int(length), chunks())


def _token(config: Config) -> str:
    try:
        return config.image.service_token_file.read_text().strip()
    except OSError as exc:
        raise SourceError(
            f"cannot read the service token {config.image.service_token_file}: {exc.strerror}"
        ) from None


def _ascii_url(url: str) -> str:
    """``url`` with non-ASCII characters after the host percent-encoded as UTF-8, as a browser
    sends them (``http.client`` refuses a request line that is not ASCII)."""
    split = urllib.parse.urlsplit(url)
    host_end = len(split.scheme) + len("://") + len(split.netloc)
    rest = re.sub(r"[^\x00-\x7f]+", lambda m: urllib.parse.quote(m.group()), url[host_end:])
    return url[:host_end] + rest


def open_source(source: Source, config: Config) -> Stream:
    if source.kind == "map":
        return _map_stream(config, source.value)
    if source.kind == "local":
        return _file_stream(source.value)
    if source.kind == "url":
        return _http_stream(_ascii_url(source.value), None)
    quoted = "/".join(
        [
            urllib.parse.quote(source.account or "", safe=""),
            urllib.parse.quote(source.container or "", safe=""),
            urllib.parse.quote(source.path or ""),
        ]
    )
    url = f"{config.image.portal_url.rstrip('/')}/object-store/v1/{quoted}"
    return _http_stream(url, _token(config))


class Progress:
    """``copied 512 of 2048 MiB (25%), 310 MiB/s`` at most every few seconds."""

    def __init__(self, total: int, say: Callable[[str], None], every: float = 3.0) -> None:
        self.total, self.say, self.every = total, say, every
        self.start = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6) / (1 << 20)
        pct = 100 * done // max(self.total, 1)
        self.say(f"copied {done >> 20} of {self.total >> 20} MiB ({pct}%), {rate:.0f} MiB/s")


def write_stream(disk: str, stream: Stream, offset: int, say: Callable[[str], None]) -> None:
    progress = Progress(stream.size, say)
    fd = os.open(disk, os.O_WRONLY | os.O_CLOEXEC)
    done = 0
    try:
        for data in stream.chunks:
            if done + len(data) > stream.size:
                raise SourceError(f"the image is longer than the {stream.size} bytes announced")
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset + done)
                view, done = view[n:], done + n
            progress.update(done)
        if done != stream.size:
            raise SourceError(f"the image ended after {done} of {stream.size} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)
    progress.update(done, final=True)


def _qemu_img_info(path: str) -> dict[str, object]:
    out = subprocess.run(
        [QEMU_IMG, "info", "--output=json", "-f", "qcow2", path],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise InvalidInput(f"the image is not a valid qcow2 file: {out.stderr.strip()[-200:]}")
    info = json.loads(out.stdout)
    specific = info.get("format-specific", {}).get("data", {})
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise InvalidInput("the qcow2 image has a backing file: refused (it could read node files)")
    if specific.get("data-file"):
        raise InvalidInput("the qcow2 image has an external data file: refused")
    return info


def write_qcow2(disk: str, source: Source, config: Config, say: Callable[[str], None]) -> None:
    with contextlib.ExitStack() as stack:
        if source.kind == "local":
            path = source.value
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(dir=config.image.work_dir))
            path = str(Path(folder, "image.qcow2"))
            Path(path).touch(0o600)
            say("downloading the qcow2 image")
            write_stream(path, open_source(source, config), 0, say)
        info = _qemu_img_info(path)
        virtual = int(info.get("virtual-size", 0))  # type: ignore[call-overload]
        if virtual > disk_size(disk):
            raise InvalidInput(f"the image ({virtual} bytes) does not fit the disk")
        say(f"converting the qcow2 image ({virtual >> 20} MiB)")
        out = subprocess.run(
            [QEMU_IMG, "convert", "-f", "qcow2", "-O", "raw", "-n", "-W", path, disk],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise SourceError(f"qemu-img convert failed: {out.stderr.strip()[-300:]}")


def deploy(
    disk: str,
    disk_uuid: str | None,
    params: ImageParams,
    config: Config,
    say: Callable[[str], None],
) -> None:
    """Make ``disk`` hold the image's bytes (before customization)."""
    source = params.source
    # a clone holds the map's bytes as they are: the disk only if the image is a raw disk
    if source.kind == "map" and params.format == "diskdump" and disk_uuid is not None:
        store = open_store(config.store)
        try:
            clone = volumes.is_clone_of(store, disk_uuid, source.value)
        finally:
            store.close()
        if clone:
            say(f"the disk is a clone of {source.value}: nothing to copy")
            return
    if params.format == "qcow2":
        write_qcow2(disk, source, config, say)
        return
    try:
        stream = open_source(source, config)
    except NotFound as exc:
        raise SourceError(str(exc)) from None
    size = disk_size(disk)
    dump = params.format in DUMP_TYPES
    need = stream.size + (DUMP_START if dump else 0)
    if need > size:
        raise InvalidInput(f"the image ({need} bytes) does not fit the disk ({size} bytes)")
    say(f"writing {stream.size >> 20} MiB ({params.format}) from {source.kind} {source.value}")
    if dump:
        mbr = partitions.single_partition_mbr(stream.size, type=DUMP_TYPES[params.format])
        fd = os.open(disk, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, mbr + bytes(DUMP_START - len(mbr)), 0)
        finally:
            os.close(fd)
    write_stream(disk, stream, DUMP_START if dump else 0, say)


def export_disk(device: str, out_fd: int, size_fd: int | None) -> None:
    """Stream the raw disk to ``out_fd`` (gnt-backup export), telling its size first."""
    size = disk_size(device)
    if size_fd is not None:
        with contextlib.suppress(OSError):
            os.write(size_fd, f"{size}\n".encode())
    with open(device, "rb") as src, os.fdopen(os.dup(out_fd), "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)


def import_disk(device: str, in_fd: int) -> int:
    """Write the raw stream on ``in_fd`` onto the disk (gnt-backup import); bytes written."""
    size = disk_size(device)
    done = 0
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        while data := os.read(in_fd, CHUNK):
            if done + len(data) > size:
                raise InvalidInput(f"the imported disk is larger than the disk ({size} bytes)")
            os.pwrite(fd, data, done)
            done += len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return done
