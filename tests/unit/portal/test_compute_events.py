"""POST /internal/events (snf.portal.compute.events_api): service tokens only; an event ends
its server's pending action (commission accepted or rejected) exactly once; duplicates,
late events for older jobs and unknown instances change nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.hooks import events
from snf.portal.compute import charges
from snf.portal.compute.models import Backend, Flavor, Server
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.quota import engine as quota

MiB = 1 << 20


@pytest.fixture
def service(app: Flask) -> dict[str, str]:
    with app.app_context():
        token, _ = accounts.add_service(db.session, "ganeti-events")
        db.session.commit()
    return {"X-Auth-Token": token}


def pending(app: Flask, user: uuid.UUID, action: str = "CREATE", job_id: int = 7,
            operstate: str = "BUILD") -> int:  # fmt: skip
    """A server whose ``action`` is in flight as Ganeti job ``job_id``."""
    with app.app_context():
        flavor = db.session.scalar(db.select(Flavor)) or Flavor(
            name="small", vcpus=1, ram=512, disk=2
        )
        backend = db.session.scalar(db.select(Backend)) or Backend(
            name="c1", rapi_host="h", username="u", password_file="/nonexistent", pin=None,
            created=time.time())  # fmt: skip
        db.session.add_all([flavor, backend])
        db.session.flush()
        quota.ensure_user(db.session, user)
        now = time.time()
        server = Server(name="vm", user_uuid=user, project=user, flavor_id=flavor.id,
                        image_id="i", backend_id=backend.id, operstate=operstate,
                        created=now, updated=now)  # fmt: skip
        db.session.add(server)
        db.session.flush()
        delta = charges.totals(flavor) | charges.running(flavor) if action == "CREATE" else {}
        server.serial = charges.issue(db.session, server, delta, name="test")
        server.action, server.action_args, server.job_id = action, {"charge": delta}, job_id
        db.session.commit()
        return server.id


def event(server_id: int, job_id: int = 7, status: str = "success", **kw: Any) -> events.Event:
    return events.build(cluster="c1.example.test", job_id=job_id, index=0,
                        opcode=kw.pop("opcode", "OP_INSTANCE_CREATE"),
                        instance=f"snf-{server_id}", status=status, end_ts=time.time(),
                        source=kw.pop("source", "eventd"), **kw)  # fmt: skip


def state(app: Flask, server_id: int) -> tuple[str, str | None, int | None]:
    with app.app_context():
        server = db.session.get_one(Server, server_id)
        return server.operstate, server.action, server.job_id


def usage(app: Flask, user: uuid.UUID, resource: str) -> int:
    with app.app_context():
        return quota.quotas(db.session, user)[str(user)][resource]["usage"]


def test_only_services_may_post(client: FlaskClient, alice: dict[str, str], app: Flask) -> None:
    body = event(1)
    assert client.post("/internal/events", json=body).status_code == 401
    answer = client.post("/internal/events", json=body, headers={"X-Auth-Token": alice["token"]})
    assert answer.status_code == 403 and "forbidden" in answer.get_json()


def test_a_success_event_finishes_the_create_once(
    client: FlaskClient, app: Flask, alice: dict[str, str], service: dict[str, str]
) -> None:
    user = uuid.UUID(alice["uuid"])
    server = pending(app, user)
    answer = client.post("/internal/events", json=event(server), headers=service)
    assert answer.status_code == 200
    assert answer.get_json() == {"results": [{"id": "c1.example.test:7:0",
                                              "outcome": "applied"}]}  # fmt: skip
    assert state(app, server) == ("STARTED", None, None)
    assert usage(app, user, "cyclades.vm") == 1
    # The hook's copy of the same event, and a replay: nothing more.
    for source in ("hook", "eventd"):
        again = client.post("/internal/events", json={"events": [event(server, source=source)]},
                            headers=service)  # fmt: skip
        assert again.status_code == 200 and again.get_json()["results"][0]["outcome"] == "stale"
    assert usage(app, user, "cyclades.vm") == 1
    shown = client.get(f"/compute/v2.0/servers/{server}",
                       headers={"X-Auth-Token": alice["token"]}).get_json()  # fmt: skip
    assert shown["server"]["status"] == "ACTIVE"


def test_a_failed_job_means_error_and_a_rejected_commission(
    client: FlaskClient, app: Flask, alice: dict[str, str], service: dict[str, str]
) -> None:
    user = uuid.UUID(alice["uuid"])
    server = pending(app, user)
    assert usage(app, user, "cyclades.ram") == 512 * MiB  # pending counts as used
    failed = event(server, status="error", message="job 7 failed: OpExecError: no room")
    assert client.post("/internal/events", json=failed, headers=service).status_code == 200
    assert state(app, server) == ("ERROR", None, None)
    assert usage(app, user, "cyclades.ram") == 0
    with app.app_context():
        assert db.session.get_one(Server, server).fault["details"].endswith("no room")


def test_late_events_for_older_jobs_change_nothing(
    client: FlaskClient, app: Flask, alice: dict[str, str], service: dict[str, str]
) -> None:
    """The server was stopped by job 7 and is now starting as job 9: an event for job 7
    (late, or replayed) and one for job 8 (someone else's) leave the start pending; a batch
    is applied in job order whatever its order."""
    user = uuid.UUID(alice["uuid"])
    server = pending(app, user, action="START", job_id=9, operstate="STOPPED")
    batch = {"events": [event(server, 9, opcode="OP_INSTANCE_STARTUP"),
                        event(server, 7, status="error", opcode="OP_INSTANCE_SHUTDOWN"),
                        event(server, 8, opcode="OP_INSTANCE_SHUTDOWN")]}  # fmt: skip
    answer = client.post("/internal/events", json=batch, headers=service).get_json()
    assert [r["outcome"] for r in answer["results"]] == ["applied", "stale", "stale"]
    assert state(app, server) == ("STARTED", None, None)
    late = event(server, 7, status="error", opcode="OP_INSTANCE_SHUTDOWN")
    assert client.post("/internal/events", json=late, headers=service).status_code == 200
    assert state(app, server)[0] == "STARTED"


def test_unknown_instances_are_accepted_and_ignored(
    client: FlaskClient, service: dict[str, str]
) -> None:
    answer = client.post("/internal/events", json=event(424242), headers=service)
    assert answer.status_code == 200 and answer.get_json()["results"][0]["outcome"] == "unknown"


@pytest.mark.parametrize(
    "body",
    [
        {"version": 2},
        {"events": [{"version": 1}]},
        {"events": "x"},
        [],
    ],
)
def test_bad_events_are_400(client: FlaskClient, service: dict[str, str], body: Any) -> None:
    answer = client.post("/internal/events", json=body, headers=service)
    assert answer.status_code == 400 and "badRequest" in answer.get_json()


def test_a_bad_event_in_a_batch_applies_none(
    client: FlaskClient, app: Flask, alice: dict[str, str], service: dict[str, str]
) -> None:
    server = pending(app, uuid.UUID(alice["uuid"]))
    bad = dict(event(server)) | {"status": "running"}
    answer = client.post("/internal/events", json={"events": [event(server), bad]},
                         headers=service)  # fmt: skip
    assert answer.status_code == 400
    assert state(app, server) == ("BUILD", "CREATE", 7)
