"""snf.image.saferoot, attacked: an image whose links point out of its root (absolute,
relative, via ``/``), loops, long chains, FIFOs, device nodes and sockets where files belong,
and odd paths.  Every operation must fail or stay inside the image, and nothing outside the
image may change; legit layouts (merged /usr, relative links, /var/run -> /run) must work."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from snf.image import saferoot
from snf.image.saferoot import MAX_LINKS, READ_LIMIT, RootError, SafeRoot
from tests.conftest import require

SECRET = b"host secret: must never be read or written\n"
PWNED = b"pwned\n"
#: A name that must never appear at the host's root, whatever a test writes through "/".
PROBE = "snf-saferoot-probe"


# --- the image, the outside, and their checks ------------------------------------------------


def snapshot(top: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``top`` but ``skip``: type, mode, owner, size, times, contents."""
    seen: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        if Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            extra: Any = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            key = str(path.relative_to(top))
            info = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            seen[key] = (*info, extra)
    return seen


class Image:
    """``tmp_path/image`` (the root), ``tmp_path/outside`` (sentinels), and a SafeRoot."""

    def __init__(self, tmp_path: Path) -> None:
        self.top = tmp_path
        self.path = tmp_path / "image"
        self.outside = (tmp_path / "outside").resolve()
        for d in ("etc", "root", "usr/lib", "var", "tmp"):
            (self.path / d).mkdir(parents=True)
        (self.path / "etc/hostname").write_bytes(b"image-etc-hostname\n")
        (self.path / "hostname").write_bytes(b"image-root-hostname\n")
        (self.outside / "dir").mkdir(parents=True)
        for name in ("x", "shadow", "hostname", "dir/authorized_keys"):
            (self.outside / name).write_bytes(SECRET)
        self.root = SafeRoot(str(self.path))
        self.before = snapshot(self.top, self.path)

    def build(self, layout: dict[str, Any]) -> None:
        """Add to the image: ``"-> target"`` a link ("{out}" is the outside's real path),
        bytes a file, "dir", "fifo", "chardev" (/dev/null's 1,3) or "socket"."""
        for rel, what in layout.items():
            path = self.inside(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(what, bytes):
                path.write_bytes(what)
            elif what.startswith("-> "):
                path.symlink_to(what[3:].format(out=self.outside))
            elif what == "dir":
                path.mkdir()
            elif what == "fifo":
                os.mkfifo(path)
            elif what == "chardev":
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            elif what == "socket":
                os.mknod(path, stat.S_IFSOCK | 0o600)
            else:
                raise AssertionError(what)
        self.before = snapshot(self.top, self.path)

    def inside(self, rel: str) -> Path:
        """Where the image path ``rel`` is on the host ("{out}" as in build)."""
        return self.path / rel.format(out=self.outside).lstrip("/")

    def assert_outside_untouched(self) -> None:
        assert snapshot(self.top, self.path) == self.before
        assert not Path("/", PROBE).exists()

    def temporaries(self) -> list[Path]:
        return [p for p in self.path.rglob(".snf-image-*")]


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Image]:
    require(os.geteuid() == 0, "these tests make device nodes and chown files: run as root")
    assert not Path("/", PROBE).exists()
    img = Image(tmp_path)
    yield img
    img.root.close()
    img.assert_outside_untouched()  # a safety net under every test
    assert img.temporaries() == []


@contextlib.contextmanager
def deadline(seconds: float = 5.0) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging if the body blocks, e.g. opening a FIFO."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the class of the RootError/OSError it raises."""
    try:
        with deadline():
            return call()
    except RootError:
        return RootError
    except OSError as exc:
        return type(exc)


def chain(prefix: str, length: int, end: str) -> dict[str, str]:
    """Links ``{prefix}0 -> {prefix}1 -> ... -> {prefix}{length-1} -> end``."""
    return {
        f"{prefix}{i}": f"-> {os.path.basename(prefix)}{i + 1}" if i < length - 1 else f"-> {end}"
        for i in range(length)
    }


# --- hostile layouts ---------------------------------------------------------------------------

