"""The compute API without a cluster: discovery, flavors, request checking, errors in
OpenStack's shape, and the bookkeeping of an action's end (quota commissions on the real
quota engine).  Creating servers on a real Ganeti is tests/integration/test_compute_ganeti.py."""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.portal.compute import charges, consoles, lifecycle, reconcile, requests, views
from snf.portal.compute.models import Backend, Flavor, Server
from snf.portal.errors import ApiError
from snf.portal.extensions import db
from snf.quota import engine as quota

GiB, MiB = 1 << 30, 1 << 20


@pytest.fixture
def flavor(app: Flask) -> int:
    with app.app_context():
        f = Flavor(name="small", vcpus=1, ram=512, disk=2, disk_template="ext_archipelago")
        db.session.add(f)
        db.session.add(Flavor(name="gone", vcpus=2, ram=512, disk=2, deleted=True))
        db.session.commit()
        return f.id


def auth(user: dict[str, str]) -> dict[str, str]:
    return {"X-Auth-Token": user["token"]}


def test_version_documents(client: FlaskClient) -> None:
    doc = client.get("/compute/v2.1").get_json()["version"]
    assert doc["id"] == "v2.1" and doc["version"] == "2.1" and doc["status"] == "CURRENT"
    assert doc["links"][0]["href"] == "https://cloud.example.test/compute/v2.1/"
    assert client.get("/compute/v2.0/").get_json()["version"]["version"] == ""
    answer = client.get("/compute")
    assert answer.status_code == 300
    assert [v["id"] for v in answer.get_json()["versions"]] == ["v2.0", "v2.1"]


def test_flavors(client: FlaskClient, alice: dict[str, str], flavor: int) -> None:
    listed = client.get("/compute/v2.0/flavors/detail", headers=auth(alice)).get_json()
    assert [f["name"] for f in listed["flavors"]] == ["small"]
    small = listed["flavors"][0]
    assert (small["vcpus"], small["ram"], small["disk"]) == (1, 512, 2)
    assert small["SNF:disk_template"] == "ext_archipelago"
    one = client.get(f"/compute/v2.1/flavors/{flavor}", headers=auth(alice)).get_json()
    assert one["flavor"]["name"] == "small"
    assert one["flavor"]["links"][0]["href"].startswith("https://cloud.example.test/compute/v2.1/")
    missing = client.get("/compute/v2.0/flavors/small", headers=auth(alice))
    assert missing.status_code == 404 and "itemNotFound" in missing.get_json()
    assert client.get("/compute/v2.0/flavors").status_code == 401


def test_no_backend_is_a_503_that_leaves_nothing(
    client: FlaskClient, alice: dict[str, str], flavor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "image_for_server", _image)
    body = {"server": {"name": "vm", "imageRef": str(uuid.uuid4()), "flavorRef": flavor}}
    answer = client.post("/compute/v2.0/servers", json=body, headers=auth(alice))
    assert answer.status_code == 503, answer.get_json()
    assert "serviceUnavailable" in answer.get_json()
    listed = client.get("/compute/v2.0/servers/detail", headers=auth(alice)).get_json()
    assert listed["servers"] == []


def _image(session: Any, image_id: str, user: uuid.UUID) -> Any:
    """Any image id names a registered image (the image service has its own tests)."""
    return SimpleNamespace(id=image_id, map_name="pithos-x-1", disk_format="diskdump",
                           properties={})  # fmt: skip


