"""snf.image.deploy: every image source for real (an archipelago store in a folder, a local
file, an HTTP server, the portal's object store behind a token), then ``deploy`` onto a file
disk in every format (raw, dumps behind a generated MBR, qcow2 through ``qemu-img``), the
archipelago clone that needs no copy, refusals that leave the disk untouched, and the raw
export/import streams of gnt-backup."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from snf.archipelago import volumes
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.mapfile import CONTENT, OBJECT, ZERO
from snf.archipelago.store_dir import DirStore
from snf.archipelago.volume import Volume
from snf.common.config import Config, ImageConfig, StoreConfig
from snf.common.errors import InvalidInput, NotFound
from snf.image import deploy as dp
from snf.image import partitions
from snf.image.params import ImageParams, parse_params
from tests.conftest import require

MiB = 1 << 20
DISK_SIZE = 8 * MiB
OLD = b"\xee"  # what the disk holds before a deploy
TOKEN = "service-token-0123456789"
DISK_UUID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def random_image(size: int) -> bytes:
    """Random bytes, with a long run of zeros in the middle (sparse images must still
    overwrite what the disk held there)."""
    data = bytearray(os.urandom(size))
    data[size // 3 : size // 3 + size // 4] = bytes(size // 4)
    return bytes(data)


def image_params(img_id: str, fmt: str = "diskdump") -> ImageParams:
    return parse_params({"img_id": img_id, "img_format": fmt})


class Messages(list[str]):
    """Collects what a deploy says."""

    def __call__(self, message: str) -> None:
        assert "\n" not in message
        self.append(message)


@pytest.fixture
def say() -> Messages:
    return Messages()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """An 8 MiB file disk full of 0xee."""
    path = tmp_path / "disk"
    path.write_bytes(OLD * DISK_SIZE)
    return path


def fingerprint(path: Path) -> tuple[str, int, int]:
    """Contents, size and modification time: a disk nothing wrote to keeps all three."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


# --- a real HTTP server ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    #: the Content-Length header: "auto" is len(body), None sends none, else sent as is
    length: str | None = "auto"


@dataclass
class Site:
    """What the server answers (by decoded path) and what it was asked."""

    url: str = ""
    routes: dict[str, Reply] = field(default_factory=dict)
    token: str | None = None  # if set, requests without this X-Auth-Token get 401
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (raw path, token)