ABS_SHADOW = {"etc/shadow": "-> {out}/shadow"}
REL_SHADOW = {"etc/shadow": "-> ../../../../outside/shadow"}
ABS_SSH = {"root/.ssh": "-> {out}/dir"}
REL_SSH = {"root/.ssh": "-> ../../outside/dir"}
LOOP = {"etc/shadow": "-> shadow2", "etc/shadow2": "-> /etc/shadow"}
DIR_LOOP = {"etc/loop": "-> ../etc/loop/"}
SELF = {"self": "-> /", "dot": "-> .", "up": "-> ../.."}
TOO_LONG = chain("etc/l", MAX_LINKS + 1, "hostname")
TOO_LONG_DIRS = chain("d", MAX_LINKS + 1, "etc")


def etc_is_root(img: Image) -> None:
    """``/etc`` replaced by a link to ``/`` (the image's, never the host's)."""
    (img.path / "etc/hostname").unlink()
    (img.path / "etc").rmdir()
    img.build({"etc": "-> /"})


READ_CASES = [
    pytest.param(ABS_SHADOW, "/etc/shadow", None, id="abs-link-out"),
    pytest.param(REL_SHADOW, "/etc/shadow", None, id="rel-link-out"),
    pytest.param(
        {**ABS_SHADOW, "{out}/shadow": b"decoy\n"}, "/etc/shadow", b"decoy\n", id="abs-restarts"
    ),
    pytest.param(
        {**REL_SHADOW, "outside/shadow": b"decoy\n"}, "/etc/shadow", b"decoy\n", id="rel-clamped"
    ),
    pytest.param(ABS_SSH, "/root/.ssh/authorized_keys", None, id="abs-dir-link-out"),
    pytest.param(REL_SSH, "/root/.ssh/authorized_keys", None, id="rel-dir-link-out"),
    pytest.param(
        {**REL_SSH, "outside/dir/authorized_keys": b"in\n"},
        "/root/.ssh/authorized_keys",
        b"in\n",
        id="rel-dir-link-inside",
    ),
    pytest.param({"etc/mtab": "-> /proc/self/mounts"}, "/etc/mtab", None, id="link-to-proc"),
    pytest.param(
        {"etc/pw": "-> /etc/../../../etc/hostname"},
        "/etc/pw",
        b"image-etc-hostname\n",
        id="dotdot-in-target",
    ),
    pytest.param(LOOP, "/etc/shadow", RootError, id="loop"),
    pytest.param(DIR_LOOP, "/etc/loop/x", RootError, id="dir-loop"),
    pytest.param(TOO_LONG, "/etc/l0", RootError, id="chain-41"),
    pytest.param(TOO_LONG_DIRS, "/d0/hostname", RootError, id="dir-chain-41"),
    pytest.param(
        chain("etc/l", MAX_LINKS, "hostname"), "/etc/l0", b"image-etc-hostname\n", id="chain-40"
    ),
    pytest.param(
        chain("d", MAX_LINKS, "etc"), "/d0/hostname", b"image-etc-hostname\n", id="dir-chain-40"
    ),
    pytest.param({"etc/shadow": "fifo"}, "/etc/shadow", RootError, id="fifo"),
    pytest.param(
        {"etc/lnk": "-> shadow", "etc/shadow": "fifo"}, "/etc/lnk", RootError, id="link-to-fifo"
    ),
    pytest.param({"etc/shadow": "chardev"}, "/etc/shadow", RootError, id="chardev"),
    pytest.param({"etc/shadow": "socket"}, "/etc/shadow", OSError, id="socket"),
    pytest.param({"etc/shadow": "dir"}, "/etc/shadow", RootError, id="directory"),
    pytest.param({"etc/shadow": "fifo"}, "/etc/shadow/x", None, id="fifo-as-dir"),
    pytest.param({}, "/etc/hostname/x", None, id="file-as-dir"),
    pytest.param(SELF, "/self", RootError, id="link-to-root"),
    pytest.param(SELF, "/dot", RootError, id="link-to-dot"),
    pytest.param(SELF, "/up", RootError, id="link-to-dotdot"),
    pytest.param(SELF, "/self/etc/hostname", b"image-etc-hostname\n", id="through-root-link"),
    pytest.param(SELF, "/up/up/self/dot/hostname", b"image-root-hostname\n", id="root-links"),
]


