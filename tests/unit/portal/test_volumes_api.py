"""The volume API without a cluster (Flask's test client, SQLite, the directory store):
discovery, volume types, volumes on their own (blank, from an image, a snapshot or another
volume), snapshots of detached volumes becoming files, quota, and bad input in OpenStack's
shape.  Volumes on servers (attach, detach, live snapshots) run on a real Ganeti in
tests/integration/test_volumes_ganeti.py."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from snf.archipelago import volumes as archipelago
from snf.archipelago.backends import open_store
from snf.portal.compute.models import Flavor, Server
from snf.portal.extensions import db
from snf.portal.volumes import snapshots, upkeep
from snf.portal.volumes.models import Volume
from snf.quota import engine as quota

from .test_images_api import User, make_user

V2, V3 = "/volume/v2.0", "/volume/v3"
GiB, MiB = 1 << 30, 1 << 20


@pytest.fixture
def alice(app: Flask, client: FlaskClient) -> User:
    return make_user(app, client, "alice@example.test")


@pytest.fixture
def bob(app: Flask, client: FlaskClient) -> User:
    return make_user(app, client, "bob@example.test")


def fault(reply: TestResponse, status: int) -> str:
    assert reply.status_code == status, reply.data
    ((_kind, body),) = reply.get_json().items()
    assert body["code"] == status
    return str(body["message"])


def create(user: User, **volume: Any) -> TestResponse:
    return user("POST", f"{V2}/volumes", json={"volume": volume})


def wait_snapshot(user: User, snap_id: str) -> dict[str, Any]:
    for _ in range(200):
        snap = user("GET", f"{V2}/snapshots/{snap_id}").get_json()["snapshot"]
        if snap["status"] != "creating":
            return snap
        time.sleep(0.05)
    raise AssertionError(f"snapshot {snap_id} still creating")


def disk_usage(app: Flask, user: User) -> int:
    with app.app_context():
        return int(quota.quotas(db.session, user.uuid)[user.uuid]["cyclades.disk"]["usage"])


def test_discovery_and_types(client: FlaskClient, alice: User) -> None:
    root = client.get("/volume")
    assert root.status_code == 300
    assert [v["id"] for v in root.get_json()["versions"]] == ["v2.0", "v3.0"]
    v3 = client.get(f"{V3}/").get_json()["versions"][0]
    assert v3["min_version"] == "3.0" and v3["links"][0]["href"].endswith("/volume/v3/")
    types = alice("GET", f"{V3}/types").get_json()["volume_types"]
    assert [t["name"] for t in types] == ["archipelago"]
    assert alice("GET", f"{V2}/types/archipelago").get_json()["volume_type"]["id"] == "archipelago"
    fault(alice("GET", f"{V2}/types/lvm"), 404)
    assert client.get(f"{V2}/volumes").status_code == 401


def test_blank_volume_lifecycle_and_quota(app: Flask, alice: User, bob: User) -> None:
    made = create(alice, size=2, display_name="data", metadata={"purpose": "test"})
    assert made.status_code == 202, made.data
    volume = made.get_json()["volume"]
    assert (volume["status"], volume["size"], volume["name"]) == ("available", 2, "data")
    assert volume["display_name"] == "data" and volume["attachments"] == []
    assert volume["volume_type"] == "archipelago" and volume["metadata"] == {"purpose": "test"}
    listed = alice("GET", f"{V3}/volumes/detail").get_json()["volumes"]
    assert [v["id"] for v in listed] == [volume["id"]]
    assert bob("GET", f"{V2}/volumes").get_json()["volumes"] == []
    fault(bob("GET", f"{V2}/volumes/{volume['id']}"), 404)
    with app.app_context():
        row = db.session.get(Volume, int(volume["id"]))
        assert row is not None and row.charges == {"cyclades.disk": 2 * GiB}
        store = open_store(app.config["SNF"].store)
        vmap = archipelago.load_map(store, row.map_name or "")
        assert vmap.readonly and vmap.size == 2 * GiB
        map_name = row.map_name
    assert disk_usage(app, alice) == 2 * GiB

    renamed = alice("PUT", f"{V2}/volumes/{volume['id']}",
                    json={"volume": {"name": "data2", "description": "scratch"}})  # fmt: skip
    assert renamed.get_json()["volume"]["display_description"] == "scratch"
    meta = alice("POST", f"{V2}/volumes/{volume['id']}/metadata", json={"metadata": {"a": "1"}})
    assert meta.get_json()["metadata"] == {"purpose": "test", "a": "1"}

    gone = alice("DELETE", f"{V2}/volumes/{volume['id']}")
    assert gone.status_code == 202
    fault(alice("GET", f"{V2}/volumes/{volume['id']}"), 404)
    with app.app_context():
        assert not store.has_map(map_name or "")
        row = db.session.get(Volume, int(volume["id"]))
        assert row is not None and row.deleted and row.charges == {}
    assert disk_usage(app, alice) == 0


def test_volume_from_an_image_and_from_a_volume(app: Flask, alice: User) -> None:
    data = os.urandom(5 * MiB + 123)
    alice.upload("images/disk.img", data)
    image = alice.register("disk", "images/disk.img")
    image_id = image.headers["X-Image-Meta-Id"]
    made = create(alice, size=1, imageRef=image_id).get_json()["volume"]
    assert made["status"] == "available" and made["bootable"] == "true"
    copy = create(alice, source_volid=made["id"]).get_json()["volume"]
    assert copy["size"] == 1 and copy["source_volid"] == made["id"]
    with app.app_context():
        store = open_store(app.config["SNF"].store)
        rows = [db.session.get(Volume, int(v["id"])) for v in (made, copy)]
        maps = [archipelago.load_map(store, r.map_name or "") for r in rows if r is not None]
        assert maps[0].size == maps[1].size == len(data)
        assert archipelago.peek(store, rows[1].map_name or "", 0, 4096) == data[:4096]  # type: ignore[union-attr]


def test_snapshot_of_a_detached_volume_becomes_a_file_and_a_volume(app: Flask, alice: User) -> None:
    data = os.urandom(4 * MiB + 77)
    alice.upload("images/small.img", data)
    image_id = alice.register("small", "images/small.img").headers["X-Image-Meta-Id"]
    volume = create(alice, size=1, imageRef=image_id).get_json()["volume"]
    taken = alice("POST", f"{V2}/snapshots",
                  json={"snapshot": {"volume_id": volume["id"], "display_name": "s1"}})  # fmt: skip
    assert taken.status_code == 202, taken.data
    snap = wait_snapshot(alice, taken.get_json()["snapshot"]["id"])
    assert snap["status"] == "available" and snap["name"] == "s1" and snap["size"] == 1
    location = snap["SNF:location"]
    assert location.startswith(f"pithos://{alice.uuid}/snapshots/volume-{volume['id']}-")
    file_name = location.split("/snapshots/", 1)[1]
    got = alice.store("GET", f"/snapshots/{file_name}")
    assert got.status_code == 200 and got.data == data
    listed = alice("GET", f"{V2}/snapshots/detail").get_json()["snapshots"]
    assert [s["id"] for s in listed] == [snap["id"]]

    again = create(alice, snapshot_id=snap["id"], size=1).get_json()["volume"]
    assert again["snapshot_id"] == snap["id"] and again["status"] == "available"

    # registered as an image, the snapshot stays until the image goes
    image = alice.register("from-snap", f"snapshots/{file_name}")
    assert image.status_code == 200, image.data
    fault(alice("DELETE", f"{V2}/snapshots/{snap['id']}"), 409)
    alice("DELETE", f"/images/{image.headers['X-Image-Meta-Id']}")
    assert alice("DELETE", f"{V2}/snapshots/{snap['id']}").status_code == 202
    assert alice.store("GET", f"/snapshots/{file_name}").status_code == 404
    fault(alice("GET", f"{V2}/snapshots/{snap['id']}"), 404)


def test_bad_requests_leave_nothing(app: Flask, alice: User, bob: User) -> None:
    assert "size" in fault(create(alice, size=0), 400)
    assert "size" in fault(create(alice, size="big"), 400)
    assert "size" in fault(create(alice), 400)
    fault(alice("POST", f"{V2}/volumes", json={"size": 1}), 400)
    fault(alice("POST", f"{V2}/volumes", data="{", content_type="application/json"), 400)
    fault(create(alice, size=1, volume_type="lvm"), 404)
    fault(create(alice, size=1, server_id=12345), 404)
    fault(create(alice, size=1, snapshot_id="nope"), 404)
    fault(create(alice, size=1, source_volid=999), 404)
    fault(create(alice, size=1, imageRef="not-a-uuid"), 400)
    fault(create(alice, size=1, metadata={"k": "v" * 300}), 400)
    mine = create(alice, size=1).get_json()["volume"]
    fault(create(bob, size=1, source_volid=mine["id"]), 404)
    assert "one of" in fault(create(alice, size=1, source_volid=mine["id"], imageRef="x"), 400)
    fault(alice("POST", f"{V2}/snapshots", json={"snapshot": {}}), 400)
    fault(bob("POST", f"{V2}/snapshots", json={"snapshot": {"volume_id": mine["id"]}}), 404)
    listed = alice("GET", f"{V2}/volumes").get_json()["volumes"]
    assert [v["id"] for v in listed] == [mine["id"]]


def test_quota_limits_volumes(app: Flask, alice: User) -> None:
    with app.app_context():
        limit = {"project_capacity": 3 * GiB, "member_capacity": 3 * GiB}
        quota.set_grants(db.session, alice.uuid, {"cyclades.disk": limit})
        db.session.commit()
    assert create(alice, size=2).status_code == 202
    assert "quota" in fault(create(alice, size=2), 413)
    assert len(alice("GET", f"{V2}/volumes").get_json()["volumes"]) == 1


def test_volumes_attach_only_to_archipelago_servers(app: Flask, alice: User) -> None:
    with app.app_context():
        flavor = Flavor(name="plain", vcpus=1, ram=256, disk=1, disk_template="file")
        db.session.add(flavor)
        db.session.flush()
        now = time.time()
        server = Server(name="vm", user_uuid=alice.uuid, project=alice.uuid, flavor_id=flavor.id,
                        image_id="x", operstate="STOPPED", created=now, updated=now)  # fmt: skip
        db.session.add(server)
        db.session.flush()
        root = Volume(user_uuid=alice.uuid, project=alice.uuid, size=1, volume_type="file",
                      status="in-use", server_id=server.id, root=True, attached=now,
                      created=now, updated=now)  # fmt: skip
        db.session.add(root)
        db.session.commit()
        server_id, root_id = server.id, root.id
    assert "archipelago" in fault(create(alice, size=1, server_id=server_id), 409)
    spare = create(alice, size=1).get_json()["volume"]
    attach = alice("POST", f"/compute/v2.0/servers/{server_id}/os-volume_attachments",
                   json={"volumeAttachment": {"volumeId": spare["id"]}})  # fmt: skip
    assert "archipelago" in fault(attach, 409)
    assert "root" in fault(alice("DELETE", f"{V2}/volumes/{root_id}"), 409)
    detach = alice("DELETE", f"/compute/v2.0/servers/{server_id}/os-volume_attachments/{root_id}")
    assert "root" in fault(detach, 409)
    listed = alice("GET", f"/compute/v2.0/servers/{server_id}/os-volume_attachments")
    assert listed.get_json()["volumeAttachments"] == [
        {"id": str(root_id), "volumeId": str(root_id), "serverId": server_id, "device": "/dev/vda"}
    ]
    shown = alice("GET", f"/compute/v2.0/servers/{server_id}").get_json()["server"]
    assert shown["volumes"] == [str(root_id)]
    # attached: Synnefo's spelling on its endpoint (kamaki waits for it), Cinder's elsewhere
    assert alice("GET", f"{V2}/volumes/{root_id}").get_json()["volume"]["status"] == "in_use"
    assert alice("GET", f"{V3}/volumes/{root_id}").get_json()["volume"]["status"] == "in-use"


def test_upkeep_drops_maps_no_volume_needs_and_completes_stuck_snapshots(
    app: Flask, alice: User
) -> None:
    kept = create(alice, size=1).get_json()["volume"]
    attached = create(alice, size=1).get_json()["volume"]
    with app.app_context():
        store = open_store(app.config["SNF"].store)
        config = app.config["SNF"].compute
        rows = {v["id"]: db.session.get(Volume, int(v["id"])) for v in (kept, attached)}
        stale = rows[attached["id"]]
        assert stale is not None
        stale.status = "in-use"  # as after an attach: the disk cloned the map
        stale_map = stale.map_name
        source = rows[kept["id"]]
        assert source is not None
        snap = snapshots.take(db.session, config, store, source)  # its process "died" here
        frozen = snap.frozen_map
        snap.updated -= 3600
        db.session.commit()

        lines = upkeep.run(db.session, store, grace=60)
        assert any(f"volume {attached['id']}" in line for line in lines), lines
        assert any(f"snapshot {snap.id}" in line for line in lines), lines
        assert not store.has_map(stale_map or "") and not store.has_map(frozen or "")
        assert source.map_name and store.has_map(source.map_name)
        db.session.refresh(snap)
        assert snap.status == "available" and snap.frozen_map is None
        assert upkeep.run(db.session, store, grace=60) == []
