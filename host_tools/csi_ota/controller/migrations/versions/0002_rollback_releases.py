"""signed rollback releases keep the version they roll back to

Revision ID: 0002_rollback_releases
Revises: 0001_initial
Create Date: 2026-11-28 19:40:00

Before: releases were unique on (project, version), so the rollout engine
stored a rollback release as ``<version>+rollback.<sequence>``. After: one
forward release per (project, version) (a partial unique index over rows with
``rollback`` false) and any number of rollback releases of a version, unique
by sequence. Existing rollback rows get their plain version back.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_rollback_releases"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

ROLLBACK_SUFFIX = "+rollback."
RELEASES = sa.table(
    "releases",
    sa.column("id", sa.Integer),
    sa.column("version", sa.String),
    sa.column("sequence", sa.BigInteger),
    sa.column("rollback", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_constraint("uq_releases_project_version", type_="unique")
        batch.create_unique_constraint(
            "uq_releases_project_version_sequence", ["project", "version", "sequence"]
        )
    op.create_index(
        "uq_releases_project_version_forward",
        "releases",
        ["project", "version"],
        unique=True,
        sqlite_where=sa.text('NOT "rollback"'),
        postgresql_where=sa.text('NOT "rollback"'),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(RELEASES.c.id, RELEASES.c.version).where(RELEASES.c.version.contains(ROLLBACK_SUFFIX))
    ).all()
    for release_id, version in rows:
        connection.execute(
            RELEASES.update()
            .where(RELEASES.c.id == release_id)
            .values(version=version.split(ROLLBACK_SUFFIX, 1)[0])
        )


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(RELEASES.c.id, RELEASES.c.version, RELEASES.c.sequence).where(RELEASES.c.rollback.is_(True))
    ).all()
    for release_id, version, sequence in rows:
        connection.execute(
            RELEASES.update()
            .where(RELEASES.c.id == release_id)
            .values(version=f"{version}{ROLLBACK_SUFFIX}{sequence}")
        )
    op.drop_index("uq_releases_project_version_forward", table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.drop_constraint("uq_releases_project_version_sequence", type_="unique")
        batch.create_unique_constraint("uq_releases_project_version", ["project", "version"])
