"""Pushing to the network's portal, outbound only: the station never listens on the
Internet, it calls the portal (imager.protocol.push) over HTTPS, pinned to `--ca`
when given.

Each request is signed with the station key (the key of its certificates and of its
ledger) and carries the station's certificate chain, which the portal accepts only
when the network CA issued it. What goes:
- the ledger, in order, from where the portal's copy ends: batches of at most
  BATCH_ENTRIES entries (and about BATCH_BYTES of files), each with the signed head
  of its last entry and each entry's files (the signed JSON, the PDF, a donation
  certificate's CSV); withdrawals are ledger entries like any document;
- donations and their drives' states (what a donor will see): those whose digest
  differs from the one the portal holds. A private donor's name never goes, an
  organisation's does (imager.certify.public.NAMED_DONORS).

Idempotent and resumable: every push starts from the portal's own state (its head
for this station, its donations' digests), so what it holds is never sent again and
a station offline for a week sends what it missed, batch after batch; what the
portal acknowledged is kept in <data dir>/portal/cursor.json, from which `waiting`
counts what is still to send without calling the portal (for the board). A batch
refused because another push of this station went first (the head it extends has
moved) is sent again from the portal's new state; a fork, a station outside the
network or a document that does not verify is refused for good and said.

`Pusher` runs `push` in the background of `imager serve --portal URL`: after each
push, the next one `every` seconds later; after a failure, again after 5 s, 10 s,
20 s... up to `every`; at once when nudged (the station issued a document). Its
`status()` is what the board shows: what waits, the last push that worked, why the
last one failed.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.certify.keys import StationKeys, pem, station_keys
from imager.certify.ledger import Ledger, LedgerEntry, now_text
from imager.certify.public import NAMED_DONORS
from imager.certify.signing import sign_document
from imager.errors import ImagerError, NotYet
from imager.host.files import private_dir, write_atomic
from imager.protocol.proof import PUSH_SCHEME, sign
from imager.protocol.push import (
    CHAIN,
    MAX_ENTRIES,
    PUSH_PATH,
    STATE_PATH,
    DonationState,
    Donor,
    DriveState,
    Files,
    LedgerBatch,
    Push,
    Signed,
    body,
    chain_header,
    digest,
)
from imager.registry.issue import donation_drives
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import Document, Donation, Drive, Machine

log = logging.getLogger(__name__)
BATCH_ENTRIES = 100
BATCH_BYTES = 8 << 20           # files per request, before base64
DONATIONS_PER_PUSH = 200
RESYNC = 3                      # a batch another push overtook is sent again this often
FIRST_RETRY = 5.0


class PortalUnreachable(NotYet):
    """The portal cannot be reached (network, TLS, its answer): try again later."""


class PortalRefused(ImagerError):
    """The portal refused what the station sent; `reason` says why in one word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PortalTarget:
    """Where the station pushes: the portal's URL, and the CA its HTTPS certificate
    must chain to (None: this machine's trusted authorities)."""

    url: str
    ca: Path | None = None


@dataclass
class PushReport:
    """What one push sent and what the portal holds after it."""

    portal: str
    station: str
    head: dict[str, Any] = field(default_factory=dict)
    batches: int = 0
    entries: int = 0
    documents: int = 0
    donations: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Waiting:
    """What the portal has not acknowledged yet, from the cursor."""

    entries: int
    donations: int
    since: str | None           # the last acknowledgement (None: never pushed)

    @property
    def total(self) -> int:
        return self.entries + self.donations


# --------------------------------------------------------------------------
# The cursor: what the portal acknowledged


def _cursor_file(settings: Settings) -> Path:
    return settings.data_dir / "portal" / "cursor.json"


