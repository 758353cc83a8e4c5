"""SQLAlchemy 2 models of the registry.

Portable types only (SQLite by default, PostgreSQL by URL): String, Text, JSON,
DateTime(timezone=True). Text is UTF-8 throughout.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DONOR_KINDS = ("person", "town_hall", "company", "association")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Donor(Base):
    __tablename__ = "donors"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), index=True)
    contact_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(Text)
    siret: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]
    donations: Mapped[list[Donation]] = relationship(back_populates="donor")


class Donation(Base):
    __tablename__ = "donations"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id"), index=True)
    received_on: Mapped[date] = mapped_column(Date)
    intake_site: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    donor: Mapped[Donor] = relationship(back_populates="donations")


class Technician(Base):
    __tablename__ = "technicians"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    habilitation_level: Mapped[str | None] = mapped_column(String(50))
    habilitation_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


class Machine(Base):
    __tablename__ = "machines"
    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int | None] = mapped_column(ForeignKey("donations.id"), index=True)
    vendor: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(200), index=True)
    asset_tag: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    # Where it is between intake and hand-over (imager.registry.lifecycle).
    state: Mapped[str] = mapped_column(String(20), default="received", index=True)
    uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    identity: Mapped[str | None] = mapped_column(String(300), unique=True, index=True)
    inventory: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # triage, to confirm
    orientation: Mapped[str | None] = mapped_column(String(20))     # confirmed by a person
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    last_seen_at: Mapped[datetime | None]
    donation: Mapped[Donation | None] = relationship()


class Drive(Base):
    __tablename__ = "drives"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(300), unique=True)
    model: Mapped[str | None] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(200), index=True)
    wwn: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    transport: Mapped[str | None] = mapped_column(String(20))
    rotational: Mapped[bool] = mapped_column(Boolean, default=False)
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machines.id"), index=True)
    donation_id: Mapped[int | None] = mapped_column(ForeignKey("donations.id"), index=True)
    last_path: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    # Where it is between intake and hand-over (imager.registry.lifecycle); whether
    # it is plugged in is `present`, not a state.
    state: Mapped[str] = mapped_column(String(20), default="inventoried", index=True)
    present: Mapped[bool] = mapped_column(Boolean, default=False)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    last_seen_at: Mapped[datetime | None]
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # last plan its agent proposed
    donation: Mapped[Donation | None] = relationship()


class Job(Base):
    """A long operation on one drive (erase today; image/customise later)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    drive_id: Mapped[int] = mapped_column(ForeignKey("drives.id"), index=True)
    device_path: Mapped[str] = mapped_column(String(200))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    donation_id: Mapped[int | None] = mapped_column(ForeignKey("donations.id"), index=True)
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("technicians.id"))
    owner_host: Mapped[str | None] = mapped_column(String(200))
    owner_boot_id: Mapped[str | None] = mapped_column(String(64))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_started: Mapped[float | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    drive: Mapped[Drive] = relationship()
    donation: Mapped[Donation | None] = relationship()
    technician: Mapped[Technician | None] = relationship()
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.seq", cascade="all, delete-orphan"
    )


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    job: Mapped[Job] = relationship(back_populates="events")


class ItemEvent(Base):
    """One step in the life of a drive or machine: who, when, why, which job.

    A move has from_state != to_state; an event without a move (plugged in,
    unplugged, interrupted, attached to a donation) keeps the state."""

    __tablename__ = "item_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    drive_id: Mapped[int | None] = mapped_column(ForeignKey("drives.id"), index=True)
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machines.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Agent(Base):
    """A process that runs where the drives are (a dock bench, a booted laptop),
    known by its own public key, enrolled one at a time."""

    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))           # what it says; a technician
    kind: Mapped[str] = mapped_column(String(20))            # may rename it. dock | machine
    host: Mapped[str] = mapped_column(String(200))           # its machine id (as it says)
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)  # before keys
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    public_key: Mapped[str | None] = mapped_column(String(64))     # Ed25519, raw, hex
    key_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(20), default="active", index=True)
    enrolled_by: Mapped[str | None] = mapped_column(String(300))   # how, and by whom
    enrolled_at: Mapped[datetime | None]
    pairing_sha256: Mapped[str | None] = mapped_column(String(64))  # a pending agent's code
    pairing_expires_at: Mapped[datetime | None]
    pairing_failures: Mapped[int] = mapped_column(default=0)      # wrong codes typed
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    # station (its own dock), network (a boot token); usb, installed: as it declared
    boot: Mapped[str | None] = mapped_column(String(20))