@pytest.mark.parametrize(
    "server, status, fault",
    [
        ({"name": "x", "imageRef": "i"}, 400, "badRequest"),
        ({"name": "x", "imageRef": "i", "flavorRef": "f1"}, 400, "badRequest"),
        ({"name": "x", "imageRef": "i", "flavorRef": 999}, 404, "itemNotFound"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR", "metadata": []}, 400, "badRequest"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR",
          "metadata": {str(i): "v" for i in range(11)}}, 413, "overLimit"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR", "adminPass": "short"},
         400, "badRequest"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR",
          "networks": [{"uuid": "private"}]}, 404, "itemNotFound"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR", "personality": [
            {"path": "/big", "contents": base64.b64encode(b"x" * 10241).decode()}]},
         413, "overLimit"),
        ({"name": "x", "imageRef": "i", "flavorRef": "FLAVOR",
          "personality": [{"path": "relative", "contents": ""}]}, 400, "badRequest"),
    ],
)  # fmt: skip
def test_bad_creates(
    client: FlaskClient,
    alice: dict[str, str],
    flavor: int,
    monkeypatch: pytest.MonkeyPatch,
    server: dict[str, Any],
    status: int,
    fault: str,
) -> None:
    monkeypatch.setattr(lifecycle, "image_for_server", _image)
    server = {k: flavor if v == "FLAVOR" else v for k, v in server.items()}
    answer = client.post("/compute/v2.0/servers", json={"server": server}, headers=auth(alice))
    assert answer.status_code == status and fault in answer.get_json(), answer.get_json()


def test_a_deleted_flavor_is_refused_for_new_servers(
    client: FlaskClient, alice: dict[str, str], flavor: int, app: Flask
) -> None:
    with app.app_context():
        gone = db.session.query(Flavor).filter_by(name="gone").one().id
    body = {"server": {"name": "x", "imageRef": "i", "flavorRef": gone}}
    answer = client.post("/compute/v2.0/servers", json=body, headers=auth(alice))
    assert answer.status_code == 404


def test_other_peoples_servers_and_names_are_not_found(
    client: FlaskClient, alice: dict[str, str], app: Flask, flavor: int
) -> None:
    with app.app_context():
        server = _server(uuid.uuid4(), flavor)
    for path in (f"/compute/v2.0/servers/{server}", "/compute/v2.0/servers/vm-by-name"):
        answer = client.get(path, headers=auth(alice))
        assert answer.status_code == 404 and "itemNotFound" in answer.get_json()
    answer = client.delete(f"/compute/v2.0/servers/{server}", headers=auth(alice))
    assert answer.status_code == 404


def _server(user: uuid.UUID, flavor: int, **fields: Any) -> int:
    now = time.time()
    server = Server(name="vm", user_uuid=user, project=user, flavor_id=flavor, image_id="i",
                    created=now, updated=now, **fields)  # fmt: skip
    db.session.add(server)
    db.session.commit()
    return server.id


def test_metadata(client: FlaskClient, alice: dict[str, str], app: Flask, flavor: int) -> None:
    with app.app_context():
        server = _server(uuid.UUID(alice["uuid"]), flavor, operstate="STARTED")
    path = f"/compute/v2.0/servers/{server}/metadata"
    assert client.post(path, json={"metadata": {"a": "1"}}, headers=auth(alice)).status_code == 201
    client.put(f"{path}/b", json={"meta": {"b": "2"}}, headers=auth(alice))
    assert client.get(path, headers=auth(alice)).get_json() == {"metadata": {"a": "1", "b": "2"}}
    assert client.delete(f"{path}/a", headers=auth(alice)).status_code == 204
    assert client.get(f"{path}/a", headers=auth(alice)).status_code == 404
    client.put(path, json={"metadata": {"c": "3"}}, headers=auth(alice))
    assert client.get(path, headers=auth(alice)).get_json() == {"metadata": {"c": "3"}}
    wrong = client.put(f"{path}/d", json={"meta": {"e": "1"}}, headers=auth(alice))
    assert wrong.status_code == 400 and "badRequest" in wrong.get_json()
    renamed = client.put(f"/compute/v2.0/servers/{server}", json={"server": {"name": "new"}},
                         headers=auth(alice))  # fmt: skip
    assert renamed.status_code == 204
    shown = client.get(f"/compute/v2.0/servers/{server}", headers=auth(alice)).get_json()
    assert shown["server"]["name"] == "new" and shown["server"]["status"] == "ACTIVE"