class _Handler(http.server.BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:
        token = self.headers.get("X-Auth-Token")
        self.site.requests.append((self.path, token))
        if self.site.token is not None and token != self.site.token:
            reply = Reply(401, b"bad token")
        else:
            reply = self.site.routes.get(urllib.parse.unquote(self.path), Reply(404, b"nothing"))
        self.send_response(reply.status)
        length = str(len(reply.body)) if reply.length == "auto" else reply.length
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Site]:
    """An HTTP/1.0 server on 127.0.0.1 (it closes each connection after its reply)."""
    state = Site()
    handler = type("Handler", (_Handler,), {"site": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def config(tmp_path: Path, site: Site | None = None) -> Config:
    token_file = tmp_path / "service-token"
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
    (tmp_path / "work").mkdir(exist_ok=True)
    return Config(
        store=StoreConfig(backend="dir", path=tmp_path / "store"),
        image=ImageConfig(
            mode="direct",
            portal_url=(site.url if site else "http://127.0.0.1:9") + "/",
            service_token_file=token_file,
            work_dir=tmp_path / "work",
        ),
    )


def import_map(tmp_path: Path, name: str, data: bytes) -> None:
    store = DirStore(tmp_path / "store")
    try:
        src = tmp_path / f"{name}.src"
        src.write_bytes(data)
        with open(src, "rb") as f:
            volumes.import_image(store, name, f)
    finally:
        store.close()


# --- open_source ----------------------------------------------------------------------------------


def test_map_source_reads_content_and_zero_blocks(tmp_path: Path) -> None:
    data = os.urandom(BLOCK_SIZE) + bytes(BLOCK_SIZE) + os.urandom(12345)
    import_map(tmp_path, "img", data)
    store = DirStore(tmp_path / "store")
    kinds = [volumes.load_map(store, "img").entry(i).kind for i in range(3)]
    store.close()
    assert kinds == [CONTENT, ZERO, CONTENT]  # both kinds of entry are read below
    stream = dp.open_source(image_params("map:img").source, config(tmp_path))
    assert stream.size == len(data)
    chunks = list(stream.chunks)
    assert [len(c) for c in chunks] == [BLOCK_SIZE, BLOCK_SIZE, 12345]
    assert b"".join(chunks) == data


def test_map_source_reads_a_snapshot_of_a_written_volume(tmp_path: Path) -> None:
    """A snapshot's blocks are the volume's private objects, not content blocks."""
    store = DirStore(tmp_path / "store")
    volumes.create_volume(store, "vol", 2 * BLOCK_SIZE)
    payload = os.urandom(100_000)
    with Volume(store, "vol", "tests") as vol:
        vol.write(BLOCK_SIZE + 4096, payload)
    volumes.snapshot_volume(store, "vol", "snap")
    kinds = [volumes.load_map(store, "snap").entry(i).kind for i in range(2)]
    store.close()
    assert kinds == [ZERO, OBJECT]
    stream = dp.open_source(image_params("map:snap").source, config(tmp_path))
    expected = bytearray(2 * BLOCK_SIZE)
    expected[BLOCK_SIZE + 4096 : BLOCK_SIZE + 4096 + len(payload)] = payload
    assert stream.size == len(expected)
    assert b"".join(stream.chunks) == expected


def test_missing_map(tmp_path: Path, disk: Path, say: Messages) -> None:
    before = fingerprint(disk)
    with pytest.raises(NotFound, match="nosuchimage"):
        dp.open_source(image_params("map:nosuchimage").source, config(tmp_path))
    with pytest.raises(dp.SourceError, match="nosuchimage"):
        dp.deploy(str(disk), None, image_params("map:nosuchimage"), config(tmp_path), say)
    assert fingerprint(disk) == before


def test_local_source(tmp_path: Path) -> None:
    data = os.urandom(dp.CHUNK + 1000)  # more than one chunk
    (tmp_path / "image.raw").write_bytes(data)
    stream = dp.open_source(image_params(str(tmp_path / "image.raw")).source, config(tmp_path))
    assert stream.size == len(data)
    chunks = list(stream.chunks)
    assert [len(c) for c in chunks] == [dp.CHUNK, 1000]
    assert b"".join(chunks) == data


def test_missing_local_file(tmp_path: Path) -> None:
    source = image_params(str(tmp_path / "nothing.raw")).source
    with pytest.raises(dp.SourceError, match=r"cannot open the image .*nothing\.raw"):
        dp.open_source(source, config(tmp_path))


def test_http_source(tmp_path: Path, site: Site) -> None:
    data = os.urandom(3 * MiB + 17)
    site.routes["/images/a.raw"] = Reply(body=data)
    stream = dp.open_source(image_params(site.url + "/images/a.raw").source, config(tmp_path))
    assert stream.size == len(data)  # from Content-Length, before any byte is read
    assert b"".join(stream.chunks) == data
    assert site.requests == [("/images/a.raw", None)]  # a plain URL gets no token


@pytest.mark.parametrize(
    ("path", "query"),
    [("/images/déjà-vu.img", ""), ("/b%C3%BCcher/ü.img", "?name=ünï&x=1")],
    ids=["raw-utf8", "mixed"],
)
def test_http_source_with_non_ascii_characters(
    tmp_path: Path, site: Site, path: str, query: str
) -> None:
    """An IRI is requested as a browser would: non-ASCII bytes percent-encoded, the rest kept
    (``verify`` accepts such URLs: ``create`` must not fail on them with an internal error)."""
    data = os.urandom(1000)
    site.routes[urllib.parse.unquote(path + query)] = Reply(body=data)
    stream = dp.open_source(image_params(site.url + path + query).source, config(tmp_path))
    assert b"".join(stream.chunks) == data
    ((raw, _),) = site.requests
    assert raw.isascii() and urllib.parse.unquote(raw) == urllib.parse.unquote(path + query)
    assert "%C3%BCcher" in raw or "d%C3%A9j%C3%A0-vu" in raw


@pytest.mark.parametrize("length", [None, "12abc", "-5", ""], ids=["none", "junk", "neg", "empty"])
def test_http_source_needs_a_content_length(tmp_path: Path, site: Site, length: str | None) -> None:
    site.routes["/a.raw"] = Reply(body=b"x" * 1000, length=length)
    with pytest.raises(dp.SourceError, match="no Content-Length"):
        dp.open_source(image_params(site.url + "/a.raw").source, config(tmp_path))


def test_http_source_shorter_than_announced(tmp_path: Path, site: Site) -> None:
    site.routes["/short.raw"] = Reply(body=b"x" * 600, length="1000")
    stream = dp.open_source(image_params(site.url + "/short.raw").source, config(tmp_path))
    assert stream.size == 1000
    with pytest.raises(dp.SourceError, match="ended after 600 of 1000 bytes"):
        b"".join(stream.chunks)


def test_http_source_short_body_fails_the_deploy(
    tmp_path: Path, site: Site, disk: Path, say: Messages
) -> None:
    site.routes["/short.raw"] = Reply(body=b"x" * MiB, length=str(2 * MiB))
    with pytest.raises(dp.SourceError, match=f"ended after {MiB} of {2 * MiB} bytes"):
        dp.deploy(str(disk), None, image_params(site.url + "/short.raw"), config(tmp_path), say)


@pytest.mark.parametrize("status", [404, 403, 500])
def test_http_error_status(tmp_path: Path, site: Site, status: int) -> None:
    site.routes["/a.raw"] = Reply(status, b"no")
    with pytest.raises(dp.SourceError, match=f"cannot read the image: {status} "):
        dp.open_source(image_params(site.url + "/a.raw").source, config(tmp_path))


def test_http_missing_path_is_404(tmp_path: Path, site: Site) -> None:
    with pytest.raises(dp.SourceError, match="404 Not Found"):
        dp.open_source(image_params(site.url + "/missing.raw").source, config(tmp_path))


def test_http_server_unreachable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(dp.SourceError, match=r"cannot reach 127\.0\.0\.1 for the image"):
        dp.open_source(image_params(f"http://127.0.0.1:{port}/a.raw").source, config(tmp_path))


# --- pithos:// through the portal -----------------------------------------------------------------

ACCOUNT = "alice@example.org"
CONTAINER = "my images"
PATH = "dir with spaces/déjà vu ünï?#1.img"  # '?' and '#' must not become a query or fragment
PITHOS_ID = "pithos://alice%40example.org/my%20images/dir with spaces/déjà vu ünï%3F%231.img"
PITHOS_PATH = f"/object-store/v1/{ACCOUNT}/{CONTAINER}/{PATH}"


def test_pithos_source_goes_through_the_portal_with_the_service_token(
    tmp_path: Path, site: Site
) -> None:
    data = os.urandom(MiB + 3)
    site.token = TOKEN
    site.routes[PITHOS_PATH] = Reply(body=data)
    source = image_params(PITHOS_ID).source
    assert (source.kind, source.account, source.container, source.path) == (
        "pithos",
        ACCOUNT,
        CONTAINER,
        PATH,
    )
    stream = dp.open_source(source, config(tmp_path, site))
    assert stream.size == len(data)
    assert b"".join(stream.chunks) == data
    ((raw, token),) = site.requests
    assert token == TOKEN  # the file's contents, without its newline
    assert raw.isascii() and not set(raw) & set(" ?#")  # every odd character quoted
    # each part was quoted on its own: the account and container are single segments
    segments = [urllib.parse.unquote(s) for s in raw.split("/")]
    assert segments == ["", "object-store", "v1", ACCOUNT, CONTAINER, *PATH.split("/")]


def test_pithos_wrong_token_is_refused(tmp_path: Path, site: Site) -> None:
    site.token = "another token"
    site.routes[PITHOS_PATH] = Reply(body=b"secret")
    with pytest.raises(dp.SourceError, match="401"):
        dp.open_source(image_params(PITHOS_ID).source, config(tmp_path, site))


def test_pithos_missing_object(tmp_path: Path, site: Site) -> None:
    site.token = TOKEN
    with pytest.raises(dp.SourceError, match="404"):
        dp.open_source(image_params(PITHOS_ID).source, config(tmp_path, site))


def test_pithos_without_a_token_file(tmp_path: Path, site: Site) -> None:
    cfg = config(tmp_path, site)
    cfg.image.service_token_file.unlink()
    with pytest.raises(dp.SourceError, match=r"cannot read the service token .*service-token"):
        dp.open_source(image_params(PITHOS_ID).source, cfg)
    assert site.requests == []  # nothing is asked without a token


# --- deploy: raw disks from every source ----------------------------------------------------------

#: how each kind of source is made to serve ``data``; returns the img_id
Serve = Callable[[Path, Site, bytes], str]


def _serve_local(tmp_path: Path, site: Site, data: bytes) -> str:
    (tmp_path / "image.raw").write_bytes(data)
    return str(tmp_path / "image.raw")


def _serve_url(tmp_path: Path, site: Site, data: bytes) -> str:
    site.routes["/image.raw"] = Reply(body=data)
    return site.url + "/image.raw"


def _serve_map(tmp_path: Path, site: Site, data: bytes) -> str:
    import_map(tmp_path, "img", data)
    return "map:img"


def _serve_pithos(tmp_path: Path, site: Site, data: bytes) -> str:
    site.token = TOKEN
    site.routes[PITHOS_PATH] = Reply(body=data)
    return PITHOS_ID


SERVERS: dict[str, Serve] = {
    "local": _serve_local,
    "url": _serve_url,
    "map": _serve_map,
    "pithos": _serve_pithos,
}


@pytest.mark.parametrize("kind", SERVERS)
def test_diskdump_is_copied_byte_for_byte(
    tmp_path: Path, site: Site, disk: Path, say: Messages, kind: str
) -> None:
    data = random_image(5 * MiB + 512)
    img_id = SERVERS[kind](tmp_path, site, data)
    dp.deploy(str(disk), DISK_UUID, image_params(img_id), config(tmp_path, site), say)
    written = disk.read_bytes()
    assert len(written) == DISK_SIZE
    assert written[: len(data)] == data
    assert written[len(data) :] == OLD * (DISK_SIZE - len(data))
    assert say[0] == f"writing 5 MiB (diskdump) from {kind} {image_params(img_id).source.value}"
    assert say[-1].startswith("copied 5 of 5 MiB (100%), ")
    assert say[-1].endswith(" MiB/s")


@pytest.mark.parametrize(("fmt", "ptype"), [("extdump", "83"), ("ntfsdump", "07")])
def test_dump_gets_an_mbr_and_lands_at_1_mib(
    tmp_path: Path, disk: Path, say: Messages, fmt: str, ptype: str
) -> None:
    data = random_image(3 * MiB + 1000)  # not whole sectors: the partition is rounded up
    img_id = _serve_local(tmp_path, Site(), data)
    dp.deploy(str(disk), None, image_params(img_id, fmt), config(tmp_path), say)
    written = disk.read_bytes()
    table = partitions.read_table(written[: partitions.HEAD_BYTES], DISK_SIZE)
    assert table.kind == "mbr"
    assert table.partitions == (partitions.Partition(1, MiB, 3 * MiB + 1024, ptype),)
    assert written[510:512] == b"\x55\xaa"
    assert written[512:MiB] == bytes(MiB - 512)  # the gap is cleared
    assert written[MiB : MiB + len(data)] == data
    assert written[MiB + len(data) :] == OLD * (DISK_SIZE - MiB - len(data))
    assert f"({fmt})" in say[0]


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("diskdump", DISK_SIZE), ("extdump", DISK_SIZE - MiB), ("ntfsdump", DISK_SIZE - MiB)],
)
def test_an_image_that_exactly_fits(
    tmp_path: Path, disk: Path, say: Messages, fmt: str, size: int
) -> None:
    data = os.urandom(size)
    dp.deploy(str(disk), None, image_params(_serve_local(tmp_path, Site(), data), fmt),
              config(tmp_path), say)  # fmt: skip
    assert disk.read_bytes()[DISK_SIZE - size :] == data


