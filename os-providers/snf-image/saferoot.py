"""File operations confined to an image's root directory, whatever its symbolic links say.

An image's filesystem is untrusted: ``/etc/shadow`` may be a link to ``/../../etc/shadow``,
``/root/.ssh`` a link to a host directory, a file a FIFO or a device node.  Every path here
is resolved one component at a time with ``openat(O_NOFOLLOW)`` from a directory descriptor
of the root: a symbolic link is read and followed *inside* the root (an absolute target
restarts at the root, ``..`` never climbs above it, as a ``chroot`` would), so nothing
outside the root is ever read or written.  Reads open only regular files (``O_NONBLOCK``,
then ``fstat``); writes never go through a final symbolic link (refused) and replace files
atomically (a temporary file in the same directory, then ``rename``).

Standard library only: the helper VM runs this module with the node's Python and nothing
else (see ``agent.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

MAX_LINKS = 40
READ_LIMIT = 1 << 20
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RootError(Exception):
    """An operation the image does not allow (a link where a file must be, a FIFO, ...)."""


def _parts(path: str) -> list[str]:
    if not path.startswith("/") or "\0" in path:
        raise RootError(f"{path!r} is not an absolute path")
    return [p for p in path.split("/") if p not in ("", ".")]


def _name(parts: list[str], path: str) -> str:
    if not parts or parts[-1] == "..":
        raise RootError(f"{path} names a directory, not a file")
    return parts[-1]


class SafeRoot:
    """The directory ``root`` (a mounted image), seen as ``/``."""

    def __init__(self, root: str) -> None:
        self.fd = os.open(root, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.fd)

    # --- resolution ----------------------------------------------------------------------------

    def _walk(self, parts: list[str], *, create: tuple[int, int, int] | None = None) -> int:
        """A new descriptor of the directory ``parts`` names (links followed in the root).

        With ``create=(mode, uid, gid)`` missing directories are made on the way."""
        stack = [os.dup(self.fd)]
        todo = list(parts)
        links = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if create is None:
                        raise
                    mode, uid, gid = create
                    os.mkdir(name, mode, dir_fd=stack[-1])
                    os.chown(name, uid, gid, dir_fd=stack[-1], follow_symlinks=False)
                    os.chmod(name, mode, dir_fd=stack[-1], follow_symlinks=False)
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise RootError("too many levels of symbolic links")
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                    todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
                stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def _parent(self, path: str, **kwargs: tuple[int, int, int]) -> tuple[int, str]:
        parts = _parts(path)
        name = _name(parts, path)
        return self._walk(parts[:-1], **kwargs), name

    def _final(self, path: str) -> tuple[int, str]:
        """The directory and the name of ``path`` after following every link in the root."""
        parts = _parts(path)
        for _ in range(MAX_LINKS + 1):  # MAX_LINKS links, then the name itself
            name = _name(parts, path)
            dfd = self._walk(parts[:-1])
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return dfd, name
            if not stat.S_ISLNK(st.st_mode):
                return dfd, name
            target = os.readlink(name, dir_fd=dfd)
            os.close(dfd)
            base = [] if target.startswith("/") else parts[:-1]
            parts = base + [p for p in target.split("/") if p not in ("", ".")]
        raise RootError("too many levels of symbolic links")

    # --- queries ----------------------------------------------------------------------------------

    def stat(self, path: str) -> dict[str, int] | None:
        """mode, uid, gid and size of what ``path`` names (links followed), None if missing."""
        try:
            dfd, name = self._final(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(dfd)
        return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size}

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def is_link(self, path: str) -> bool:
        """Whether the last component of ``path`` is itself a symbolic link."""
        try:
            dfd, name = self._parent(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False
        finally:
            os.close(dfd)

    def read(self, path: str, limit: int = READ_LIMIT) -> bytes | None:
        """The contents of the regular file ``path``, None if it does not exist."""
        try:
            dfd, name = self._final(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(name, flags, dir_fd=dfd)
        except FileNotFoundError:
            return None
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RootError(f"{path} is not a regular file")
            if st.st_size > limit:
                raise RootError(f"{path} is larger than {limit} bytes")
            chunks, left = [], limit + 1  # the size may lie (a file that grows): read no more
            while left > 0 and (data := os.read(fd, min(left, 1 << 16))):
                chunks.append(data)
                left -= len(data)
            if left <= 0:
                raise RootError(f"{path} is larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        """Names in the directory ``path`` (empty if it does not exist)."""
        try:
            dfd = self._walk(_parts(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            return sorted(os.listdir(rfd))
        finally:
            os.close(rfd)

    # --- changes ----------------------------------------------------------------------------------

    def makedirs(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Make the directory ``path`` and missing parents (each ``mode``, ``uid``:``gid``)."""
        os.close(self._walk(_parts(path), create=(mode, uid, gid)))

    def write(
        self,
        path: str,
        data: bytes,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Replace (or create) the file ``path`` atomically.

        ``mode``/``uid``/``gid`` default to the replaced file's (else 0644 root:root).
        Missing parent directories are made 0755 root:root."""
        dfd, name = self._parent(path, create=(0o755, 0, 0))
        tmp = f".snf-image-{secrets.token_hex(6)}"
        try:
            try:
                old = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and not stat.S_ISREG(old.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(old.st_mode) else "not a regular file"
                raise RootError(f"refusing to write {path}: it is {what} in the image")
            mode = stat.S_IMODE(old.st_mode) if mode is None and old else mode
            uid = old.st_uid if uid is None and old else uid
            gid = old.st_gid if gid is None and old else gid
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, 0 if uid is None else uid, 0 if gid is None else gid)
                os.fchmod(fd, 0o644 if mode is None else mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(dfd)

    def remove(self, path: str) -> bool:
        """Remove the file or link ``path`` itself (never a link's target); False if missing."""
        try:
            dfd, name = self._parent(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise RootError(f"refusing to remove {path}: it is a directory")
            os.unlink(name, dir_fd=dfd)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(dfd)
