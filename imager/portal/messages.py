"""Messages from beneficiaries: the receiving end of the laptops' welcome page
("envoyer un message", imager/profile/welcome/payload/accueil_messages.py, whose
docstring is the contract), and what coordinators read of them.

A laptop posts each queued message as JSON (format FORMAT) to MESSAGES_PATH, with
its id as Idempotency-Key. Until laptops have their own identity, the portal takes
a message from anyone, so it guards the door:
- rate limits in memory (per address and for everyone: imager.web.limits.Limiter),
  answered 429 with Retry-After: the laptop keeps the message and tries later. The
  address is held in memory for the limit only; nothing of the request but the
  message is stored;
- the laptop's own size limits (a request, the text, the name, the contact): 413;
- strict validation (format, a UUID id, dates with their offset, lang fr or en, no
  control characters, no unknown field): 400, 415 or 422, which the laptop takes as
  "never": it drops the message;
- idempotent on the id: a message sent again (its answer was lost) is answered
  200 and stored once (201 the first time).
Messages older than the retention (MessagePolicy.keep_days, from their arrival)
are deleted: by the portal as it receives (at most once an hour) and by `imager
portal messages --purge`.

Coordinators read them with `recent` (the CLI today, their page once accounts land)
and mark them read with `mark_read`.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from imager.errors import ImagerError
from imager.portal.db import PortalDb
from imager.portal.models import Message
from imager.profile.welcome.payload import accueil_messages as laptop
from imager.store.db import utcnow
from imager.web.limits import Limiter

MESSAGES_PATH = "/api/v1/messages"     # what the profiles' messages.portal_url ends with
FORMAT = laptop.FORMAT
MAX_BODY = laptop.MAX_BODY_BYTES
LIMITS = {"text": laptop.MAX_TEXT_BYTES, "name": laptop.MAX_NAME_BYTES,
          "contact": laptop.MAX_CONTACT_BYTES}
MACHINE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"
YEARS = range(2000, 2200)          # a date outside is a broken clock or a forged message


class Invalid(ImagerError):
    """A message the portal will never accept: `status` (400, 413, 415, 422) tells the
    laptop to drop it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class MessagePolicy:
    """How many messages one address, and everyone together, may send per window
    (seconds), and how many days a message is kept after it arrived."""

    per_address: tuple[int, float] = (30, 600.0)
    overall: tuple[int, float] = (1000, 3600.0)
    keep_days: int = 90
    purge_every: float = 3600.0


@dataclass(frozen=True)
class Incoming:
    """A message that passed every check, as it will be stored."""

    id: str
    machine: str
    lang: str
    name: str
    contact: str
    text: str
    written_at: datetime


@dataclass(frozen=True)
class MessageView(Incoming):
    """A stored message as coordinators see it."""

    received_at: datetime
    read_at: datetime | None
    read_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in asdict(self).items()}


# --------------------------------------------------------------------------
# Checking what a laptop sent


class _Wire(BaseModel):
    """The body of accueil-message/1, field by field; no other field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["accueil-message/1"]
    id: StrictStr = Field(max_length=36)
    written_at: StrictStr = Field(max_length=40)
    sent_at: StrictStr = Field(max_length=40)
    attempt: StrictInt = Field(ge=1, le=1_000_000)
    machine: StrictStr = Field(pattern=MACHINE)
    lang: Literal["fr", "en"]
    name: StrictStr
    contact: StrictStr
    text: StrictStr


def parse(body: bytes, *, content_type: str | None, key: str | None) -> Incoming:
    """The message of a request's `body`, once its type, size and every field are
    checked; Invalid (with the status to answer) otherwise."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "application/json" or \
            params.strip().lower() not in ("", "charset=utf-8"):
        raise Invalid(415, f"type {content_type!r}: send application/json; charset=utf-8")
    if len(body) > MAX_BODY:
        raise Invalid(413, f"message trop grand / message too large: {len(body)} bytes, at "
                           f"most {MAX_BODY}")
    try:
        found = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(400, f"pas du JSON en UTF-8 / not JSON in UTF-8: {exc}") from exc
    try:
        wire = _Wire.model_validate(found)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "(body)" for e in exc.errors())
        raise Invalid(422, f"message mal formé / malformed message ({fields}): "
                           f"{exc.errors()[0]['msg']}") from exc
    if key is not None and key != wire.id:
        raise Invalid(400, f"Idempotency-Key {key!r} is not the message's id {wire.id!r}")
    _check_id(wire.id)
    _check_date("sent_at", wire.sent_at)
    texts = {"text": _text("text", wire.text, lines=True),
             "name": _text("name", wire.name), "contact": _text("contact", wire.contact)}
    if not texts["text"].strip():
        raise Invalid(422, "message vide / empty message: text")
    return Incoming(id=wire.id, machine=wire.machine, lang=wire.lang,
                    written_at=_check_date("written_at", wire.written_at), **texts)


def _check_id(value: str) -> None:
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical != value:
        raise Invalid(422, f"id {value!r}: give a UUID in its usual form "
                           "(8-4-4-4-12 lowercase hex digits)")


