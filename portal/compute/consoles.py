"""The ``console`` action: where a running server's graphical console listens, as Ganeti's
RAPI reports it (``/2/instances/<name>/console``).

Only VNC consoles are given out (Synnefo's ``{"console": {type, host, port, password}}``).
The password is the cluster's VNC password (``vnc_password_file``), which RAPI does not
reveal, so it is empty here; a cluster whose instances have only a serial console (or the
fake hypervisor's message) gives a 409 that says so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from snf.common.config import ComputeConfig

from ..errors import ApiError
from . import backends, lifecycle
from .models import Server

TYPES = ("vnc", "vnc-ws", "vnc-wss")


def console(session: Session, config: ComputeConfig, server: Server, args: Any) -> dict[str, Any]:
    kind = args.get("type", "vnc") if isinstance(args, dict) else None
    if kind not in TYPES:
        raise ApiError(400, 'console needs {"type": "vnc"} (or vnc-ws, vnc-wss)')
    lifecycle.require(server, "STARTED", "open the console of")
    info = backends.ask(session, config, server,
                        lambda rapi: rapi.instance_console(server.instance_name))  # fmt: skip
    if info.get("kind") != "vnc":
        said = info.get("message") or info.get("kind") or "no console"
        raise ApiError(409, f"server {server.id} has no VNC console on its cluster ({said})")
    return {"type": kind, "host": info.get("host"), "port": info.get("port"), "password": ""}