@pytest.mark.parametrize("kind", ["local", "url", "map"])
@pytest.mark.parametrize(
    ("fmt", "size"),
    [("diskdump", DISK_SIZE + 512), ("extdump", DISK_SIZE - MiB + 1), ("ntfsdump", DISK_SIZE)],
)
def test_an_image_too_big_leaves_the_disk_untouched(
    tmp_path: Path, site: Site, disk: Path, say: Messages, kind: str, fmt: str, size: int
) -> None:
    img_id = SERVERS[kind](tmp_path, site, os.urandom(size))
    before = fingerprint(disk)
    with pytest.raises(InvalidInput, match=rf"does not fit the disk \({DISK_SIZE} bytes\)"):
        dp.deploy(str(disk), DISK_UUID, image_params(img_id, fmt), config(tmp_path, site), say)
    assert fingerprint(disk) == before
    assert say == []


# --- deploy: archipelago clones -------------------------------------------------------------------


def test_a_clone_of_the_image_needs_no_copy(tmp_path: Path, disk: Path, say: Messages) -> None:
    data = os.urandom(2 * MiB)
    import_map(tmp_path, "img", data)
    store = DirStore(tmp_path / "store")
    volumes.create_volume(store, "vol", DISK_SIZE, origin="img", disk_uuid=DISK_UUID)
    store.close()
    before = fingerprint(disk)
    dp.deploy(str(disk), DISK_UUID, image_params("map:img"), config(tmp_path), say)
    assert fingerprint(disk) == before
    assert say == ["the disk is a clone of img: nothing to copy"]


