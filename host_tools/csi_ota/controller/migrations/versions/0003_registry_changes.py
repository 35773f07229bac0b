"""registry_changes: what the in-memory device cache of every controller process follows

Revision ID: 0003_registry_changes
Revises: 0002_rollback_releases
Create Date: 2026-12-03 10:30:00

The triggers that fill it are not part of the migration: `csi-ota serve` (re)creates them at
every start over the columns the tables have then (csi_ota.controller.change_feed), so columns
added by later migrations (or by the rollout engine's) are followed too.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_registry_changes"
down_revision = "0002_rollback_releases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_changes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("row_key", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_registry_changes_changed_at"), "registry_changes", ["changed_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_registry_changes_changed_at"), table_name="registry_changes")
    op.drop_table("registry_changes")
