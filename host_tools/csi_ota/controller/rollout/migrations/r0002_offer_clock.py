"""health clock from take-up, device intervals, engine holds, controller intake stalls

Revision ID: r0002_offer_clock
Revises: r0001_rollout_tables

devices: the intervals a device reports (check_interval_s, heartbeat_interval_s)
and when it took its current offer (offer_release_id, offer_taken_at);
rollout_devices.taken_real; rollouts.hold_reason; rollout_intake_stalls.
"""

import sqlalchemy as sa
from alembic import op

revision = "r0002_offer_clock"
down_revision = "r0001_rollout_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("check_interval_s", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("heartbeat_interval_s", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("offer_release_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("offer_taken_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("rollout_devices") as batch:
        batch.add_column(sa.Column("taken_real", sa.DateTime(), nullable=True))
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("hold_reason", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "rollout_intake_stalls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("process", sa.String(length=128), nullable=False),
        sa.Column("start_real", sa.DateTime(), nullable=False),
        sa.Column("end_real", sa.DateTime(), nullable=False),
        sa.Column("lag_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rollout_intake_stalls_start_real", "rollout_intake_stalls", ["start_real"])
    op.create_index("ix_rollout_intake_stalls_end_real", "rollout_intake_stalls", ["end_real"])


def downgrade() -> None:
    op.drop_index("ix_rollout_intake_stalls_end_real", table_name="rollout_intake_stalls")
    op.drop_index("ix_rollout_intake_stalls_start_real", table_name="rollout_intake_stalls")
    op.drop_table("rollout_intake_stalls")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("hold_reason")
    with op.batch_alter_table("rollout_devices") as batch:
        batch.drop_column("taken_real")
    with op.batch_alter_table("devices") as batch:
        for name in ("offer_taken_at", "offer_release_id", "heartbeat_interval_s", "check_interval_s"):
            batch.drop_column(name)
