"""The reconciler: compare the servers in the database with the instances RAPI reports, and
fix the difference (``snf-portal reconcile``, once or every few seconds).

- An action whose job has ended is finished (the event was lost, or the portal was down).
- An action recorded but never submitted (the portal died in between) is given up once
  older than ``[compute] build_grace_seconds``: its commission is rejected; a create whose
  instance nevertheless exists is adopted instead.
- A job Ganeti no longer knows (archived) is judged by the instance: there or not.
- A server whose instance is missing goes to ERROR; one whose instance runs (or stopped)
  behind the portal's back gets the right state, and its running charges follow.
- An instance tagged as a server the database does not have is reported, never touched.
- A compute commission left pending with no action waiting for it (older than
  ``build_grace_seconds``) is rejected: nothing is ever left pending.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from snf.common.config import ComputeConfig
from snf.common.errors import RapiError, RapiNotFound
from snf.common.rapi import RapiClient
from snf.common.rapi_jobs import job_failure
from snf.quota import engine as quota
from snf.quota.models import COMMISSION_PENDING, Commission

from . import backends, charges, lifecycle
from .models import Backend, Flavor, Server

log = logging.getLogger(__name__)
SERVER_TAG = re.compile(r"snf:server:(\d+)")


def reconcile(session: Session, config: ComputeConfig) -> list[str]:
    """One pass over every backend; returns a line per change (and per orphan)."""
    lines: list[str] = []
    for backend in session.scalars(select(Backend).order_by(Backend.id)):
        try:
            with backends.client(backend, config) as rapi:
                lines += _backend(session, config, backend, rapi)
        except RapiError as exc:
            lines.append(f"backend {backend.name}: unreachable, skipped: {exc}")
        session.commit()
    lines += _orphan_commissions(session, config)
    for line in lines:
        log.info("reconcile: %s", line)
    return lines


def _orphan_commissions(session: Session, config: ComputeConfig) -> list[str]:
    cutoff = datetime.now(UTC) - timedelta(seconds=config.build_grace_seconds)
    query = select(Commission.serial, Commission.name, Commission.issue_time).where(
        Commission.service == charges.SERVICE, Commission.state == COMMISSION_PENDING
    )
    pending = session.execute(query).all()
    if not pending:
        return []
    waited = set(session.scalars(select(Server.serial).where(Server.serial.is_not(None))))
    lines = []
    for serial, name, issued in pending:
        issued = issued if issued.tzinfo else issued.replace(tzinfo=UTC)
        if serial in waited or issued > cutoff:
            continue
        quota.reject(session, serial, service=charges.SERVICE)
        lines.append(f"commission {serial} ({name}) pending with no action: rejected")
    session.commit()
    return lines


def _backend(
    session: Session, config: ComputeConfig, backend: Backend, rapi: RapiClient
) -> list[str]:
    instances = {i["name"]: i for i in rapi.instances(bulk=True) if "name" in i}
    servers = session.scalars(
        select(Server).where(Server.backend_id == backend.id, ~Server.deleted)
    ).all()
    lines = []
    for server in servers:
        line = _server(session, config, server, instances.get(server.instance_name), rapi)
        if line:
            lines.append(f"server {server.id} ({backend.name}): {line}")
    known = {s.instance_name for s in servers}
    for name, instance in sorted(instances.items()):
        tagged = [m for t in instance.get("tags") or [] if (m := SERVER_TAG.fullmatch(t))]
        if tagged and name not in known:
            lines.append(f"backend {backend.name}: instance {name} is not a known server")
    return lines


def _server(
    session: Session,
    config: ComputeConfig,
    server: Server,
    instance: dict[str, Any] | None,
    rapi: RapiClient,
) -> str:
    if server.job_id is not None:
        return _job(session, server, instance, rapi)
    if server.action is not None:
        age = time.time() - (server.action_started or server.updated)
        if age < config.build_grace_seconds:
            return ""
        action = server.action
        if action == "CREATE" and instance is not None:
            lifecycle.finish(session, server, None, "success")
            return "create adopted: the instance exists"
        lifecycle.finish(session, server, None, "error", "the job was never submitted")
        return f"{action} never submitted: given up"
    if instance is None:
        if server.operstate in ("ERROR", "DESTROYED"):
            return ""
        server.operstate = "ERROR"
        server.fault = {"code": 500, "message": "the instance is missing from its cluster",
                        "details": "", "created": time.time()}  # fmt: skip
        return "instance missing: ERROR"
    return _state(session, server, instance)


def _job(session: Session, server: Server, instance: dict[str, Any] | None,
         rapi: RapiClient) -> str:  # fmt: skip
    job_id = server.job_id
    assert job_id is not None
    action = server.action
    try:
        job = rapi.job(job_id)
    except RapiNotFound:  # archived: judge by the instance
        gone = instance is None
        ok = gone if action == "DESTROY" else not gone
        lifecycle.finish(session, server, job_id, "success" if ok else "error",
                         f"job {job_id} is no longer known to Ganeti")  # fmt: skip
        return f"{action} job {job_id} archived: {'done' if ok else 'failed'}"
    status = job["status"]
    if status not in lifecycle.FINAL_JOB_STATUSES:
        return ""
    message = str(job_failure(job_id, job)) if status == "error" else ""
    lifecycle.finish(session, server, job_id, status, message)
    return f"{action} job {job_id} ended ({status})"


def _state(session: Session, server: Server, instance: dict[str, Any]) -> str:
    running = bool(instance.get("oper_state"))
    want = "STARTED" if running else "STOPPED"
    if server.operstate == want:
        return ""
    flavor = session.get_one(Flavor, server.flavor_id)
    held = {k: v for k, v in server.charges.items() if k in ("cyclades.cpu", "cyclades.ram")}
    delta = charges.difference(charges.running(flavor) if running else {}, held)
    charges.issue(session, server, delta, name=f"server {server.id} reconcile",
                  force=True, auto_accept=True)  # fmt: skip
    server.charges = charges.add(server.charges, delta)
    before, server.operstate, server.updated = server.operstate, want, time.time()
    return f"{before} but the instance is {'running' if running else 'down'}: {want}"
