"""The portal: stations, their ledgers (append-only), documents, donations, drives,
and the log of pushes.

Revision ID: p0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from imager.store.append_only import triggers

revision: str = "p0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSED = ("les registres des stations sont en ajout seul / portal_ledger_entries is "
           "append-only")


def _station(table: str) -> sa.Column[int]:
    return sa.Column("station_id", sa.Integer(), sa.ForeignKey(
        "portal_stations.id", name=f"fk_{table}_station_id_portal_stations"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "portal_stations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("certificates", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_push_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("head_signed", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_portal_stations"),
        sa.UniqueConstraint("key", name="uq_portal_stations_key"),
    )
    op.create_table(
        "portal_ledger_entries",
        _station("portal_ledger_entries"),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("doc_id", sa.String(128), nullable=False),
        sa.Column("json_sha256", sa.String(64), nullable=False),
        sa.Column("pdf_sha256", sa.String(64), nullable=True),
        sa.Column("signer", sa.String(80), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("station_id", "seq", name="pk_portal_ledger_entries"),
        sa.UniqueConstraint("station_id", "doc_id",
                            name="uq_portal_ledger_entries_station_id"),
    )
    op.create_index("ix_portal_ledger_entries_doc_id", "portal_ledger_entries", ["doc_id"])
    op.create_table(
        "portal_documents",
        _station("portal_documents"),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("issued_at", sa.String(40), nullable=False),
        sa.Column("json", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("csv", sa.LargeBinary(), nullable=True),
        sa.Column("public", sa.JSON(), nullable=False),
        sa.Column("donation", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("station_id", "id", name="pk_portal_documents"),
    )
    op.create_table(
        "portal_donations",
        sa.Column("id", sa.Integer(), primary_key=True),
        _station("portal_donations"),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("donor_ref", sa.String(64), nullable=False),
        sa.Column("donor_kind", sa.String(20), nullable=False),
        sa.Column("donor_name", sa.String(200), nullable=True),
        sa.Column("donor_siret", sa.String(20), nullable=True),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("intake_site", sa.String(200), nullable=True),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_donations"),
        sa.UniqueConstraint("station_id", "reference", name="uq_portal_donations_station_id"),
    )
    op.create_index("ix_portal_donations_station_id", "portal_donations", ["station_id"])
    op.create_index("ix_portal_donations_donor_siret", "portal_donations", ["donor_siret"])
    op.create_table(
        "portal_drives",
        sa.Column("id", sa.Integer(), primary_key=True),
        _station("portal_drives"),
        sa.Column("donation_id", sa.Integer(), sa.ForeignKey(
            "portal_donations.id", name="fk_portal_drives_donation_id_portal_donations"),
            nullable=False),
        sa.Column("identity", sa.String(300), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("serial", sa.String(200), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_drives"),
        sa.UniqueConstraint("station_id", "identity", name="uq_portal_drives_station_id"),
    )
    op.create_index("ix_portal_drives_donation_id", "portal_drives", ["donation_id"])
    op.create_table(
        "portal_pushes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("station_key", sa.String(80), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("donations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_pushes"),
    )
    op.create_index("ix_portal_pushes_station_key", "portal_pushes", ["station_key"])
    for statement in triggers("portal_ledger_entries", op.get_bind().dialect.name, REFUSED):
        op.execute(statement)


def downgrade() -> None:
    for table in ("portal_pushes", "portal_drives", "portal_donations", "portal_documents",
                  "portal_ledger_entries", "portal_stations"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION portal_ledger_entries_append_only()")
