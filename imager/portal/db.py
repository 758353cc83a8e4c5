"""The portal's database: the store's engine, sessions and migrations (imager.store.db)
with the portal's own schema (imager.portal.models, migrations/versions here)."""

from __future__ import annotations

from pathlib import Path

from imager.portal.models import PortalBase
from imager.store.db import Registry, Schema

SCHEMA = Schema(PortalBase.metadata,
                versions=Path(__file__).resolve().parent / "migrations" / "versions",
                version_table="portal_alembic_version", lock=0x1_3A6E_90B7)


class PortalDb(Registry):
    """The portal's database (PostgreSQL in production)."""

    schema = SCHEMA
