"""Issued documents: one row per certificate / record, with the donation line.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERS = {"drive_id": "drives", "job_id": "jobs", "donation_id": "donations"}


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        *(sa.Column(col, sa.Integer(), nullable=True) for col in REFERS),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("json_sha256", sa.String(length=64), nullable=False),
        sa.Column("line", sa.JSON(), nullable=True),
        *(sa.ForeignKeyConstraint([col], [f"{table}.id"],
                                  name=f"fk_documents_{col}_{table}")
          for col, table in REFERS.items()),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
    )
    for col in ("kind", *REFERS):
        op.create_index(f"ix_documents_{col}", "documents", [col], unique=False)


def downgrade() -> None:
    for col in ("kind", *REFERS):
        op.drop_index(f"ix_documents_{col}", table_name="documents")
    op.drop_table("documents")
