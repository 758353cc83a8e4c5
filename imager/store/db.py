"""The registry database: engine, sessions, migrations, UTC datetimes.

SQLite (the default, one file in the data dir) and PostgreSQL (by URL) run the
same code. SQLite is tuned for several writers (threads and processes updating
job progress at the same time): WAL journal, a 30 s busy timeout, foreign keys
enforced, and up-front write locking: a `Registry.session()` starts with
``BEGIN IMMEDIATE``, so two read-then-write transactions wait for each other
instead of failing with "database is locked". Consequence: on SQLite a
session holds the write lock from its first statement to its end, so keep
sessions short, never open a second session while one is open in the same
thread (it would wait for the busy timeout, then fail), and use
``session(readonly=True)`` (a plain deferred ``BEGIN``, no write lock) for
pure reads such as listings.

The portal (imager.portal) keeps its own tables in its own database with the same
code: a `Registry` subclass names its `Schema` (metadata, migrations, version table).

Datetimes: every ``DateTime(timezone=True)`` attribute of an ORM object is
timezone-aware UTC, on both backends. SQLite stores no offset, so values are
converted to UTC before they are written and marked UTC when they are loaded
(ORM ``load``/``refresh`` events). PostgreSQL sessions run with
``TimeZone=UTC``. Core queries that select datetime columns directly (not
ORM objects) should pass the values through :func:`as_utc`.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapper, Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from imager.errors import RegistryError
from imager.settings import Settings
from imager.store.models import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works: it only has to be the same for every imager process.
PG_MIGRATION_LOCK = 0x1_3A6E_5E11
# Execution option marking the read-only engine (deferred BEGIN on SQLite).
READONLY_OPTION = "imager_readonly"


# --------------------------------------------------------------------------
# Datetimes


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (use it for created_at etc.)."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """`value` as an aware UTC datetime; a naive value is taken to be UTC.

    ORM objects loaded through a Registry are already converted; use this for
    datetimes read with Core queries (``select(Job.created_at)``).
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@cache
def _aware_datetime_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    """Attribute names of the mapper's DateTime(timezone=True) columns."""
    keys = []
    for prop in mapper.column_attrs:
        column_type = prop.columns[0].type
        if isinstance(column_type, DateTime) and column_type.timezone:
            keys.append(prop.key)
    return tuple(keys)


def _mark_loaded_utc(target: Any, keys: Any = None) -> None:
    """Make the loaded datetimes of `target` aware UTC, without dirtying it."""
    state_dict = target.__dict__
    for key in _aware_datetime_keys(type(target).__mapper__):
        if keys is not None and key not in keys:
            continue
        value = state_dict.get(key)
        if isinstance(value, datetime):
            fixed = as_utc(value)
            if fixed is not value:
                set_committed_value(target, key, fixed)


def _on_load(target: Any, _context: Any) -> None:
    _mark_loaded_utc(target)


def _on_refresh(target: Any, _context: Any, attrs: Any) -> None:
    _mark_loaded_utc(target, attrs)


def _to_utc_before_write(_mapper: Mapper[Any], _conn: Connection, target: Any) -> None:
    """Convert the datetimes about to be written to UTC (SQLite keeps no offset)."""
    for key in _aware_datetime_keys(type(target).__mapper__):
        value = target.__dict__.get(key)
        if isinstance(value, datetime) and value.tzinfo is not UTC:
            setattr(target, key, as_utc(value))


def install_datetime_events(base: type[DeclarativeBase]) -> None:
    """Register the UTC conversions once for every model of `base` (the registry's
    Base here; the portal's for its own models)."""
    if event.contains(base, "load", _on_load):
        return
    event.listen(base, "load", _on_load, propagate=True)
    event.listen(base, "refresh", _on_refresh, propagate=True)
    event.listen(base, "before_insert", _to_utc_before_write, propagate=True)
    event.listen(base, "before_update", _to_utc_before_write, propagate=True)


install_datetime_events(Base)


# --------------------------------------------------------------------------
# Engine set-up


def safe_url(url: str | URL) -> str:
    """The URL as text with the password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of sqlite3.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not _is_memory(dbapi_connection):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _is_memory(dbapi_connection: Any) -> bool:
    cursor = dbapi_connection.cursor()
    try:
        rows = cursor.execute("PRAGMA database_list").fetchall()
    finally:
        cursor.close()
    return any(row[1] == "main" and not row[2] for row in rows)


def _sqlite_on_begin(conn: Connection) -> None:
    # Take the write lock up front: a deferred transaction that reads, then
    # writes after another process committed, fails at once with SQLITE_BUSY
    # (the busy timeout cannot help it). IMMEDIATE waits for the lock instead.
    if conn.get_execution_options().get(READONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgresql_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
        if backend == "postgresql":
            event.listen(engine, "connect", _postgresql_on_connect)
    return engine


# --------------------------------------------------------------------------
# Migrations


@dataclass(frozen=True)
class Schema:
    """The tables of one database and their migrations: the registry's (REGISTRY), or
    another role's (the portal's) run by the same environment (migrations/env.py)."""

    metadata: MetaData
    versions: Path | None = None           # None: the registry's, migrations/versions
    version_table: str = "alembic_version"
    lock: int = PG_MIGRATION_LOCK          # the advisory lock two starting servers share


REGISTRY = Schema(Base.metadata)


def alembic_config(url: str | None = None, *, schema: Schema = REGISTRY) -> Config:
    """An Alembic Config for the packaged migrations of `schema` (no alembic.ini needed).

    To write a new migration during development::

        from alembic import command
        command.revision(alembic_config("sqlite:////tmp/dev.sqlite3"),
                         message="add x", autogenerate=True)

    after upgrading that database to head.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if schema.versions is not None:
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(schema.versions))
    config.attributes["target_metadata"] = schema.metadata
    config.attributes["version_table"] = schema.version_table
    if url is not None:
        config.set_main_option("sqlalchemy.url", str(url).replace("%", "%%"))
    return config


