"""The image service through Flask's test client, on SQLite and the directory store:
Plankton (register, list, show, update, members, unregister, bad input), the Glance v2
subset, the discovery document, and the rules of ``image_for_server``."""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import quote, unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from snf.portal.errors import ApiError
from snf.portal.extensions import db
from snf.portal.identity import accounts
from snf.portal.identity.catalog import astakos_catalog, keystone_catalog
from snf.portal.images import registry
from snf.portal.images.models import Image

PLANKTON = "/image/v1.0"


class User:
    """Requests as one user: to the object store (their own account) and to Plankton."""

    def __init__(self, client: FlaskClient, uid: str, token: str) -> None:
        self.client, self.uuid, self.token = client, uid, token

    def store(self, method: str, path: str, **kw: Any) -> TestResponse:
        headers = {"X-Auth-Token": self.token, **kw.pop("headers", {})}
        url = f"/object-store/v1/{self.uuid}{path}"
        return self.client.open(url, method=method, headers=headers, **kw)

    def upload(self, path: str, data: bytes, **headers: str) -> TestResponse:
        self.store("PUT", "/" + path.split("/")[0])
        put = self.store("PUT", "/" + path, data=data, headers=headers)
        assert put.status_code == 201, put.data
        return put

    def __call__(self, method: str, path: str, **kw: Any) -> TestResponse:
        headers = {"X-Auth-Token": self.token, **kw.pop("headers", {})}
        if path.startswith(("/images", "/shared-images")):
            path = PLANKTON + path
        return self.client.open(path, method=method, headers=headers, **kw)

    def register(self, name: str, path: str, **meta: str) -> TestResponse:
        headers = {"X-Image-Meta-Name": quote(name),
                   "X-Image-Meta-Location": f"pithos://{self.uuid}/{path}"}  # fmt: skip
        headers.update({f"X-Image-Meta-{k}": v for k, v in meta.items()})
        return self("POST", "/images/", headers=headers)


def make_user(app: Flask, client: FlaskClient, email: str) -> User:
    with app.app_context():
        user = accounts.create_user(db.session, email, email.split("@")[0], active=True)
        token, _ = accounts.issue_user_token(db.session, user, kind="api", hours=24)
        db.session.commit()
        return User(client, str(user.uuid), token)


@pytest.fixture
def alice(app: Flask, client: FlaskClient) -> User:
    return make_user(app, client, "alice@example.test")


@pytest.fixture
def bob(app: Flask, client: FlaskClient) -> User:
    return make_user(app, client, "bob@example.test")


@pytest.fixture
def carol(app: Flask, client: FlaskClient) -> User:
    return make_user(app, client, "carol@example.test")


def meta(reply: TestResponse) -> dict[str, Any]:
    """Headers as kamaki 0.16 reads them (_format_image_headers): quoted values unquoted."""
    out: dict[str, Any] = {"properties": {}}
    for key, value in reply.headers.items():
        key = key.lower()
        if key.startswith("x-image-meta-property-"):
            out["properties"][unquote(key[22:]).replace("-", "_")] = unquote(value)
        elif key.startswith("x-image-meta-"):
            out[key[13:]] = unquote(value) if key[13:] in ("name", "location") else value
    return out


def fault(reply: TestResponse, status: int) -> str:
    """The message of an OpenStack-shaped error with ``status`` (a HEAD has no body: "HEAD")."""
    assert reply.status_code == status, (reply.status_code, reply.data)
    if reply.request.method == "HEAD":
        return "HEAD"
    body = reply.get_json()
    (name,) = body
    assert body[name]["code"] == status
    return body[name]["message"]


# --- register, show, list ------------------------------------------------------------------


