"""MD5s computed after the response, for versions assembled from a hashmap or a partial
update (their bytes never streamed through the portal in one piece).

A job reads the version's blocks in a worker thread of this process and fills in the MD5
if it is still unknown; a process that ends first leaves it unknown, and the next full GET
schedules it again.  Until then the version has no ETag (clients then skip their MD5 check).
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app
from sqlalchemy import update

from ..extensions import db
from .content import md5_of, read_map
from .models import Version

log = logging.getLogger("snf.portal.pithos")
_running: set[int] = set()
_lock = threading.Lock()


def schedule(version_id: int) -> None:
    """Compute the MD5 of ``version_id`` in the background (once per process at a time)."""
    with _lock:
        if version_id in _running:
            return
        _running.add(version_id)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    threading.Thread(
        target=_run, args=(app, version_id), name=f"pithos-md5-{version_id}", daemon=True
    ).start()


def _run(app: Flask, version_id: int) -> None:
    try:
        with app.app_context():
            compute(version_id)
    except Exception:
        log.exception("MD5 of version %s failed", version_id)
    finally:
        with _lock:
            _running.discard(version_id)


def compute(version_id: int) -> str | None:
    """Fill in one version's MD5 now; None if the version is gone."""
    from .api import store

    version = db.session.get(Version, version_id)
    if version is None or version.md5 is not None:
        db.session.rollback()
        return None if version is None else version.md5
    map_name, size = version.map_name, version.size
    db.session.rollback()  # no transaction while reading the blocks
    digest = md5_of(store(), read_map(store(), map_name), size)
    db.session.execute(
        update(Version).where(Version.id == version_id, Version.md5.is_(None)).values(md5=digest)
    )
    db.session.commit()
    log.info("MD5 of version %s computed after its upload", version_id)
    return digest