@pytest.mark.parametrize("fmt", ["extdump", "qcow2"])
def test_a_clone_of_an_image_that_is_not_a_raw_disk_is_written(
    tmp_path: Path, disk: Path, say: Messages, fmt: str
) -> None:
    """The clone holds the map's bytes (a filesystem dump, a qcow2 file), not the disk they
    stand for: the disk is written as for any other disk."""
    data = random_image(2 * MiB)
    if fmt == "qcow2":
        require(os.access(dp.QEMU_IMG, os.X_OK), f"{dp.QEMU_IMG} is not installed")
        import_map(tmp_path, "img", make_qcow2(dp.QEMU_IMG, tmp_path, data).read_bytes())
        offset = 0
    else:
        import_map(tmp_path, "img", data)
        offset = MiB
    store = DirStore(tmp_path / "store")
    volumes.create_volume(store, "vol", DISK_SIZE, origin="img", disk_uuid=DISK_UUID)
    store.close()
    dp.deploy(str(disk), DISK_UUID, image_params("map:img", fmt), config(tmp_path), say)
    assert disk.read_bytes()[offset : offset + len(data)] == data
    assert not any("nothing to copy" in m for m in say)


@pytest.mark.parametrize("origin", [None, "other"], ids=["plain-volume", "clone-of-another"])
def test_a_disk_that_is_not_a_clone_of_the_image_gets_a_copy(
    tmp_path: Path, disk: Path, say: Messages, origin: str | None
) -> None:
    data = os.urandom(2 * MiB)
    import_map(tmp_path, "img", data)
    import_map(tmp_path, "other", os.urandom(MiB))
    store = DirStore(tmp_path / "store")
    volumes.create_volume(store, "vol", DISK_SIZE, origin=origin, disk_uuid=DISK_UUID)
    store.close()
    dp.deploy(str(disk), DISK_UUID, image_params("map:img"), config(tmp_path), say)
    assert disk.read_bytes()[: len(data)] == data
    assert not any("nothing to copy" in m for m in say)


