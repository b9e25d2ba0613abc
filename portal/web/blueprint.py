"""The web UI's blueprint (``/ui``) and its wiring into the app."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, url_for

from ..identity.policies import enabled, policy
from . import csrf, page_tokens, session

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates",
               static_folder="static")  # fmt: skip
csrf.protect(bp)


def external_logins() -> list[tuple[str, str]]:
    """(name, login URL) of each enabled external method whose blueprint is installed."""
    config = current_app.config["SNF"]
    out = []
    for method in enabled(config):
        endpoint = f"{method}.login"
        if method != "local" and endpoint in current_app.view_functions:
            out.append((policy(config, method).name, url_for(endpoint)))
    return out


def init_app(app: Flask) -> None:
    from . import auth_views, dashboard, files, projects, servers  # noqa: F401  (routes join bp)

    session.init_app(app)
    page_tokens.init_app(app)
    app.register_blueprint(bp)
    app.jinja_env.globals.update(
        csrf_field=csrf.field, external_logins=external_logins, has_endpoint=_has_endpoint
    )


def _has_endpoint(name: str) -> bool:
    return name in current_app.view_functions
