"""compute and images

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 01:21:59.945197
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import snf.common.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_backends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rapi_host", sa.String(length=255), nullable=False),
        sa.Column("rapi_port", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_file", sa.String(length=4096), nullable=False),
        sa.Column("pin", sa.String(length=128), nullable=True),
        sa.Column("hypervisor", sa.String(length=16), nullable=True),
        sa.Column("drained", sa.Boolean(), nullable=False),
        sa.Column("free_memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("free_disk_mib", sa.BigInteger(), nullable=False),
        sa.Column("capacity_updated", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_backends")),
        sa.UniqueConstraint("name", name=op.f("uq_compute_backends_name")),
    )
    op.create_table(
        "compute_flavors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram", sa.Integer(), nullable=False),
        sa.Column("disk", sa.Integer(), nullable=False),
        sa.Column("disk_template", sa.String(length=64), nullable=False),
        sa.Column("allow_create", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_flavors")),
        sa.UniqueConstraint("name", name=op.f("uq_compute_flavors_name")),
        sa.UniqueConstraint(
            "vcpus",
            "ram",
            "disk",
            "disk_template",
            name=op.f("uq_compute_flavors_vcpus_ram_disk_disk_template"),
        ),
    )
    op.create_table(
        "compute_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("user_uuid", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("project", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("flavor_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(length=64), nullable=False),
        sa.Column("backend_id", sa.Integer(), nullable=True),
        sa.Column("operstate", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("action_args", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("serial", sa.BigInteger(), nullable=True),
        sa.Column("action_started", sa.Float(), nullable=True),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("key_names", sa.JSON(), nullable=False),
        sa.Column("fault", sa.JSON(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["backend_id"],
            ["compute_backends.id"],
            name=op.f("fk_compute_servers_backend_id_compute_backends"),
        ),
        sa.ForeignKeyConstraint(
            ["flavor_id"],
            ["compute_flavors.id"],
            name=op.f("fk_compute_servers_flavor_id_compute_flavors"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_servers")),
    )
    with op.batch_alter_table("compute_servers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_compute_servers_operstate"), ["operstate"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_compute_servers_user_uuid"), ["user_uuid", "deleted"], unique=False
        )

    op.create_table(
        "images",
        sa.Column("id", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("owner", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("location", sa.String(length=1400), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("map_name", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("disk_format", sa.String(length=32), nullable=False),
        sa.Column("container_format", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["pithos_versions.id"],
            name=op.f("fk_images_version_id_pithos_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_owner"), ["owner"], unique=False)

    op.create_table(
        "image_members",
        sa.Column("image_id", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("member", snf.common.db.UUIDString(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_members_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "member", name=op.f("pk_image_members")),
    )


def downgrade() -> None:
    op.drop_table("image_members")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_owner"))

    op.drop_table("images")
    with op.batch_alter_table("compute_servers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compute_servers_user_uuid"))
        batch_op.drop_index(batch_op.f("ix_compute_servers_operstate"))

    op.drop_table("compute_servers")
    op.drop_table("compute_flavors")
    op.drop_table("compute_backends")
