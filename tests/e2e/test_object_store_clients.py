"""Real object-store clients against the portal in the testbed: the swift CLI
(python-swiftclient 4.11) on each database (SQLite, PostgreSQL) and block store (dir,
RADOS), kamaki 0.16 (Python 2.7), sharing between two users, and bad input over real HTTP.

Every client runs inside the services host, as a user would; every check compares bytes
(random, non-zero data spanning several 4 MiB blocks), never timings.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.testbed import plan
from tests.testbed import portal as tb_portal
from tests.testbed import postgres as tb_postgres
from tests.testbed.cluster import lan

SWIFT = Path(sys.executable).parent / "swift"
KAMAKI = Path.home() / ".local" / "bin" / "kamaki"
MIB = 1 << 20
SEGMENT = 3 * MIB
PASSWORD = "e2e object store password"

Completed = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class User:
    email: str
    uuid: str
    token: str

    def storage_url(self, portal: Any, account: str | None = None) -> str:
        return f"{portal.base_url}/object-store/v1/{account or self.uuid}"


def new_user(portal: Any, label: str) -> User:
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.test"
    uid = portal.snf_portal("user", "add", email, "--name", label, "--active",
                            "--password-stdin", input=PASSWORD + "\n").strip()  # fmt: skip
    return User(email, uid, portal.snf_portal("token", "issue", email).strip())


def run(argv: list[str], *, check: bool = True, timeout: float = 180) -> Completed:
    """Run a client inside the services host; on failure, its output goes into the error."""
    proc = lan().run([str(a) for a in argv], timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(a) for a in argv)} exited {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


class Swift:
    """The swift CLI as ``user``, on ``account`` (their own by default), with a token."""

    def __init__(self, portal: Any, user: User, account: str | None = None) -> None:
        require(SWIFT.exists(), "python-swiftclient is not installed (make deps)")
        self.url = user.storage_url(portal, account)
        self.token = user.token

    def __call__(self, *args: str | Path, check: bool = True) -> Completed:
        return run(
            [str(SWIFT), "--os-storage-url", self.url, "--os-auth-token", self.token, *args],
            check=check,
        )

    def stat(self, *args: str) -> dict[str, str]:
        out = self("stat", *args).stdout
        return {
            k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())
        }


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- the portal on each database and block store ------------------------------------------


DEPLOYMENTS = ["sqlite-rados", "postgres-dir", "postgres-rados", "sqlite-dir"]


@dataclass(frozen=True)
class Deployment:
    portal: Any
    #: The testbed Ceph (a tests.testbed.ceph.Ceph) when the store is RADOS.
    ceph: Any | None


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request: pytest.FixtureRequest, portal: Any) -> Iterator[Deployment]:
    """The portal on one database and block store.  The session's portal is on SQLite and
    the dir store; the others are started here (PostgreSQL from an empty schema: other tests
    share that database), and the session's again right after the test, whatever happened,
    so that later tests find it as they expect."""
    db, backend = request.param.split("-")
    if request.param == "sqlite-dir":
        yield Deployment(portal, None)
        return
    if db == "postgres":
        url = request.getfixturevalue("postgres")
        tb_postgres.empty_schema(url)
    else:
        url = f"sqlite:///{plan.STATE_DIR / 'portal' / f'portal-{backend}.db'}"
    ceph = request.getfixturevalue("ceph") if backend == "rados" else None
    try:
        started = tb_portal.start(url, ceph_conf=None if ceph is None else ceph.conf)
        yield Deployment(started, ceph)
    finally:
        tb_portal.start()


def test_swift_cli(deployment: Deployment, tmp_path: Path) -> None:
    user = new_user(deployment.portal, "swift")
    swift = Swift(deployment.portal, user)
    big = tmp_path / "big.bin"
    data = random_file(big, 9 * MIB + 12345)
    out = tmp_path / "out.bin"

    swift("upload", "c", big, "--object-name", "big.bin")
    swift("download", "c", "big.bin", "-o", out)
    assert out.read_bytes() == data

    assert swift("list").stdout.split() == ["c"]
    assert swift("list", "c").stdout.split() == ["big.bin"]
    long = swift("list", "--long", "c").stdout
    assert str(len(data)) in long and "big.bin" in long

    account = swift.stat()
    assert account["Containers"] == "1" and account["Objects"] == "1"
    assert account["Bytes"] == str(len(data))
    container = swift.stat("c")
    assert container["Objects"] == "1" and container["Bytes"] == str(len(data))
    obj = swift.stat("c", "big.bin")
    assert obj["Content Length"] == str(len(data)) and obj["ETag"].strip('"') == md5(data)
    if deployment.ceph is not None:  # the version's map is in the pool, not in a directory
        maps = deployment.ceph.rados("--pool", "maps", "ls").split()
        name = f"pithos-{obj['X-Object-Uuid'].replace('-', '')}-{obj['X-Object-Version']}"
        assert f"map.{name}" in maps, maps

    swift("post", "-m", "Color:blue", "c", "big.bin")
    swift("post", "-m", "Owner:swift", "c")
    assert swift.stat("c", "big.bin")["Meta Color"] == "blue"
    assert swift.stat("c")["Meta Owner"] == "swift"

    swift("post", "c2")
    swift("copy", "--destination", "/c2/copy.bin", "c", "big.bin")
    swift("download", "c2", "copy.bin", "-o", out)
    assert out.read_bytes() == data
    assert swift.stat("c2", "copy.bin")["Meta Color"] == "blue"

    for name, how in [("slo.bin", []), ("dlo.bin", ["--use-dlo"])]:
        swift("upload", "-S", str(SEGMENT), *how, "c", big, "--object-name", name)
        swift("download", "c", name, "-o", out)
        assert out.read_bytes() == data, name
    assert swift.stat("c", "slo.bin")["X-Static-Large-Object"] == "True"
    assert swift.stat("c", "dlo.bin")["Manifest"].startswith("c_segments/dlo.bin/")
    segments = swift("list", "c_segments").stdout.split()
    assert len(segments) == 2 * 4, segments
    # overwriting a large object replaces its segments (the SLO's listed by its manifest)
    other = tmp_path / "other.bin"
    smaller = random_file(other, 2 * SEGMENT + 1)
    for name, how in [("slo.bin", []), ("dlo.bin", ["--use-dlo"])]:
        swift("upload", "-S", str(SEGMENT), *how, "c", other, "--object-name", name)
        swift("download", "c", name, "-o", out)
        assert out.read_bytes() == smaller, name
    segments = swift("list", "c_segments").stdout.split()
    assert len(segments) == 2 * 3, segments

    # names that need quoting
    odd = "a dir/naïve name+%20&?.txt"
    swift("upload", "c", other, "--object-name", odd)
    assert swift("list", "c", "--prefix", "a dir/").stdout.splitlines() == [odd]
    swift("download", "c", odd, "-o", out)
    assert out.read_bytes() == smaller
    swift("delete", "c", odd)

    swift("delete", "c", "big.bin")
    assert swift("list", "c").stdout.split() == ["dlo.bin", "slo.bin"]
    swift("delete", "c", "slo.bin", "dlo.bin")
    assert swift("list", "c").stdout.split() == []
    assert swift("list", "c_segments").stdout.split() == []
    swift("delete", "c2")
    assert swift("list").stdout.split() == ["c", "c_segments"]


def test_swift_cli_with_keystone_auth(portal: Any, tmp_path: Path) -> None:
    """The storage URL from the Keystone v3 catalog, for a user name and password."""
    require(SWIFT.exists(), "python-swiftclient is not installed (make deps)")
    user = new_user(portal, "keystone")

    def swift(*args: str | Path) -> str:
        return run([
            str(SWIFT), "--auth-version", "3", "--os-auth-url", f"{portal.base_url}/identity/v3",
            "--os-username", user.email, "--os-password", PASSWORD,
            "--os-user-domain-name", "Default", "--os-project-name", user.email,
            "--os-project-domain-name", "Default", *args,
        ]).stdout  # fmt: skip

    src, out = tmp_path / "src.bin", tmp_path / "out.bin"
    data = random_file(src, MIB + 1)
    swift("upload", "c", src, "--object-name", "o")
    swift("download", "c", "o", "-o", out)
    assert out.read_bytes() == data
    assert f"Account: {user.uuid}" in swift("stat")


# --- kamaki 0.16 ----------------------------------------------------------------------------


class Kamaki:
    """kamaki 0.16 (Python 2.7) as ``user``, with a kamakirc of their own."""

    def __init__(self, portal: Any, user: User, home: Path) -> None:
        require(KAMAKI.exists() and shutil.which("python2") is not None,
                "kamaki 0.16 for Python 2.7 is not installed (make deps)")  # fmt: skip
        home.mkdir(parents=True, exist_ok=True)
        self.conf = home / "kamakirc"
        self.conf.write_text(
            "[global]\ndefault_cloud = snf\n"
            f"history_file = {home / 'history'}\nlog_file = {home / 'log'}\n\n"
            f'[cloud "snf"]\nurl = {portal.base_url}/identity/v2.0\ntoken = {user.token}\n'
        )

    def __call__(self, *args: str | Path, check: bool = True) -> Completed:
        return run([str(KAMAKI), "-c", str(self.conf), *args], check=check)


def fetch(url: str) -> tuple[int, bytes]:
    """GET ``url`` without a token (inside the services host, through ``lan().call``):
    status and body."""
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_kamaki(portal: Any, tmp_path: Path) -> None:
    user = new_user(portal, "kamaki")
    kamaki = Kamaki(portal, user, tmp_path / "kamaki")
    big = tmp_path / "big.bin"
    first = random_file(big, 9 * MIB + 777)

    def download(path: str, *options: str) -> bytes:
        out = tmp_path / "out.bin"
        out.unlink(missing_ok=True)
        kamaki("file", "download", "-N", *options, path, out)
        return out.read_bytes()

    kamaki("container", "create", "kc")
    assert "kc (0B, 0 objects)" in kamaki("container", "list").stdout
    assert "x-container-block-size: 4194304" in kamaki("container", "info", "kc").stdout

    # hashmap first: 409 with the missing blocks, the blocks POSTed, the hashmap again
    post_blocks = f"> POST {user.storage_url(portal)}/kc?"
    upload = kamaki("-v", "file", "upload", "-N", big, "/kc/big.bin")
    assert "< 409" in upload.stderr and post_blocks in upload.stderr, upload.stderr
    assert "< 201" in upload.stderr
    assert download("/kc/big.bin") == first
    # the same bytes again: every block is there, the first PUT of the hashmap creates it
    again = kamaki("-v", "file", "upload", "-N", "-f", big, "/kc/same.bin")
    assert "< 409" not in again.stderr and post_blocks not in again.stderr, again.stderr
    assert download("/kc/same.bin") == first

    listed = kamaki("file", "list", "/kc").stdout
    assert "big.bin" in listed and "same.bin" in listed
    detail = kamaki("file", "list", "-l", "/kc").stdout
    assert f"bytes: {len(first)} " in detail
    info = kamaki("file", "info", "/kc/big.bin").stdout
    assert f"content-length: {len(first)}" in info and "x-object-hash: " in info
    container = kamaki("container", "info", "kc").stdout
    assert "x-container-object-count: 2" in container

    kamaki("file", "copy", "/kc/big.bin", "/kc/copy.bin")
    kamaki("file", "move", "/kc/copy.bin", "/kc/moved.bin")
    assert download("/kc/moved.bin") == first
    assert "moved.bin" in kamaki("file", "list", "/kc").stdout
    assert "copy.bin" not in kamaki("file", "list", "/kc").stdout

    # partial updates: append, overwrite a range, truncate (Content-Range, X-Object-Bytes)
    tail = random_file(tmp_path / "tail.bin", MIB + 3)
    kamaki("file", "append", "-N", tmp_path / "tail.bin", "/kc/moved.bin")
    kamaki("file", "overwrite", "-N", tmp_path / "tail.bin", "/kc/moved.bin",
           "--from", "10", "--to", "19")  # fmt: skip
    expected = bytearray(first + tail)
    expected[10:20] = tail[:10]
    assert download("/kc/moved.bin") == expected
    kamaki("file", "truncate", "/kc/moved.bin", "--size", str(4 * MIB + 1))
    assert download("/kc/moved.bin") == expected[: 4 * MIB + 1]

    second = random_file(big, 5 * MIB + 3)
    kamaki("file", "upload", "-N", "-f", big, "/kc/big.bin")
    versions = kamaki("file", "info", "--object-versions", "/kc/big.bin").stdout
    ids = [line.split()[1] for line in versions.splitlines() if "version_id:" in line]
    assert len(ids) == 2, versions
    assert download("/kc/big.bin", "--object-version", ids[0]) == first
    assert download("/kc/big.bin") == second

    published = kamaki("file", "publish", "/kc/big.bin").stdout
    url = next(w for w in published.split() if w.startswith("http"))
    assert lan().call(fetch, url) == (200, second)  # no token
    kamaki("file", "unpublish", "/kc/big.bin")
    assert lan().call(fetch, url)[0] == 404

    kamaki("file", "modify", "/kc/big.bin", "--read-permission", "*")
    assert "read: *" in kamaki("file", "info", "--sharing", "/kc/big.bin").stdout
    kamaki("file", "modify", "/kc/big.bin", "--no-permissions")
    assert "read:" not in kamaki("file", "info", "--sharing", "/kc/big.bin").stdout

    kamaki("file", "delete", "--yes", "/kc/same.bin")
    (tmp_path / "hello.txt").write_text("hello kamaki\n")
    kamaki("file", "upload", tmp_path / "hello.txt", "/kc/hello.txt")
    assert kamaki("file", "cat", "/kc/hello.txt").stdout == "hello kamaki\n"
    kamaki("file", "mkdir", "/kc/dir")
    kamaki("file", "create", "/kc/dir/empty")
    assert kamaki("file", "list", "/kc/dir/").stdout.split()[-1] == "dir/empty"
    names = [line.split()[-1] for line in kamaki("file", "list", "/kc").stdout.splitlines()]
    assert names == ["big.bin", "dir/", "dir/empty", "hello.txt", "moved.bin"], names

    kamaki("container", "empty", "--yes", "kc")
    assert "kc (0B, 0 objects)" in kamaki("container", "list").stdout
    kamaki("container", "delete", "--yes", "kc")
    assert "kc" not in kamaki("container", "list").stdout


# --- two users ------------------------------------------------------------------------------


def test_sharing_between_users(portal: Any, tmp_path: Path) -> None:
    owner, other = new_user(portal, "owner"), new_user(portal, "other")
    mine, theirs = Swift(portal, owner), Swift(portal, other, account=owner.uuid)
    src = tmp_path / "src.bin"
    out = tmp_path / "out.bin"
    secret = random_file(src, 100_000)
    mine("upload", "c", src, "--object-name", "secret.bin")
    shared = random_file(src, 5 * MIB + 1)
    mine("upload", "c", src, "--object-name", "shared.bin")

    for argv in (["list", "c"], ["download", "c", "shared.bin", "-o", out],
                 ["stat", "c", "shared.bin"]):  # fmt: skip
        denied = theirs(*argv, check=False)
        assert denied.returncode != 0 and "403" in denied.stderr, (argv, denied.stderr)

    mine("post", "-H", f"X-Object-Sharing: read={other.uuid}", "c", "shared.bin")
    theirs("download", "c", "shared.bin", "-o", out)
    assert out.read_bytes() == shared
    assert theirs("list", "c").stdout.split() == ["shared.bin"]
    assert theirs("list").stdout.split() == ["c"]
    denied = theirs("download", "c", "secret.bin", "-o", out, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr
    other_kamaki = Kamaki(portal, other, tmp_path / "other")
    assert owner.email in other_kamaki("sharer", "list").stdout
    listed = other_kamaki("file", "list", "-A", owner.uuid, "/c").stdout.split()
    assert "shared.bin" in listed and "secret.bin" not in listed
    out.unlink()
    other_kamaki("file", "download", "-N", "-A", owner.uuid, "/c/shared.bin", out)
    assert out.read_bytes() == shared
    new = random_file(src, 4 * MIB + 5)
    refused = theirs("upload", "--skip-container-put", "c", src, "--object-name", "shared.bin",
                     check=False)  # fmt: skip
    assert refused.returncode != 0 and "403" in refused.stderr, refused.stderr

    owner_kamaki = Kamaki(portal, owner, tmp_path / "owner")
    owner_kamaki("file", "modify", "/c/shared.bin", "--write-permission", other.uuid)
    sharing = owner_kamaki("file", "info", "--sharing", "/c/shared.bin").stdout
    assert f"write: {other.uuid}" in sharing
    theirs("upload", "--skip-container-put", "c", src, "--object-name", "shared.bin")
    mine("download", "c", "shared.bin", "-o", out)
    assert out.read_bytes() == new
    # kamaki's upload into the owner's container: the blocks, then the hashmap
    newer = random_file(src, 6 * MIB + 7)
    other_kamaki("file", "upload", "-N", "-f", "-A", owner.uuid, src, "/c/shared.bin")
    mine("download", "c", "shared.bin", "-o", out)
    assert out.read_bytes() == newer
    mine("download", "c", "secret.bin", "-o", out)
    assert out.read_bytes() == secret

    # a group of the owner's (X-Account-Group-*) in a sharing: owner:group
    owner_kamaki("group", "create", "friends", "--uuid", other.uuid)
    owner_kamaki("file", "modify", "/c/secret.bin", "--read-permission", f"{owner.uuid}:friends")
    theirs("download", "c", "secret.bin", "-o", out)
    assert out.read_bytes() == secret
    owner_kamaki("group", "delete", "friends")
    denied = theirs("download", "c", "secret.bin", "-o", out, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr


# --- bad input over real HTTP ---------------------------------------------------------------


def send_raw(head: str, body: bytes, *, wait: bool = True) -> str:
    """Send a request head and (part of) a body, close the sending side and return the
    reply's status line; without ``wait``, close the connection at once and return ""
    (run inside the services host)."""
    with socket.create_connection((plan.SVC_ADDRESS, tb_portal.PORT), timeout=60) as sock:
        sock.sendall(head.encode() + body)
        if not wait:
            return ""
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(1 << 16):
            reply += chunk
    return reply.split(b"\r\n", 1)[0].decode()


def put_chunked(url: str, token: str, parts: list[bytes]) -> int:
    """PUT with chunked transfer encoding (no Content-Length): the status."""
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request("PUT", f"/{path}", body=iter(parts), encode_chunked=True,
                     headers={"X-Auth-Token": token, "Transfer-Encoding": "chunked"})  # fmt: skip
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def access_log(wanted: str, timeout: float = 60) -> str:
    """The portal's access-log line holding ``wanted``, once it is there."""
    log = plan.STATE_DIR / "portal" / "portal.log"
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log.read_text(errors="replace").splitlines() if wanted in line]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {wanted!r} in {log} after {timeout} s"
        time.sleep(0.1)


