"""Deployments: which OS image went onto which drive, and what its read-back proved.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERS = {"drive_id": "drives", "machine_id": "machines", "job_id": "jobs"}


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("drive_id", sa.Integer(), nullable=False),
        sa.Column("machine_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("erasure_job_id", sa.Integer(), nullable=True),
        sa.Column("image_name", sa.String(length=100), nullable=False),
        sa.Column("image_version", sa.String(length=50), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("image_size", sa.BigInteger(), nullable=False),
        sa.Column("mapped_bytes", sa.BigInteger(), nullable=False),
        sa.Column("verify", sa.String(length=10), nullable=False),
        sa.Column("verified_bytes", sa.BigInteger(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("hostname", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.ForeignKeyConstraint([col], [f"{table}.id"], name=f"fk_deployments_{col}_{table}")
          for col, table in REFERS.items()),
        sa.ForeignKeyConstraint(["erasure_job_id"], ["jobs.id"],
                                name="fk_deployments_erasure_job_id_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    for col in REFERS:
        op.create_index(f"ix_deployments_{col}", "deployments", [col])


def downgrade() -> None:
    for col in REFERS:
        op.drop_index(f"ix_deployments_{col}", table_name="deployments")
    op.drop_table("deployments")