def _backend(url: str) -> str:
    """The backend name of `url` ("sqlite", "postgresql"), "" when unparsable."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        return ""


def _fix_for(url: str, exc: BaseException) -> str:
    """How to fix a failure to open `url`, French first."""
    backend = _backend(url)
    if isinstance(exc, ArgumentError) and not backend:
        return (
            "corrigez l'URL, par exemple postgresql+psycopg://user:pass@host/imager ou "
            "sqlite:////var/lib/imager/registry.sqlite3 / fix the URL, e.g. "
            "postgresql+psycopg://user:pass@host/imager or "
            "sqlite:////var/lib/imager/registry.sqlite3"
        )
    if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
        return (
            "le registre a été créé par une version plus récente d'imager : mettez imager "
            "à jour / the registry was made by a newer imager: upgrade imager"
        )
    if isinstance(exc, CommandError):
        return (
            "les migrations d'imager sont introuvables ou abîmées : réinstallez imager / "
            "imager's migrations are missing or broken: reinstall imager"
        )
    if isinstance(exc, NoSuchModuleError | ImportError) and backend not in ("", "sqlite"):
        if backend != "postgresql":
            return (
                f"base « {backend} » non prise en charge : utilisez sqlite:/// ou "
                f"postgresql+psycopg:// / unsupported database '{backend}': use sqlite:/// "
                "or postgresql+psycopg://"
            )
        return (
            "installez le pilote : pip install 'imager[postgresql]' / install the driver: "
            "pip install 'imager[postgresql]'"
        )
    if backend == "sqlite":
        return (
            "vérifiez que le dossier est accessible en écriture et que le fichier est bien un "
            "registre imager, ou choisissez un autre dossier avec --data-dir / "
            "IMAGER_DATA_DIR / check the directory is writable and the file is an imager "
            "registry, or choose another directory with --data-dir / IMAGER_DATA_DIR"
        )
    return (
        "vérifiez que le serveur tourne, que la base existe et que l'utilisateur y a accès, "
        "ou corrigez --db-url / IMAGER_DB_URL / check the server is running, the database "
        "exists and the user may use it, or fix --db-url / IMAGER_DB_URL"
    )


def _registry_error(url: str, exc: BaseException) -> RegistryError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RegistryError(
        f"impossible d'ouvrir le registre {safe_url(url)} / cannot open the registry "
        f"{safe_url(url)}: {detail}. {_fix_for(url, exc)}"
    )


# --------------------------------------------------------------------------
# The registry


class Registry:
    """The registry database: an engine and short transactional sessions."""

    schema: ClassVar[Schema] = REGISTRY

    def __init__(self, url: str) -> None:
        """Connect lazily to `url` (no migration: see :meth:`open`)."""
        self.url = url
        self.engine: Engine = _create_engine(url)
        # Same pool and events; on SQLite its transactions take no write lock.
        self.readonly_engine: Engine = self.engine.execution_options(
            **{READONLY_OPTION: True}
        )
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._readonly_sessions = sessionmaker(
            bind=self.readonly_engine, expire_on_commit=False
        )

    @classmethod
    def open(cls, settings: Settings) -> Self:
        """Open the registry of `settings`, creating and migrating it to head.

        Raises RegistryError naming the URL and the fix when that fails.
        """
        return cls.open_url(settings.database_url)

    @classmethod
    def open_url(cls, url: str) -> Self:
        """Open the database at `url`, creating and migrating it to head (RegistryError
        naming the URL and the fix when that fails)."""
        registry: Self | None = None
        try:
            _prepare_sqlite_file(url)
            registry = cls(url)
            registry.upgrade()
        except (SQLAlchemyError, CommandError, OSError, ImportError) as exc:
            if registry is not None:
                registry.close()
            raise _registry_error(url, exc) from exc
        return registry

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at (None when empty)."""
        with self.readonly_engine.connect() as conn:
            return self._migration_context(conn).get_current_revision()

    def _migration_context(self, conn: Connection) -> MigrationContext:
        return MigrationContext.configure(
            conn, opts={"version_table": self.schema.version_table})

    def upgrade(self, revision: str = "head") -> None:
        """Run the migrations up to `revision` unless the database is there already."""
        config = alembic_config(schema=self.schema)
        heads = set(ScriptDirectory.from_config(config).get_heads())
        if revision == "head":
            with self.readonly_engine.connect() as conn:
                current = set(self._migration_context(conn).get_current_heads())
            if current == heads:
                return
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two stations starting at once: the second waits, then finds head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.schema.lock})
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        log.info("registry %s migrated to %s", safe_url(self.url), revision)

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: commit on success, rollback on error.

        Objects stay usable after the block (expire_on_commit=False). On
        SQLite the session holds the write lock from its first statement
        (see the module docstring); `readonly=True` takes none, for sessions
        that only read (a write in one may then fail with "database is
        locked" under contention).
        """
        factory = self._readonly_sessions if readonly else self._sessions
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({safe_url(self.url)!r})"


def _prepare_sqlite_file(url: str) -> None:
    """Create a SQLite database file owner-only (0600, whatever the umask; its
    directory 0700 when this makes it) before SQLite opens it: SQLite would make
    it 0644, and it gives the -wal and -shm files the database's mode. An
    existing file readable by others is tightened. (The rule of
    imager.host.files for the data dir; the store does not import host.)"""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
