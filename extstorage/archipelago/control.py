"""Talking to the node's volume daemon: one JSON object per line over a unix socket.

Requests ``{"op": "attach"|"detach"|"list"|"ping", "volume": name}``; answers
``{"ok": true, ...}`` or ``{"ok": false, "error": message, "kind": error class}``.
``ensure_daemon`` starts archipelagod (detached, logging to its log file) when nothing
answers, so the first ``attach`` on a node brings the daemon up as Ganeti's metad does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from snf.common.config import ArchipelagodConfig
from snf.common.errors import Conflict, InvalidInput, NotFound, SnfError

CONTROL_SOCKET = "control.sock"
NBD_SOCKET = "nbd.sock"
_ERRORS: dict[str, type[SnfError]] = {
    "Conflict": Conflict,
    "LockHeld": Conflict,
    "InvalidInput": InvalidInput,
    "NotFound": NotFound,
}


class DaemonUnavailable(SnfError):
    """The volume daemon does not answer."""


def request(run_dir: Path, message: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Send one request to the daemon; raise the error it answers with."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(run_dir / CONTROL_SOCKET))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonUnavailable(f"archipelagod is not running ({exc.strerror})") from None
    except OSError as exc:
        raise DaemonUnavailable(f"archipelagod did not answer: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise DaemonUnavailable("archipelagod closed the connection without answering") from None
    if not answer.get("ok"):
        cls = _ERRORS.get(answer.get("kind", ""), SnfError)
        raise cls(answer.get("error", "archipelagod refused"))
    return answer


def ensure_daemon(config: ArchipelagodConfig, timeout: float = 15) -> None:
    """Start the node's volume daemon unless it answers already."""
    run_dir = config.run_dir
    try:
        request(run_dir, {"op": "ping"}, timeout=5)
        return
    except DaemonUnavailable:
        pass
    run_dir.mkdir(parents=True, exist_ok=True)
    config.log_file.parent.mkdir(parents=True, exist_ok=True)
    # One starter at a time; the daemon itself also refuses to run twice (its pid lock).
    with open(run_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            request(run_dir, {"op": "ping"}, timeout=5)
            return
        except DaemonUnavailable:
            pass
        with open(config.log_file, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "snf.archipelago.daemon"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                request(run_dir, {"op": "ping"}, timeout=5)
                return
            except DaemonUnavailable:
                if time.monotonic() > deadline:
                    raise DaemonUnavailable(
                        f"archipelagod did not start within {timeout:.0f} s (see {config.log_file})"
                    ) from None
                time.sleep(0.05)
