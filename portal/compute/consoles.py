"""The ``console`` action: where a running server's VNC console listens.

Synnefo's answer is ``{"console": {type, host, port, password}}``.  It is worked out from the
instance as RAPI shows it, the way Ganeti's KVM hypervisor does for ``gnt-instance console``:
a serial console comes first (``serial_console``: only the cluster's operators reach it),
then VNC when ``vnc_bind_address`` is set, on the instance's ``network_port``, at the bind
address (the primary node's address when it is bound to all).  RAPI's own
``/2/instances/<name>/console`` cannot be used for VNC on Ganeti 3.0.2: luxid fails to decode
the node's answer (``Can't parse value for 'display'``) and RAPI answers 500.

The password is the cluster's VNC password (``vnc_password_file``), which RAPI does not
reveal, so it is empty here; there is no VNC proxy yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from snf.common.config import ComputeConfig
from snf.common.rapi import RapiClient

from ..errors import ApiError
from . import backends, lifecycle
from .models import Server

TYPES = ("vnc", "vnc-ws", "vnc-wss")
#: Ganeti's first VNC port (display 0).
VNC_BASE_PORT = 5900
ANY_ADDRESS = ("0.0.0.0", "::")


def vnc_endpoint(instance: dict[str, Any], node_address: str) -> tuple[str, int] | str:
    """(host, port) of the instance's VNC console, or why it has none.  Pure."""
    hvparams = instance.get("hvparams") or {}
    if hvparams.get("serial_console"):
        return "it has a serial console only"
    bind = hvparams.get("vnc_bind_address") or ""
    port = instance.get("network_port") or 0
    if not bind or port <= VNC_BASE_PORT:
        return "its hypervisor parameters give it no VNC console"
    return (node_address if bind in ANY_ADDRESS else bind), port


def _lookup(rapi: RapiClient, name: str) -> tuple[dict[str, Any], str]:
    instance = rapi.instance(name)
    nodes = {n.get("name"): n for n in rapi.nodes(bulk=True)}
    return instance, str(nodes.get(instance.get("pnode"), {}).get("pip") or "")


def console(session: Session, config: ComputeConfig, server: Server, args: Any) -> dict[str, Any]:
    kind = args.get("type", "vnc") if isinstance(args, dict) else None
    if kind not in TYPES:
        raise ApiError(400, 'console needs {"type": "vnc"} (or vnc-ws, vnc-wss)')
    lifecycle.require(server, "STARTED", "open the console of")
    instance, address = backends.ask(session, config, server,
                                     lambda rapi: _lookup(rapi, server.instance_name))  # fmt: skip
    found = vnc_endpoint(instance, address)
    if isinstance(found, str):
        raise ApiError(409, f"server {server.id} has no VNC console on its cluster: {found}")
    host, port = found
    return {"type": kind, "host": host, "port": port, "password": ""}