class BootToken(Base):
    """A single-use enrolment token the boot service puts on a laptop's kernel
    command line: valid minutes, bound to the laptop's MAC address and serial."""

    __tablename__ = "boot_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str] = mapped_column(String(17))
    serial: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))


class AgentEvent(Base):
    """An event an agent sent, kept by its id so a resent one is applied once."""

    __tablename__ = "agent_events"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
    received_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)
    outcome: Mapped[str] = mapped_column(String(20))          # applied | refused
    detail: Mapped[str | None] = mapped_column(Text)


class LedgerEntry(Base):
    """One issued document in the hash-chained ledger (imager.certify.ledger).

    Append-only: triggers created by migration 0002 refuse UPDATE and DELETE.
    """

    __tablename__ = "ledger_entries"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC text, exactly as hashed
    kind: Mapped[str] = mapped_column(String(40))
    doc_id: Mapped[str] = mapped_column(String(128), unique=True)
    json_sha256: Mapped[str] = mapped_column(String(64))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    signer: Mapped[str] = mapped_column(String(80))
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Document(Base):
    """An issued document (certificate, non-erasure or destruction record, donation
    certificate): its files are <data dir>/documents/<id>.json|.pdf|.csv.

    `line` is what a donation certificate says of this drive's document."""

    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    drive_id: Mapped[int | None] = mapped_column(ForeignKey("drives.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    donation_id: Mapped[int | None] = mapped_column(ForeignKey("donations.id"), index=True)
    issued_at: Mapped[datetime]
    json_sha256: Mapped[str] = mapped_column(String(64))
    line: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Deployment(Base):
    """One OS image written to one drive, and what its read-back proved.

    `ok` is true only when every mapped range was written, fsynced and read
    back as the bmap says (or sampled, as `verify` says). `erasure_job_id` is
    the erase job that cleaned the drive first (NULL: deployed without an
    erasure on record, lab use only)."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(primary_key=True)
    drive_id: Mapped[int] = mapped_column(ForeignKey("drives.id"), index=True)
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machines.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    erasure_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    image_name: Mapped[str] = mapped_column(String(100))
    image_version: Mapped[str] = mapped_column(String(50))
    image_sha256: Mapped[str | None] = mapped_column(String(64))   # the compressed file
    image_size: Mapped[int] = mapped_column(BigInteger)
    mapped_bytes: Mapped[int] = mapped_column(BigInteger)
    verify: Mapped[str] = mapped_column(String(10))                # full | sample | none
    verified_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)    # mismatches, after-steps
    hostname: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]


class User(Base):
    """A person who signs in to the station's web pages: a technician, a supervisor
    (validates, manages habilitations) or a coordinator (users, agents, profile)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))                  # technician, supervisor...
    level: Mapped[int] = mapped_column(default=1)                  # habilitation, 1 to 3
    password_hash: Mapped[str] = mapped_column(Text)               # argon2id
    pin_hash: Mapped[str | None] = mapped_column(Text)             # the bench tablet's PIN
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("technicians.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)          # since the last success
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))


class WebSession(Base):
    """A signed-in browser (server-side: the cookie holds a random token whose hash is
    the key). On a shared bench tablet `acting_id` is the technician who switched in
    with a PIN; `user_id` signed the tablet in."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    acting_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class WebAction(Base):
    """Who did what on the web pages that is not a drive's or a machine's history
    (those are item events): accounts, levels, agents."""

    __tablename__ = "web_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))       # the person's name (login)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SetupLink(Base):
    """The one-time link, printed on the console at first start, that creates the
    first coordinator."""

    __tablename__ = "setup_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]



class BootSighting(Base):
    """A laptop the boot service saw asking to boot from the network, by its MAC
    address: how far its boot went (imager.boot.watch) and, when it stopped
    somewhere a known cause stops it (a Secure Boot refusal above all), which."""

    __tablename__ = "boot_sightings"
    id: Mapped[int] = mapped_column(primary_key=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    address: Mapped[str | None] = mapped_column(String(45))
    serial: Mapped[str | None] = mapped_column(String(200))
    firmware: Mapped[str | None] = mapped_column(String(10))      # uefi | bios
    stage: Mapped[str] = mapped_column(String(20))
    stage_at: Mapped[datetime]
    first_at: Mapped[datetime]
    loaders: Mapped[int] = mapped_column(Integer, default=0)      # first loaders sent
    decision: Mapped[str | None] = mapped_column(String(10))      # live | menu | local
    problem: Mapped[str | None] = mapped_column(String(30))
    problem_at: Mapped[datetime | None]
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machines.id"))
    updated_at: Mapped[datetime] = mapped_column(index=True)