def _check_date(field: str, value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(422, f"{field} {value!r}: give an ISO 8601 date and time with its "
                           "offset, e.g. 2026-12-06T10:15:00+01:00") from exc
    if when.tzinfo is None or when.year not in YEARS:
        raise Invalid(422, f"{field} {value!r}: give a date between {YEARS.start} and "
                           f"{YEARS.stop - 1} with its offset, e.g. 2026-12-06T10:15:00+01:00")
    return when.astimezone(UTC)


def _text(field: str, value: str, *, lines: bool = False) -> str:
    """`value` once its size and characters are checked: no control character (line
    feeds and tabs only in the text, tabs only in the name and contact)."""
    allowed = "\n\t" if lines else "\t"
    bad = next((ch for ch in value if ch not in allowed
                and unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        raise Invalid(422, f"{field}: control character U+{ord(bad):04X} refused")
    size = len(value.encode("utf-8"))
    if size > LIMITS[field]:
        raise Invalid(413, f"{field} trop long / too long: {size} bytes, at most "
                           f"{LIMITS[field]}")
    return value


# --------------------------------------------------------------------------
# Storing, reading, forgetting


def store(db: PortalDb, message: Incoming) -> bool:
    """Keep `message`; False when its id is already held (a retry)."""
    try:
        with db.session() as s:
            if s.get(Message, message.id) is not None:
                return False
            s.add(Message(**asdict(message), received_at=utcnow()))
    except IntegrityError:          # the same message twice at once: kept once
        return False
    return True


def recent(db: PortalDb, *, unread: bool = False, limit: int = 100,
           machine: str | None = None) -> list[MessageView]:
    """The latest messages first (at most `limit`), only the unread ones if `unread`,
    only those of one laptop if `machine`: what the coordinators' page shows."""
    query = select(Message).order_by(Message.received_at.desc(), Message.id).limit(limit)
    if unread:
        query = query.where(Message.read_at.is_(None))
    if machine is not None:
        query = query.where(Message.machine == machine)
    with db.session(readonly=True) as s:
        return [MessageView(id=m.id, machine=m.machine, lang=m.lang, name=m.name,
                            contact=m.contact, text=m.text, written_at=m.written_at,
                            received_at=m.received_at, read_at=m.read_at, read_by=m.read_by)
                for m in s.scalars(query)]


def mark_read(db: PortalDb, ids: Iterable[str], *, by: str | None = None) -> list[str]:
    """Mark the messages `ids` read (by `by`, if said); the ids that are not held
    (unknown, or deleted by the retention). A message read stays read."""
    wanted = list(dict.fromkeys(ids))
    with db.session() as s:
        held = set(s.scalars(select(Message.id).where(Message.id.in_(wanted))))
        s.execute(update(Message).where(Message.id.in_(held), Message.read_at.is_(None))
                  .values(read_at=utcnow(), read_by=by))
    return [i for i in wanted if i not in held]


def purge(db: PortalDb, keep_days: int) -> int:
    """Delete the messages that arrived more than `keep_days` days ago; how many."""
    if keep_days < 1:
        raise ImagerError(f"keep_days {keep_days}: keep messages one day at least")
    cutoff = utcnow() - timedelta(days=keep_days)
    with db.session() as s:
        done = s.execute(delete(Message).where(Message.received_at < cutoff))
    return int(getattr(done, "rowcount", 0) or 0)


# --------------------------------------------------------------------------
# The door


@dataclass(frozen=True)
class Answer:
    """What the endpoint answers: status, JSON body, headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


class Inbox:
    """The endpoint's logic: limits, checks, storage and the retention."""

    def __init__(self, db: PortalDb, policy: MessagePolicy | None = None) -> None:
        self.db, self.policy = db, policy or MessagePolicy()
        self.per_address = Limiter(*self.policy.per_address)
        self.overall = Limiter(*self.policy.overall)
        self._purged = 0.0

    def admit(self, address: str) -> Answer | None:
        """None when `address` may send one more message now; the 429 otherwise."""
        for limiter, key in ((self.per_address, address), (self.overall, "*")):
            if not limiter.allow(key):
                wait = max(1, math.ceil(limiter.window / limiter.tries))
                return Answer(429, {"error": "trop de messages : réessayez plus tard / too "
                                             "many messages: try again later"},
                              {"Retry-After": str(wait)})
        return None

    def too_large(self, length: str | None) -> Answer | None:
        """The 413 for a request whose announced length is over the limit (not read)."""
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return Answer(413, {"error": f"message trop grand / message too large: {length} "
                                         f"bytes, at most {MAX_BODY}"}, {})
        return None

    def receive(self, body: bytes, *, content_type: str | None, key: str | None) -> Answer:
        """Check and store one message (run in a worker thread: it uses the database)."""
        self._purge_now_and_then()
        try:
            message = parse(body, content_type=content_type, key=key)
        except Invalid as exc:
            return Answer(exc.status, {"error": str(exc)}, {})
        new = store(self.db, message)
        return Answer(201 if new else 200, {"id": message.id, "stored": new}, {})

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if self._purged and now - self._purged < self.policy.purge_every:
            return
        self._purged = now
        purge(self.db, self.policy.keep_days)