@pytest.mark.parametrize(("layout", "path", "expected"), READ_CASES)
def test_read_hostile(image: Image, layout: dict[str, Any], path: str, expected: Any) -> None:
    image.build(layout)
    got = outcome(lambda: image.root.read(path))
    if isinstance(expected, type):
        assert isinstance(got, type) and issubclass(got, expected), got
    else:
        assert got == expected
    image.assert_outside_untouched()


def test_read_through_etc_linked_to_root(image: Image) -> None:
    etc_is_root(image)
    assert image.root.read("/etc/hostname") == b"image-root-hostname\n"
    assert image.root.read("/etc/etc/etc/hostname") == b"image-root-hostname\n"
    assert image.root.read("/etc/shadow") is None  # the host's / has one: not read
    assert image.root.read("/etc/../../etc/hostname") == b"image-root-hostname\n"
    image.assert_outside_untouched()


def test_fifo_and_device_never_block_or_change(image: Image) -> None:
    image.build({"etc/shadow": "fifo", "etc/hostname2": "chardev"})
    root = image.root
    with deadline():
        for path in ("/etc/shadow", "/etc/hostname2"):
            with pytest.raises(RootError, match="not a regular file"):
                root.read(path)
            with pytest.raises(RootError, match="not a regular file"):
                root.write(path, PWNED)
            assert root.listdir(path) == []
            assert root.exists(path)
    assert stat.S_ISFIFO((image.path / "etc/shadow").lstat().st_mode)
    assert stat.S_ISCHR((image.path / "etc/hostname2").lstat().st_mode)
    assert root.stat("/etc/shadow")["mode"] == (image.path / "etc/shadow").lstat().st_mode
    image.assert_outside_untouched()


# write: either refused, or the file lands inside the image (where the link points, re-rooted).
WRITE_CASES = [
    pytest.param(ABS_SHADOW, "/etc/shadow", RootError, id="abs-link-out"),
    pytest.param(REL_SHADOW, "/etc/shadow", RootError, id="rel-link-out"),
    pytest.param(
        {"etc/shadow": "-> /nonexistent"}, "/etc/shadow", RootError, id="dangling-final-link"
    ),
    pytest.param(
        ABS_SSH, "/root/.ssh/authorized_keys", "{out}/dir/authorized_keys", id="abs-dir-link"
    ),
    pytest.param(
        REL_SSH, "/root/.ssh/authorized_keys", "outside/dir/authorized_keys", id="rel-dir-link"
    ),
    pytest.param({"etc2": "-> /"}, f"/etc2/{PROBE}", PROBE, id="dir-link-to-root"),
    pytest.param(SELF, f"/up/up/{PROBE}", PROBE, id="dotdot-links"),
    pytest.param({}, f"/../../../{PROBE}", PROBE, id="dotdot-path"),
    pytest.param({}, "/../outside/x", "outside/x", id="dotdot-to-outside-name"),
    pytest.param(LOOP, "/etc/shadow", RootError, id="loop"),
    pytest.param(DIR_LOOP, "/etc/loop/x", RootError, id="dir-loop"),
    pytest.param(TOO_LONG_DIRS, "/d0/x", RootError, id="dir-chain-41"),
    pytest.param({"etc/shadow": "fifo"}, "/etc/shadow", RootError, id="fifo"),
    pytest.param({"etc/shadow": "chardev"}, "/etc/shadow", RootError, id="chardev"),
    pytest.param({"etc/shadow": "socket"}, "/etc/shadow", RootError, id="socket"),
    pytest.param({"etc/shadow": "dir"}, "/etc/shadow", RootError, id="directory"),
    pytest.param({"etc/shadow": "fifo"}, "/etc/shadow/x", NotADirectoryError, id="fifo-as-dir"),
    pytest.param({}, "/etc/hostname/x", NotADirectoryError, id="file-as-dir"),
    pytest.param(SELF, "/self", RootError, id="link-to-root"),
    pytest.param({}, "/", RootError, id="root"),
    pytest.param({}, "/etc/..", RootError, id="dotdot-last"),
    pytest.param({}, "/etc/", RootError, id="trailing-slash-dir"),
]


