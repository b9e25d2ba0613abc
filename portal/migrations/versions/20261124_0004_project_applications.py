"""project applications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 19:13:53.848535
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import snf.common.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("applicant", snf.common.db.UUIDString(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("is_modification", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("owner", snf.common.db.UUIDString(length=36), nullable=True),
        sa.Column("homepage", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("comments", sa.Text(), nullable=True),
        sa.Column("start_date", snf.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_date", snf.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("join_policy", sa.String(length=16), nullable=True),
        sa.Column("leave_policy", sa.String(length=16), nullable=True),
        sa.Column("max_members", sa.BigInteger(), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=True),
        sa.Column("created_at", snf.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", snf.common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", snf.common.db.UUIDString(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'approved', 'replaced', 'denied', 'dismissed', 'cancelled')",
            name=op.f("ck_project_applications_state"),
        ),
        sa.ForeignKeyConstraint(
            ["applicant"],
            ["users.uuid"],
            name=op.f("fk_project_applications_applicant_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["quota_projects.id"],
            name=op.f("fk_project_applications_project_id_quota_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_applications")),
    )
    with op.batch_alter_table("project_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_project_applications_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_project_applications_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("project_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_applications_state"))
        batch_op.drop_index(batch_op.f("ix_project_applications_project_id"))

    op.drop_table("project_applications")
