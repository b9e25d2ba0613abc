"""Every model module, imported in one place so that the metadata is complete (Alembic,
tests, ``create_all``)."""

from __future__ import annotations

import importlib

MODEL_MODULES = [
    "snf.portal.identity.models",
    "snf.portal.projects_models",
    "snf.portal.pithos.models",
    "snf.portal.images.models",
    "snf.portal.compute.models",
    "snf.portal.volumes.models",
    "snf.quota.models",
]


def load_all() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
