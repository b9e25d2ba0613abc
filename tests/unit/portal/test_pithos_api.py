"""The object-store API through Flask's test client, on SQLite and the directory store:
containers, objects, listings, ranges, conditions, hashes, hashmaps, copies, versions,
partial updates and manifests."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.archipelago.hashing import BLOCK_SIZE, top_hash
from snf.portal.extensions import db
from snf.portal.identity import accounts

B = BLOCK_SIZE


def data(n: int) -> bytes:
    return os.urandom(n)


class Api:
    """Requests as one user, against their own account unless told."""

    def __init__(self, client: FlaskClient, user: dict[str, str]) -> None:
        self.client = client
        self.user = user
        self.base = f"/object-store/v1/{user['uuid']}"

    def __call__(
        self,
        method: str,
        path: str = "",
        *,
        account: str | None = None,
        headers: dict[str, str] | None = None,
        **kw,
    ):  # type: ignore[no-untyped-def]
        base = f"/object-store/v1/{account}" if account else self.base
        hdrs = {"X-Auth-Token": self.user["token"], **(headers or {})}
        if kw.get("data") == b"":  # what real clients send; Werkzeug's client leaves it out
            kw["environ_overrides"] = {"CONTENT_LENGTH": "0"}
        return self.client.open(base + path, method=method, headers=hdrs, **kw)


@pytest.fixture
def api(client: FlaskClient, alice: dict[str, str]) -> Api:
    return Api(client, alice)


def make_user(app: Flask, email: str) -> dict[str, str]:
    with app.app_context():
        user = accounts.create_user(db.session, email, email.split("@")[0], active=True)
        token, _ = accounts.issue_user_token(db.session, user, kind="api", hours=24)
        db.session.commit()
        return {"uuid": str(user.uuid), "token": token, "email": email}


@pytest.fixture
def bob(app: Flask, client: FlaskClient) -> Api:
    return Api(client, make_user(app, "bob@example.test"))


def test_container_lifecycle(api: Api) -> None:
    assert api("PUT", "/photos").status_code == 201
    assert api("PUT", "/photos").status_code == 202
    head = api("HEAD", "/photos")
    assert head.status_code == 204
    assert head.headers["X-Container-Object-Count"] == "0"
    assert head.headers["X-Container-Block-Size"] == str(B)
    assert head.headers["X-Container-Block-Hash"] == "sha256"
    assert head.headers["X-Container-Policy-Versioning"] == "auto"
    assert api("GET", "?format=json").get_json()[0]["name"] == "photos"
    assert api("PUT", "/photos/a.txt", data=b"x").status_code == 201
    assert api("DELETE", "/photos").status_code == 409
    assert api("DELETE", "/photos/a.txt").status_code == 204
    assert api("DELETE", "/photos").status_code == 204
    assert api("HEAD", "/photos").status_code == 404


def test_delete_with_a_delimiter_empties_the_container(api: Api) -> None:
    """As in Pithos (kamaki's `container empty`): the objects go, the container stays."""
    api("PUT", "/c")
    for name in ("a", "d/b"):
        api("PUT", f"/c/{name}", data=b"x")
    assert api("DELETE", "/c?delimiter=/").status_code == 204
    assert api("HEAD", "/c").headers["X-Container-Object-Count"] == "0"
    assert api("DELETE", "/c").status_code == 204


def test_put_get_etag_and_top_hash(api: Api) -> None:
    api("PUT", "/c")
    body = data(2 * B + 1)
    put = api("PUT", "/c/big.bin", data=body, headers={"Content-Type": "application/x-test"})
    assert put.status_code == 201
    assert put.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    hashes = [hashlib.sha256(body[i : i + B]).hexdigest() for i in range(0, len(body), B)]
    assert put.headers["X-Object-Hash"] == top_hash(hashes)
    got = api("GET", "/c/big.bin")
    assert got.status_code == 200 and got.data == body
    assert got.headers["Content-Type"] == "application/x-test"
    assert got.headers["ETag"] == put.headers["ETag"]
    assert got.headers["X-Object-UUID"]
    head = api("HEAD", "/c/big.bin")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(body))


