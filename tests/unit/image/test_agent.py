"""snf.image.agent: the JSON-lines protocol (every bad request answers an error, never raises),
file operations through it on a hostile image, the worker's steps (commands faked), and
``serve`` over a real pseudo-terminal."""

from __future__ import annotations

import base64
import json
import os
import select
import stat
import threading
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.image import agent
from snf.image.agent import Worker, handle
from snf.image.saferoot import SafeRoot
from tests.conftest import require

SECRET = b"host secret\n"


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def ask(worker: Worker, op: Any, **args: Any) -> dict[str, Any]:
    """Send one request line; the answer must be plain JSON."""
    answer = handle(worker, json.dumps({"op": op, "args": args}).encode())
    assert json.loads(json.dumps(answer)) == answer
    return answer


def ok(worker: Worker, op: str, **args: Any) -> Any:
    answer = ask(worker, op, **args)
    assert answer["ok"] is True, answer
    return answer["result"]


def error(worker: Worker, op: Any, **args: Any) -> str:
    answer = ask(worker, op, **args)
    assert answer["ok"] is False and set(answer) == {"ok", "error"}, answer
    assert isinstance(answer["error"], str) and answer["error"]
    return answer["error"]


@pytest.fixture
def no_commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the commands the worker would run (none is run); they succeed."""
    ran: list[list[str]] = []

    def fake_run(argv: list[str], ok: tuple[int, ...] = (0,)) -> str:
        ran.append(argv)
        return "done"

    monkeypatch.setattr(agent, "_run", fake_run)
    return ran


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_bytes(b"guest\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/shadow").write_bytes(SECRET)
    (root / "etc/shadow").symlink_to(tmp_path / "outside/shadow")
    (root / "root").mkdir()
    (root / "root/.ssh").symlink_to("../../outside")
    return root


@pytest.fixture
def worker(image: Path, no_commands: list[list[str]]) -> Iterator[Worker]:
    w = Worker(str(image))
    w.root = SafeRoot(str(image))
    yield w
    if w.root is not None:
        w.root.close()
    assert (image.parent / "outside/shadow").read_bytes() == SECRET
    assert os.listdir(image.parent / "outside") == ["shadow"]
    assert not list(image.rglob(".snf-image-*"))


# --- file operations through the protocol ------------------------------------------------------


def test_file_operations(worker: Worker, image: Path) -> None:
    require(os.geteuid() == 0, "chown needs root")
    data = bytes(range(256)) * 3
    assert ok(worker, "write", path="/etc/motd", data=b64(data), mode=0o600, uid=12, gid=34) is None
    assert ok(worker, "read", path="/etc/motd") == b64(data)
    st = (image / "etc/motd").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 12, 34)
    assert ok(worker, "stat", path="/etc/motd") == {
        "mode": st.st_mode,
        "uid": 12,
        "gid": 34,
        "size": len(data),
    }
    assert ok(worker, "exists", path="/etc/motd") is True
    assert ok(worker, "exists", path="/etc/nothing") is False
    assert ok(worker, "is_link", path="/etc/shadow") is True
    assert ok(worker, "listdir", path="/etc") == ["hostname", "motd", "shadow"]
    assert ok(worker, "makedirs", path="/home/u/.ssh", mode=0o700, uid=1000, gid=1000) is None
    st = (image / "home/u/.ssh").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 1000, 1000)
    assert ok(worker, "remove", path="/etc/motd") is True
    assert ok(worker, "remove", path="/etc/motd") is False
    assert ok(worker, "read", path="/etc/motd") is None
    assert ok(worker, "stat", path="/etc/motd") is None
    assert ok(worker, "read", path="/etc/hostname", limit=6) == b64(b"guest\n")
    assert "larger than 5 bytes" in error(worker, "read", path="/etc/hostname", limit=5)
    assert ok(worker, "write", path="/empty", data=b64(b"")) is None
    assert ok(worker, "read", path="/empty") == b64(b"")


def test_hostile_image_through_the_protocol(worker: Worker, image: Path) -> None:
    assert ok(worker, "read", path="/etc/shadow") is None  # resolved inside: missing
    assert "symbolic link" in error(worker, "write", path="/etc/shadow", data=b64(b"x"))
    assert ok(worker, "listdir", path="/root/.ssh") == []
    assert ok(worker, "write", path="/root/.ssh/authorized_keys", data=b64(b"k")) is None
    assert (image / "outside/authorized_keys").read_bytes() == b"k"  # inside the image
    assert ok(worker, "read", path="/../../outside/shadow") is None
    assert ok(worker, "remove", path="/etc/shadow") is True
    assert "not an absolute path" in error(worker, "read", path="etc/hostname")
    assert "not an absolute path" in error(worker, "read", path="/etc/host\0name")
    os.mkfifo(image / "etc/fifo")
    assert "not a regular file" in error(worker, "read", path="/etc/fifo")
    (image / "etc/loop").symlink_to("loop")
    assert "too many levels" in error(worker, "read", path="/etc/loop")
    assert "Not a directory" in error(worker, "write", path="/etc/hostname/x", data=b64(b""))


# --- bad requests ------------------------------------------------------------------------------

BAD_LINES = [
    b"",
    b"not json",
    b"{",
    b"\xff\xfe\x00",
    b"null",
    b"42",
    b'"read"',
    b'["read", {"path": "/etc/hostname"}]',
    b"{}",
    b'{"args": {"path": "/etc/hostname"}}',
    b'{"op": null}',
    b'{"op": ["read"]}',
    b'{"op": {"read": 1}}',
    b'{"op": "read", "args": ["/etc/hostname"]}',
    b'{"op": "read", "args": "/etc/hostname"}',
    b'{"op": "read", "args": null}',
    b"[" * 100_000,
    b'{"op": "read", "args": ' * 20_000,
]


@pytest.mark.parametrize("line", BAD_LINES, ids=lambda line: repr(line[:30]))
def test_bad_lines_answer_errors(worker: Worker, line: bytes) -> None:
    answer = handle(worker, line)
    assert answer["ok"] is False and isinstance(answer["error"], str), answer


@pytest.mark.parametrize(
    "op", ["quit", "nope", "", "READ", "__init__", "__class__", "_root", "root", "serve", "close"]
)
def test_unknown_operations(worker: Worker, op: str) -> None:
    assert f"unknown operation {op!r}" in error(worker, op, path="/etc/hostname")


BAD_ARGS = [
    ("read", {}),
    ("read", {"pth": "/etc/hostname"}),
    ("read", {"path": "/etc/hostname", "extra": 1}),
    ("read", {"path": "/etc/hostname", "self": 1}),
    ("read", {"path": 5}),
    ("read", {"path": None}),
    ("read", {"path": ["/etc/hostname"]}),
    ("read", {"path": {"p": "/etc/hostname"}}),
    ("read", {"path": b64(b"/etc/hostname")}),  # bytes are not a path
    ("read", {"path": "/etc/hostname", "limit": "10"}),
    ("read", {"path": "/etc/hostname", "limit": None}),
    ("write", {"path": "/etc/motd"}),
    ("write", {"path": "/etc/motd", "data": "plain text"}),
    ("write", {"path": "/etc/motd", "data": None}),
    ("write", {"path": "/etc/motd", "data": 7}),
    ("write", {"path": "/etc/motd", "data": [1, 2]}),
    ("write", {"path": "/etc/motd", "data": {"b64": "***"}}),
    ("write", {"path": "/etc/motd", "data": {"b64": "abc"}}),  # bad padding
    ("write", {"path": "/etc/motd", "data": {"b64": 5}}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "mode": "0644"}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "mode": 1.5}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "mode": 2**80}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "uid": -5}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "gid": 2**40}),
    ("write", {"path": "/etc/motd", "data": b64(b"x"), "uid": "root"}),
    ("makedirs", {"path": "/d", "mode": 2**80}),
    ("makedirs", {"path": "/d", "uid": -2}),
    ("makedirs", {"path": "/d", "mode": "755"}),
    ("remove", {"path": 0}),
    ("listdir", {"path": None}),
    ("stat", {"path": []}),
    ("exists", {}),
    ("is_link", {"path": True}),
    ("fsck", {"device": "/dev/vda1"}),
    ("mount", {"fstype": "ext4"}),
    ("grow", {"device": "/dev/vda1", "fstype": None}),
    ("umount", {"force": True}),
]


@pytest.mark.parametrize(("op", "args"), BAD_ARGS, ids=lambda v: json.dumps(v)[:40])
def test_bad_arguments_answer_errors(
    worker: Worker, image: Path, no_commands: list[list[str]], op: str, args: dict[str, Any]
) -> None:
    before = sorted(os.listdir(image / "etc"))
    error(worker, op, **args)
    assert sorted(os.listdir(image / "etc")) == before
    assert no_commands == []


FILE_OPS = {
    "read": {"path": "/etc/hostname"},
    "write": {"path": "/etc/hostname", "data": b64(b"x")},
    "exists": {"path": "/etc/hostname"},
    "is_link": {"path": "/etc/hostname"},
    "listdir": {"path": "/etc"},
    "remove": {"path": "/etc/hostname"},
    "makedirs": {"path": "/etc/x"},
    "stat": {"path": "/etc/hostname"},
}


@pytest.mark.parametrize("op", FILE_OPS)
def test_file_operations_before_mount(image: Path, no_commands: list[list[str]], op: str) -> None:
    worker = Worker(str(image))
    assert "not mounted" in error(worker, op, **FILE_OPS[op])
    assert (image / "etc/hostname").read_bytes() == b"guest\n"
    assert not (image / "etc/x").exists()


# --- the worker's steps (commands recorded, not run) -------------------------------------------


@pytest.mark.parametrize("fstype", ["vfat", "ntfs", "btrfs", "swap", "", "EXT4", "ext4 "])
@pytest.mark.parametrize("op", ["fsck", "mount", "grow"])
def test_unknown_filesystem_named(
    image: Path, no_commands: list[list[str]], op: str, fstype: str
) -> None:
    worker = Worker(str(image))
    message = error(worker, op, device="/dev/vda1", fstype=fstype)
    assert f"cannot customize a {fstype} filesystem" in message
    assert no_commands == [] and worker.root is None


@pytest.mark.parametrize(
    ("fstype", "driver", "options"),
    [
        ("ext2", "ext4", "nodev,nosuid,noexec"),
        ("ext3", "ext4", "nodev,nosuid,noexec"),
        ("ext4", "ext4", "nodev,nosuid,noexec"),
        ("xfs", "xfs", "nodev,nosuid,noexec,nouuid"),
    ],
)
def test_mount_edit_umount(
    image: Path, no_commands: list[list[str]], fstype: str, driver: str, options: str
) -> None:
    worker = Worker(str(image))
    assert ok(worker, "mount", device="/dev/vda1", fstype=fstype) is None
    assert no_commands == [[agent.MOUNT, "-t", driver, "-o", options, "/dev/vda1", str(image)]]
    assert ok(worker, "read", path="/etc/hostname") == b64(b"guest\n")
    assert ok(worker, "umount") is None
    assert no_commands[-1] == [agent.UMOUNT, str(image)]
    assert worker.root is None
    assert "not mounted" in error(worker, "read", path="/etc/hostname")
    assert ok(worker, "umount") is None  # a second umount does nothing
    assert len(no_commands) == 2


def test_fsck_and_grow_order(image: Path, no_commands: list[list[str]]) -> None:
    worker = Worker(str(image))
    assert ok(worker, "fsck", device="/dev/vda1", fstype="ext4") == "done"
    assert ok(worker, "fsck", device="/dev/vda1", fstype="xfs") == ""  # xfs: at mount
    assert "after mounting" in error(worker, "grow", device="/dev/vda1", fstype="xfs")
    assert ok(worker, "grow", device="/dev/vda1", fstype="ext3") == "done"
    assert no_commands == [[agent.E2FSCK, "-f", "-p", "/dev/vda1"], [agent.RESIZE2FS, "/dev/vda1"]]
    ok(worker, "mount", device="/dev/vda1", fstype="xfs")
    assert "before mounting" in error(worker, "grow", device="/dev/vda1", fstype="ext4")
    assert ok(worker, "grow", device="/dev/vda1", fstype="xfs") == "done"
    assert no_commands[-1] == [agent.XFS_GROWFS, str(image)]
    ok(worker, "umount")


@pytest.mark.parametrize(
    ("program", "message"),
    [("/nonexistent/mount", "cannot run /nonexistent/mount"), ("/bin/false", "false failed (1)")],
)
def test_failing_commands(
    image: Path, monkeypatch: pytest.MonkeyPatch, program: str, message: str
) -> None:
    """The real _run: a mount that cannot run or fails answers an error; nothing mounted."""
    monkeypatch.setattr(agent, "MOUNT", program)
    worker = Worker(str(image))
    assert message in error(worker, "mount", device="/dev/vda1", fstype="ext4")
    assert worker.root is None


def test_fsck_exit_codes(image: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """e2fsck: 0-2 are success (2 only advises a reboot), 4 and up are failures."""
    fake = tmp_path / "e2fsck"
    monkeypatch.setattr(agent, "E2FSCK", str(fake))
    worker = Worker(str(image))
    for code in (0, 1, 2, 4, 8):
        fake.write_text(f"#!/bin/sh\necho checked $3\nexit {code}\n")
        fake.chmod(0o755)
        answer = ask(worker, "fsck", device="/dev/vda1", fstype="ext4")
        if code <= 2:
            assert answer == {"ok": True, "result": "checked /dev/vda1"}
        else:
            assert answer["ok"] is False and f"e2fsck failed ({code})" in answer["error"]


# --- serve, over a pseudo-terminal (a virtio port stand-in) -----------------------------------


def test_serve_over_a_pty(image: Path, no_commands: list[list[str]]) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing, "\n" stays "\n"
    thread = threading.Thread(target=agent.serve, args=(os.ttyname(slave), str(image)))
    thread.daemon = True
    thread.start()
    pending = b""

    def answer() -> dict[str, Any]:
        nonlocal pending
        while b"\n" not in pending:
            assert select.select([master], [], [], 10)[0], "the agent did not answer"
            pending += os.read(master, 1 << 16)
        line, pending = pending.split(b"\n", 1)
        return json.loads(line)

    try:
        assert answer() == {"ready": True}
        read = json.dumps({"op": "read", "args": {"path": "/etc/hostname"}}).encode()
        mount = json.dumps({"op": "mount", "args": {"device": "/dev/vda1", "fstype": "ext4"}})
        os.write(master, read + b"\n" + mount.encode() + b"\nnot json\n")  # three in one
        assert answer() == {"ok": False, "error": "the image is not mounted"}
        assert answer() == {"ok": True, "result": None}
        assert answer()["error"].startswith("bad request")
        os.write(master, read[:10])  # one request in two pieces
        os.write(master, read[10:] + b"\n")
        assert answer() == {"ok": True, "result": b64(b"guest\n")}
        os.write(master, b'{"op": "quit"}\n')
        assert answer() == {"ok": True, "result": None}
        thread.join(10)
        assert not thread.is_alive()
        assert no_commands[-1] == [agent.UMOUNT, str(image)]  # quit unmounts
    finally:
        os.close(master)
        os.close(slave)
