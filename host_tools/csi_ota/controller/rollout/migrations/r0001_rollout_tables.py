"""rollout engine tables

Revision ID: r0001_rollout_tables
Revises: (none; a branch of its own that depends on 0001_initial)
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001_rollout_tables"
down_revision = None
branch_labels = ("rollout",)
depends_on = "0001_initial"


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("previous_release_id", sa.Integer(), nullable=True),
        sa.Column("rollback_release_id", sa.Integer(), nullable=True),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("halt_reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"]),
        sa.ForeignKeyConstraint(["previous_release_id"], ["releases.id"]),
        sa.ForeignKeyConstraint(["rollback_release_id"], ["releases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollouts_state", "rollouts", ["state"], unique=False)
    op.create_table(
        "rollout_stages",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("soak_s", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("opened_vt", sa.DateTime(), nullable=True),
        sa.Column("soak_started_vt", sa.DateTime(), nullable=True),
        sa.Column("passed_vt", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "index"),
    )
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=31), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.String(length=32), nullable=True),
        sa.Column("prior_assigned_release_id", sa.Integer(), nullable=True),
        sa.Column("offered_vt", sa.DateTime(), nullable=True),
        sa.Column("offered_real", sa.DateTime(), nullable=True),
        sa.Column("first_offered_vt", sa.DateTime(), nullable=True),
        sa.Column("installed_real", sa.DateTime(), nullable=True),
        sa.Column("downloaded_real", sa.DateTime(), nullable=True),
        sa.Column("decided_vt", sa.DateTime(), nullable=True),
        sa.Column("decided_real", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "device_id"),
    )
    op.create_index(
        "ix_rollout_devices_rollout_state", "rollout_devices", ["rollout_id", "state"], unique=False
    )
    op.create_table(
        "rollout_memberships",
        sa.Column("device_id", sa.String(length=31), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_index("ix_rollout_memberships_rollout_id", "rollout_memberships", ["rollout_id"], unique=False)
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("at_real", sa.DateTime(), nullable=False),
        sa.Column("at_vt", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"], unique=False)
    op.create_table(
        "rollout_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("sent", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollout_alerts_rollout_id", "rollout_alerts", ["rollout_id"], unique=False)
    op.create_index("ix_rollout_alerts_state", "rollout_alerts", ["state"], unique=False)
    op.create_table(
        "rollout_engine_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_real", sa.DateTime(), nullable=False),
        sa.Column("acquired_real", sa.DateTime(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    for table in (
        "rollout_engine_lease",
        "rollout_alerts",
        "rollout_events",
        "rollout_memberships",
        "rollout_devices",
        "rollout_stages",
        "rollouts",
    ):
        op.drop_table(table)
