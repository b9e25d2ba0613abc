from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from snf.portal.extensions import db
from snf.portal.identity import accounts

VM = "cyclades.vm"


def service_token(app: Flask) -> str:
    with app.app_context():
        token, _ = accounts.add_service(db.session, "cyclades")
        db.session.commit()
        return token


def provisions(user: str, quantity: int, resource: str = VM) -> list[dict]:
    return [
        {"holder": f"user:{user}", "source": f"project:{user}", "resource": resource,
         "quantity": quantity},
        {"holder": f"project:{user}", "source": None, "resource": resource,
         "quantity": quantity},
    ]  # fmt: skip


def test_resources_and_quotas(client: FlaskClient, alice: dict) -> None:
    r = client.get("/account/v1.0/resources")
    assert r.status_code == 200 and VM in r.json and "unit" in r.json[VM]
    r = client.get("/account/v1.0/quotas", headers={"X-Auth-Token": alice["token"]})
    assert r.status_code == 200
    vm = r.json[alice["uuid"]][VM]
    assert vm["usage"] == 0 and vm["limit"] >= 1 and vm["pending"] == 0
    assert client.get("/account/v1.0/quotas").status_code == 401


def test_commission_issue_accept_and_over_limit(
    app: Flask, client: FlaskClient, alice: dict
) -> None:
    hdr = {"X-Auth-Token": service_token(app)}
    r = client.post("/account/v1.0/commissions", headers=hdr,
                    json={"provisions": provisions(alice["uuid"], 1), "name": "vm1"})  # fmt: skip
    assert r.status_code == 201
    serial = r.json["serial"]
    assert client.get("/account/v1.0/commissions", headers=hdr).json == [serial]
    info = client.get(f"/account/v1.0/commissions/{serial}", headers=hdr).json
    assert info["serial"] == serial and len(info["provisions"]) == 2
    r = client.post(f"/account/v1.0/commissions/{serial}/action", headers=hdr, json={"accept": ""})
    assert r.status_code == 200
    quotas = client.get("/account/v1.0/quotas", headers={"X-Auth-Token": alice["token"]}).json
    limit = quotas[alice["uuid"]][VM]["limit"]
    assert quotas[alice["uuid"]][VM]["usage"] == 1
    r = client.post("/account/v1.0/commissions", headers=hdr,
                    json={"provisions": provisions(alice["uuid"], limit)})  # fmt: skip
    assert r.status_code == 413 and "overLimit" in r.json
    assert VM in r.json["overLimit"]["message"]


def test_bad_commissions(app: Flask, client: FlaskClient, alice: dict) -> None:
    hdr = {"X-Auth-Token": service_token(app)}
    cases = [
        {"provisions": provisions(alice["uuid"], 1, "no.such.resource")},
        {"provisions": provisions(alice["uuid"], "1")},
        {"provisions": "x"},
    ]
    for body in cases:
        assert client.post("/account/v1.0/commissions", headers=hdr, json=body).status_code == 400
    r = client.post(
        "/account/v1.0/commissions", headers=hdr, data=b"{", content_type="application/json"
    )
    assert r.status_code == 400
    assert client.get("/account/v1.0/commissions/999", headers=hdr).status_code == 404
    # Users may not issue commissions.
    user_hdr = {"X-Auth-Token": alice["token"]}
    body = {"provisions": provisions(alice["uuid"], 1)}
    assert client.post("/account/v1.0/commissions", headers=user_hdr, json=body).status_code == 403


def test_bulk_resolve_and_user_catalogs(app: Flask, client: FlaskClient, alice: dict) -> None:
    hdr = {"X-Auth-Token": service_token(app)}
    serials = [
        client.post(
            "/account/v1.0/commissions",
            headers=hdr,
            json={"provisions": provisions(alice["uuid"], 1)},
        ).json["serial"]
        for _ in range(2)
    ]
    r = client.post("/account/v1.0/commissions/action", headers=hdr,
                    json={"accept": [serials[0]], "reject": [serials[1], 12345]})  # fmt: skip
    assert r.status_code == 200
    assert r.json["accepted"] == [serials[0]] and r.json["rejected"] == [serials[1]]
    assert r.json["failed"][0][0] == 12345
    r = client.post("/account/v1.0/user_catalogs", headers={"X-Auth-Token": alice["token"]},
                    json={"uuids": [alice["uuid"]], "displaynames": [alice["email"]]})  # fmt: skip
    assert r.json["uuid_catalog"] == {alice["uuid"]: alice["email"]}
    assert r.json["displayname_catalog"] == {alice["email"]: alice["uuid"]}