def test_a_map_image_without_a_disk_uuid_is_copied(
    tmp_path: Path, disk: Path, say: Messages
) -> None:
    data = os.urandom(MiB)
    import_map(tmp_path, "img", data)
    dp.deploy(str(disk), None, image_params("map:img"), config(tmp_path), say)
    assert disk.read_bytes()[: len(data)] == data


# --- deploy: qcow2 --------------------------------------------------------------------------------


@pytest.fixture
def qemu_img() -> str:
    require(os.access(dp.QEMU_IMG, os.X_OK), f"{dp.QEMU_IMG} is not installed")
    return dp.QEMU_IMG


def make_qcow2(qemu_img: str, folder: Path, data: bytes) -> Path:
    raw, qcow2 = folder / "src.raw", folder / "image.qcow2"
    raw.write_bytes(data)
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                   check=True)  # fmt: skip
    raw.unlink()
    return qcow2


@pytest.mark.parametrize("kind", ["local", "url"])
def test_qcow2_is_converted(
    tmp_path: Path, site: Site, disk: Path, say: Messages, qemu_img: str, kind: str
) -> None:
    data = random_image(3 * MiB)
    qcow2 = make_qcow2(qemu_img, tmp_path, data)
    assert qcow2.stat().st_size < len(data)  # the zeros are not stored
    if kind == "local":
        img_id = str(qcow2)
    else:
        site.routes["/image.qcow2"] = Reply(body=qcow2.read_bytes())
        img_id = site.url + "/image.qcow2"
    cfg = config(tmp_path, site)
    dp.deploy(str(disk), None, image_params(img_id, "qcow2"), cfg, say)
    written = disk.read_bytes()
    assert written[: len(data)] == data  # the zeros too, over the disk's old bytes
    assert written[len(data) :] == OLD * (DISK_SIZE - len(data))
    assert "converting the qcow2 image (3 MiB)" in say
    assert ("downloading the qcow2 image" in say) == (kind == "url")
    assert list(cfg.image.work_dir.iterdir()) == []  # the download is gone