def _cursors(settings: Settings) -> dict[str, Any]:
    try:
        found = json.loads(_cursor_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _acknowledged(settings: Settings, url: str, **acknowledged: Any) -> None:
    """Record what the portal at `url` acknowledged (its head, its donations' digests)."""
    cursors = _cursors(settings)
    cursors[url] = {**cursors.get(url, {}), **acknowledged, "at": now_text()}
    private_dir(_cursor_file(settings).parent)
    write_atomic(_cursor_file(settings), json.dumps(cursors, indent=1).encode("utf-8"))


def waiting(settings: Settings, registry: Registry, url: str) -> Waiting:
    """How many ledger entries and donations the portal at `url` has not acknowledged
    (everything, before the first push): what the board shows as waiting."""
    cursor = _cursors(settings).get(url, {})
    head = Ledger(registry).head()
    held = int((cursor.get("head") or {}).get("seq", 0))
    digests = cursor.get("donations") or {}
    changed = sum(1 for d in donation_states(registry)
                  if digests.get(d.reference) != digest(d))
    return Waiting(max(0, (head.seq if head else 0) - held), changed, cursor.get("at"))


# --------------------------------------------------------------------------
# What is sent


def donation_states(registry: Registry) -> list[DonationState]:
    """Every donation of this station with its drives, their states and documents."""
    with registry.session(readonly=True) as s:
        docs: dict[int, list[str]] = {}
        for doc_id, drive_id in s.execute(select(Document.id, Document.drive_id)
                                          .where(Document.drive_id.is_not(None))
                                          .order_by(Document.issued_at, Document.id)):
            docs.setdefault(drive_id or 0, []).append(doc_id)
        out = []
        for don in s.scalars(select(Donation).order_by(Donation.id)):
            donor = don.donor
            named = donor.kind in NAMED_DONORS
            drives = donation_drives(s, don)
            certificates = s.scalars(select(Document.id).where(
                Document.donation_id == don.id, Document.drive_id.is_(None),
                Document.kind == "donation").order_by(Document.issued_at, Document.id))
            out.append(DonationState(
                reference=don.reference, received_on=don.received_on,
                intake_site=don.intake_site, documents=list(certificates),
                donor=Donor(ref=str(donor.id), kind=donor.kind,
                            name=donor.name if named else None,
                            siret=donor.siret if named else None),
                drives=[_drive_state(s, d, docs.get(d.id, [])) for d in drives]))
        return out


def _drive_state(s: Session, drive: Drive, documents: list[str]) -> DriveState:
    """A drive as the portal stores it, with the laptop it came in (if any)."""
    machine = s.get(Machine, drive.machine_id) if drive.machine_id else None
    named = " ".join(filter(None, (machine.vendor, machine.model))) if machine else ""
    return DriveState(identity=drive.identity, model=drive.model, serial=drive.serial,
                      state=drive.state, documents=documents, machine_model=named or None,
                      machine_serial=machine.serial if machine else None)


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _files(entry: LedgerEntry, documents: Path) -> tuple[Files, int]:
    """The files of a ledger entry's document, and their size."""
    path = documents / f"{entry.doc_id}.csv"
    try:
        text = (documents / f"{entry.doc_id}.json").read_bytes()
        pdf = (documents / f"{entry.doc_id}.pdf").read_bytes() if entry.pdf_sha256 else None
        csv = path.read_bytes() if entry.kind == "donation" and path.exists() else None
    except OSError as exc:
        raise PortalRefused("document", f"fichier du document {entry.doc_id} illisible / "
                            f"cannot read a file of {entry.doc_id}: {exc}: run `imager ledger "
                            "verify` and restore it from a backup") from exc
    size = len(text) + len(pdf or b"") + len(csv or b"")
    return Files(signed=text.decode("utf-8"), pdf=_b64(pdf), csv=_b64(csv)), size


def _batches(entries: Sequence[LedgerEntry], documents: Path, most: int = BATCH_ENTRIES
             ) -> Iterator[tuple[list[LedgerEntry], dict[str, Files]]]:
    """`entries` in batches of at most `most` entries and about BATCH_BYTES of files."""
    batch: list[LedgerEntry] = []
    files: dict[str, Files] = {}
    size = 0
    for entry in entries:
        found, weight = _files(entry, documents)
        if batch and (len(batch) >= most or size + weight > BATCH_BYTES):
            yield batch, files
            batch, files, size = [], {}, 0
        batch.append(entry)
        files[entry.doc_id] = found
        size += weight
    if batch:
        yield batch, files


# --------------------------------------------------------------------------
# The portal's client


class PortalClient:
    """Requests to the portal, signed with the station key, its chain in CHAIN."""

    def __init__(self, target: PortalTarget, keys: StationKeys) -> None:
        verify: ssl.SSLContext | bool = True
        if target.ca is not None:
            if not target.ca.is_file():
                raise PortalRefused("ca", f"--ca {target.ca}: fichier absent / no such file "
                                    "(the CA of the portal's HTTPS certificate, PEM)")
            verify = ssl.create_default_context(cafile=str(target.ca))
        self.url, self.keys = target.url.rstrip("/"), keys
        self.chain = chain_header([pem(c) for c in (keys.station_cert, *keys.chain)])
        self.http = httpx.Client(base_url=self.url, verify=verify, timeout=120)

    def post(self, path: str, request: BaseModel) -> dict[str, Any]:
        """The portal's answer to `request` at `path`; PortalUnreachable, PortalRefused."""
        data = body(request)
        headers = {**sign(self.keys.signing_key, "POST", path, data, scheme=PUSH_SCHEME),
                   CHAIN: self.chain, "Content-Type": "application/json"}
        try:
            answer = self.http.post(path, content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise PortalUnreachable(f"portail injoignable / portal unreachable: {self.url}: "
                                    f"{exc or type(exc).__name__}; the station tries again "
                                    "later (nothing is lost: it sends from where the portal "
                                    "stopped)") from exc
        try:
            said = answer.json()
        except ValueError:
            said = {}
        if answer.status_code >= 500 or not isinstance(said, dict):
            raise PortalUnreachable(f"le portail répond {answer.status_code} / the portal "
                                    f"answers {answer.status_code} at {self.url}{path}")
        if answer.status_code >= 400:
            raise PortalRefused(str(said.get("reason") or answer.status_code),
                                f"le portail refuse / the portal refuses "
                                f"({answer.status_code}): {said.get('error', answer.text)}")
        return said

    def close(self) -> None:
        self.http.close()


# --------------------------------------------------------------------------
# Pushing


def push(settings: Settings, registry: Registry, target: PortalTarget, *,
         batch: int = BATCH_ENTRIES) -> PushReport:
    """Send the portal what it does not hold yet (see the module), at most `batch` ledger
    entries a request; PortalUnreachable (try later) or PortalRefused (said why)
    otherwise."""
    if not 1 <= batch <= MAX_ENTRIES:
        raise PortalRefused("batch", f"--batch {batch}: from 1 to {MAX_ENTRIES} entries")
    start = time.monotonic()
    keys = station_keys(settings)
    client = PortalClient(target, keys)
    report = PushReport(target.url, keys.fingerprint)
    try:
        for attempt in range(RESYNC + 1):
            try:
                state = client.post(STATE_PATH, Signed())
                report.head = state["head"]
                _push_ledger(settings, registry, client, keys, state, report, batch)
                _push_donations(settings, registry, client, state, report)
                break
            except PortalRefused as exc:
                if exc.reason not in ("backwards", "gap") or attempt == RESYNC:
                    raise
                log.info("another push went first (%s): again from the portal's state", exc)
    finally:
        client.close()
    report.seconds = round(time.monotonic() - start, 3)
    return report


def _push_ledger(settings: Settings, registry: Registry, client: PortalClient,
                 keys: StationKeys, state: dict[str, Any], report: PushReport, most: int
                 ) -> None:
    ledger = Ledger(registry)
    entries = ledger.entries()
    held = state["head"]
    seq = int(held["seq"])
    if seq > len(entries) or (seq > 0 and entries[seq - 1].hash != held["hash"]):
        raise PortalRefused("fork", f"le portail garde pour la clé de cette station un autre "
                            f"registre (n° {seq}, {str(held['hash'])[:16]}…) que le sien / the "
                            f"portal holds another ledger for this station's key: was this "
                            f"station's registry restored from an old backup, or its key "
                            f"copied to another station? ({keys.fingerprint})")
    _acknowledged(settings, client.url, station=keys.fingerprint, head=held)
    for batch, files in _batches(entries[seq:], settings.documents_dir, most):
        head = sign_document(ledger.head_document(upto=batch[-1].seq), keys)
        answer = client.post(PUSH_PATH, Push(
            ledger=LedgerBatch(entries=[e.to_dict() for e in batch],
                               head=head.decode("utf-8")),
            documents=files))
        report.head = answer["head"]
        report.batches += 1
        report.entries += answer["stored"]["entries"]
        report.documents += answer["stored"]["documents"]
        _acknowledged(settings, client.url, head=answer["head"])


def _push_donations(settings: Settings, registry: Registry, client: PortalClient,
                    state: dict[str, Any], report: PushReport) -> None:
    held: dict[str, str] = dict(state.get("donations") or {})
    changed = [d for d in donation_states(registry) if held.get(d.reference) != digest(d)]
    for i in range(0, len(changed), DONATIONS_PER_PUSH):
        part = changed[i:i + DONATIONS_PER_PUSH]
        answer = client.post(PUSH_PATH, Push(donations=part))
        report.batches += 1
        report.donations += answer["stored"]["donations"]
        held.update({d.reference: digest(d) for d in part})
    _acknowledged(settings, client.url, donations=held)


@dataclass(frozen=True)
class PushStatus:
    """Where the background pushes stand, for the board: what waits (None: not
    counted yet), when a push last worked and what it sent, and the last failure
    (`problem`: "unreachable", try again later; "refused", a person must act)."""

    portal: str
    waiting: Waiting | None = None
    ok_at: str | None = None
    sent: PushReport | None = None
    problem: str | None = None
    error: str | None = None
    failed_at: str | None = None


class Pusher:
    """`push` in a background thread, again every `every` seconds, sooner after a
    failure (FIRST_RETRY, then twice as long each time, up to `every`), at once when
    nudged. `on_change` is called after each push whose status changed (the board
    shows it)."""

    def __init__(self, settings: Settings, registry: Registry, target: PortalTarget, *,
                 every: float = 60.0, on_change: Callable[[], None] | None = None) -> None:
        self.settings, self.registry, self.target, self.every = settings, registry, target, every
        self.on_change = on_change
        self.last: PushReport | None = None
        self.error: str | None = None
        self._status = PushStatus(target.url)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portal-push", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """Push now (something was issued)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def status(self) -> PushStatus:
        """Where the pushes stand, as of the last one."""
        return self._status

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.last = push(self.settings, self.registry, self.target)
                self.error, failures = None, 0
                self._report(ok_at=now_text(), sent=self.last, problem=None, error=None)
                if self.last.entries or self.last.donations:
                    log.info("portal %s: %s entries, %s donations sent", self.target.url,
                             self.last.entries, self.last.donations)
            except Exception as exc:  # noqa: BLE001 - the thread must live on: said, retried
                failures += 1
                self.error = str(exc)
                self._report(problem="refused" if isinstance(exc, PortalRefused)
                             else "unreachable", error=str(exc), failed_at=now_text())
                log.warning("push to the portal %s failed (%s): %s", self.target.url,
                            type(exc).__name__, exc)
            delay = self.every if not failures else min(self.every,
                                                        FIRST_RETRY * 2 ** (failures - 1))
            self._wake.wait(delay)
            self._wake.clear()

    def _report(self, **changes: Any) -> None:
        """The new status after a push (with what waits now), told if it changed."""
        try:
            found: Waiting | None = waiting(self.settings, self.registry, self.target.url)
        except Exception as exc:  # noqa: BLE001 - a count is not worth stopping the pushes
            log.warning("cannot count what waits for the portal: %s", exc)
            found = None
        before = self._status
        self._status = replace(before, waiting=found, **changes)
        if self.on_change is not None and self._status != before:
            self.on_change()
