"""The ledger of issued documents, append-only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Triggers refuse UPDATE and DELETE on ledger_entries (and TRUNCATE on
PostgreSQL), so a correction is a new entry, never an edit. They do not stop
someone who drops them: the hash chain and a kept head catch that.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from imager.store.append_only import triggers

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSED = "le registre des documents est en ajout seul / ledger_entries is append-only"


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("doc_id", sa.String(length=128), nullable=False),
        sa.Column("json_sha256", sa.String(length=64), nullable=False),
        sa.Column("pdf_sha256", sa.String(length=64), nullable=True),
        sa.Column("signer", sa.String(length=80), nullable=False),
        sa.Column("prev", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger_entries"),
        sa.UniqueConstraint("doc_id", name="uq_ledger_entries_doc_id"),
    )
    for statement in triggers("ledger_entries", op.get_bind().dialect.name, REFUSED):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("ledger_entries")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_entries_append_only()")
