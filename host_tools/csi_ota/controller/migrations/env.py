"""Alembic environment for the controller's registry (run by csi_ota.controller.db.upgrade_database)."""

from __future__ import annotations

from alembic import context

from csi_ota.controller.db import make_engine
from csi_ota.controller.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("csi-ota migrations run online only")
run_migrations_online()
