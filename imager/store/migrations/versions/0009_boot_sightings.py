"""What the boot service saw of each laptop booting from the network: how far its
boot went and, when it stopped at a known cause (a Secure Boot refusal), which.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "boot_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.Column("serial", sa.String(length=200), nullable=True),
        sa.Column("firmware", sa.String(length=10), nullable=True),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("stage_at", WHEN, nullable=False),
        sa.Column("first_at", WHEN, nullable=False),
        sa.Column("loaders", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=True),
        sa.Column("problem", sa.String(length=30), nullable=True),
        sa.Column("problem_at", WHEN, nullable=True),
        sa.Column("machine_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["machine_id"], ["machines.id"],
                                name="fk_boot_sightings_machine_id_machines"),
        sa.PrimaryKeyConstraint("id", name="pk_boot_sightings"),
        sa.UniqueConstraint("mac", name="uq_boot_sightings_mac"),
    )
    op.create_index("ix_boot_sightings_updated_at", "boot_sightings", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_boot_sightings_updated_at", table_name="boot_sightings")
    op.drop_table("boot_sightings")
