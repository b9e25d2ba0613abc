"""volumes and snapshots

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 04:45:30.169222
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import snf.common.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_uuid", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("project", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("volume_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=True),
        sa.Column("root", sa.Boolean(), nullable=False),
        sa.Column("attached", sa.Float(), nullable=True),
        sa.Column("image_id", sa.String(length=64), nullable=True),
        sa.Column("snapshot_id", snf.common.db.UUIDString(length=36), nullable=True),
        sa.Column("source_volume_id", sa.Integer(), nullable=True),
        sa.Column("map_name", sa.String(length=200), nullable=True),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("fault", sa.JSON(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"], ["compute_servers.id"], name=op.f("fk_volumes_server_id_compute_servers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volumes_server_id"), ["server_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_volumes_user_uuid"), ["user_uuid", "deleted"], unique=False
        )

    op.create_table(
        "volume_snapshots",
        sa.Column("id", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("user_uuid", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("volume_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("frozen_map", sa.String(length=200), nullable=True),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("fault", sa.String(length=1024), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["pithos_versions.id"],
            name=op.f("fk_volume_snapshots_version_id_pithos_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name=op.f("fk_volume_snapshots_volume_id_volumes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshots")),
    )
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_snapshots_user_uuid"), ["user_uuid", "deleted"], unique=False
        )

    # Servers created before volumes existed get their root volume.
    op.execute(
        "INSERT INTO volumes (user_uuid, project, name, description, size, volume_type,"
        " status, server_id, root, attached, image_id, charges, meta, created, updated,"
        " deleted)"
        " SELECT s.user_uuid, s.project, '', '', f.disk, f.disk_template,"
        " CASE s.operstate WHEN 'ERROR' THEN 'error' WHEN 'BUILD' THEN 'creating'"
        " ELSE 'in-use' END, s.id, true, s.created, s.image_id, '{}', '{}', s.created,"
        " s.updated, false"
        " FROM compute_servers s JOIN compute_flavors f ON f.id = s.flavor_id"
        " WHERE NOT s.deleted"
    )


def downgrade() -> None:
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_user_uuid"))

    op.drop_table("volume_snapshots")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_user_uuid"))
        batch_op.drop_index(batch_op.f("ix_volumes_server_id"))

    op.drop_table("volumes")
