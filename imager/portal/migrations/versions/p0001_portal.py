"""The portal: stations, their ledgers (append-only), documents, donations, drives,
and the log of pushes.

Revision ID: p0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from imager.store.append_only import triggers

revision: str = "p0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSED = ("les registres des stations sont en ajout seul / portal_ledger_entries is "
           "append-only")


TYPES: dict[str, Callable[[], Any]] = {
    "int": sa.Integer, "text": sa.Text, "bin": sa.LargeBinary, "json": sa.JSON,
    "date": sa.Date, "time": lambda: sa.DateTime(timezone=True)}


def _columns(spec: str) -> list[sa.Column[Any]]:
    """Columns from words "name:type": int, text, bin, json, date, time (aware), s<N>
    (String(N)); a trailing "?" makes the column nullable."""
    out = []
    for word in spec.split():
        name, kind = word.split(":")
        made = sa.String(int(kind.strip("s?"))) if kind.startswith("s") \
            else TYPES[kind.rstrip("?")]()
        out.append(sa.Column(name, made, nullable=kind.endswith("?"),
                             autoincrement=False if name == "seq" else "auto"))
    return out


def _station(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["station_id"], ["portal_stations.id"],
                                   name=f"fk_{table}_station_id_portal_stations")


def upgrade() -> None:
    op.create_table(
        "portal_stations",
        *_columns("id:int key:s80 name:s300 certificates:text first_seen_at:time "
                  "last_push_at:time? head_seq:int head_hash:s64 head_signed:text?"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_stations"),
        sa.UniqueConstraint("key", name="uq_portal_stations_key"))
    op.create_table(
        "portal_ledger_entries",
        *_columns("station_id:int seq:int at:s40 kind:s40 doc_id:s128 json_sha256:s64 "
                  "pdf_sha256:s64? signer:s80 prev:s64 hash:s64"),
        _station("portal_ledger_entries"),
        sa.PrimaryKeyConstraint("station_id", "seq", name="pk_portal_ledger_entries"),
        sa.UniqueConstraint("station_id", "doc_id", name="uq_portal_ledger_entries_station_id"))
    op.create_index("ix_portal_ledger_entries_doc_id", "portal_ledger_entries", ["doc_id"])
    op.create_table(
        "portal_documents",
        *_columns("station_id:int id:s128 kind:s40 issued_at:s40 json:text pdf:bin? csv:bin? "
                  "public:json donation:s64? received_at:time"),
        _station("portal_documents"),
        sa.PrimaryKeyConstraint("station_id", "id", name="pk_portal_documents"))
    op.create_table(
        "portal_donations",
        *_columns("id:int station_id:int reference:s64 donor_ref:s64 donor_kind:s20 "
                  "donor_name:s200? donor_siret:s20? received_on:date intake_site:s200? "
                  "documents:json digest:s64 updated_at:time"),
        _station("portal_donations"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_donations"),
        sa.UniqueConstraint("station_id", "reference", name="uq_portal_donations_station_id"))
    op.create_index("ix_portal_donations_station_id", "portal_donations", ["station_id"])
    op.create_index("ix_portal_donations_donor_siret", "portal_donations", ["donor_siret"])
    op.create_table(
        "portal_drives",
        *_columns("id:int station_id:int donation_id:int identity:s300 model:s200? "
                  "serial:s200? state:s20 documents:json updated_at:time"),
        _station("portal_drives"),
        sa.ForeignKeyConstraint(["donation_id"], ["portal_donations.id"],
                                name="fk_portal_drives_donation_id_portal_donations"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_drives"),
        sa.UniqueConstraint("station_id", "identity", name="uq_portal_drives_station_id"))
    op.create_index("ix_portal_drives_donation_id", "portal_drives", ["donation_id"])
    op.create_table(
        "portal_pushes",
        *_columns("id:int at:time station_key:s80? address:s64? outcome:s20 reason:s40? "
                  "detail:text? entries:int documents:int donations:int"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_pushes"))
    op.create_index("ix_portal_pushes_station_key", "portal_pushes", ["station_key"])
    for statement in triggers("portal_ledger_entries", op.get_bind().dialect.name, REFUSED):
        op.execute(statement)


def downgrade() -> None:
    for table in ("portal_pushes", "portal_drives", "portal_donations", "portal_documents",
                  "portal_ledger_entries", "portal_stations"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION portal_ledger_entries_append_only()")
