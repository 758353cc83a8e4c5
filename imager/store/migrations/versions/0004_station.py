"""The station service: item states and events, agents, agent events.

Drives and machines get a lifecycle state (imager.registry.lifecycle), drives a
presence flag; every step of their life is an item event. Agents register with
a token (only its SHA-256 is kept); every event an agent sends is kept by its
id so that a resent event is applied once.

Existing drives get the state their documents and jobs say.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The state a drive's newest document or job puts it in, most telling first.
BACKFILL = (
    ("destroyed", "SELECT drive_id FROM documents WHERE kind = 'destruction'"),
    ("to_destroy", "SELECT drive_id FROM documents WHERE kind = 'non-erasure'"),
    ("certified", "SELECT drive_id FROM documents WHERE kind = 'erasure'"),
    ("erased", "SELECT drive_id FROM jobs WHERE state = 'erased'"),
    ("erase_failed", "SELECT drive_id FROM jobs WHERE state IN ('failed', 'unverified')"),
    ("erasing", "SELECT drive_id FROM jobs WHERE state IN ('running', 'interrupted')"),
)


def _agents() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint("token_sha256", name="uq_agents_token_sha256"),
    )
    op.create_table(
        "agent_events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"],
                                name="fk_agent_events_agent_id_agents"),
        sa.PrimaryKeyConstraint("id", name="pk_agent_events"),
    )
    op.create_index("ix_agent_events_agent_id", "agent_events", ["agent_id"])
    op.create_index("ix_agent_events_job_id", "agent_events", ["job_id"])


def _item_events() -> None:
    refers = {"drive_id": "drives", "machine_id": "machines", "job_id": "jobs"}
    op.create_table(
        "item_events",
        sa.Column("id", sa.Integer(), nullable=False),
        *(sa.Column(col, sa.Integer(), nullable=True) for col in refers),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        *(sa.ForeignKeyConstraint([col], [f"{table}.id"], name=f"fk_item_events_{col}_{table}")
          for col, table in refers.items()),
        sa.PrimaryKeyConstraint("id", name="pk_item_events"),
    )
    for col in refers:
        op.create_index(f"ix_item_events_{col}", "item_events", [col])


def _agent_column(table: str) -> None:
    # ADD COLUMN ... REFERENCES (no table copy: SQLite accepts it for a NULL column).
    op.add_column(table, sa.Column("agent_id", sa.Integer(), sa.ForeignKey(
        "agents.id", name=f"fk_{table}_agent_id_agents"), nullable=True),
        inline_references=True)
    op.create_index(f"ix_{table}_agent_id", table, ["agent_id"])


def _columns() -> None:
    op.add_column("drives", sa.Column("state", sa.String(length=20), nullable=False,
                                      server_default="inventoried"))
    op.add_column("drives", sa.Column("present", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.add_column("drives", sa.Column("last_seen_at", sa.DateTime(timezone=True)))
    op.add_column("drives", sa.Column("plan", sa.JSON()))
    op.create_index("ix_drives_state", "drives", ["state"])
    op.add_column("machines", sa.Column("state", sa.String(length=20), nullable=False,
                                        server_default="received"))
    for name, kind in (("uuid", sa.String(length=64)), ("identity", sa.String(length=300)),
                       ("inventory", sa.JSON()), ("proposal", sa.JSON()),
                       ("orientation", sa.String(length=20)),
                       ("last_seen_at", sa.DateTime(timezone=True))):
        op.add_column("machines", sa.Column(name, kind))
    op.create_index("ix_machines_state", "machines", ["state"])
    op.create_index("ix_machines_uuid", "machines", ["uuid"])
    op.create_index("ix_machines_identity", "machines", ["identity"], unique=True)
    for table in ("drives", "machines", "jobs"):
        _agent_column(table)


def _backfill() -> None:
    done: list[str] = []
    for state, drives in BACKFILL:
        skip = "".join(f" AND id NOT IN ({q})" for q in done)
        op.execute(sa.text(f"UPDATE drives SET state = '{state}' "
                           f"WHERE id IN ({drives}){skip}"))
        done.append(drives)


def upgrade() -> None:
    _agents()
    _item_events()
    _columns()
    _backfill()


def downgrade() -> None:
    for table in ("drives", "machines", "jobs"):
        op.drop_index(f"ix_{table}_agent_id", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("agent_id")
    for ix in ("ix_machines_state", "ix_machines_uuid", "ix_machines_identity"):
        op.drop_index(ix, table_name="machines")
    for col in ("state", "uuid", "identity", "inventory", "proposal", "orientation",
                "last_seen_at"):
        op.drop_column("machines", col)
    op.drop_index("ix_drives_state", table_name="drives")
    for col in ("state", "present", "last_seen_at", "plan"):
        op.drop_column("drives", col)
    for col in ("drive_id", "machine_id", "job_id"):
        op.drop_index(f"ix_item_events_{col}", table_name="item_events")
    op.drop_table("item_events")
    op.drop_index("ix_agent_events_job_id", table_name="agent_events")
    op.drop_index("ix_agent_events_agent_id", table_name="agent_events")
    op.drop_table("agent_events")
    op.drop_table("agents")
