"""The portal's tables (its own metadata and migrations, in its own database:
PostgreSQL in production; SQLite for quick tests runs the same code).

What a station pushed and the portal checked: the station (by its key, with the
certificates it presented and the signed head of its ledger the portal holds), its
ledger entries (append-only: migration p0001's triggers), its documents' files, its
donations and their drives' states. A document, a donation and a drive belong to
one station: two workshops never share a row, whatever their numbers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from imager.certify.ledger import FIELDS
from imager.store.db import install_datetime_events
from imager.store.models import NAMING

ZERO_HASH = "0" * 64


class PortalBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON,
                           datetime: DateTime(timezone=True)}


install_datetime_events(PortalBase)


class Station(PortalBase):
    """A station whose certificate chains to the network CA, known by its key."""

    __tablename__ = "portal_stations"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)    # sha256:<SPKI hash>
    name: Mapped[str] = mapped_column(String(300))              # its certificate's subject
    certificates: Mapped[str] = mapped_column(Text)             # PEM chain, last presented
    first_seen_at: Mapped[datetime]
    last_push_at: Mapped[datetime | None]
    head_seq: Mapped[int] = mapped_column(Integer, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default=ZERO_HASH)
    head_signed: Mapped[str | None] = mapped_column(Text)       # its signed ledger-head file


class LedgerEntry(PortalBase):
    """One entry of a station's ledger, exactly as the station's ledger holds it."""

    __tablename__ = "portal_ledger_entries"
    __table_args__ = (UniqueConstraint("station_id", "doc_id"),
                      Index("ix_portal_ledger_entries_doc_id", "doc_id"))
    station_id: Mapped[int] = mapped_column(ForeignKey("portal_stations.id"),
                                            primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    doc_id: Mapped[str] = mapped_column(String(128))
    json_sha256: Mapped[str] = mapped_column(String(64))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    signer: Mapped[str] = mapped_column(String(80))
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def to_dict(self) -> dict[str, Any]:
        """The entry as the station's ledger holds it (imager.certify.ledger.FIELDS)."""
        return {name: getattr(self, name) for name in FIELDS}


class Document(PortalBase):
    """The files of one document of a station's ledger: the signed JSON (its exact
    text), the PDF and a donation's CSV; `public` is what anyone may see of it
    (imager.certify.public.public_fields of the verified record)."""

    __tablename__ = "portal_documents"
    station_id: Mapped[int] = mapped_column(ForeignKey("portal_stations.id"),
                                            primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    issued_at: Mapped[str] = mapped_column(String(40))          # as the record says
    json_text: Mapped[str] = mapped_column("json", Text)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    csv: Mapped[bytes | None] = mapped_column(LargeBinary)
    public: Mapped[dict[str, Any]]
    donation: Mapped[str | None] = mapped_column(String(64))   # the reference it names
    received_at: Mapped[datetime]


class Donation(PortalBase):
    """A donation a station received, as that station last sent it."""

    __tablename__ = "portal_donations"
    __table_args__ = (UniqueConstraint("station_id", "reference"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("portal_stations.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64))
    donor_ref: Mapped[str] = mapped_column(String(64))          # the station's donor number
    donor_kind: Mapped[str] = mapped_column(String(20))
    donor_name: Mapped[str | None] = mapped_column(String(200))  # organisations only
    donor_siret: Mapped[str | None] = mapped_column(String(20), index=True)
    received_on: Mapped[date] = mapped_column(Date)
    intake_site: Mapped[str | None] = mapped_column(String(200))
    documents: Mapped[list[str]]                                # its donation certificates
    digest: Mapped[str] = mapped_column(String(64))             # of what the station sent
    updated_at: Mapped[datetime]


class Drive(PortalBase):
    """A drive of a donation and where it stands, as its station last sent it."""

    __tablename__ = "portal_drives"
    __table_args__ = (UniqueConstraint("station_id", "identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("portal_stations.id"))
    donation_id: Mapped[int] = mapped_column(ForeignKey("portal_donations.id"), index=True)
    identity: Mapped[str] = mapped_column(String(300))
    model: Mapped[str | None] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    documents: Mapped[list[str]]
    machine_model: Mapped[str | None] = mapped_column(String(200))   # the laptop it was in
    machine_serial: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime]


class PushLog(PortalBase):
    """Every push, stored or refused, and why: what coordinators look at when a
    workshop says its documents do not show."""

    __tablename__ = "portal_pushes"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    station_key: Mapped[str | None] = mapped_column(String(80), index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))            # stored | refused
    reason: Mapped[str | None] = mapped_column(String(40))      # fork, backwards, ...
    detail: Mapped[str | None] = mapped_column(Text)
    entries: Mapped[int] = mapped_column(Integer, default=0)
    documents: Mapped[int] = mapped_column(Integer, default=0)
    donations: Mapped[int] = mapped_column(Integer, default=0)


class Message(PortalBase):
    """A message a beneficiary wrote on a laptop's welcome page ("envoyer un
    message"), as the laptop sent it (imager.portal.messages): nothing of the
    request beyond it (no address). Deleted once older than the retention."""

    __tablename__ = "portal_messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # the laptop's UUID
    machine: Mapped[str] = mapped_column(String(253))             # its hostname: asset tag
    lang: Mapped[str] = mapped_column(String(2))
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    written_at: Mapped[datetime]                                   # the laptop's clock
    received_at: Mapped[datetime] = mapped_column(index=True)     # the portal's
    read_at: Mapped[datetime | None]
    read_by: Mapped[str | None] = mapped_column(String(200))


# -- donors' accounts (migration p0002) ------------------------------------------------


class Account(PortalBase):
    """Someone who signs in to the portal: a donor (a company, a town hall, an
    association) or a coordinator of the network. Made by an invitation only; the
    invited person chooses the login and the password (argon2id, imager.store.passwords).
    A donor sees the donations whose SIRET is one of `sirets`, and those its
    AccountDonor rows name."""

    __tablename__ = "portal_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))              # the organisation
    role: Mapped[str] = mapped_column(String(20))               # donor | coordinator
    login: Mapped[str | None] = mapped_column(String(200), unique=True)   # set up: chosen
    password_hash: Mapped[str | None] = mapped_column(String(200))
    sirets: Mapped[list[str]]
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(300))
    set_up_at: Mapped[datetime | None]


class AccountDonor(PortalBase):
    """A donor of one station (its donor number there) whose donations an account sees."""

    __tablename__ = "portal_account_donors"
    __table_args__ = (UniqueConstraint("account_id", "station_id", "donor_ref"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("portal_accounts.id"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("portal_stations.id"))
    donor_ref: Mapped[str] = mapped_column(String(64))


class Invitation(PortalBase):
    """A single-use, expiring link to set an account up: only its token's SHA-256 is kept."""

    __tablename__ = "portal_invitations"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("portal_accounts.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(300))


class AccountSession(PortalBase):
    """A signed-in browser: the cookie holds a token whose SHA-256 is `id`."""

    __tablename__ = "portal_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("portal_accounts.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ExpectedAsset(PortalBase):
    """One item a donor says it gave: its own asset number and/or a serial number,
    matched against the serials the stations sent (expected versus received)."""

    __tablename__ = "portal_expected_assets"
    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("portal_donations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    asset: Mapped[str | None] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100))
    added_by: Mapped[int] = mapped_column(ForeignKey("portal_accounts.id"))
    added_at: Mapped[datetime]