def test_bad_input_over_http(portal: Any, tmp_path: Path) -> None:
    user = new_user(portal, "bad")
    swift = Swift(portal, user)
    swift("post", "c")
    path = f"/object-store/v1/{user.uuid}/c"

    def head(name: str, *lines: str) -> str:
        return "".join(
            f"{line}\r\n"
            for line in (f"PUT {path}/{name} HTTP/1.1", f"Host: {plan.SVC_ADDRESS}",
                         f"X-Auth-Token: {user.token}", *lines, "")
        )  # fmt: skip

    # a body shorter than its Content-Length: the client stops sending after 5 MiB of 10
    status = lan().call(send_raw, head("short", f"Content-Length: {10 * MIB}"),
                        os.urandom(5 * MIB))  # fmt: skip
    assert status.split()[1] == "400", status
    # chunked, cut inside a chunk
    cut = f"{2 * MIB:x}\r\n".encode() + os.urandom(MIB)
    status = lan().call(send_raw, head("cut", "Transfer-Encoding: chunked"), cut)
    assert status.split()[1] == "400", status
    # the client closes the connection without waiting: the access log shows the answer
    lan().call(send_raw, head("gone", f"Content-Length: {10 * MIB}"), os.urandom(5 * MIB),
               wait=False)  # fmt: skip
    assert f'PUT {path}/gone HTTP/1.1" 400 ' in access_log(f"PUT {path}/gone ")
    for name in ("short", "cut", "gone"):
        gone = swift("stat", "c", name, check=False)
        assert gone.returncode != 0 and "404" in gone.stderr, gone.stderr
    assert swift("list", "c").stdout == ""
    assert "pithos.diskspace\t0/" in portal.snf_portal("quota", "show", user.uuid)

    # over quota: 413, nothing stored (swift, chunked, kamaki's hashmap)
    portal.snf_portal("quota", "set", user.uuid, "pithos.diskspace", str(3 * MIB))
    src = tmp_path / "four.bin"
    random_file(src, 4 * MIB)
    refused = swift("upload", "c", src, "--object-name", "big", check=False)
    assert refused.returncode != 0 and "413" in refused.stderr, refused.stderr
    url = f"{user.storage_url(portal)}/c/chunked"
    parts = [os.urandom(MIB) for _ in range(4)]
    assert lan().call(put_chunked, url, user.token, parts) == 413
    kamaki = Kamaki(portal, user, tmp_path / "kamaki")
    refused = kamaki("file", "upload", "-N", src, "/c/kamaki", check=False)
    assert refused.returncode != 0 and "overLimit" in refused.stdout, refused
    assert swift("list", "c").stdout == ""
    assert "pithos.diskspace\t0/3145728" in portal.snf_portal("quota", "show", user.uuid)
    # what fits is stored
    small = random_file(src, 2 * MIB)
    swift("upload", "c", src, "--object-name", "small")
    swift("download", "c", "small", "-o", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == small
    assert f"pithos.diskspace\t{2 * MIB}/3145728" in portal.snf_portal("quota", "show", user.uuid)
