"""``POST /internal/quota/instance`` (the quota pre-hooks' endpoint) on the real quota engine:
services only, request checking, the pure difference, over-quota 413 in OpenStack's shape,
the ledger that lets a modify, a start, a stop and a remove charge only differences, and dry
runs, checked alike and charging nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from snf.common.errors import InvalidInput
from snf.portal.compute import instance_charges as ic
from snf.portal.compute import quota_api
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity.models import User
from snf.quota import engine as quota
from snf.quota.models import Commission

MiB, GiB = 1 << 20, 1 << 30
URL = "/internal/quota/instance"


@pytest.fixture
def service(app: Flask) -> str:
    with app.app_context():
        token, _ = accounts.add_service(db.session, "node1")
        db.session.commit()
        return token


def body(who: str, **fields: Any) -> dict[str, Any]:
    return {"owner": who, "instance": "vm1.example.test", "cluster": "c1", "op": "add",
            "vcpus": 2, "memory_mib": 512, "disk_mib": 1024, "running": True} | fields  # fmt: skip


def post(client: FlaskClient, token: str, data: Any) -> Any:
    return client.post(URL, json=data, headers={"X-Auth-Token": token})


def usage(app: Flask, user: str) -> dict[str, int]:
    with app.app_context():
        held = quota.quotas(db.session, uuid.UUID(user), visible_only=False)[user]
        return {k: v["usage"] for k, v in held.items() if k.startswith("cyclades.") and v["usage"]}


# -- the pure core ---------------------------------------------------------------------------


def test_parse_and_target() -> None:
    owner = str(uuid.uuid4())
    request = ic.parse(body(owner))
    assert request.project == request.owner and request.ledger == "instance c1/vm1.example.test"
    assert ic.by_resource(ic.target(request)) == {
        "cyclades.vm": 1, "cyclades.total_cpu": 2, "cyclades.total_ram": 512 * MiB,
        "cyclades.disk": 1024 * MiB, "cyclades.cpu": 2, "cyclades.ram": 512 * MiB}  # fmt: skip
    stopped = ic.parse(body(owner, op="stop"))  # stop and start decide "running" themselves
    assert not stopped.running and "cyclades.cpu" not in ic.by_resource(ic.target(stopped))
    assert ic.parse(body(owner, op="start", running=False)).running
    assert ic.target(ic.parse({"owner": owner, "instance": "a", "cluster": "c",
                               "op": "remove"})) == {}  # fmt: skip
    assert not request.dry_run and ic.parse(body(owner, dry_run=True)).dry_run
    assert ic.parse({"owner": owner, "instance": "a", "cluster": "c", "op": "remove",
                     "dry_run": True}).dry_run  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [{"owner": "nobody"}, {"project": 7}, {"instance": "a b"}, {"instance": "-x"},
     {"cluster": ""}, {"op": "reboot"}, {"vcpus": -1}, {"vcpus": True}, {"memory_mib": "512"},
     {"disk_mib": 1 << 40}, {"running": "yes"}, {"old": {}}, {"dry_run": 1},
     {"dry_run": "true"}, {"dry_run": None}],
)  # fmt: skip
def test_parse_refuses_bad_fields(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        ic.parse(body(str(uuid.uuid4()), **change))


def test_difference_charges_changes_only() -> None:
    owner, project = uuid.uuid4(), uuid.uuid4()
    old = ic.target(ic.parse(body(str(owner))))
    new = ic.target(ic.parse(body(str(owner), op="modify", vcpus=4, running=False)))
    assert ic.by_resource(ic.difference(new, old)) == {
        "cyclades.cpu": -2,
        "cyclades.ram": -512 * MiB,
        "cyclades.total_cpu": 2,
    }
    assert ic.difference(old, old) == {}
    moved = ic.target(ic.parse(body(str(owner), project=str(project))))
    delta = ic.difference(moved, old)  # another project: released here, charged there
    assert {key[1] for key, v in delta.items() if v > 0} == {project}
    assert {key[1] for key, v in delta.items() if v < 0} == {owner}
    assert len(ic.provisions({(owner, project, "cyclades.vm"): 1})) == 2


# -- the endpoint ----------------------------------------------------------------------------


def test_only_services(client: FlaskClient, alice: dict[str, str], service: str) -> None:
    answer = post(client, alice["token"], body(alice["uuid"]))
    assert answer.status_code == 403 and "forbidden" in answer.get_json()
    assert client.post(URL, json=body(alice["uuid"])).status_code == 401
    assert post(client, "not-a-token", body(alice["uuid"])).status_code == 401


def test_bad_input_and_unknown_owner(client: FlaskClient, service: str,
                                     alice: dict[str, str]) -> None:  # fmt: skip
    answer = post(client, service, body(alice["uuid"], vcpus="two"))
    assert answer.status_code == 400 and "vcpus" in answer.get_json()["badRequest"]["message"]
    answer = client.post(URL, data="{", headers={"X-Auth-Token": service,
                                                 "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 400
    answer = post(client, service, body(str(uuid.uuid4())))
    assert answer.status_code == 404 and "itemNotFound" in answer.get_json()
    answer = post(client, service, body(alice["uuid"], project=str(uuid.uuid4())))
    assert answer.status_code == 403


def test_add_modify_stop_start_remove(app: Flask, client: FlaskClient, service: str,
                                      alice: dict[str, str]) -> None:  # fmt: skip
    user = alice["uuid"]
    answer = post(client, service, body(user))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["charged"]["cyclades.vm"] == 1
    full = {"cyclades.vm": 1, "cyclades.total_cpu": 2, "cyclades.total_ram": 512 * MiB,
            "cyclades.disk": 1024 * MiB, "cyclades.cpu": 2, "cyclades.ram": 512 * MiB}  # fmt: skip
    assert usage(app, user) == full
    # A retried add (the first one failed in Ganeti after the hook) charges nothing more.
    assert post(client, service, body(user)).get_json()["charged"] == {}
    assert usage(app, user) == full
    answer = post(client, service, body(user, op="modify", vcpus=3))
    assert answer.get_json()["charged"] == {"cyclades.cpu": 1, "cyclades.total_cpu": 1}
    post(client, service, body(user, op="stop", vcpus=3))
    assert usage(app, user)["cyclades.total_cpu"] == 3 and "cyclades.cpu" not in usage(app, user)
    post(client, service, body(user, op="start", vcpus=3))
    assert usage(app, user)["cyclades.cpu"] == 3
    # Another instance of the same name on another cluster is another ledger.
    post(client, service, body(user, cluster="c2", vcpus=1, running=False))
    assert usage(app, user)["cyclades.vm"] == 2
    answer = post(client, service, {"owner": user, "instance": "vm1.example.test",
                                    "cluster": "c1", "op": "remove"})  # fmt: skip
    assert answer.status_code == 200 and answer.get_json()["charged"]["cyclades.vm"] == -1
    post(client, service, {"owner": user, "instance": "vm1.example.test", "cluster": "c2",
                           "op": "remove"})  # fmt: skip
    assert usage(app, user) == {}


def limit_ram(app: Flask, user: str, limit: int) -> None:
    with app.app_context():
        quota.ensure_user(db.session, uuid.UUID(user))
        quota.set_grants(db.session, uuid.UUID(user), {"cyclades.ram": {
            "project_capacity": limit, "member_capacity": limit}})  # fmt: skip
        db.session.commit()


def test_over_quota_is_413_naming_the_resource(app: Flask, client: FlaskClient, service: str,
                                               alice: dict[str, str]) -> None:  # fmt: skip
    user = alice["uuid"]
    limit_ram(app, user, GiB)
    assert post(client, service, body(user, memory_mib=768)).status_code == 200
    answer = post(client, service, body(user, instance="vm2", memory_mib=512))
    assert answer.status_code == 413
    fault = answer.get_json()["overLimit"]
    assert fault["code"] == 413
    assert fault["message"] == (f"cyclades.ram over quota for user {user}: limit 1024 MiB, "
                                "usage 768 MiB, asked for 512 MiB")  # fmt: skip
    assert usage(app, user)["cyclades.vm"] == 1  # nothing of the refused one stays
    # Not running, it fits (cyclades.ram counts running instances only).
    assert post(client, service, body(user, instance="vm2", running=False)).status_code == 200


def commissions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Commission)
            .where(Commission.service == quota_api.SERVICE)
        )  # fmt: skip


def test_a_dry_run_charges_nothing(app: Flask, client: FlaskClient, service: str,
                                   alice: dict[str, str]) -> None:  # fmt: skip
    """Ganeti's --dry-run: the same answer but for the charge, which a real run then makes."""
    user = alice["uuid"]
    answer = post(client, service, body(user, dry_run=True))
    assert answer.status_code == 200, answer.get_json()
    full = {"cyclades.vm": 1, "cyclades.total_cpu": 2, "cyclades.total_ram": 512 * MiB,
            "cyclades.disk": 1024 * MiB, "cyclades.cpu": 2, "cyclades.ram": 512 * MiB}  # fmt: skip
    assert answer.get_json() == {"instance": "vm1.example.test", "cluster": "c1",
                                 "dry_run": True, "serial": None, "charged": {},
                                 "would_charge": full, "holds": {}}  # fmt: skip
    assert usage(app, user) == {} and commissions(app) == 0
    real = post(client, service, body(user)).get_json()
    assert real["charged"] == full and "dry_run" not in real and real["serial"]
    # A dry-run modify, stop and remove of what it holds: what they would change, nothing more.
    answer = post(client, service, body(user, op="modify", vcpus=3, dry_run=True)).get_json()
    assert answer["would_charge"] == {"cyclades.cpu": 1, "cyclades.total_cpu": 1}
    assert answer["holds"] == full and answer["charged"] == {}
    stop = post(client, service, body(user, op="stop", dry_run=True)).get_json()
    assert stop["would_charge"] == {"cyclades.cpu": -2, "cyclades.ram": -512 * MiB}
    remove = post(client, service, {"owner": user, "instance": "vm1.example.test",
                                    "cluster": "c1", "op": "remove", "dry_run": True})  # fmt: skip
    assert remove.status_code == 200 and remove.get_json()["would_charge"]["cyclades.vm"] == -1
    assert usage(app, user) == full and commissions(app) == 1