@pytest.mark.parametrize(("layout", "path", "expected"), WRITE_CASES)
def test_write_hostile(image: Image, layout: dict[str, Any], path: str, expected: Any) -> None:
    image.build(layout)
    links = {p: os.readlink(p) for p in image.path.rglob("*") if p.is_symlink()}
    got = outcome(lambda: image.root.write(path, PWNED))
    if isinstance(expected, str):
        assert got is None
        assert image.inside(expected).read_bytes() == PWNED
        assert not image.inside(expected).is_symlink()
    else:
        assert isinstance(got, type) and issubclass(got, expected), got
    assert {p: os.readlink(p) for p in image.path.rglob("*") if p.is_symlink()} == links
    assert image.temporaries() == []
    image.assert_outside_untouched()


def test_write_replaces_a_hard_link_to_outside(image: Image) -> None:
    """A hard link shares the inode: replacing it must not write through it."""
    os.link(image.outside / "shadow", image.path / "etc/shadow")
    image.before = snapshot(image.top, image.path)
    image.root.write("/etc/shadow", PWNED)
    assert (image.path / "etc/shadow").read_bytes() == PWNED
    # the outside inode lost a link (ctime, nlink), but its contents and mtime did not change
    after = snapshot(image.top, image.path)["outside/shadow"]
    before = image.before["outside/shadow"]
    assert after[:5] == before[:5] and after[-1] == before[-1]
    image.before["outside/shadow"] = after
    image.assert_outside_untouched()


MAKEDIRS_CASES = [
    pytest.param(ABS_SSH, "/root/.ssh", "{out}/dir", id="abs-dir-link"),
    pytest.param(REL_SSH, "/root/.ssh/sub", "outside/dir/sub", id="rel-dir-link"),
    pytest.param({"etc2": "-> /"}, f"/etc2/{PROBE}/a", f"{PROBE}/a", id="link-to-root"),
    pytest.param({}, f"/../../{PROBE}", PROBE, id="dotdot"),
    pytest.param(DIR_LOOP, "/etc/loop/x", RootError, id="dir-loop"),
    pytest.param(LOOP, "/etc/shadow", RootError, id="loop"),
    pytest.param({}, "/etc/hostname/x", NotADirectoryError, id="file"),
    pytest.param({"etc/shadow": "fifo"}, "/etc/shadow", NotADirectoryError, id="fifo"),
    pytest.param({"etc/shadow": "chardev"}, "/etc/shadow/x", NotADirectoryError, id="chardev"),
]


@pytest.mark.parametrize(("layout", "path", "expected"), MAKEDIRS_CASES)
def test_makedirs_hostile(image: Image, layout: dict[str, Any], path: str, expected: Any) -> None:
    image.build(layout)
    got = outcome(lambda: image.root.makedirs(path, 0o700))
    if isinstance(expected, str):
        assert got is None
        assert image.inside(expected).is_dir() and not image.inside(expected).is_symlink()
    else:
        assert isinstance(got, type) and issubclass(got, expected), got
    image.assert_outside_untouched()


def test_remove_hostile(image: Image) -> None:
    image.build({**ABS_SHADOW, **ABS_SSH, "etc/hosts": "-> ../../outside/hostname", **SELF})
    root = image.root
    assert root.remove("/root/.ssh/authorized_keys") is False  # resolved inside: missing
    assert root.remove("/root/.ssh/../../outside/x") is False
    assert root.remove("/etc/shadow") is True  # the link, not its target
    assert root.remove("/etc/hosts") is True
    assert root.remove("/root/.ssh") is True
    assert not (image.path / "etc/shadow").is_symlink()
    assert not (image.path / "root/.ssh").is_symlink()
    for path in ("/", "/etc", "/etc/..", "/self/etc"):
        with pytest.raises(RootError):
            root.remove(path)
    assert root.remove("/self") is True  # the link to the root, and only it
    assert (image.path / "etc/hostname").exists()
    image.assert_outside_untouched()


