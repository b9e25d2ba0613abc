from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from snf.common.config import load_config
from snf.portal import migrate
from snf.portal.app import create_app
from snf.portal.extensions import db
from snf.portal.identity import accounts


@pytest.fixture
def extra_config() -> str:
    """A drop-in for the portal's configuration (tests override this fixture)."""
    return ""


@pytest.fixture
def app(tmp_path: Path, extra_config: str) -> Iterator[Flask]:
    etc = tmp_path / "etc"
    etc.mkdir()
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    (etc / "snf.toml").write_text(
        f'[portal]\ndatabase_url = "{url}"\nsecret_key_file = "{tmp_path / "secret"}"\n'
        'base_url = "https://cloud.example.test"\n'
        f'[mail]\noutbox_dir = "{tmp_path / "outbox"}"\n'
        f'[store]\npath = "{tmp_path / "store"}"\n'
    )
    (etc / "conf.d").mkdir()
    (etc / "conf.d" / "50-test.toml").write_text(extra_config)
    migrate.upgrade(url)
    app = create_app(load_config(etc))
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    """A client that speaks HTTPS, as the configured base URL does (Secure cookies)."""
    client = app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "cloud.example.test"})
    return client


@pytest.fixture
def alice(app: Flask) -> dict[str, str]:
    with app.app_context():
        user = accounts.create_user(db.session, "alice@example.test", "Alice",
                                    password="correct horse", active=True)  # fmt: skip
        token, _ = accounts.issue_user_token(db.session, user, kind="api", hours=24)
        db.session.commit()
        return {"uuid": str(user.uuid), "token": token, "email": user.email}