def test_a_dry_run_over_quota_is_refused_alike(app: Flask, client: FlaskClient, service: str,
                                               alice: dict[str, str]) -> None:  # fmt: skip
    user = alice["uuid"]
    limit_ram(app, user, GiB)
    assert post(client, service, body(user, memory_mib=768)).status_code == 200
    dry = post(client, service, body(user, instance="vm2", memory_mib=512, dry_run=True))
    real = post(client, service, body(user, instance="vm2", memory_mib=512))
    assert dry.status_code == real.status_code == 413
    assert dry.get_json() == real.get_json()
    assert dry.get_json()["overLimit"]["message"].startswith("cyclades.ram over quota for user")
    assert usage(app, user)["cyclades.ram"] == 768 * MiB and commissions(app) == 1
    # Within the limit it fits, and still charges nothing.
    fits = post(client, service, body(user, instance="vm2", memory_mib=256, dry_run=True))
    assert fits.status_code == 200 and fits.get_json()["would_charge"]["cyclades.ram"] == 256 * MiB
    assert usage(app, user)["cyclades.ram"] == 768 * MiB and commissions(app) == 1


def test_a_dry_run_for_a_user_without_quota_yet(app: Flask, client: FlaskClient,
                                                service: str) -> None:  # fmt: skip
    """A user the quota engine does not know yet: the base holdings a real run would make on
    the way do not stay either (the whole request is undone with its SAVEPOINT)."""
    with app.app_context():
        user = User(email="bob@example.test", display_name="Bob", is_active=True)
        db.session.add(user)
        db.session.commit()
        who = str(user.uuid)
    assert post(client, service, body(who, dry_run=True)).status_code == 200
    with app.app_context():
        assert quota.quotas(db.session, uuid.UUID(who), visible_only=False) == {}
    assert post(client, service, body(who)).status_code == 200
    assert usage(app, who)["cyclades.vm"] == 1
