"""The laptop each drive came in (model, SMBIOS serial): donors list laptops.

Revision ID: p0004
Revises: p0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "p0004"
down_revision: str | None = "p0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_drives") as table:
        table.add_column(sa.Column("machine_model", sa.String(200), nullable=True))
        table.add_column(sa.Column("machine_serial", sa.String(200), nullable=True))
    # Drives already stored get their laptop on the stations' next push: the two
    # new fields change every donation state's digest, so each is sent again.


def downgrade() -> None:
    with op.batch_alter_table("portal_drives") as table:
        table.drop_column("machine_serial")
        table.drop_column("machine_model")