def test_queries_hostile(image: Image) -> None:
    image.build({**ABS_SHADOW, **ABS_SSH, **DIR_LOOP, "etc/loop2": "-> loop2"})
    root = image.root
    assert root.stat("/etc/shadow") is None
    assert root.exists("/etc/shadow") is False
    assert root.is_link("/etc/shadow") is True
    assert root.listdir("/root/.ssh") == []  # never the outside's "authorized_keys"
    assert root.listdir("/root/.ssh/../../outside") == []
    assert root.exists("/root/.ssh/authorized_keys") is False
    for call in (root.listdir, root.stat, root.exists):
        with pytest.raises(RootError, match="too many levels"):
            call("/etc/loop/x")
    with pytest.raises(RootError, match="too many levels"):
        root.stat("/etc/loop2")
    image.assert_outside_untouched()


def test_listdir_through_etc_linked_to_root(image: Image) -> None:
    etc_is_root(image)
    assert image.root.listdir("/etc") == image.root.listdir("/") == sorted(os.listdir(image.path))
    assert "outside" not in image.root.listdir("/etc/..")


# --- odd paths ---------------------------------------------------------------------------------

BAD_PATHS = ["", "etc/hostname", "./etc/hostname", "../image/etc/hostname", "/etc/host\0name"]
OPS: dict[str, Callable[[SafeRoot, str], Any]] = {
    "read": SafeRoot.read,
    "write": lambda r, p: r.write(p, PWNED),
    "makedirs": SafeRoot.makedirs,
    "remove": SafeRoot.remove,
    "listdir": SafeRoot.listdir,
    "stat": SafeRoot.stat,
    "exists": SafeRoot.exists,
    "is_link": SafeRoot.is_link,
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", BAD_PATHS)
def test_relative_and_nul_paths_refused(image: Image, op: str, path: str) -> None:
    with pytest.raises(RootError, match="not an absolute path"):
        OPS[op](image.root, path)
    image.assert_outside_untouched()


@pytest.mark.parametrize(
    "path",
    [
        "/./etc/./hostname",
        "//etc//hostname",
        "/etc/hostname/",
        "/etc/../etc/hostname",
        "/../../../etc/hostname",
        "/tmp/../../etc/hostname",
        "/etc/./../../../../etc/./hostname",
    ],
)
def test_odd_but_inside_paths(image: Image, path: str) -> None:
    assert image.root.read(path) == b"image-etc-hostname\n"
    assert image.root.exists(path)


@pytest.mark.parametrize("path", ["/", "/etc/..", "/.", "/..", "/etc/../.."])
def test_paths_naming_the_root_are_not_files(image: Image, path: str) -> None:
    for op in ("read", "write", "remove", "is_link"):
        with pytest.raises(RootError, match="names a directory"):
            OPS[op](image.root, path)
    assert image.root.listdir(path) == image.root.listdir("/")


def test_no_descriptor_leaks(image: Image) -> None:
    image.build({**LOOP, **DIR_LOOP, **ABS_SSH, "etc/fifo": "fifo", "etc/dev": "chardev"})
    fds = len(os.listdir("/proc/self/fd"))
    paths = ["/etc/shadow", "/etc/loop/x", "/root/.ssh/k", "/etc/fifo", "/etc/dev", "/etc/hostname"]
    for _ in range(5):
        for path in [*paths, "/etc/hostname/x", "/", "rel"]:
            for op in OPS:
                outcome(lambda op=op, path=path: OPS[op](image.root, path))
    assert len(os.listdir("/proc/self/fd")) == fds


# --- legit layouts -----------------------------------------------------------------------------

OS_RELEASE = b'ID=debian\nVERSION_ID="12"\n'


def test_merged_usr_and_relative_links(image: Image) -> None:
    image.build(
        {
            "usr/lib/os-release": OS_RELEASE,
            "lib": "-> usr/lib",
            "etc/os-release": "-> ../usr/lib/os-release",
            "usr/etc/issue": "-> ../lib/os-release",
            "etc2": "-> usr/etc",  # then ".." is taken from /usr/etc, not from /
            "bin": "-> /usr/bin",
            "usr/bin": "dir",
        }
    )
    root = image.root
    assert root.read("/lib/os-release") == OS_RELEASE
    assert root.read("/etc/os-release") == OS_RELEASE
    assert root.read("/etc2/issue") == OS_RELEASE
    assert root.read("/etc2/../lib/os-release") == OS_RELEASE
    assert root.listdir("/lib") == ["os-release"]
    assert root.stat("/etc/os-release")["size"] == len(OS_RELEASE)
    assert root.is_link("/etc/os-release") and not root.is_link("/lib/os-release")
    root.write("/bin/tool", b"#!/bin/sh\n", mode=0o755)
    assert (image.path / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert root.is_link("/bin")


@pytest.mark.parametrize("run_exists", [True, False])
def test_write_through_var_run_link(image: Image, run_exists: bool) -> None:
    image.build({"var/run": "-> /run", **({"run": "dir"} if run_exists else {})})
    image.root.write("/var/run/snf-saferoot.pid", b"42\n")
    assert (image.path / "run/snf-saferoot.pid").read_bytes() == b"42\n"
    assert not Path("/run/snf-saferoot.pid").exists()
    assert (image.path / "var/run").is_symlink()
    st = (image.path / "run").stat()
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)


def test_makedirs_modes_and_owners(image: Image) -> None:
    old = os.umask(0o077)  # modes must not depend on the caller's umask
    try:
        image.root.makedirs("/home/user/.ssh", mode=0o750, uid=1234, gid=5678)
        image.root.makedirs("/srv/www", mode=0o2775)
    finally:
        os.umask(old)
    for rel in ("home", "home/user", "home/user/.ssh"):
        st = (image.path / rel).lstat()
        assert stat.S_ISDIR(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 1234, 5678)
    assert stat.S_IMODE((image.path / "srv/www").stat().st_mode) == 0o2775
    etc = (image.path / "etc").stat()
    image.root.makedirs("/etc", mode=0o700, uid=1, gid=1)  # existing: left as it is
    st = (image.path / "etc").stat()
    assert (st.st_mode, st.st_uid, st.st_gid) == (etc.st_mode, etc.st_uid, etc.st_gid)


def test_write_new_file_defaults(image: Image) -> None:
    old = os.umask(0o077)
    try:
        image.root.write("/new/dir/file", b"data")
    finally:
        os.umask(old)
    st = (image.path / "new/dir/file").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 0, 0)
    for rel in ("new", "new/dir"):
        st = (image.path / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, (0o4750, 1234, 5678)),  # kept (set-id bits too: chown before chmod)
        ({"mode": 0o600}, (0o600, 1234, 5678)),
        ({"uid": 0}, (0o4750, 0, 5678)),
        ({"mode": 0o640, "uid": 1, "gid": 42}, (0o640, 1, 42)),
    ],
)
def test_write_keeps_or_sets_mode_and_owner(
    image: Image, given: dict[str, int], expected: tuple[int, int, int]
) -> None:
    target = image.path / "etc/shadow"
    target.write_bytes(b"old")
    os.chown(target, 1234, 5678)
    os.chmod(target, 0o4750)
    image.root.write("/etc/shadow", b"new", **given)
    st = target.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == expected
    assert target.read_bytes() == b"new"


