"""Agents known by their own key: public key, state, how they were enrolled;
single-use boot tokens. Agents of before (a bearer token from the shared
enrolment token) are kept for the record, retired: they enrol again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = (
    sa.Column("public_key", sa.String(length=64), nullable=True),
    sa.Column("key_id", sa.String(length=64), nullable=True),
    sa.Column("state", sa.String(length=20), nullable=False, server_default="retired"),
    sa.Column("enrolled_by", sa.String(length=300), nullable=True),
    sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pairing_sha256", sa.String(length=64), nullable=True),
    sa.Column("pairing_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pairing_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_reason", sa.Text(), nullable=True),
)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.alter_column("token_sha256", existing_type=sa.String(length=64), nullable=True)
        for column in NEW_COLUMNS:
            batch.add_column(column)
        batch.create_unique_constraint("uq_agents_key_id", ["key_id"])
        batch.create_index("ix_agents_state", ["state"])
    with op.batch_alter_table("agents") as batch:      # new rows say their state
        batch.alter_column("state", existing_type=sa.String(length=20), server_default=None)
        batch.alter_column("pairing_failures", existing_type=sa.Integer(),
                           server_default=None)
    op.create_table(
        "boot_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("serial", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"],
                                name="fk_boot_tokens_agent_id_agents"),
        sa.PrimaryKeyConstraint("id", name="pk_boot_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_boot_tokens_token_sha256"),
    )


def downgrade() -> None:
    op.drop_table("boot_tokens")
    with op.batch_alter_table("agents") as batch:
        batch.drop_index("ix_agents_state")
        batch.drop_constraint("uq_agents_key_id", type_="unique")
        for column in NEW_COLUMNS:
            batch.drop_column(column.name)