def test_register_pins_the_object_and_answers_with_headers(alice: User) -> None:
    data = os.urandom(5 << 20)
    put = alice.upload("images/debian.img", data)
    reply = alice.register("Debian ψ 12", "images/debian.img", **{
        "Disk-Format": "diskdump", "Is-Public": "False",
        "Property-OSFAMILY": "linux", "Property-Root-Partition": "1",
        "Property-Description": quote("naïve image"),
    })  # fmt: skip
    assert reply.status_code == 200, reply.data
    got = meta(reply)
    assert got["id"] == alice.store("HEAD", "/images/debian.img").headers["X-Object-UUID"]
    assert got["name"] == "Debian ψ 12"
    assert got["location"] == f"pithos://{alice.uuid}/images/debian.img"
    assert got["size"] == str(len(data)) and got["checksum"] == put.headers["X-Object-Hash"]
    assert got["owner"] == alice.uuid and got["status"] == "AVAILABLE"
    assert got["disk-format"] == "diskdump" and got["container-format"] == "bare"
    assert got["is-public"] == "False" and got["deleted-at"] == ""
    assert got["created-at"].endswith("Z") and "T" in got["created-at"]
    assert got["properties"] == {"osfamily": "linux", "root_partition": "1",
                                 "description": "naïve image"}  # fmt: skip
    body = reply.get_json()["image"]
    assert body["properties"] == {"OSFAMILY": "linux", "ROOT_PARTITION": "1",
                                  "DESCRIPTION": "naïve image"}  # fmt: skip
    assert body["size"] == len(data) and body["is_public"] is False

    head = alice("HEAD", f"/images/{got['id']}")
    assert head.status_code == 200 and meta(head) == got
    assert fault(alice("GET", f"/images/{got['id']}"), 501)

    # the file changes: the image keeps the version it was registered with
    alice.upload("images/debian.img", b"new content")
    assert meta(alice("HEAD", f"/images/{got['id']}"))["size"] == str(len(data))
    # registering it again updates the same image: new version, name, merged properties
    again = alice.register("Debian 12.1", "images/debian.img", **{"Property-USERS": "root"})
    assert again.status_code == 200
    image = again.get_json()["image"]
    assert image["id"] == got["id"] and image["name"] == "Debian 12.1"
    assert image["size"] == len(b"new content")
    assert image["properties"] == {"OSFAMILY": "linux", "ROOT_PARTITION": "1",
                                   "DESCRIPTION": "naïve image", "USERS": "root"}  # fmt: skip
    assert len(alice("GET", "/images/").get_json()) == 1


def test_size_and_checksum_must_match(alice: User) -> None:
    put = alice.upload("c/img", b"x" * 1000)
    assert "size" in fault(alice.register("i", "c/img", Size="999"), 400)
    assert fault(alice.register("i", "c/img", Size="many"), 400)
    assert "checksum" in fault(alice.register("i", "c/img", Checksum="0" * 64), 400)
    ok = alice.register("i", "c/img", Size="1000", Checksum=put.headers["X-Object-Hash"])
    assert ok.status_code == 200


def test_listing_filters_and_order(alice: User) -> None:
    for name, size, fmt in [("a", 3000, "diskdump"), ("b", 1000, "extdump"), ("c", 2000, "qcow2")]:
        alice.upload(f"c/{name}", os.urandom(size))
        assert alice.register(name, f"c/{name}", **{"Disk-Format": fmt}).status_code == 200

    def names(query: str = "", detail: bool = False) -> list[str]:
        reply = alice("GET", f"/images/{'detail' if detail else ''}{query}")
        assert reply.status_code == 200, reply.data
        return [i["name"] for i in reply.get_json()]

    assert names() == ["c", "b", "a"]  # newest first
    assert names("?sort_key=size&sort_dir=asc") == ["b", "c", "a"]
    assert names("?sort_key=name&sort_dir=desc", detail=True) == ["c", "b", "a"]
    assert names("?name=b") == ["b"]
    assert names("?disk_format=qcow2") == ["c"]
    assert names("?container_format=bare&sort_key=name&sort_dir=asc") == ["a", "b", "c"]
    assert names("?status=available") == names("?status=AVAILABLE") == ["c", "b", "a"]
    assert names("?status=ERROR") == []
    assert names("?size_min=1500&size_max=2500") == ["c"]
    short = alice("GET", "/images").get_json()[0]
    assert set(short) == {"status", "name", "disk_format", "container_format", "size", "id"}
    full = alice("GET", "/images/detail").get_json()[0]
    assert set(full) == {"id", "name", "status", "location", "checksum", "size", "disk_format",
                         "container_format", "is_public", "owner", "created_at", "updated_at",
                         "deleted_at", "properties"}  # fmt: skip
    assert "sort_key" in fault(alice("GET", "/images/?sort_key=owner"), 400)
    assert "sort_dir" in fault(alice("GET", "/images/?sort_dir=up"), 400)
    assert fault(alice("GET", "/images/?size_min=big"), 400)