def test_write_is_atomic(image: Image) -> None:
    target = image.path / "etc/passwd"
    target.write_bytes(b"old\n")
    with target.open("rb") as held:
        image.root.write("/etc/passwd", b"new\n")
        assert held.read() == b"old\n"  # a new inode was renamed over the old one
        assert os.fstat(held.fileno()).st_ino != target.stat().st_ino
    assert target.read_bytes() == b"new\n"
    assert image.temporaries() == []


@pytest.mark.parametrize(
    ("path", "data", "error"),
    [
        ("/etc", b"x", RootError),  # a directory
        ("/etc/passwd", "not bytes", TypeError),  # fails after the temporary file exists
        ("/etc/passwd", b"x", OSError),  # fsync fails (below)
    ],
)
def test_failed_write_leaves_nothing(
    image: Image, monkeypatch: pytest.MonkeyPatch, path: str, data: Any, error: type
) -> None:
    (image.path / "etc/passwd").write_bytes(b"old\n")
    if error is OSError:

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(saferoot.os, "fsync", broken_fsync)
    inode = (image.path / "etc/passwd").stat().st_ino
    with pytest.raises(error):
        image.root.write(path, data)
    assert image.temporaries() == []
    assert sorted(os.listdir(image.path / "etc")) == ["hostname", "passwd"]
    assert (image.path / "etc/passwd").read_bytes() == b"old\n"
    assert (image.path / "etc/passwd").stat().st_ino == inode


