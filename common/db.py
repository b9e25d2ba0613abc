"""The SQLAlchemy base every snf model derives from (portal and quota engine alike).

One MetaData with a naming convention (stable constraint names for Alembic on SQLite and
PostgreSQL), and portable column types: ``Mapped[uuid.UUID]`` is a 36-character string on
both databases, ``Mapped[datetime]`` a timezone-aware UTC timestamp (SQLite keeps no time
zones: values are stored as naive UTC and come back aware), ``Mapped[dict]`` JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UUIDString(TypeDecorator[uuid.UUID]):
    """A UUID stored as its 36-character text form."""

    impl = String(36)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # On the registry, not the class: Flask-SQLAlchemy derives its db.Model from this base.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            uuid.UUID: UUIDString(),
            datetime: UTCDateTime(),
            dict[str, Any]: JSON(),
        },
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
