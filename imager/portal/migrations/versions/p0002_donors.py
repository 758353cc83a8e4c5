"""The portal: donors' and coordinators' accounts, their invitations and sessions,
the donors' own numbers of what they gave (expected versus received).

Revision ID: p0002
Revises: p0001
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from imager.portal.migrations.versions.p0001_portal import _columns

revision: str = "p0002"
down_revision: str | None = "p0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, other: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{other}.id"],
                                   name=f"fk_{table}_{column}_{other}")


def _index(table: str, column: str) -> None:
    op.create_index(f"ix_{table}_{column}", table, [column])


def upgrade() -> None:
    op.create_table(
        "portal_accounts",
        *_columns("id:int name:s200 role:s20 login:s200? password_hash:s200? sirets:json "
                  "failed_logins:int locked_until:time? created_at:time created_by:s300 "
                  "set_up_at:time?"),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_portal_accounts"),
        sa.UniqueConstraint("login", name="uq_portal_accounts_login"))
    op.create_table(
        "portal_account_donors",
        *_columns("id:int account_id:int station_id:int donor_ref:s64"),
        _fk("portal_account_donors", "account_id", "portal_accounts"),
        _fk("portal_account_donors", "station_id", "portal_stations"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_account_donors"),
        sa.UniqueConstraint("account_id", "station_id", "donor_ref",
                            name="uq_portal_account_donors_account_id"))
    _index("portal_account_donors", "account_id")
    op.create_table(
        "portal_invitations",
        *_columns("id:int account_id:int token_sha256:s64 created_at:time expires_at:time "
                  "used_at:time? created_by:s300"),
        _fk("portal_invitations", "account_id", "portal_accounts"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_invitations"),
        sa.UniqueConstraint("token_sha256", name="uq_portal_invitations_token_sha256"))
    _index("portal_invitations", "account_id")
    op.create_table(
        "portal_sessions",
        *_columns("id:s64 account_id:int csrf:s64 created_at:time last_seen_at:time "
                  "expires_at:time ended_at:time?"),
        _fk("portal_sessions", "account_id", "portal_accounts"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_sessions"))
    _index("portal_sessions", "account_id")
    op.create_table(
        "portal_expected_assets",
        *_columns("id:int donation_id:int position:int asset:s100? serial:s100? added_by:int "
                  "added_at:time"),
        _fk("portal_expected_assets", "donation_id", "portal_donations"),
        _fk("portal_expected_assets", "added_by", "portal_accounts"),
        sa.PrimaryKeyConstraint("id", name="pk_portal_expected_assets"))
    _index("portal_expected_assets", "donation_id")


def downgrade() -> None:
    for table in ("portal_expected_assets", "portal_sessions", "portal_invitations",
                  "portal_account_donors", "portal_accounts"):
        op.drop_table(table)
