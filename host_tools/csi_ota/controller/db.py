"""Database engine, sessions and migrations for the controller.

``DEVICE_REGISTRY_DB`` selects the database: a SQLAlchemy URL, or the seed's
``postgresql://user:pass@host/db`` form (driven through psycopg 3). Unset, the
registry is SQLite in WAL mode at ``<data dir>/registry.db`` — the embedded
default. PostgreSQL is for production and for several controller processes
sharing one registry.

The schema is Alembic's: :func:`upgrade_database` runs ``alembic upgrade heads``
with the migrations shipped in this package (plus the rollout engine's, when
present), which ``csi-ota serve`` does at start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from csi_ota.errors import CsiOtaError

DB_ENV_VAR = "DEVICE_REGISTRY_DB"
SQLITE_FILE_NAME = "registry.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
ROLLOUT_MIGRATIONS_DIR = Path(__file__).parent / "rollout" / "migrations"

# URL schemes users write → the driver this package ships with.
_DRIVER_FOR_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / SQLITE_FILE_NAME).resolve()}"


def normalise_database_url(url: str) -> str:
    """Returns ``url`` with the driver this package uses; raises CsiOtaError if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CsiOtaError(f"{DB_ENV_VAR}: not a database URL: {url!r}") from exc
    driver = _DRIVER_FOR_SCHEME.get(parsed.drivername)
    if driver is None:
        known = ", ".join(sorted({"sqlite", "postgresql"}))
        raise CsiOtaError(f"{DB_ENV_VAR}: unsupported database {parsed.drivername!r} (use {known})")
    if driver == "sqlite" and not parsed.database:
        raise CsiOtaError(f"{DB_ENV_VAR}: SQLite needs a file path (in-memory databases are not shared)")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def database_url_from_env(data_dir: Path, environ: dict[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    raw = environ.get(DB_ENV_VAR, "").strip()
    return normalise_database_url(raw) if raw else default_sqlite_url(data_dir)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged report survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url`` (already normalised); SQLite gets WAL, FULL sync and foreign keys."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back everything on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    locations = [str(MIGRATIONS_DIR / "versions")]
    if ROLLOUT_MIGRATIONS_DIR.is_dir():
        locations.append(str(ROLLOUT_MIGRATIONS_DIR))
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    config.attributes["database_url"] = url
    return config


def upgrade_database(url: str) -> None:
    """Runs every pending migration (``alembic upgrade heads``)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(url), "heads")
    except CsiOtaError:
        raise
    except Exception as exc:  # connection refused, permission denied, ...
        raise CsiOtaError(
            f"cannot migrate the device registry at {safe_url(url)}: {exc}", exit_code=1
        ) from exc


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