def qcow2_with_backing_file(qemu_img: str, folder: Path) -> Path:
    secret = folder / "node-secret"
    secret.write_bytes(b"node secret\n" * 1000)
    path = folder / "backed.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw",
                    str(path)], check=True)  # fmt: skip
    return path


def qcow2_with_data_file(qemu_img: str, folder: Path) -> Path:
    path = folder / "external.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-o",
                    f"data_file={folder / 'node-data'}", str(path), "1M"], check=True)  # fmt: skip
    return path


def qcow2_too_big(qemu_img: str, folder: Path) -> Path:
    path = folder / "big.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), str(DISK_SIZE + 512)],
                   check=True)  # fmt: skip
    return path


def not_qcow2(qemu_img: str, folder: Path) -> Path:
    path = folder / "raw.qcow2"
    path.write_bytes(os.urandom(MiB))
    return path


@pytest.mark.parametrize("kind", ["local", "url"])
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (qcow2_with_backing_file, "has a backing file: refused"),
        (qcow2_with_data_file, "has an external data file: refused"),
        (qcow2_too_big, rf"\({DISK_SIZE + 512} bytes\) does not fit the disk"),
        (not_qcow2, "is not a valid qcow2 file"),
    ],
    ids=["backing-file", "data-file", "too-big", "not-qcow2"],
)
def test_bad_qcow2_is_refused_and_the_disk_untouched(
    tmp_path: Path,
    site: Site,
    disk: Path,
    say: Messages,
    qemu_img: str,
    kind: str,
    make: Callable[[str, Path], Path],
    error: str,
) -> None:
    image = make(qemu_img, tmp_path)
    if kind == "local":
        img_id = str(image)
    else:
        site.routes["/image.qcow2"] = Reply(body=image.read_bytes())
        img_id = site.url + "/image.qcow2"
    cfg = config(tmp_path, site)
    before = fingerprint(disk)
    with pytest.raises(InvalidInput, match=error):
        dp.deploy(str(disk), None, image_params(img_id, "qcow2"), cfg, say)
    assert fingerprint(disk) == before
    assert list(cfg.image.work_dir.iterdir()) == []
    assert not any(m.startswith("converting") for m in say)


# --- progress and the stream writer ---------------------------------------------------------------