def test_update(alice: User, bob: User) -> None:
    alice.upload("c/img", b"disk")
    image = alice.register("old", "c/img", **{"Property-A": "1", "Property-B": "2"})
    iid = image.get_json()["image"]["id"]
    reply = alice("PUT", f"/images/{iid}", headers={
        "X-Image-Meta-Name": quote("new näme"), "X-Image-Meta-Disk-Format": "extdump",
        "X-Image-Meta-Is-Public": "True", "X-Image-Meta-Property-B": "",
        "X-Image-Meta-Property-C": "3",
    })  # fmt: skip
    assert reply.status_code == 200, reply.data
    got = meta(reply)
    assert got["name"] == "new näme" and got["disk-format"] == "extdump"
    assert got["is-public"] == "True" and got["properties"] == {"a": "1", "c": "3"}
    # kamaki's `image modify` sends the unchanged fields back
    same = {"X-Image-Meta-Owner": alice.uuid, "X-Image-Meta-Status": "AVAILABLE"}
    assert alice("PUT", f"/images/{iid}", headers=same).status_code == 200
    assert fault(alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Owner": bob.uuid}), 403)
    assert fault(alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Status": "ERROR"}), 403)
    assert fault(alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Status": "odd"}), 400)
    bad_format = {"X-Image-Meta-Disk-Format": "vmdk"}
    assert "disk format" in fault(alice("PUT", f"/images/{iid}", headers=bad_format), 400)
    assert fault(alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Size": "4"}), 400)
    assert fault(alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Name": ""}), 400)
    # bob sees it (public) but may not change it
    assert fault(bob("PUT", f"/images/{iid}", headers={"X-Image-Meta-Name": "mine"}), 403)
    assert fault(bob("DELETE", f"/images/{iid}"), 403)


def test_members_and_visibility(alice: User, bob: User, carol: User) -> None:
    alice.upload("c/img", b"private disk")
    iid = alice.register("private", "c/img").get_json()["image"]["id"]
    for user in (bob, carol):
        assert user("GET", "/images/detail").get_json() == []
        assert fault(user("HEAD", f"/images/{iid}"), 404)
    assert bob("GET", f"/shared-images/{alice.uuid}").get_json() == {"shared_images": []}

    assert alice("PUT", f"/images/{iid}/members/{bob.uuid}").status_code == 204
    assert alice("PUT", f"/images/{iid}/members/{bob.uuid}").status_code == 204  # again
    assert alice("GET", f"/images/{iid}/members").get_json() == {
        "members": [{"member_id": bob.uuid, "can_share": False}]
    }
    assert [i["id"] for i in bob("GET", "/images/").get_json()] == [iid]
    assert bob("HEAD", f"/images/{iid}").status_code == 200
    assert bob("GET", f"/shared-images/{alice.uuid}").get_json() == {
        "shared_images": [{"image_id": iid, "can_share": False}]
    }
    assert carol("GET", "/images/").get_json() == []
    assert carol("GET", f"/shared-images/{alice.uuid}").get_json() == {"shared_images": []}
    # members are the owner's business
    assert fault(bob("GET", f"/images/{iid}/members"), 403)
    assert fault(bob("PUT", f"/images/{iid}/members/{carol.uuid}"), 403)
    assert fault(carol("PUT", f"/images/{iid}/members/{carol.uuid}"), 404)

    body = {"memberships": [{"member_id": carol.uuid}]}
    assert alice("PUT", f"/images/{iid}/members", json=body).status_code == 204
    assert carol("HEAD", f"/images/{iid}").status_code == 200
    assert fault(bob("HEAD", f"/images/{iid}"), 404)
    assert alice("DELETE", f"/images/{iid}/members/{carol.uuid}").status_code == 204
    assert alice("DELETE", f"/images/{iid}/members/{carol.uuid}").status_code == 204
    assert fault(carol("HEAD", f"/images/{iid}"), 404)
    assert alice("GET", f"/images/{iid}/members").get_json() == {"members": []}

    # public: everyone sees it, and it is no longer "shared" by alice
    alice("PUT", f"/images/{iid}", headers={"X-Image-Meta-Is-Public": "true"})
    alice("PUT", f"/images/{iid}/members/{bob.uuid}")
    for user in (bob, carol):
        assert [i["id"] for i in user("GET", "/images/detail").get_json()] == [iid]
    assert bob("GET", f"/shared-images/{alice.uuid}").get_json() == {"shared_images": []}

    # bad members
    assert fault(alice("PUT", f"/images/{iid}/members/{uuid.uuid4()}"), 400)
    assert fault(alice("PUT", f"/images/{iid}/members/bob"), 400)
    assert fault(alice("PUT", f"/images/{iid}/members", data="{not json",
                       content_type="application/json"), 400)  # fmt: skip
    assert fault(alice("PUT", f"/images/{iid}/members", json={"memberships": "bob"}), 400)
    assert fault(alice("PUT", f"/images/{iid}/members", json={"memberships": [{}]}), 400)
    assert fault(alice("PUT", f"/images/{iid}/members", data="{}"), 400)  # not JSON-typed
    assert fault(bob("GET", "/shared-images/someone"), 400)


def test_unregister_keeps_the_file(alice: User, bob: User) -> None:
    alice.upload("c/img", b"keep me")
    iid = alice.register("img", "c/img").get_json()["image"]["id"]
    alice("PUT", f"/images/{iid}/members/{bob.uuid}")
    assert fault(bob("DELETE", f"/images/{iid}"), 403)
    assert alice("DELETE", f"/images/{iid}").status_code == 204
    assert fault(alice("HEAD", f"/images/{iid}"), 404)
    assert fault(alice("DELETE", f"/images/{iid}"), 404)
    assert alice.store("GET", "/c/img").data == b"keep me"
    assert alice("GET", "/images/").get_json() == []


def test_deleting_the_object_removes_the_image(alice: User) -> None:
    alice.upload("c/img", b"short-lived")
    iid = alice.register("img", "c/img").get_json()["image"]["id"]
    assert alice.store("DELETE", "/c/img").status_code == 204
    assert fault(alice("HEAD", f"/images/{iid}"), 404)


def test_bad_registrations(alice: User, bob: User, client: FlaskClient) -> None:
    alice.upload("c/img", b"alice's disk")
    loc = f"pithos://{alice.uuid}/c/img"

    def post(token: str | None = alice.token, **headers: str) -> TestResponse:
        if token:
            headers["X-Auth-Token"] = token
        return client.post(f"{PLANKTON}/images/", headers=headers)

    assert "Name" in fault(post(**{"X-Image-Meta-Location": loc}), 400)
    assert "Location" in fault(post(**{"X-Image-Meta-Name": "x"}), 400)
    for bad in ["http://x/y/z", "pithos://not-a-uuid/c/img", f"pithos://{alice.uuid}/c",
                f"pithos://{alice.uuid}//img", f"pithos://{alice.uuid}/c/", "pithos:/x/y/z/w",
                f"pithos://{alice.uuid}/c/%ff"]:  # fmt: skip
        reply = post(**{"X-Image-Meta-Name": "x", "X-Image-Meta-Location": bad})
        assert "location" in fault(reply, 400), bad
    for missing in ["c/nothing", "nocontainer/img"]:
        reply = alice.register("x", missing)
        assert fault(reply, 404)
    assert "disk format" in fault(alice.register("x", "c/img", **{"Disk-Format": "vmdk"}), 400)
    assert fault(alice.register("x", "c/img", **{"Container-Format": "zip"}), 400)
    assert fault(alice.register("x", "c/img", Id=str(uuid.uuid4())), 400)
    assert fault(alice.register("x", "c/img", Store="swift"), 400)
    assert fault(alice.register("x", "c/img", Color="blue"), 400)
    assert fault(alice.register("x" * 257, "c/img"), 400)
    assert fault(alice.register("x", "c/img", **{"Property-K": "v" * 257}), 400)
    assert fault(post(token=None, **{"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc}), 401)
    # someone else's object: private, then shared with bob for reading
    as_bob = {"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc}
    assert "read" in fault(post(token=bob.token, **as_bob), 403)
    alice.store("POST", "/c/img", headers={"X-Object-Sharing": f"read={bob.uuid}"})
    assert "owner" in fault(post(token=bob.token, **as_bob), 403)
    # a large-object manifest has no blocks of its own to boot from
    manifest = {"X-Object-Manifest": "c/img"}
    put = alice.store("PUT", "/c/big", data=b"", headers=manifest,
                      environ_overrides={"CONTENT_LENGTH": "0"})  # fmt: skip
    assert put.status_code == 201, put.data
    assert "manifest" in fault(alice.register("x", "c/big"), 400)
    assert alice("GET", "/images/").get_json() == []
    # unknown and malformed ids
    assert fault(alice("HEAD", f"/images/{uuid.uuid4()}"), 404)
    assert fault(alice("HEAD", "/images/not-an-id"), 404)
    assert fault(alice("PUT", f"/images/{uuid.uuid4()}"), 404)


# --- the catalog, discovery and Glance v2 --------------------------------------------------


def test_catalog_urls_reach_the_image_apis(alice: User, app: Flask) -> None:
    base = "https://cloud.example.test"
    (plankton,) = [s for s in astakos_catalog(base) if s["type"] == "image"]
    url = plankton["endpoints"][0]["publicURL"]
    assert url == f"{base}/image" and plankton["endpoints"][0]["versionId"] == "v1.0"
    # kamaki appends the version
    assert alice("GET", url.removeprefix(base) + "/v1.0/images/").status_code == 200
    (glance,) = [s for s in keystone_catalog(base, alice.uuid) if s["type"] == "image"]
    assert glance["endpoints"][0]["url"] == f"{base}/image"
    for path in ("/image", "/image/"):
        doc = alice.client.get(path).get_json()  # no token needed
        assert doc == {"versions": [{"id": "v2.16", "status": "CURRENT",
                       "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}]}  # fmt: skip


def test_glance_list_and_show(alice: User, bob: User) -> None:
    ids = []
    for i in range(5):
        alice.upload(f"c/img{i}", os.urandom(100 + i))
        props = {"Property-OSFAMILY": "linux", "Property-Name": "shadowed"}
        ids.append(alice.register(f"img{i}", f"c/img{i}", **props).get_json()["image"]["id"])
    alice("PUT", f"/images/{ids[0]}", headers={"X-Image-Meta-Is-Public": "true"})
    alice("PUT", f"/images/{ids[1]}/members/{bob.uuid}")

    listed = alice("GET", "/image/v2/images").get_json()
    assert "next" not in listed and len(listed["images"]) == 5
    by_id = {i["id"]: i for i in listed["images"]}
    assert sorted(by_id) == sorted(ids)
    one = by_id[ids[2]]
    assert one["name"] == "img2" and one["status"] == "active" and one["size"] == 102
    assert one["visibility"] == "private" and one["tags"] == [] and one["OSFAMILY"] == "linux"
    assert one["owner"] == alice.uuid and len(one["checksum"]) == 64 and one["NAME"] == "shadowed"
    assert one["disk_format"] == "diskdump" and one["container_format"] == "bare"
    assert by_id[ids[0]]["visibility"] == "public" and by_id[ids[1]]["visibility"] == "shared"

    # pages: `next` only while there is more
    seen, url = [], "/image/v2/images?limit=2"
    while url:
        page = alice("GET", url).get_json()
        assert len(page["images"]) <= 2
        seen += [i["id"] for i in page["images"]]
        url = "/image" + page["next"] if "next" in page else ""
    assert seen == sorted(ids)
    wanted = f"in:{ids[3]},{ids[4]}"
    got = alice("GET", f"/image/v2/images?id={wanted}").get_json()["images"]
    assert sorted(i["id"] for i in got) == sorted(ids[3:])
    assert [i["id"] for i in alice("GET", "/image/v2/images?name=img4").get_json()["images"]] == [
        ids[4]
    ]
    public = alice("GET", "/image/v2/images?visibility=public").get_json()["images"]
    assert [i["id"] for i in public] == [ids[0]]
    assert sorted(i["id"] for i in bob("GET", "/image/v2/images").get_json()["images"]) == sorted(
        ids[:2]
    )

    show = alice("GET", f"/image/v2/images/{ids[2]}")
    assert show.status_code == 200 and show.get_json() == one
    assert fault(bob("GET", f"/image/v2/images/{ids[2]}"), 404)
    assert fault(alice("GET", "/image/v2/images/img2"), 404)  # a name: the client then lists
    assert fault(alice("GET", "/image/v2/images?limit=x"), 400)
    assert fault(alice.client.get("/image/v2/images"), 401)


# --- what compute calls --------------------------------------------------------------------


def test_image_for_server(app: Flask, alice: User, bob: User, carol: User) -> None:
    for name in ("own", "public", "shared"):
        alice.upload(f"c/{name}", name.encode())
    iid = {n: alice.register(n, f"c/{n}").get_json()["image"]["id"]
           for n in ("own", "public", "shared")}  # fmt: skip
    alice("PUT", f"/images/{iid['public']}", headers={"X-Image-Meta-Is-Public": "true"})
    alice("PUT", f"/images/{iid['shared']}/members/{bob.uuid}")
    a, b, c = (uuid.UUID(u.uuid) for u in (alice, bob, carol))

    def boot(image_id: str, user: uuid.UUID) -> Image | int:
        try:
            return registry.image_for_server(db.session, image_id, user)
        except ApiError as exc:
            return exc.http_status

    with app.app_context():
        image = boot(iid["own"], a)
        assert isinstance(image, Image) and image.map_name and image.size == 3
        assert isinstance(boot(iid["public"], c), Image)
        assert isinstance(boot(iid["shared"], b), Image)
        assert boot(iid["own"], b) == 404
        assert boot(iid["shared"], c) == 404
        assert boot(str(uuid.uuid4()), a) == 404
        assert boot("not-a-uuid", a) == 400
        assert boot("", a) == 400
        db.session.get(Image, uuid.UUID(iid["own"])).status = "UNAVAILABLE"  # type: ignore[union-attr]
        db.session.commit()
        assert boot(iid["own"], a) == 400
