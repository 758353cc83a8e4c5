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

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSED = "le registre des documents est en ajout seul / ledger_entries is append-only"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER ledger_entries_no_{op_name.lower()} BEFORE {op_name} ON ledger_entries
    BEGIN SELECT RAISE(ABORT, '{REFUSED}: {op_name} refused'); END"""
    for op_name in ("UPDATE", "DELETE")
]

# No '%' anywhere: the text goes through the driver's paramstyle.
POSTGRESQL_TRIGGERS = [
    f"""CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = '{REFUSED}: ' || TG_OP || ' refused';
    END $$""",
    """CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()""",
    """CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()""",
]


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
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        statements = SQLITE_TRIGGERS
    elif dialect == "postgresql":
        statements = POSTGRESQL_TRIGGERS
    else:
        raise RuntimeError(f"no append-only triggers for the {dialect} database")
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("ledger_entries")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_entries_append_only()")
