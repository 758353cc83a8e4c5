"""Alembic environment of the registry, configured from Python (no alembic.ini).

`imager.store.db.Registry.upgrade` passes an open connection in
``config.attributes["connection"]``; otherwise the ``sqlalchemy.url`` main
option is used (see `imager.store.db.alembic_config`). SQLite gets batch mode
so that future ALTERs are rendered as table copies. Another role's schema (the
portal's: imager.store.db.Schema) comes as ``config.attributes["target_metadata"]``
and ``["version_table"]``, its versions in the ``version_locations`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from imager.store.models import Base

config = context.config
target_metadata = config.attributes.get("target_metadata", Base.metadata)
version_table = config.attributes.get("version_table", "alembic_version")


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, compare_type=True,
                      literal_binds=True, dialect_opts={"paramstyle": "named"},
                      version_table=version_table)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite",
                      version_table=version_table)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on sqlalchemy.url."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use imager.store.db")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