def test_top_hash_vectors(api: Api) -> None:
    api("PUT", "/c")
    for body, want in [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"a" * (B + 1), "5f858b62ccd88447586305aec6fd53c96747cfebf527cbba129a6dfed47d9624"),
        (b"hello", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
    ]:
        assert api("PUT", "/c/v", data=body).headers["X-Object-Hash"] == want


def test_wrong_etag_is_422_and_stores_nothing(api: Api) -> None:
    api("PUT", "/c")
    bad = api("PUT", "/c/o", data=b"abc", headers={"ETag": "0" * 32})
    assert bad.status_code == 422 and "unprocessableEntity" in bad.get_json()
    assert api("HEAD", "/c/o").status_code == 404


def test_listing_formats_prefix_delimiter_marker(api: Api) -> None:
    api("PUT", "/c")
    for name in ["a/1", "a/2", "b", "c/d/e", "z"]:
        api("PUT", f"/c/{name}", data=name.encode())
    assert api("GET", "/c").data.decode().split() == ["a/1", "a/2", "b", "c/d/e", "z"]
    listed = api("GET", "/c?format=json&delimiter=/").get_json()
    assert [i.get("name", i.get("subdir")) for i in listed] == ["a/", "b", "c/", "z"]
    assert api("GET", "/c?prefix=a/&format=json").get_json()[1]["bytes"] == 3
    assert api("GET", "/c?marker=b&limit=2").data.decode().split() == ["c/d/e", "z"]
    assert api("GET", "/c?path=c/d").data.decode().split() == ["c/d/e"]
    assert api("GET", "/c?marker=z").status_code == 204
    xml = api("GET", "/c?format=xml&prefix=b")
    assert xml.mimetype == "application/xml" and b"<name>b</name>" in xml.data


def test_empty_listings(api: Api) -> None:
    """204 in plain text; 200 with an empty list in JSON (kamaki's upload lists the
    container and wants 200) and XML."""
    api("PUT", "/c")
    for path in ("/c", ""):  # an empty container, then an account without containers
        assert api("GET", path).status_code == 204
        got = api("GET", f"{path}?format=json")
        assert got.status_code == 200 and got.get_json() == []
        xml = api("GET", f"{path}?format=xml")
        assert xml.status_code == 200 and xml.mimetype == "application/xml"
        api("DELETE", "/c")


def test_meta_filter_and_metadata(api: Api) -> None:
    api("PUT", "/c")
    api("PUT", "/c/x", data=b"1", headers={"X-Object-Meta-Color": "red"})
    api("PUT", "/c/y", data=b"2", headers={"X-Object-Meta-Color": "blue"})
    assert api("GET", "/c?meta=color=red").data.decode().split() == ["x"]
    assert api("GET", "/c?meta=!color").status_code == 204
    assert api("POST", "/c/x", headers={"X-Object-Meta-Size": "L"}).status_code == 202
    head = api("HEAD", "/c/x")
    assert head.headers["X-Object-Meta-Size"] == "L" and "X-Object-Meta-Color" not in head.headers
    api("POST", "/c/x?update", headers={"X-Object-Meta-Color": "green"})
    head = api("HEAD", "/c/x")
    assert head.headers["X-Object-Meta-Color"] == "green" and head.headers["X-Object-Meta-Size"]
    big = {f"X-Object-Meta-K{i}": "v" * 200 for i in range(30)}
    assert api("PUT", "/c/big", data=b"1", headers=big).status_code == 400
    assert api("HEAD", "/c/big").status_code == 404


