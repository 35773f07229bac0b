"""Alembic environment for the controller's registry (run by csi_ota.controller.db.upgrade_database).

Every pending migration runs in one transaction, on SQLite too: its pysqlite
driver normally commits DDL as it goes, so the migration engine takes over
transaction control (``BEGIN`` issued here) and a failed or killed upgrade
leaves the previous schema intact. SQLite migrations that rebuild a table
(Alembic's batch mode) run with foreign keys off — dropping the old table
must not cascade into the rows that point at it — and the transaction commits
only if ``PRAGMA foreign_key_check`` then finds nothing dangling.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import event

from csi_ota.controller.db import make_engine
from csi_ota.controller.models import Base
from csi_ota.errors import CsiOtaError

config = context.config
target_metadata = Base.metadata


def _sqlite_migration_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun explicitly (below)
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # only outside a transaction


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    engine = make_engine(url, pool_size=1)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(engine, "connect", _sqlite_migration_connect)  # after make_engine's PRAGMAs
        event.listen(engine, "begin", _sqlite_begin)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                transactional_ddl=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if dangling:
                        raise CsiOtaError(
                            f"migration left {len(dangling)} dangling foreign key(s), first {dangling[0]}; "
                            "nothing was changed",
                            exit_code=1,
                        )
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("csi-ota migrations run online only")
run_migrations_online()
