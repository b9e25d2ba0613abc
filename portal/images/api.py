"""The image service's HTTP side: Plankton (``/image/v1.0``), the Glance v2 subset
(``/image/v2``) and the discovery document at ``/image`` that OpenStack clients read from
the catalog URL."""

from __future__ import annotations

from flask import Flask

from . import glance, plankton


def init_app(app: Flask) -> None:
    app.register_blueprint(plankton.bp)
    app.register_blueprint(glance.bp)
    app.add_url_rule("/image", "image_versions", glance.versions)
    app.add_url_rule("/image/", "image_versions_slash", glance.versions)
