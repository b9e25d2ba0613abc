"""Server actions: each one a quota commission and one Ganeti job, finished by the job's end.

Every action follows the same steps (DESIGN.md, "Server create"): check the request and the
server's state (409 when an action is already in flight or the state does not allow it);
issue the commission and record the action, committed, so that a crash leaves a trace the
reconciler resolves; submit the RAPI job and record its id.  If RAPI refuses or cannot be
reached, the commission is rejected and nothing else changes (a create leaves no server).
:func:`finish` ends an action when its job ends, whoever noticed (an event, the
reconciler): success accepts the commission and moves the server to its new state, failure
rejects it and records the fault.  Finishing is idempotent.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from sqlalchemy.orm import Session

from snf.common.config import ComputeConfig
from snf.common.errors import RapiError, RapiNotFound
from snf.common.rapi import RapiClient

from ..errors import ApiError
from ..images.registry import image_for_server
from ..volumes import rows
from ..volumes.models import Volume
from . import backends, charges
from .models import Backend, Flavor, Server
from .requests import CreateRequest, new_password

log = logging.getLogger(__name__)

#: The state each action leaves the server in when its job succeeds.
#: Volume actions (attach, detach, delete) leave it as it was.
AFTER = {"CREATE": "STARTED", "START": "STARTED", "STOP": "STOPPED", "REBOOT": "STARTED",
         "RESIZE": "STOPPED", "DESTROY": "DESTROYED"}  # fmt: skip
FINAL_JOB_STATUSES = ("success", "error", "canceled")
TAG_PREFIX = "snf:"


def flavor_for_create(session: Session, flavor_id: int) -> Flavor:
    flavor = session.get(Flavor, flavor_id)
    if flavor is None or flavor.deleted:
        raise ApiError(404, f"flavor {flavor_id} not found")
    if not flavor.allow_create:
        raise ApiError(403, f"flavor {flavor.name} is not available for new servers")
    return flavor


def instance_tags(server: Server) -> list[str]:
    tags = [f"{TAG_PREFIX}owner:{server.user_uuid}", f"{TAG_PREFIX}server:{server.id}"]
    if server.serial is not None:
        tags.append(f"{TAG_PREFIX}commission:{server.serial}")
    return tags


def disks_for(flavor: Flavor, map_name: str, disk_name: str) -> tuple[str, list[dict[str, Any]]]:
    """Ganeti's disk template and disks: ``ext_<provider>`` clones the image's map."""
    disk: dict[str, Any] = {"size": flavor.disk * 1024, "name": disk_name}
    if flavor.disk_template.startswith("ext_"):
        provider = flavor.disk_template.removeprefix("ext_")
        disk["provider"] = provider
        if provider == "archipelago":
            disk["origin"] = map_name
        return "ext", [disk]
    return flavor.disk_template, [disk]


def fail_submit(session: Session, server: Server, exc: Exception) -> ApiError:
    charges.reject(session, server)
    log.warning("server %s: %s job not submitted: %s", server.id, server.action, exc)
    server.action, server.action_args, server.action_started = None, {}, None
    session.commit()
    return ApiError(503, f"the compute backend cannot take the request now: {exc}",
                    fault="serviceUnavailable")  # fmt: skip


def begin(session: Session, server: Server, action: str, delta: dict[str, int],
          **args: Any) -> None:  # fmt: skip
    not_busy(server)
    server.serial = charges.issue(session, server, delta, name=f"server {server.id} {action}")
    server.action, server.action_args = action, {"charge": delta, **args}
    server.action_started = server.updated = time.time()
    session.commit()


def create(
    session: Session, config: ComputeConfig, user: uuid.UUID, request: CreateRequest
) -> tuple[Server, str]:
    """Start building a server; returns it (BUILD) and its password (shown once)."""
    flavor = flavor_for_create(session, request.flavor_id)
    image = image_for_server(session, request.image_id, user)
    networks = config.default_networks if request.networks is None else request.networks
    unknown = sorted(set(networks) - set(config.public_networks))
    if unknown:
        raise ApiError(404, f"network {unknown[0]} not found (only public networks for now)")
    password = request.password or new_password()
    backend = backends.choose(session, config, flavor)
    now = time.time()
    server = Server(name=request.name, user_uuid=user, project=request.project or user,
                    flavor_id=flavor.id, image_id=str(image.id), backend_id=backend.id,
                    operstate="BUILD", meta=request.metadata, created=now,
                    updated=now)  # fmt: skip
    session.add(server)
    session.flush()
    root = Volume(user_uuid=user, project=server.project, size=flavor.disk,
                  volume_type=flavor.disk_template, status="creating", server_id=server.id,
                  root=True, attached=now, image_id=str(image.id), created=now,
                  updated=now)  # fmt: skip
    session.add(root)
    session.flush()
    begin(session, server, "CREATE", charges.totals(flavor) | charges.running(flavor))
    template, disks = disks_for(flavor, image.map_name, root.disk_name)
    osparams = {"img_id": f"map:{image.map_name}", "img_format": image.disk_format,
                "img_properties": json.dumps(image.properties)}  # fmt: skip
    if request.personality:
        osparams["img_personality"] = json.dumps(request.personality)
    try:
        with backends.client(backend, config) as rapi:
            node = backends.pick_node(rapi.nodes(bulk=True), flavor)
            server.job_id = rapi.create_instance(
                server.instance_name, disk_template=template, disks=disks, pnode=node,
                nics=[{"network": name} for name in networks], os=config.os,
                beparams={"vcpus": flavor.vcpus, "maxmem": flavor.ram, "minmem": flavor.ram},
                osparams=osparams, osparams_secret={"img_passwd": password},
                hypervisor=backend.hypervisor, tags=instance_tags(server),
                wait_for_sync=False,
            )  # fmt: skip
    except (RapiError, ApiError) as exc:
        server.deleted, server.operstate = True, "DESTROYED"
        root.deleted, root.status = True, "deleted"
        raise fail_submit(session, server, exc) from None
    session.commit()
    log.info("server %s (%s) for %s: create job %s on %s", server.id, server.name, user,
             server.job_id, backend.name)  # fmt: skip
    return server, password


def submit(session: Session, config: ComputeConfig, server: Server, call: Any) -> None:
    backend = session.get(Backend, server.backend_id) if server.backend_id else None
    if backend is None:
        raise fail_submit(session, server, RapiError("the server has no backend"))
    try:
        with backends.client(backend, config) as rapi:
            server.job_id = call(rapi)
    except RapiError as exc:
        raise fail_submit(session, server, exc) from None
    if server.job_id is None:  # nothing for Ganeti to do
        finish(session, server, None, "success")
    session.commit()


def start(session: Session, config: ComputeConfig, server: Server) -> None:
    require(server, "STOPPED", "start")
    flavor = session.get_one(Flavor, server.flavor_id)
    begin(session, server, "START", charges.running(flavor))
    submit(session, config, server, lambda r: r.startup_instance(server.instance_name))


def stop(session: Session, config: ComputeConfig, server: Server) -> None:
    require(server, "STARTED", "shut down")
    held = {k: -v for k, v in server.charges.items() if k in ("cyclades.cpu", "cyclades.ram")}
    begin(session, server, "STOP", held)
    submit(session, config, server, lambda r: r.shutdown_instance(server.instance_name))


def reboot(session: Session, config: ComputeConfig, server: Server, hard: bool) -> None:
    require(server, "STARTED", "reboot")
    begin(session, server, "REBOOT", {})
    kind = "hard" if hard else "soft"
    submit(session, config, server, lambda r: r.reboot_instance(server.instance_name, type=kind))


def resize(session: Session, config: ComputeConfig, server: Server, flavor: Flavor) -> None:
    require(server, "STOPPED", "resize")
    old = session.get_one(Flavor, server.flavor_id)
    if flavor.id == old.id:
        raise ApiError(400, f"server {server.id} already has flavor {flavor.name}")
    if (flavor.disk, flavor.disk_template) != (old.disk, old.disk_template):
        raise ApiError(
            400, "a resize keeps the disk: pick a flavor with the same disk and template"
        )
    begin(session, server, "RESIZE", charges.difference(charges.totals(flavor),
           charges.totals(old)), flavor=flavor.id)  # fmt: skip
    beparams = {"vcpus": flavor.vcpus, "maxmem": flavor.ram, "minmem": flavor.ram}
    submit(session, config, server,
            lambda r: r.modify_instance(server.instance_name, beparams=beparams))  # fmt: skip


def destroy(session: Session, config: ComputeConfig, server: Server) -> None:
    """Remove the instance and release what the server holds; a server without an
    instance (its create failed early) is gone at once."""
    if server.deleted:
        raise ApiError(404, f"server {server.id} not found")
    begin(session, server, "DESTROY", {key: -value for key, value in server.charges.items()})

    def remove(rapi: RapiClient) -> int | None:
        try:
            rapi.instance(server.instance_name)
        except RapiNotFound:
            return None
        return rapi.delete_instance(server.instance_name)

    submit(session, config, server, remove)


def not_busy(server: Server) -> None:
    if server.action is not None:
        fault = "buildInProgress" if server.action == "CREATE" else "conflict"
        message = f"server {server.id} is busy ({server.action.lower()} in progress)"
        raise ApiError(409, message, fault=fault)


def require(server: Server, state: str, what: str) -> None:
    not_busy(server)
    if server.operstate != state:
        shown = {"STARTED": "ACTIVE"}.get(server.operstate, server.operstate)
        raise ApiError(409, f"cannot {what} server {server.id} while it is {shown}")


def finish(
    session: Session, server: Server, job_id: int | None, status: str, message: str = ""
) -> bool:
    """End the server's action if ``job_id`` is its job and the job has ended; True if
    anything changed.  The caller commits."""
    if server.job_id != job_id or server.action is None or status not in FINAL_JOB_STATUSES:
        return False
    action, args = server.action, server.action_args
    now = time.time()
    reason = message or f"the Ganeti job {job_id} ended as {status}"
    if status == "success":
        charges.accept(session, server, args.get("charge", {}))
        server.operstate = AFTER.get(action, server.operstate)
        if action == "RESIZE":
            server.flavor_id = int(args["flavor"])
        if action == "DESTROY":
            server.deleted = True
        if action == "CREATE":
            server.fault = None
    else:
        charges.reject(session, server)
        if action == "CREATE":
            server.operstate = "ERROR"
        server.fault = {"code": 500, "message": f"{action.lower()} failed", "details": reason,
                        "created": now}  # fmt: skip
    rows.settle(session, server, action, args, status == "success", reason)
    log.info("server %s: %s job %s %s", server.id, action, job_id, status)
    server.action, server.action_args, server.job_id, server.action_started = None, {}, None, None
    server.updated = now
    return True
