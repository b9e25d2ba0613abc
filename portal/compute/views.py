"""Servers and flavors as the compute API shows them (OpenStack's shape with Synnefo's
extensions); pure functions of rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .models import Flavor, Server

#: operstate -> (status, OS-EXT-STS:vm_state, OS-EXT-STS:power_state)
STATES = {
    "BUILD": ("BUILD", "building", 0),
    "STARTED": ("ACTIVE", "active", 1),
    "STOPPED": ("STOPPED", "stopped", 4),
    "ERROR": ("ERROR", "error", 0),
    "DESTROYED": ("DELETED", "deleted", 0),
}
#: An action in flight shows as this status (others keep the server's own status).
ACTION_STATUS = {"CREATE": "BUILD", "REBOOT": "REBOOT", "RESIZE": "RESIZE"}
TASK_STATES = {"CREATE": "BUILDING", "START": "STARTING", "STOP": "STOPPING",
               "REBOOT": "REBOOTING", "RESIZE": "RESIZING", "DESTROY": "DESTROYING"}  # fmt: skip


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def status(server: Server) -> str:
    if server.deleted:
        return "DELETED"
    if server.action in ACTION_STATUS:
        return ACTION_STATUS[server.action]
    return STATES[server.operstate][0]


def _link(base: str, kind: str, ident: object) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{base}/{kind}/{ident}"},
            {"rel": "bookmark", "href": f"{base}/{kind}/{ident}"}]  # fmt: skip


def server_brief(server: Server, base: str) -> dict[str, Any]:
    return {"id": server.id, "name": server.name, "links": _link(base, "servers", server.id)}


def server_detail(server: Server, base: str, volumes: list[int] | None = None) -> dict[str, Any]:
    """``volumes``: the ids of its volumes, in disk order."""
    shown = status(server)
    _, vm_state, power = STATES["DESTROYED" if server.deleted else server.operstate]
    task = TASK_STATES.get(server.action or "", "")
    out: dict[str, Any] = {
        "id": server.id,
        "name": server.name,
        "status": shown,
        "SNF:task_state": task,
        "progress": 0 if shown == "BUILD" else 100,
        "user_id": str(server.user_uuid),
        "tenant_id": str(server.project),
        "created": iso(server.created),
        "updated": iso(server.updated),
        "flavor": {"id": server.flavor_id, "links": _link(base, "flavors", server.flavor_id)},
        "image": {"id": server.image_id, "links": _link(base, "images", server.image_id)},
        "metadata": dict(server.meta),
        "addresses": {},
        "attachments": [],
        "volumes": [str(v) for v in volumes or []],
        "os-extended-volumes:volumes_attached": [{"id": str(v)} for v in volumes or []],
        "diagnostics": [],
        "hostId": "",
        "accessIPv4": "",
        "accessIPv6": "",
        "key_name": None,
        "security_groups": [],
        "SNF:key_names": list(server.key_names),
        "SNF:fqdn": None,
        "SNF:port_forwarding": {},
        "SNF:rescue": False,
        "suspended": False,
        "deleted": server.deleted,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:task_state": task.lower() or None,
        "OS-EXT-STS:power_state": power,
        "config_drive": "",
        "links": _link(base, "servers", server.id),
    }
    if server.fault and shown == "ERROR":
        fault = server.fault
        out["fault"] = {"code": fault.get("code", 500), "message": fault.get("message", ""),
                        "details": fault.get("details", ""),
                        "created": iso(fault.get("created", server.updated))}  # fmt: skip
    return out


def flavor_detail(flavor: Flavor, base: str) -> dict[str, Any]:
    return {
        "id": flavor.id,
        "name": flavor.name,
        "ram": flavor.ram,
        "vcpus": flavor.vcpus,
        "disk": flavor.disk,
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "swap": "",
        "rxtx_factor": 1.0,
        "os-flavor-access:is_public": True,
        "SNF:disk_template": flavor.disk_template,
        "SNF:volume_type": flavor.disk_template,
        "SNF:allow_create": flavor.allow_create,
        "links": _link(base, "flavors", flavor.id),
    }