def test_ranges(api: Api) -> None:
    api("PUT", "/c")
    body = data(B + 100)
    api("PUT", "/c/o", data=body)
    one = api("GET", "/c/o", headers={"Range": f"bytes={B - 10}-{B + 9}"})
    assert one.status_code == 206 and one.data == body[B - 10 : B + 10]
    assert one.headers["Content-Range"] == f"bytes {B - 10}-{B + 9}/{len(body)}"
    assert api("GET", "/c/o", headers={"Range": "bytes=-5"}).data == body[-5:]
    multi = api("GET", "/c/o", headers={"Range": "bytes=0-1,10-12"})
    assert multi.status_code == 206 and multi.mimetype == "multipart/byteranges"
    assert body[0:2] in multi.data and body[10:13] in multi.data
    assert len(multi.data) == int(multi.headers["Content-Length"])
    bad = api("GET", "/c/o", headers={"Range": f"bytes={len(body)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(body)}"
    assert api("GET", "/c/o", headers={"Range": "bytes=x-y"}).status_code == 200


def test_conditional_requests(api: Api) -> None:
    api("PUT", "/c")
    put = api("PUT", "/c/o", data=b"hello")
    etag, top = put.headers["ETag"], put.headers["X-Object-Hash"]
    assert api("GET", "/c/o", headers={"If-None-Match": etag}).status_code == 304
    assert api("GET", "/c/o", headers={"If-None-Match": top}).status_code == 304
    assert api("GET", "/c/o", headers={"If-Match": '"nope"'}).status_code == 412
    assert api("GET", "/c/o", headers={"If-Match": etag}).status_code == 200
    lm = api("HEAD", "/c/o").headers["Last-Modified"]
    assert api("GET", "/c/o", headers={"If-Modified-Since": lm}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert api("GET", "/c/o", headers={"If-Unmodified-Since": old}).status_code == 412
    refused = api("PUT", "/c/o", data=b"again", headers={"If-None-Match": "*"})
    assert refused.status_code == 412
    assert api("GET", "/c/o").data == b"hello"


def test_hashmap_upload_flow(api: Api) -> None:
    api("PUT", "/c")
    body = data(B + 7)
    hashes = [hashlib.sha256(body[:B]).hexdigest(), hashlib.sha256(body[B:]).hexdigest()]
    hashmap = {"bytes": len(body), "hashes": hashes}
    first = api("PUT", "/c/f?hashmap&format=json", json=hashmap)
    assert first.status_code == 409 and sorted(first.get_json()) == sorted(hashes)
    post = api(
        "POST",
        "/c?update&format=json",
        data=body[:B],
        headers={"Content-Type": "application/octet-stream"},
    )
    assert post.status_code == 202 and post.get_json() == hashes[:1]
    second = api("PUT", "/c/f?hashmap&format=json", json=hashmap)
    assert second.status_code == 409 and second.get_json() == hashes[1:]
    api("POST", "/c?update", data=body[B:], headers={"Content-Type": "application/octet-stream"})
    done = api("PUT", "/c/f?hashmap&format=json", json=hashmap)
    assert done.status_code == 201 and done.headers["X-Object-Hash"] == top_hash(hashes)
    assert api("GET", "/c/f").data == body
    got = api("GET", "/c/f?hashmap&format=json").get_json()
    assert got == {"block_size": B, "block_hash": "sha256", "bytes": len(body), "hashes": hashes}


class BrokenBody(io.BytesIO):
    """A chunked body whose client goes away: some bytes, then the error the server raises
    (gunicorn: NoMoreData, an OSError)."""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > len(self.getbuffer()) - self.tell():
            raise OSError("No more data after: None")
        return super().read(size)


def test_a_body_that_breaks_off_is_400(api: Api) -> None:
    api("PUT", "/c")
    api("PUT", "/c/old", data=b"old")
    chunked = {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"}
    for method, path, more in [
        ("PUT", "/c/o", {}),  # an object
        ("POST", "/c?update", {}),  # Pithos' blocks
        ("POST", "/c/old", {"Content-Range": "bytes */*"}),  # an append
    ]:
        r = api(
            method,
            path,
            input_stream=BrokenBody(data(B + 10)),
            headers={**chunked, **more},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert r.status_code == 400 and "could not be read" in r.get_json()["badRequest"]["message"]
    assert api("HEAD", "/c/o").status_code == 404
    assert api("GET", "/c/old").data == b"old"


@pytest.mark.parametrize(
    "hashmap",
    [
        {"bytes": 10, "hashes": []},
        {"bytes": 10, "hashes": ["zz" * 32]},
        {"bytes": B + 1, "hashes": ["ab" * 32]},
        {"bytes": -1, "hashes": ["ab" * 32]},
        {"hashes": ["ab" * 32]},
    ],
)
def test_bad_hashmaps_are_400(api: Api, hashmap: dict) -> None:
    api("PUT", "/c")
    assert api("PUT", "/c/f?hashmap", json=hashmap).status_code == 400
    assert api("HEAD", "/c/f").status_code == 404


def test_copy_move_and_uuid(api: Api) -> None:
    api("PUT", "/c")
    api("PUT", "/d")
    body = data(1000)
    api("PUT", "/c/src", data=body, headers={"X-Object-Meta-A": "1"})
    src_uuid = api("HEAD", "/c/src").headers["X-Object-UUID"]
    copy = api("PUT", "/d/copy", headers={"X-Copy-From": "/c/src", "Content-Length": "0"})
    assert copy.status_code == 201
    head = api("HEAD", "/d/copy")
    assert head.headers["X-Object-Meta-A"] == "1" and head.headers["X-Object-UUID"] != src_uuid
    assert api("GET", "/d/copy").data == body
    moved = api("MOVE", "/c/src", headers={"Destination": "/d/moved"})
    assert moved.status_code == 201
    assert api("HEAD", "/c/src").status_code == 404
    assert api("HEAD", "/d/moved").headers["X-Object-UUID"] == src_uuid
    assert api("COPY", "/d/moved", headers={"Destination": "/c/back"}).status_code == 201
    assert api("GET", "/c/back").data == body


def test_versions(api: Api) -> None:
    api("PUT", "/c")
    api("PUT", "/c/o", data=b"one")
    uuid1 = api("HEAD", "/c/o").headers["X-Object-UUID"]
    api("PUT", "/c/o", data=b"two")
    listed = api("GET", "/c/o?version=list&format=json").get_json()["versions"]
    assert len(listed) == 2
    assert api("GET", f"/c/o?version={listed[0][0]}").data == b"one"
    assert api("GET", "/c/o").data == b"two"
    assert api("HEAD", "/c/o").headers["X-Object-UUID"] == uuid1
    old = api(
        "PUT",
        "/c/old",
        headers={
            "X-Copy-From": "/c/o",
            "X-Source-Version": str(listed[0][0]),
            "Content-Length": "0",
        },
    )
    assert old.status_code == 201 and api("GET", "/c/old").data == b"one"
    api("PUT", "/n", headers={"X-Container-Policy-Versioning": "none"})
    api("PUT", "/n/o", data=b"one")
    api("PUT", "/n/o", data=b"two")
    assert len(api("GET", "/n/o?version=list&format=json").get_json()["versions"]) == 1


def test_partial_updates(api: Api) -> None:
    api("PUT", "/c")
    body = bytearray(data(B + 10))
    api("PUT", "/c/o", data=bytes(body))
    patch = b"PATCHED"
    r = api(
        "POST",
        "/c/o",
        data=patch,
        headers={
            "Content-Range": f"bytes {B - 3}-{B + 3}/*",
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 204
    body[B - 3 : B + 4] = patch
    assert api("GET", "/c/o").data == bytes(body)
    api(
        "POST",
        "/c/o",
        data=b"tail",
        headers={"Content-Range": "bytes */*", "Content-Type": "application/octet-stream"},
    )
    body += b"tail"
    assert api("GET", "/c/o").data == bytes(body)
    api("POST", "/c/o", headers={"X-Object-Bytes": "5", "Content-Type": "application/octet-stream"})
    assert api("GET", "/c/o").data == bytes(body[:5])
    past = api(
        "POST",
        "/c/o",
        data=b"x",
        headers={"Content-Range": "bytes 100-100/*", "Content-Type": "application/octet-stream"},
    )
    assert past.status_code == 416
    api("PUT", "/c/other", data=b"0123456789")
    api(
        "POST",
        "/c/o",
        headers={
            "Content-Range": "bytes 1-3/*",
            "X-Source-Object": "/c/other",
            "Content-Type": "application/octet-stream",
        },
    )
    assert api("GET", "/c/o").data == bytes(body[:1]) + b"012" + bytes(body[4:5])


def test_manifests(api: Api) -> None:
    api("PUT", "/c")
    api("PUT", "/c_segments")
    parts = [data(300), data(200), data(100)]
    for i, part in enumerate(parts):
        api("PUT", f"/c_segments/big/{i:03d}", data=part)
    api("PUT", "/c/dlo", data=b"", headers={"X-Object-Manifest": "c_segments/big/"})
    got = api("GET", "/c/dlo")
    assert got.data == b"".join(parts) and got.headers["X-Object-Manifest"] == "c_segments/big/"
    assert api("GET", "/c/dlo", headers={"Range": "bytes=250-349"}).data == b"".join(parts)[250:350]
    manifest = [
        {
            "path": f"/c_segments/big/{i:03d}",
            "etag": hashlib.md5(p).hexdigest(),
            "size_bytes": len(p),
        }
        for i, p in enumerate(parts)
    ]
    slo = api("PUT", "/c/slo?multipart-manifest=put", data=json.dumps(manifest))
    assert slo.status_code == 201
    got = api("GET", "/c/slo")
    assert got.data == b"".join(parts) and got.headers["X-Static-Large-Object"] == "True"
    listed = api("GET", "/c/slo?multipart-manifest=get").get_json()
    assert [i["bytes"] for i in listed] == [300, 200, 100]
    manifest[0]["etag"] = "0" * 32
    assert api("PUT", "/c/bad?multipart-manifest=put", data=json.dumps(manifest)).status_code == 400
    assert api("DELETE", "/c/slo?multipart-manifest=delete").status_code == 204
    assert api("GET", "/c_segments").status_code == 204


def test_names_and_lengths(api: Api) -> None:
    api("PUT", "/c")
    assert api("PUT", "/c/a/../b", data=b"x").status_code == 400
    assert api("PUT", "/c/" + "n" * 1025, data=b"x").status_code == 400
    assert api("PUT", "/c/bad%00name", data=b"x").status_code == 400
    assert api("PUT", "/c/%EF%BF%BE", data=b"x").status_code == 400
    assert api("PUT", "/c/caf%C3%A9", data=b"x").status_code == 201
    assert "café" in api("GET", "/c").data.decode()
    assert api("HEAD", "/nope").status_code == 404
    assert api("GET", "", account="00000000-0000-0000-0000-000000000000").status_code == 403


def test_sharing_and_public(api: Api, bob: Api, client: FlaskClient) -> None:
    api("PUT", "/c")
    api("PUT", "/c/secret", data=b"s")
    api("PUT", "/c/shared", data=b"hello bob")
    acct = api.user["uuid"]
    assert bob("GET", "/c/shared", account=acct).status_code == 403
    assert bob("GET", "/c", account=acct).status_code == 403
    r = api("POST", "/c/shared", headers={"X-Object-Sharing": f"read={bob.user['email']}"})
    assert r.status_code == 202
    assert bob("GET", "/c/shared", account=acct).data == b"hello bob"
    assert bob("GET", "/c/secret", account=acct).status_code == 403
    assert bob("GET", "/c", account=acct).data.decode().split() == ["shared"]
    assert bob("PUT", "/c/shared", account=acct, data=b"x").status_code == 403
    assert bob.client.get(
        "/object-store/v1", headers={"X-Auth-Token": bob.user["token"]}
    ).data.decode().split() == [acct]
    as_bob = {"X-Auth-Token": bob.user["token"]}
    sharers = bob.client.get("/object-store/v1?format=json", headers=as_bob).get_json()
    # what kamaki's `sharer list` reads
    assert [s["name"] for s in sharers] == [acct] and sharers[0]["last_modified"] > "2000"
    after = bob.client.get(f"/object-store/v1?format=json&marker={acct}", headers=as_bob)
    assert after.status_code == 200 and after.get_json() == []
    api("POST", "/c/shared", headers={"X-Object-Sharing": f"write={bob.user['uuid']}"})
    assert bob("PUT", "/c/shared", account=acct, data=b"bob was here").status_code == 201
    assert api("GET", "/c/shared").data == b"bob was here"
    api("POST", "/c/shared", headers={"X-Object-Public": "true"})
    url = api("HEAD", "/c/shared").headers["X-Object-Public"]
    path = url.split("cloud.example.test", 1)[1]
    assert client.get(path).data == b"bob was here"
    api("POST", "/c/shared", headers={"X-Object-Public": "false"})
    assert client.get(path).status_code == 404


def test_hashmap_upload_into_a_shared_object(api: Api, bob: Api) -> None:
    """kamaki 0.16 POSTs the blocks into the caller's own account, under the target's
    container name (which the caller need not have), then PUTs the hashmap to the owner's."""
    api("PUT", "/c")
    api("PUT", "/c/o", data=b"x", headers={"X-Object-Sharing": f"write={bob.user['uuid']}"})
    body = data(B + 3)
    octets = {"Content-Type": "application/octet-stream"}
    acct = api.user["uuid"]
    # into another's account: a container holding something the caller may write
    assert bob("POST", "/nope?update", account=acct, data=body, headers=octets).status_code == 404
    api("PUT", "/d")
    assert bob("POST", "/d?update", account=acct, data=body, headers=octets).status_code == 403
    assert bob("POST", "/c?update", account=acct, data=b"y", headers=octets).status_code == 202
    # into one's own: no container needed
    posted = bob("POST", "/c?update&format=json", data=body, headers=octets)
    assert posted.status_code == 202 and len(posted.get_json()) == 2
    assert bob("HEAD", "/c").status_code == 404  # and none was made
    hashmap = {"bytes": len(body), "hashes": posted.get_json()}
    put = bob("PUT", "/c/o?hashmap&format=json", account=acct, json=hashmap)
    assert put.status_code == 201 and api("GET", "/c/o").data == body


def test_groups(api: Api, bob: Api) -> None:
    api("POST", "", headers={"X-Account-Group-Friends": bob.user["uuid"]})
    assert api("HEAD", "").headers["X-Account-Group-Friends"] == bob.user["uuid"]
    api("PUT", "/c")
    api("PUT", "/c/o", data=b"x", headers={"X-Object-Sharing": f"read={api.user['uuid']}:friends"})
    assert bob("GET", "/c/o", account=api.user["uuid"]).data == b"x"


def test_quota_is_charged_and_enforced(app: Flask, api: Api) -> None:
    from snf.quota import engine as quota

    api("PUT", "/c")
    api("PUT", "/c/o", data=data(1000))
    api("PUT", "/c/o", data=data(500))

    def usage() -> dict[str, int]:
        got = api.client.get("/account/v1.0/quotas", headers={"X-Auth-Token": api.user["token"]})
        return got.get_json()[api.user["uuid"]]["pithos.diskspace"]

    assert usage()["usage"] == 1500
    api("DELETE", "/c/o")
    assert usage()["usage"] == 0
    with app.app_context():
        quota.set_grants(
            db.session,
            api.user["uuid"],
            {"pithos.diskspace": {"project_capacity": 2000, "member_capacity": 2000}},
        )
        db.session.commit()
    assert api("PUT", "/c/big", data=data(3000)).status_code == 413
    assert api("PUT", "/c/ok", data=data(1500)).status_code == 201
    chunked = api(
        "PUT",
        "/c/chunked",
        input_stream=io.BytesIO(data(1000)),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413
    assert api("HEAD", "/c/chunked").status_code == 404
    assert usage()["usage"] == 1500
    api("POST", "/c", headers={"X-Container-Policy-Quota": "100"})
    assert api("PUT", "/c/small", data=data(10)).status_code == 413


def test_hashmap_and_manifest_bodies_that_are_not_json_or_too_large(api: Api) -> None:
    api("PUT", "/c")
    assert api("PUT", "/c/f?hashmap", data=b"{not json").status_code == 400
    huge = b'{"bytes": 1, "hashes": ["' + b"a" * (9 << 20) + b'"]}'
    assert api("PUT", "/c/f?hashmap", data=huge).status_code == 400
    assert api("PUT", "/c/s?multipart-manifest=put", data=b"[").status_code == 400
    assert api("HEAD", "/c/f").status_code == 404 and api("HEAD", "/c/s").status_code == 404
