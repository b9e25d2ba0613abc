"""Forward a TCP port on the host's loopback to an address inside a testbed namespace.

Only `make demo` uses this: the services stay inside the testbed, and one loopback port on
the host reaches one of them.  Outgoing connections are made by a worker thread that has
entered the namespace (setns changes the network namespace of the calling thread only).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from concurrent.futures import ThreadPoolExecutor

from .namespaces import CLONE_NEWNET, Host, _setns

log = logging.getLogger("snf.testbed.forward")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, host: Host, target: tuple[str, int]) -> None:
        self.target = target
        self.connector = ThreadPoolExecutor(
            max_workers=1, initializer=_setns, initargs=(host.netns_path, CLONE_NEWNET)
        )
        super().__init__(("127.0.0.1", port), _Handler)

    def open_upstream(self) -> socket.socket:
        return self.connector.submit(socket.create_connection, self.target, 10).result()


class _Handler(socketserver.BaseRequestHandler):
    server: Forwarder

    def handle(self) -> None:
        try:
            upstream = self.server.open_upstream()
        except OSError as exc:
            log.warning("cannot reach %s:%d: %s", *self.server.target, exc)
            return
        with upstream:
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join()
