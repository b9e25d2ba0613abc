"""The portal's application factory: ``create_app(config)`` builds a Flask app; importing
this module does nothing.  Production runs it under gunicorn (``snf-portal serve``)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, redirect

from snf.common.config import Config, load_config
from snf.quota.database import configure as configure_sqlite

from . import errors
from .extensions import db
from .web import blueprint as web

log = logging.getLogger("snf.portal")


def _secret_key(path: Path) -> str:
    """The session secret, created (mode 0600) on first use.  Every worker of a first start
    may get here at once: the file appears whole (written aside, then linked into place) and
    the first link wins."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another worker's secret is the one
            os.link(aside, path)
    finally:
        os.unlink(aside)
    return path.read_text().strip()


def create_app(config: Config | None = None, **overrides: Any) -> Flask:
    """Build the portal.  ``overrides`` are Flask settings (tests: SQLALCHEMY_DATABASE_URI,
    SQLALCHEMY_ENGINE_OPTIONS, ...)."""
    config = config or load_config()
    # Explicit paths: Flask cannot locate a package inside the `snf` namespace by itself.
    here = Path(__file__).parent
    app = Flask("snf.portal", root_path=str(here), instance_path=str(here / "instance"))
    url = config.portal.database_url
    app.config.update(
        SNF=config,
        SECRET_KEY=_secret_key(config.portal.secret_key_file),
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
    )
    app.config.update(overrides)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)  # BEGIN IMMEDIATE, busy timeout, foreign keys
    errors.init_app(app)

    from .account import bp as account_bp
    from .compute import api as compute
    from .identity.api import bp as identity_bp
    from .images import api as images
    from .pithos import api as pithos

    app.register_blueprint(identity_bp)
    app.register_blueprint(account_bp)
    pithos.init_app(app)
    images.init_app(app)
    compute.init_app(app)
    if config.saml.enabled:
        from .identity.saml import bp as saml_bp

        app.register_blueprint(saml_bp)
    if config.oidc.enabled:
        from .identity import oidc

        oidc.init_app(app)
    web.init_app(app)
    app.add_url_rule("/", "root", lambda: redirect("/ui/"))
    return app