def test_progress_reports_at_most_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(dp.time, "monotonic", lambda: clock[0])
    said = Messages()
    progress = dp.Progress(1024 * MiB, said, every=3.0)
    clock[0] = 101.0
    progress.update(100 * MiB)  # too soon
    clock[0] = 104.0
    progress.update(512 * MiB)
    clock[0] = 105.0
    progress.update(600 * MiB)  # too soon again
    clock[0] = 108.0
    progress.update(1024 * MiB, final=True)
    assert said == [
        "copied 512 of 1024 MiB (50%), 128 MiB/s",
        "copied 1024 of 1024 MiB (100%), 128 MiB/s",
    ]


def test_progress_final_is_always_said() -> None:
    said = Messages()
    progress = dp.Progress(0, said)
    progress.update(0, final=True)
    assert len(said) == 1 and said[0].startswith("copied 0 of 0 MiB (0%)")


@pytest.mark.parametrize(
    ("announced", "chunks", "error"),
    [
        (10, [b"12345", b"678901"], "longer than the 10 bytes announced"),
        (10, [b"12345", b"678"], "ended after 8 of 10 bytes"),
    ],
)
def test_write_stream_checks_the_announced_size(
    disk: Path, announced: int, chunks: list[bytes], error: str
) -> None:
    with pytest.raises(dp.SourceError, match=error):
        dp.write_stream(str(disk), dp.Stream(announced, iter(chunks)), 0, Messages())


def test_write_stream_at_an_offset(disk: Path) -> None:
    said = Messages()
    dp.write_stream(str(disk), dp.Stream(6, iter([b"abc", b"", b"def"])), 4096, said)
    data = disk.read_bytes()
    assert data[4096:4102] == b"abcdef"
    assert data[:4096] == OLD * 4096 and data[4102:] == OLD * (DISK_SIZE - 4102)
    assert len(said) == 1


# --- export and import (gnt-backup) ---------------------------------------------------------------


def test_export_then_import_through_a_pipe(tmp_path: Path, disk: Path) -> None:
    source = tmp_path / "source-disk"
    data = random_image(DISK_SIZE)
    source.write_bytes(data)
    data_r, data_w = os.pipe()
    size_r, size_w = os.pipe()
    failures: list[BaseException] = []

    def export() -> None:
        try:
            dp.export_disk(str(source), data_w, size_w)
        except BaseException as exc:
            failures.append(exc)
        finally:
            os.close(data_w)
            os.close(size_w)

    thread = threading.Thread(target=export)
    thread.start()
    try:
        written = dp.import_disk(str(disk), data_r)
    finally:
        thread.join()
        os.close(data_r)
    with os.fdopen(size_r, "rb") as f:
        assert f.read() == f"{DISK_SIZE}\n".encode()
    assert failures == []
    assert written == DISK_SIZE
    assert disk.read_bytes() == data


def test_export_without_a_size_fd_or_with_a_closed_one(tmp_path: Path, disk: Path) -> None:
    out = tmp_path / "exported"
    for size_fd in (None, 987):  # 987: not an open descriptor: the size is not told, no error
        with open(out, "wb") as f:
            dp.export_disk(str(disk), f.fileno(), size_fd)
        assert out.read_bytes() == disk.read_bytes()


def test_import_shorter_than_the_disk(tmp_path: Path, disk: Path) -> None:
    stream = tmp_path / "stream"
    stream.write_bytes(b"\x01" * (3 * MiB))
    with open(stream, "rb") as f:
        assert dp.import_disk(str(disk), f.fileno()) == 3 * MiB
    data = disk.read_bytes()
    assert data[: 3 * MiB] == b"\x01" * (3 * MiB) and data[3 * MiB :] == OLD * (5 * MiB)


def test_import_larger_than_the_disk(tmp_path: Path, disk: Path) -> None:
    stream = tmp_path / "stream"
    stream.write_bytes(os.urandom(DISK_SIZE + 1))
    with open(stream, "rb") as f, pytest.raises(InvalidInput, match="larger than the disk"):
        dp.import_disk(str(disk), f.fileno())
    assert disk.stat().st_size == DISK_SIZE  # never grown
