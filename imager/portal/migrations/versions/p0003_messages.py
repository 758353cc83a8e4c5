"""The beneficiaries' messages (imager.portal.messages).

Revision ID: p0003
Revises: p0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "p0003"
down_revision: str | None = "p0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "portal_messages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("machine", sa.String(253), nullable=False),
        sa.Column("lang", sa.String(2), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("contact", sa.String(300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("written_at", when, nullable=False),
        sa.Column("received_at", when, nullable=False),
        sa.Column("read_at", when, nullable=True),
        sa.Column("read_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_portal_messages"))
    op.create_index("ix_portal_messages_received_at", "portal_messages", ["received_at"])


def downgrade() -> None:
    op.drop_table("portal_messages")
