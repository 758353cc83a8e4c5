"""What a donor's account sees: its donations from every workshop, each drive's state,
the documents to download, and its own numbers of what it gave (expected versus
received, standard practice in IT asset disposition).

Everything is asked through the account (`Donations(s, account_id)`): a donation or a
document the account may not see is None, the same as one that does not exist, so
the pages answer 404 for both.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import Session

from imager.certify.render import safe_cell
from imager.certify.withdrawal import withdrawal_id
from imager.errors import UsageError
from imager.portal import models as m
from imager.portal.accounts import workshop
from imager.store.db import utcnow
from imager.web.i18n import N_

# Each drive's state as the donor reads it (the stations' lifecycle, imager.registry).
STATES = {
    "received": N_("Received, waiting"),
    "inventoried": N_("Recorded, waiting for erasure"),
    "erasing": N_("Being erased"),
    "erased": N_("Erased, waiting for its certificate"),
    "erase_failed": N_("Erasure failed: it will be done again, or the drive destroyed"),
    "imaging": N_("Erased, system being installed"),
    "imaged": N_("Erased, system installed"),
    "image_failed": N_("Erased, installation to do again"),
    "certified": N_("Erased, certificate issued"),
    "ready": N_("Erased, ready to be given"),
    "handed_over": N_("Erased, given to someone"),
    "to_parts": N_("Kept for spare parts"),
    "to_recycling": N_("Sent to recycling"),
    "to_destroy": N_("Waiting for destruction"),
    "destroyed": N_("Destroyed in front of a witness"),
}
ERASED = frozenset({"erased", "imaging", "imaged", "image_failed", "certified", "ready",
                    "handed_over"})
KINDS = {"erasure": N_("Erasure certificate"), "destruction": N_("Destruction record"),
         "donation": N_("Donation certificate"), "withdrawal": N_("Withdrawal")}
MATCHES = {"received": N_("received"), "missing": N_("expected, not received"),
           "unexpected": N_("received, not expected")}
MAX_ASSETS = 2000
MAX_ASSET_TEXT = 200_000            # characters of the form's text
_CELL = 100
_HEADER = re.compile(r"(asset|inventaire|serial|s[ée]rie|num[ée]ro|number)", re.IGNORECASE)


def norm(serial: str | None) -> str:
    """A serial number as compared: no spaces or dashes, capitals."""
    return re.sub(r"[\s\-_.:/]", "", serial or "").upper()


@dataclass
class Summary:
    id: int
    workshop: str
    reference: str
    received_on: str
    drives: int
    erased: int
    destroyed: int
    documented: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DocumentRow:
    id: str
    kind: str
    issued_at: str
    pdf: bool
    csv: bool
    withdrawn: bool = False


@dataclass
class DriveRow:
    model: str | None
    serial: str | None
    state: str
    documents: list[str]
    machine_model: str | None = None        # the laptop it was in
    machine_serial: str | None = None


@dataclass
class AssetRow:
    asset: str | None
    serial: str | None
    match: str                   # received | missing | unexpected
    model: str | None = None


@dataclass
class View:
    """One donation as its donor sees it."""

    summary: Summary
    donation: m.Donation
    station: m.Station
    drives: list[DriveRow]
    certificates: list[DocumentRow]          # the donation's own
    documents: dict[str, DocumentRow]        # every document, by id
    expected: list[m.ExpectedAsset]
    assets: list[AssetRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(),
                "donation_certificates": [d.__dict__ for d in self.certificates],
                "drives": [d.__dict__ for d in self.drives],
                "documents": [d.__dict__ for d in self.documents.values()],
                "assets": [a.__dict__ for a in self.assets],
                "ledger_head_seq": self.station.head_seq}


class Donations:
    """The donations `account_id` sees, and nothing else."""

    def __init__(self, s: Session, account_id: int) -> None:
        self.s, self.account_id = s, account_id
        account = s.get(m.Account, account_id)
        self.sirets = list(account.sirets) if account else []
        self.pairs = [(r.station_id, r.donor_ref) for r in s.scalars(
            select(m.AccountDonor).where(m.AccountDonor.account_id == account_id))]

    def _visible(self) -> ColumnElement[bool]:
        said: list[ColumnElement[bool]] = [and_(m.Donation.station_id == station,
                                                m.Donation.donor_ref == ref)
                                           for station, ref in self.pairs]
        if self.sirets:
            said.append(m.Donation.donor_siret.in_(self.sirets))
        return or_(*said) if said else false()

    def all(self) -> list[Summary]:
        rows = self.s.execute(select(m.Donation, m.Station).join(m.Station)
                              .where(self._visible())
                              .order_by(m.Donation.received_on.desc(), m.Donation.id)).all()
        drives = self._drives([d.id for d, _ in rows])
        return [_summary(d, st, drives.get(d.id, [])) for d, st in rows]

    def _drives(self, ids: list[int]) -> dict[int, list[m.Drive]]:
        found: dict[int, list[m.Drive]] = {}
        if ids:
            for drive in self.s.scalars(select(m.Drive).where(m.Drive.donation_id.in_(ids))
                                        .order_by(m.Drive.id)):
                found.setdefault(drive.donation_id, []).append(drive)
        return found

    def get(self, donation_id: int) -> View | None:
        """The donation `donation_id` (None: it does not exist or is not this account's)."""
        row = self.s.execute(select(m.Donation, m.Station).join(m.Station)
                             .where(m.Donation.id == donation_id, self._visible())).first()
        if row is None:
            return None
        donation, station = row
        drives = self._drives([donation.id]).get(donation.id, [])
        ids = list(dict.fromkeys([*donation.documents,
                                  *(d for drive in drives for d in drive.documents)]))
        documents = self._documents(station.id, ids)
        expected = list(self.s.scalars(select(m.ExpectedAsset).where(
            m.ExpectedAsset.donation_id == donation.id).order_by(m.ExpectedAsset.position)))
        view = View(_summary(donation, station, drives), donation, station,
                    [DriveRow(d.model, d.serial, d.state, list(d.documents), d.machine_model,
                              d.machine_serial) for d in drives],
                    [documents[i] for i in donation.documents if i in documents],
                    documents, expected)
        view.assets = compare(expected, drives)
        return view

    def _documents(self, station_id: int, ids: list[str]) -> dict[str, DocumentRow]:
        if not ids:
            return {}
        rows = self.s.execute(select(m.Document.id, m.Document.kind, m.Document.issued_at,
                                     m.Document.pdf.is_not(None), m.Document.csv.is_not(None))
                              .where(m.Document.station_id == station_id,
                                     m.Document.id.in_(ids))).all()
        gone = {withdrawal_id(i): i for i in ids}
        withdrawn = {gone[w] for w in self.s.scalars(select(m.LedgerEntry.doc_id).where(
            m.LedgerEntry.station_id == station_id, m.LedgerEntry.doc_id.in_(list(gone))))}
        found = {r[0]: DocumentRow(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[0] in withdrawn)
                 for r in rows}
        return {i: found[i] for i in ids if i in found}

    def document(self, donation_id: int, doc_id: str) -> m.Document | None:
        """A document of a donation this account sees (None otherwise)."""
        view = self.get(donation_id)
        if view is None or doc_id not in view.documents:
            return None
        return self.s.get(m.Document, (view.station.id, doc_id))

    def set_assets(self, donation_id: int, items: list[tuple[str | None, str | None]]) -> int:
        """Replace the donation's expected items (None: not this account's donation)."""
        if self.get(donation_id) is None:
            raise LookupError(donation_id)
        for old in self.s.scalars(select(m.ExpectedAsset).where(
                m.ExpectedAsset.donation_id == donation_id)):
            self.s.delete(old)
        now = utcnow()
        for n, (asset, serial) in enumerate(items, 1):
            self.s.add(m.ExpectedAsset(donation_id=donation_id, position=n, asset=asset,
                                       serial=serial, added_by=self.account_id, added_at=now))
        return len(items)


def _summary(d: m.Donation, station: m.Station, drives: list[m.Drive]) -> Summary:
    return Summary(d.id, workshop(station), d.reference, d.received_on.isoformat(),
                   len(drives), sum(x.state in ERASED for x in drives),
                   sum(x.state == "destroyed" for x in drives),
                   sum(bool(x.documents) for x in drives))


def parse_assets(text: str) -> list[tuple[str | None, str | None]]:
    """The donor's list: one item a line, "SERIAL" alone or "ASSET;SERIAL" (a CSV pasted
    from a spreadsheet: ';', ',' or tab between them; a header line is skipped; an empty
    serial "ASSET;" keeps the asset number alone). UsageError when it is too long or a
    value is."""
    if len(text) > MAX_ASSET_TEXT:
        raise UsageError(f"liste trop longue / list too long: at most {MAX_ASSET_TEXT} "
                         "characters; send it in several donations' pages")
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if len(lines) > MAX_ASSETS:
        raise UsageError(f"trop de lignes / too many lines: {len(lines)}, at most {MAX_ASSETS}")
    items: list[tuple[str | None, str | None]] = []
    for n, line in enumerate(lines, 1):
        delimiter = next((c for c in ";\t," if c in line), ";")
        cells = [c.strip() for c in next(csv.reader(io.StringIO(line), delimiter=delimiter))]
        if n == 1 and any(_HEADER.search(c) for c in cells) and not any(
                any(ch.isdigit() for ch in c) for c in cells):
            continue
        if len(cells) > 2 or any(len(c) > _CELL for c in cells):
            raise UsageError(f"ligne {n} : « {line[:60]} » / line {n}: give one serial number, "
                             f"or an asset number then a serial number ({_CELL} characters "
                             "each at most)")
        if len(cells) == 1:
            items.append((None, cells[0] or None))
        else:
            items.append((cells[0] or None, cells[1] or None))
    return items


def compare(expected: list[m.ExpectedAsset], drives: list[m.Drive]) -> list[AssetRow]:
    """Expected versus received: each expected item found (received) or not (missing)
    among the laptops' serials (SMBIOS: what a company's asset register lists) and the
    drives' serials (a loose drive), then what nobody expected (unexpected): one row a
    laptop, one row a loose drive."""
    machines: dict[str, list[m.Drive]] = {}
    loose: dict[str, m.Drive] = {}
    for d in drives:
        if key := norm(d.machine_serial):
            machines.setdefault(key, []).append(d)
        if key := norm(d.serial):
            loose.setdefault(key, d)
    seen: set[int] = set()
    rows = []
    for item in expected:
        key, model = norm(item.serial), None
        found = machines.get(key, []) if key else []
        if found:
            model = found[0].machine_model
        elif key in loose:
            found, model = [loose[key]], loose[key].model
        seen.update(id(d) for d in found)
        rows.append(AssetRow(item.asset, item.serial, "received" if found else "missing",
                             model))
    if expected:
        told: set[str] = set()
        for d in drives:
            if id(d) in seen or (key := norm(d.machine_serial)) in told:
                continue
            if key:
                told.add(key)
                rows.append(AssetRow(None, d.machine_serial, "unexpected", d.machine_model))
            else:
                rows.append(AssetRow(None, d.serial, "unexpected", d.model))
    return rows


ASSET_COLUMNS = (N_("Your asset number"), N_("Serial number"), N_("Model"), N_("Result"))


def assets_csv(rows: list[AssetRow], gettext: Callable[[str], str]) -> bytes:
    """Expected versus received as the donor's spreadsheet opens it: UTF-8 with a BOM,
    ';' separated, CRLF, headers and results in the page's language; no cell runs as a
    formula (the serials come from the donor and the stations)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([gettext(c) for c in ASSET_COLUMNS])
    for row in rows:
        writer.writerow([safe_cell(row.asset or ""), safe_cell(row.serial or ""),
                         safe_cell(row.model or ""), gettext(MATCHES[row.match])])
    return out.getvalue().encode("utf-8-sig")
