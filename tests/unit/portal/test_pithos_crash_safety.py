"""Crash safety of the object store: an interrupted or failed upload leaves no visible
object and no version naming a missing block; every version has a map, so archipelago's one
garbage collector keeps exactly the blocks some version uses; maps a crash leaves without a
version are removed by the reconciler once old enough."""

from __future__ import annotations

import io
import os
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.archipelago import gc
from snf.archipelago.backends import open_store
from snf.archipelago.hashing import BLOCK_SIZE
from snf.archipelago.store import Store
from snf.portal.extensions import db
from snf.portal.pithos import accounting, content, reconcile
from snf.portal.pithos.models import Version

from .test_pithos_api import Api


@pytest.fixture
def api(client: FlaskClient, alice: dict[str, str]) -> Api:
    api = Api(client, alice)
    assert api("PUT", "/c").status_code == 201
    return api


@pytest.fixture
def store(app: Flask) -> Store:
    return open_store(app.config["SNF"].store)


def _versions(app: Flask) -> list[Version]:
    with app.app_context():
        return list(db.session.query(Version))


def _every_block_present(app: Flask, store: Store) -> None:
    for version in _versions(app):
        for name in content.read_map(store, version.map_name):
            assert store.has_block(name), f"version {version.id} names missing block {name}"


def test_body_shorter_than_content_length(app: Flask, api: Api, store: Store) -> None:
    body = os.urandom(BLOCK_SIZE + 1000)  # the client goes away before the end
    got = api("PUT", "/c/o", input_stream=io.BytesIO(body),
              environ_overrides={"CONTENT_LENGTH": str(len(body) + 5000)})  # fmt: skip
    assert got.status_code == 400
    assert api("HEAD", "/c/o").status_code == 404
    assert _versions(app) == []
    # the blocks it stored are referenced by no map: the collector frees them
    swept = gc.collect(store, window=0)
    assert swept.deleted_blocks >= 1 and store.usage().blocks == 0


def test_failure_at_commit_leaves_no_version_and_no_map(
    app: Flask, api: Api, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    api("PUT", "/c/kept", data=os.urandom(5000))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away")

    monkeypatch.setattr(accounting, "charge", broken)
    assert api("PUT", "/c/o", data=os.urandom(3000)).status_code == 500
    monkeypatch.undo()
    assert api("HEAD", "/c/o").status_code == 404
    maps = [n for n in store.list_maps() if n.startswith("pithos-")]
    assert maps == [v.map_name for v in _versions(app)]
    _every_block_present(app, store)


def test_collector_keeps_what_versions_use(app: Flask, api: Api, store: Store) -> None:
    first, second = os.urandom(BLOCK_SIZE + 1), os.urandom(700)
    api("PUT", "/c/o", data=first)
    api("PUT", "/c/o", data=second)  # versioning auto: the first version stays
    api("PUT", "/c/copy", headers={"X-Copy-From": "/c/o", "Content-Length": "0"})
    assert gc.collect(store, window=0).deleted_blocks == 0
    _every_block_present(app, store)
    assert api("GET", "/c/copy").data == second
    api("DELETE", "/c/o")
    swept = gc.collect(store, window=0)
    assert swept.deleted_blocks == 2  # only the first version's two blocks
    assert api("GET", "/c/copy").data == second
    _every_block_present(app, store)


def test_reconciler_removes_old_orphan_maps_only(app: Flask, api: Api, store: Store) -> None:
    api("PUT", "/c/o", data=b"live")
    content.write_map(store, "pithos-" + "0" * 32 + "-999", ["ab" * 32], 10)
    with app.app_context():
        young = reconcile.orphan_maps(db.session, store, window=3600)
        assert young.removed == [] and young.young == 1
        old = reconcile.orphan_maps(db.session, store, window=3600, now=time.time() + 7200)
        assert old.removed == ["pithos-" + "0" * 32 + "-999"]
    assert api("GET", "/c/o").data == b"live"
    assert len([n for n in store.list_maps() if n.startswith("pithos-")]) == 1


def test_every_version_is_a_read_only_map(app: Flask, api: Api, store: Store) -> None:
    from snf.archipelago.mapfile import VolumeMap

    body = os.urandom(2 * BLOCK_SIZE)
    api("PUT", "/c/image", data=body)
    (version,) = _versions(app)
    vmap = VolumeMap.decode(store.get_map(version.map_name))
    assert vmap.readonly and vmap.size == len(body)
    clone = vmap.clone(4 * BLOCK_SIZE)  # what a node does to deploy it
    assert clone.size == 4 * BLOCK_SIZE
