"""object store

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:05:11.519984
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import snf.common.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pithos_accounts",
        sa.Column("uuid", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_pithos_accounts")),
    )
    op.create_table(
        "pithos_containers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column(
            "name",
            sa.String(length=256).with_variant(sa.String(length=256, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("quota", sa.BigInteger(), nullable=False),
        sa.Column("versioning", sa.String(length=8), nullable=False),
        sa.Column("project", snf.common.db.UUIDString(length=36), nullable=True),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "versioning IN ('auto', 'none')", name=op.f("ck_pithos_containers_versioning")
        ),
        sa.ForeignKeyConstraint(
            ["account"],
            ["pithos_accounts.uuid"],
            name=op.f("fk_pithos_containers_account_pithos_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pithos_containers")),
    )
    with op.batch_alter_table("pithos_containers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pithos_containers_account"), ["account", "name"], unique=True
        )

    op.create_table(
        "pithos_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column(
            "name",
            sa.String(length=1024).with_variant(
                sa.String(length=1024, collation="C"), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("uuid", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("sharing", sa.JSON(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("public_token", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["container_id"],
            ["pithos_containers.id"],
            name=op.f("fk_pithos_objects_container_id_pithos_containers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pithos_objects")),
    )
    with op.batch_alter_table("pithos_objects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pithos_objects_container_id"), ["container_id", "name"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_pithos_objects_public_token"), ["public_token"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_pithos_objects_shared"), ["shared"], unique=False)
        batch_op.create_index(batch_op.f("ix_pithos_objects_uuid"), ["uuid"], unique=False)

    op.create_table(
        "pithos_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("content_type", sa.String(length=256), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("modified_by", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("map_name", sa.String(length=200), nullable=False),
        sa.CheckConstraint("kind IN ('data', 'dlo', 'slo')", name=op.f("ck_pithos_versions_kind")),
        sa.ForeignKeyConstraint(
            ["container_id"],
            ["pithos_containers.id"],
            name=op.f("fk_pithos_versions_container_id_pithos_containers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["pithos_objects.id"],
            name=op.f("fk_pithos_versions_object_id_pithos_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pithos_versions")),
    )
    with op.batch_alter_table("pithos_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pithos_versions_container_id"), ["container_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pithos_versions_object_id"), ["object_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("pithos_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pithos_versions_object_id"))
        batch_op.drop_index(batch_op.f("ix_pithos_versions_container_id"))

    op.drop_table("pithos_versions")
    with op.batch_alter_table("pithos_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pithos_objects_uuid"))
        batch_op.drop_index(batch_op.f("ix_pithos_objects_shared"))
        batch_op.drop_index(batch_op.f("ix_pithos_objects_public_token"))
        batch_op.drop_index(batch_op.f("ix_pithos_objects_container_id"))

    op.drop_table("pithos_objects")
    with op.batch_alter_table("pithos_containers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pithos_containers_account"))

    op.drop_table("pithos_containers")
    op.drop_table("pithos_accounts")