def test_actions_check_the_state_before_anything(
    client: FlaskClient, alice: dict[str, str], app: Flask, flavor: int
) -> None:
    with app.app_context():
        server = _server(uuid.UUID(alice["uuid"]), flavor, operstate="STOPPED")
    path = f"/compute/v2.0/servers/{server}/action"
    for action in ({"os-stop": None}, {"reboot": {"type": "SOFT"}}):
        answer = client.post(path, json=action, headers=auth(alice))
        assert answer.status_code == 409 and "STOPPED" in answer.get_json()["conflict"]["message"]
    assert client.post(path, json={"fly": {}}, headers=auth(alice)).status_code == 400
    assert client.post(path, json={"rebuild": {}}, headers=auth(alice)).status_code == 501
    answer = client.post(path, json={"reboot": {"type": "GENTLE"}}, headers=auth(alice))
    assert answer.status_code == 400 and "badRequest" in answer.get_json()


# --- the end of an action, on the real quota engine -------------------------------------------


def _held(user: uuid.UUID, resource: str) -> int:
    return quota.quotas(db.session, user)[str(user)][resource]["usage"]


def test_finish_accepts_or_rejects_and_moves_the_state(app: Flask, alice: dict[str, str],
                                                       flavor: int) -> None:  # fmt: skip
    user = uuid.UUID(alice["uuid"])
    with app.app_context():
        small = db.session.get_one(Flavor, flavor)
        backend = Backend(name="c1", rapi_host="h", username="u", password_file="/nonexistent",
                          pin=None, created=time.time())  # fmt: skip
        db.session.add(backend)
        db.session.flush()
        quota.ensure_user(db.session, user)
        ids = []
        for _ in range(2):
            server = db.session.get_one(Server, _server(user, flavor, backend_id=backend.id))
            delta = charges.totals(small) | charges.running(small)
            server.serial = charges.issue(db.session, server, delta, name="test")
            server.action, server.action_args, server.job_id = "CREATE", {"charge": delta}, 7
            db.session.commit()
            ids.append(server.id)
        assert _held(user, "cyclades.vm") == 2  # pending counts as used
        ok, bad = (db.session.get_one(Server, i) for i in ids)
        assert not lifecycle.finish(db.session, ok, 8, "success")  # another job
        assert not lifecycle.finish(db.session, ok, 7, "running")
        assert lifecycle.finish(db.session, ok, 7, "success")
        assert lifecycle.finish(db.session, bad, 7, "error", "OpExecError: no room")
        db.session.commit()
        assert (ok.operstate, ok.action, ok.serial) == ("STARTED", None, None)
        assert ok.charges == {"cyclades.vm": 1, "cyclades.total_cpu": 1,
                              "cyclades.total_ram": 512 * MiB, "cyclades.disk": 2 * GiB,
                              "cyclades.cpu": 1, "cyclades.ram": 512 * MiB}  # fmt: skip
        assert (bad.operstate, bad.charges) == ("ERROR", {})
        assert bad.fault["details"] == "OpExecError: no room"
        assert views.server_detail(bad, "b")["fault"]["message"] == "create failed"
        assert _held(user, "cyclades.vm") == 1
        assert _held(user, "cyclades.ram") == 512 * MiB
        assert not lifecycle.finish(db.session, ok, 7, "success")  # idempotent


