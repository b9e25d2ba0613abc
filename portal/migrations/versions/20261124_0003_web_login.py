"""web login

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 19:03:41.721003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import snf.common.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", snf.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_attempts_key"), ["key", "at"], unique=False)

    op.create_table(
        "saml_seen_assertions",
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("expires", snf.common.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saml_seen_assertions")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("verification_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "verification_expires", snf.common.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_verification_digest"), ["verification_digest"]
        )


def downgrade() -> None:

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_verification_digest"), type_="unique")
        batch_op.drop_column("verification_expires")
        batch_op.drop_column("verification_digest")
        batch_op.drop_column("session_epoch")

    op.drop_table("saml_seen_assertions")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_attempts_key"))

    op.drop_table("login_attempts")
