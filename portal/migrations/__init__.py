"""The portal's one Alembic history (identity, quota and, later, every other domain)."""
