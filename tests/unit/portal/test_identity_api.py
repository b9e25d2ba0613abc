from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from snf.common.db import utcnow
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity.models import Token
from snf.portal.identity.secrets import digest

V2 = "/identity/v2.0/tokens"
V3 = "/identity/v3/auth/tokens"


def password_auth(name: str, password: str, scope: dict | None = None) -> dict:
    auth: dict = {"identity": {"methods": ["password"], "password": {
        "user": {"name": name, "domain": {"name": "Default"}, "password": password}}}}  # fmt: skip
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def test_v2_token_returns_the_catalog_kamaki_needs(client: FlaskClient, alice: dict) -> None:
    r = client.post(V2, json={"auth": {"token": {"id": alice["token"]}}})
    assert r.status_code == 200
    access = r.json["access"]
    assert access["token"]["id"] == alice["token"]
    assert access["user"]["id"] == alice["uuid"]
    catalog = {s["type"]: s for s in access["serviceCatalog"]}
    account = catalog["account"]
    assert account["name"] == "astakos_account"
    assert account["endpoints"][0]["versionId"] == "v1.0"
    assert account["endpoints"][0]["publicURL"] == "https://cloud.example.test/account/v1.0"
    assert "SNF:uiURL" in account["endpoints"][0]
    assert set(catalog) == {"identity", "account", "compute", "network", "image", "volume",
                            "object-store"}  # fmt: skip
    assert sum(1 for s in access["serviceCatalog"] if s["type"] == "compute") == 1


def test_v2_password_credentials_are_uuid_and_token(client: FlaskClient, alice: dict) -> None:
    body = {
        "auth": {"passwordCredentials": {"username": alice["uuid"], "password": alice["token"]}}
    }
    assert client.post(V2, json=body).status_code == 200
    body["auth"]["passwordCredentials"]["username"] = "00000000-0000-0000-0000-000000000000"
    assert client.post(V2, json=body).status_code == 401


def test_v2_public_mode_and_errors(client: FlaskClient, alice: dict) -> None:
    r = client.post(V2, data=b"", content_type="application/json")
    assert r.status_code == 200 and "token" not in r.json["access"]
    r = client.post(V2, json={"auth": {"token": {"id": "wrong"}}})
    assert r.status_code == 401 and r.json["unauthorized"]["code"] == 401
    r = client.post(V2, data=b'{"auth":', content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in r.json["badRequest"]["message"]
    r = client.post(V2, data=b"x", content_type="text/plain")
    assert r.status_code == 400
    r = client.post(V2, json=["not", "an", "object"])
    assert r.status_code == 400
    body = {"auth": {"token": {"id": alice["token"]}, "tenantName": "someone-else"}}
    assert client.post(V2, json=body).status_code == 400


def test_expired_and_inactive_tokens_are_refused(
    app: Flask, client: FlaskClient, alice: dict
) -> None:
    with app.app_context():
        row = db.session.get(Token, digest(alice["token"]))
        row.expires = utcnow() - timedelta(seconds=1)
        db.session.commit()
    r = client.post(V2, json={"auth": {"token": {"id": alice["token"]}}})
    assert r.status_code == 401 and "expired" in r.json["unauthorized"]["message"]


def test_v3_password_issues_a_scoped_token(client: FlaskClient, alice: dict) -> None:
    scope = {"project": {"name": alice["email"], "domain": {"name": "Default"}}}
    r = client.post(V3, json=password_auth(alice["email"], "correct horse", scope))
    assert r.status_code == 201
    token = r.headers["X-Subject-Token"]
    body = r.json["token"]
    assert body["user"]["id"] == alice["uuid"] and body["project"]["id"] == alice["uuid"]
    types = {s["type"] for s in body["catalog"]}
    assert {"identity", "compute", "image", "network", "object-store", "block-storage"} <= types
    swift = next(s for s in body["catalog"] if s["type"] == "object-store")
    endpoint = swift["endpoints"][0]
    assert endpoint["url"].endswith(f"/object-store/v1/{alice['uuid']}")
    assert endpoint["interface"] == "public" and endpoint["region"] == endpoint["region_id"]
    # The new token validates, and works with the token method too.
    r = client.get(V3, headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert r.status_code == 200 and r.json["token"]["user"]["id"] == alice["uuid"]
    r = client.post(V3, json={"auth": {"identity": {"methods": ["token"], "token": {"id": token}}}})
    assert r.status_code == 201 and "catalog" not in r.json["token"]  # unscoped


def test_v3_refusals(client: FlaskClient, alice: dict) -> None:
    assert client.post(V3, json=password_auth(alice["email"], "wrong password")).status_code == 401
    assert client.post(V3, json=password_auth("nobody@x.test", "whatever1")).status_code == 401
    other = {"project": {"id": "11111111-1111-1111-1111-111111111111"}}
    assert (
        client.post(V3, json=password_auth(alice["email"], "correct horse", other)).status_code
        == 401
    )
    assert client.post(V3, json={"auth": {}}).status_code == 400
    r = client.get(V3, headers={"X-Auth-Token": alice["token"], "X-Subject-Token": "bad"})
    assert r.status_code == 404
    assert client.get(V3, headers={"X-Subject-Token": alice["token"]}).status_code == 401


def test_v3_revoke(client: FlaskClient, alice: dict) -> None:
    r = client.post(V3, json=password_auth(alice["email"], "correct horse"))
    token = r.headers["X-Subject-Token"]
    r = client.delete(V3, headers={"X-Auth-Token": alice["token"], "X-Subject-Token": token})
    assert r.status_code == 204
    r = client.get(V3, headers={"X-Auth-Token": alice["token"], "X-Subject-Token": token})
    assert r.status_code == 404


def test_discovery(client: FlaskClient) -> None:
    r = client.get("/identity/v3")
    assert r.status_code == 200
    assert r.json["version"]["links"][0]["href"] == "https://cloud.example.test/identity/v3/"
    r = client.get("/identity")
    assert r.status_code == 300 and len(r.json["versions"]["values"]) == 2


def test_unknown_path_is_a_400_in_openstack_shape(client: FlaskClient) -> None:
    r = client.get("/no/such/thing")
    assert r.status_code == 400 and r.json == {
        "badRequest": {"code": 400, "message": "API endpoint not found", "details": ""}
    }


def test_service_tokens(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        token, _ = accounts.add_service(db.session, "node1")
        db.session.commit()
        assert accounts.authenticate(db.session, token).is_service
        accounts.revoke_service(db.session, "node1")
        db.session.commit()
    r = client.post(V2, json={"auth": {"token": {"id": token}}})
    assert r.status_code == 401


def test_renewing_the_api_token_revokes_the_old_one(app: Flask, alice: dict) -> None:
    with app.app_context():
        user = accounts.find_user(db.session, alice["email"])
        new, _ = accounts.issue_user_token(db.session, user, kind="api", hours=1)
        db.session.commit()
        assert accounts.authenticate(db.session, new).user.uuid == user.uuid
        try:
            accounts.authenticate(db.session, alice["token"])
            raise AssertionError("the old token still works")
        except accounts.Unauthenticated:
            pass
