"""inotify through libc (the standard library has no binding): a non-blocking descriptor
watching one or more directories (nfdhcpd's bindings, the event daemon's job queue)."""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
_EVENT = struct.Struct("iIII")


class Watch:
    def __init__(self, mask: int = IN_CLOSE_WRITE | IN_MOVED_TO) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.mask = mask
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.dirs: dict[int, str] = {}

    def add(self, directory: str) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), self.mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot watch {directory}: {os.strerror(err)}")
        self.dirs[wd] = directory

    def events(self) -> Iterator[tuple[int, str, str]]:
        """(mask, directory, file name) for every pending event; the mask has IN_Q_OVERFLOW
        (and the names are empty) when the kernel dropped some."""
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                yield mask, self.dirs.get(wd, ""), os.fsdecode(raw.rstrip(b"\0"))

    def close(self) -> None:
        os.close(self.fd)
