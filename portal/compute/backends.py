"""The Ganeti clusters servers run on: registration, RAPI clients, room, and allocation.

An administrator registers each cluster (`snf-portal backend add`); its RAPI password goes to
a root-only file, never to the database.  A new server goes to the non-drained cluster with
the most free memory that can hold it; free memory and disk are read from RAPI (online,
undrained nodes) when older than ``[compute] capacity_seconds``, and what the portal has
placed since is subtracted, so that a burst of creates spreads over the clusters.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from snf.common.config import ComputeConfig
from snf.common.errors import Conflict, InvalidInput, NotFound, RapiError
from snf.common.rapi import DEFAULT_PORT, RapiClient, normalize_pin

from ..errors import ApiError
from .models import Backend, Flavor, Server

T = TypeVar("T")

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
HYPERVISORS = ("kvm", "fake", "xen-pvm", "xen-hvm")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidInput(f"bad backend name {name!r}: use a-z, 0-9 and '-', at most 63")
    return name


def find(session: Session, name: str) -> Backend:
    backend = session.scalar(select(Backend).where(Backend.name == name))
    if backend is None:
        raise NotFound(f"no backend {name!r}")
    return backend


def _password_file(config: ComputeConfig, name: str) -> Path:
    return config.backend_secrets_dir / f"{name}.rapi"


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    os.replace(temporary, path)


def client(backend: Backend, config: ComputeConfig) -> RapiClient:
    try:
        password = Path(backend.password_file).read_text().rstrip("\n")
    except OSError as exc:
        raise RapiError(f"backend {backend.name}: cannot read its RAPI password: {exc}") from None
    return RapiClient(
        backend.rapi_host,
        backend.rapi_port,
        username=backend.username,
        password=password,
        pin=backend.pin,
        timeout=config.rapi_timeout,
    )


def ask(session: Session, config: ComputeConfig, server: Server,
        call: Callable[[RapiClient], T]) -> T:  # fmt: skip
    """One call to the server's cluster, for a request that waits for it: 409 for a server
    without a backend, 503 when the cluster cannot be reached."""
    backend = session.get(Backend, server.backend_id) if server.backend_id else None
    if backend is None:
        raise ApiError(409, f"server {server.id} has no backend")
    try:
        with client(backend, config) as rapi:
            return call(rapi)
    except RapiError as exc:
        raise ApiError(503, f"cannot reach the server's cluster: {exc}",
                       fault="serviceUnavailable") from None  # fmt: skip


def add(
    session: Session,
    config: ComputeConfig,
    name: str,
    host: str,
    *,
    username: str,
    password: str,
    pin: str | None,
    port: int = DEFAULT_PORT,
    hypervisor: str | None = None,
) -> tuple[Backend, str]:
    """Register a cluster after checking that its RAPI answers with these credentials;
    returns the backend and the cluster's name."""
    check_name(name)
    if session.scalar(select(Backend.id).where(Backend.name == name)) is not None:
        raise Conflict(f"backend {name!r} exists already")
    if hypervisor is not None and hypervisor not in HYPERVISORS:
        raise InvalidInput(f"unknown hypervisor {hypervisor!r} (known: {', '.join(HYPERVISORS)})")
    pin = None if pin is None else normalize_pin(pin)
    with RapiClient(host, port, username=username, password=password, pin=pin) as rapi:
        cluster = str(rapi.info().get("name", "?"))
    password_file = _password_file(config, name)
    _write_secret(password_file, password)
    backend = Backend(name=name, rapi_host=host, rapi_port=port, username=username, pin=pin,
                      password_file=str(password_file), hypervisor=hypervisor,
                      created=time.time())  # fmt: skip
    session.add(backend)
    session.flush()
    return backend, cluster


def remove(session: Session, name: str) -> None:
    """Forget a cluster that runs no server any more (its password file too)."""
    backend = find(session, name)
    servers = session.scalar(
        select(func.count(Server.id)).where(Server.backend_id == backend.id, ~Server.deleted)
    )
    if servers:
        raise Conflict(f"backend {name} still runs {servers} server(s): drain it and move them")
    Path(backend.password_file).unlink(missing_ok=True)
    session.execute(
        Server.__table__.update().where(Server.backend_id == backend.id).values(backend_id=None)
    )
    session.delete(backend)


def usable_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes that may take new instances (online, undrained, VM-capable)."""
    return [
        n for n in nodes if not (n.get("offline") or n.get("drained")) and n.get("vm_capable", True)
    ]


def refresh_capacity(backend: Backend, nodes: list[dict[str, Any]]) -> None:
    usable = usable_nodes(nodes)
    backend.free_memory_mib = sum(int(n.get("mfree") or 0) for n in usable)
    backend.free_disk_mib = sum(int(n.get("dfree") or 0) for n in usable)
    backend.capacity_updated = time.time()


def pick_node(nodes: list[dict[str, Any]], flavor: Flavor) -> str:
    """The primary node for a new server: the usable node with the most free memory that
    holds it.  Chosen here rather than by an iallocator, whose N+1 check refuses every
    ``ext`` instance on a one-node cluster."""
    disk_mib = flavor.disk * 1024 if needs_local_disk(flavor) else 0
    fitting = [n for n in usable_nodes(nodes) if int(n.get("mfree") or 0) >= flavor.ram
               and int(n.get("dfree") or 0) >= disk_mib and n.get("name")]  # fmt: skip
    if not fitting:
        raise ApiError(503, f"no node has room for a server of flavor {flavor.name}",
                       fault="serviceUnavailable")  # fmt: skip
    return str(max(fitting, key=lambda n: (int(n.get("mfree") or 0), n["name"]))["name"])


def needs_local_disk(flavor: Flavor) -> bool:
    """Archipelago volumes live in the shared store, not on the nodes' disks."""
    return not flavor.disk_template.startswith("ext_")


def choose(session: Session, config: ComputeConfig, flavor: Flavor) -> Backend:
    """The backend for a new server of ``flavor``; 503 if none has room."""
    candidates = list(session.scalars(select(Backend).where(~Backend.drained)))
    if not candidates:
        raise ApiError(503, "no compute backend is available", fault="serviceUnavailable")
    now = time.time()
    for backend in candidates:
        if now - backend.capacity_updated > config.capacity_seconds:
            try:
                with client(backend, config) as rapi:
                    refresh_capacity(backend, rapi.nodes(bulk=True))
            except RapiError as exc:
                log.warning("backend %s: cannot read its capacity: %s", backend.name, exc)
                backend.free_memory_mib = backend.free_disk_mib = 0
    disk_mib = flavor.disk * 1024 if needs_local_disk(flavor) else 0
    fitting = [
        b for b in candidates if b.free_memory_mib >= flavor.ram and b.free_disk_mib >= disk_mib
    ]
    if not fitting:
        raise ApiError(503, f"no compute backend has room for a server of flavor {flavor.name}",
                       fault="serviceUnavailable")  # fmt: skip
    chosen = max(fitting, key=lambda b: (b.free_memory_mib, -b.id))
    chosen.free_memory_mib -= flavor.ram
    chosen.free_disk_mib -= disk_mib
    return chosen