def test_reconcile_rejects_commissions_no_action_waits_for(
    app: Flask, alice: dict[str, str], flavor: int
) -> None:
    user = uuid.UUID(alice["uuid"])
    with app.app_context():
        quota.ensure_user(db.session, user)
        small = db.session.get_one(Flavor, flavor)
        waiting, orphan = (db.session.get_one(Server, _server(user, flavor)) for _ in range(2))
        for server in (waiting, orphan):
            server.serial = charges.issue(db.session, server, charges.totals(small), name="t")
        waiting.action, orphan_serial, orphan.serial = "CREATE", orphan.serial, None
        db.session.commit()
        config = app.config["SNF"].compute
        assert reconcile.reconcile(db.session, config) == []  # within the grace period
        now = dataclasses.replace(config, build_grace_seconds=0)
        assert reconcile.reconcile(db.session, now) == [
            f"commission {orphan_serial} (t) pending with no action: rejected"
        ]
        assert quota.pending_commissions(db.session, service="cyclades") == [waiting.serial]
        assert _held(user, "cyclades.vm") == 1


def test_vnc_endpoint_as_ganeti_works_it_out() -> None:
    vnc = {"vnc_bind_address": "127.0.0.1", "serial_console": False}
    assert consoles.vnc_endpoint({"hvparams": vnc, "network_port": 11005}, "192.0.2.11") == (
        "127.0.0.1", 11005)  # fmt: skip
    anywhere = {"hvparams": vnc | {"vnc_bind_address": "0.0.0.0"}, "network_port": 11005}
    assert consoles.vnc_endpoint(anywhere, "192.0.2.11") == ("192.0.2.11", 11005)
    serial = {"hvparams": vnc | {"serial_console": True}, "network_port": 11005}
    assert "serial" in str(consoles.vnc_endpoint(serial, "192.0.2.11"))
    for none in (
        {"hvparams": {}, "network_port": None},
        {"hvparams": vnc, "network_port": None},
        {"hvparams": vnc | {"vnc_bind_address": ""}, "network_port": 11005},
    ):
        assert isinstance(consoles.vnc_endpoint(none, "192.0.2.11"), str)


def test_status_shown_for_each_state() -> None:
    def server(operstate: str, action: str | None = None, deleted: bool = False) -> Server:
        return Server(operstate=operstate, action=action, deleted=deleted)

    assert views.status(server("BUILD", "CREATE")) == "BUILD"
    assert views.status(server("STARTED")) == "ACTIVE"
    assert views.status(server("STARTED", "REBOOT")) == "REBOOT"
    assert views.status(server("STOPPED", "RESIZE")) == "RESIZE"
    assert views.status(server("STARTED", "STOP")) == "ACTIVE"
    assert views.status(server("STOPPED")) == "STOPPED"
    assert views.status(server("ERROR")) == "ERROR"
    assert views.status(server("STARTED", deleted=True)) == "DELETED"


def test_request_checks() -> None:
    assert requests.flavor_ref("https://x/compute/v2.0/flavors/12") == 12
    assert requests.flavor_ref(3) == 3
    with pytest.raises(ApiError):
        requests.flavor_ref(True)
    assert requests.image_ref("https://x/images/abc/") == "abc"
    secret = requests.new_password()
    assert len(secret) == 12 and not secret.isalpha() and not secret.isdigit()
    assert charges.difference({"a": 2, "b": 1}, {"a": 2, "c": 4}) == {"b": 1, "c": -4}
    assert charges.add({"a": 2}, {"a": -2, "b": 1}) == {"b": 1}


def test_create_image_checks_before_touching_anything(
    client: FlaskClient, alice: dict[str, str], app: Flask, flavor: int
) -> None:
    with app.app_context():
        building = _server(uuid.UUID(alice["uuid"]), flavor, operstate="BUILD")
        orphan = _server(uuid.UUID(alice["uuid"]), flavor, operstate="STARTED")
    for server, body, status in [
        (building, {"createImage": {}}, 400),
        (building, {"createImage": {"name": "s", "metadata": {"k": 1}}}, 400),
        (building, {"createImage": {"name": "s"}}, 409),
        (orphan, {"createImage": {"name": "s"}}, 409),  # no backend
    ]:
        answer = client.post(f"/compute/v2.0/servers/{server}/action", json=body,
                             headers=auth(alice))  # fmt: skip
        assert answer.status_code == status, answer.get_json()