def test_remove_removes_links_never_targets(image: Image) -> None:
    image.build(
        {
            "usr/lib/os-release": OS_RELEASE,
            "lib": "-> usr/lib",
            "etc/os-release": "-> ../usr/lib/os-release",
            "etc/gone": "-> nowhere",
            "etc/fifo": "fifo",
        }
    )
    root = image.root
    assert root.remove("/etc/os-release") is True
    assert root.remove("/lib") is True  # the link to a directory, not the directory
    assert root.remove("/etc/gone") is True
    assert root.remove("/etc/fifo") is True
    assert root.remove("/etc/hostname") is True
    assert root.remove("/etc/hostname") is False
    assert root.remove("/missing/dir/file") is False
    assert (image.path / "usr/lib/os-release").read_bytes() == OS_RELEASE
    assert sorted(os.listdir(image.path / "etc")) == []
    with pytest.raises(RootError, match="is a directory"):
        root.remove("/usr/lib")


def test_listdir_stat_exists(image: Image) -> None:
    image.build({"etc/a": b"12345", "etc/b": "dir", "etc/c": "-> a"})
    os.chown(image.path / "etc/a", 7, 8)
    root = image.root
    assert root.listdir("/etc") == ["a", "b", "c", "hostname"]
    assert root.listdir("/etc/b") == []
    assert root.listdir("/missing") == []
    assert root.listdir("/etc/a") == []
    st = root.stat("/etc/c")
    assert st is not None and stat.S_ISREG(st["mode"])
    assert (st["uid"], st["gid"], st["size"]) == (7, 8, 5)
    assert stat.S_ISDIR(root.stat("/etc/b")["mode"])
    assert root.stat("/etc/missing") is None
    assert root.exists("/etc/c") and not root.exists("/etc/missing")
    assert root.exists("/etc/b") and not root.exists("/etc/a/x")


@pytest.mark.parametrize(
    ("size", "limit", "ok"),
    [(0, 0, True), (10, 10, True), (11, 10, False), (READ_LIMIT, None, True)],
)
def test_read_limit(image: Image, size: int, limit: int | None, ok: bool) -> None:
    data = os.urandom(size)
    (image.path / "etc/big").write_bytes(data)
    kwargs = {} if limit is None else {"limit": limit}
    if ok:
        assert image.root.read("/etc/big", **kwargs) == data
    else:
        with pytest.raises(RootError, match="larger than"):
            image.root.read("/etc/big", **kwargs)


def test_read_default_limit_refuses_larger(image: Image) -> None:
    (image.path / "etc/big").write_bytes(b"\0" * (READ_LIMIT + 1))
    with pytest.raises(RootError, match="larger than"):
        image.root.read("/etc/big")


def test_read_limit_holds_when_the_size_lies(image: Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that grows after fstat (the size said 0) is still refused past the limit."""
    (image.path / "etc/big").write_bytes(b"x" * 100)
    real = os.fstat

    class Shrunk:
        def __init__(self, st: os.stat_result) -> None:
            self.st_mode, self.st_size = st.st_mode, 0

    monkeypatch.setattr(saferoot.os, "fstat", lambda fd: Shrunk(real(fd)))
    with pytest.raises(RootError, match="larger than 10 bytes"):
        image.root.read("/etc/big", limit=10)
    assert image.root.read("/etc/big", limit=100) == b"x" * 100
