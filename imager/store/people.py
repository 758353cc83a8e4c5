"""Donors, donations and technicians: validation and repository functions.

Every function takes an open Session (see `Registry.session`) and raises
UsageError for bad input, NotFound for a missing object; messages are French
first, then English after " / ", and say how to fix the problem.

Text is stored NFC-normalised with surrounding and repeated spaces removed;
names are matched case-insensitively (Unicode casefold, so "SOCIÉTÉ" finds
"Société").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from imager.errors import NotFound, UsageError
from imager.store.db import utcnow
from imager.store.models import DONOR_KINDS, Donation, Donor, Technician

KIND_ALIASES: dict[str, str] = {
    "person": "person",
    "particulier": "person",
    "particuliere": "person",
    "individual": "person",
    "personne": "person",
    "town_hall": "town_hall",
    "town hall": "town_hall",
    "townhall": "town_hall",
    "mairie": "town_hall",
    "collectivite": "town_hall",
    "collectivite territoriale": "town_hall",
    "commune": "town_hall",
    "company": "company",
    "entreprise": "company",
    "societe": "company",
    "association": "association",
    "asso": "association",
}

KIND_LABELS_FR: dict[str, str] = {
    "person": "particulier",
    "town_hall": "mairie",
    "company": "entreprise",
    "association": "association",
}

_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]{2,}$")
_SPACES = re.compile(r"\s+")
_ID = re.compile(r"^#?(\d+)$")
_KINDS_FR = "utilisez particulier, mairie (ou collectivité), entreprise (ou société) ou association"
_KINDS_EN = "use person, town_hall, company or association"


def _msg(fr: str, en: str) -> str:
    """A user message: French first, English after ' / '."""
    return f"{fr} / {en}"


# --------------------------------------------------------------------------
# Normalisation and validation (shared with the CSV import)


def clean_text(value: object) -> str | None:
    """`value` as NFC text without surrounding or repeated spaces; None if empty."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value))
    text = _SPACES.sub(" ", text).strip()
    return text or None


def clean_multiline(value: object) -> str | None:
    """Like `clean_text`, but keeps line breaks (addresses, notes)."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line) or None


def name_key(name: str) -> str:
    """The case- and spacing-insensitive form of a name, for matching."""
    return (clean_text(name) or "").casefold()


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_kind(value: object) -> str:
    """The canonical donor kind of `value` (French aliases accepted)."""
    text = clean_text(value)
    if text is None:
        raise UsageError(_msg(f"type de donateur manquant : {_KINDS_FR}",
                              f"donor kind missing: {_KINDS_EN}"))
    key = _strip_accents(text).casefold().replace("-", " ").replace("_", " ")
    kind = KIND_ALIASES.get(key) or KIND_ALIASES.get(key.replace(" ", "_"))
    if kind is None or kind not in DONOR_KINDS:
        raise UsageError(_msg(f"type de donateur inconnu « {text} » : {_KINDS_FR}",
                              f"unknown donor kind '{text}': {_KINDS_EN}"))
    return kind


def _limited(
    value: object, max_len: int, fr_field: str, en_field: str, multiline: bool = False
) -> str | None:
    text = clean_multiline(value) if multiline else clean_text(value)
    if text is not None and len(text) > max_len:
        raise UsageError(_msg(
            f"{fr_field} trop long ({len(text)} caractères, {max_len} au plus) : raccourcissez-le",
            f"{en_field} too long ({len(text)} characters, at most {max_len}): shorten it",
        ))
    return text


def _required(value: object, max_len: int, fr_field: str, en_field: str) -> str:
    text = _limited(value, max_len, fr_field, en_field)
    if text is None:
        raise UsageError(_msg(f"{fr_field} vide : indiquez-le", f"{en_field} is empty: give one"))
    return text


def check_name(value: object) -> str:
    """A required donor/technician name (at most 200 characters)."""
    return _required(value, 200, "nom", "name")


def check_email(value: object) -> str | None:
    """An optional e-mail address of the shape name@domain.tld."""
    text = _limited(value, 200, "e-mail", "email")
    if text is not None and not _EMAIL.match(text):
        raise UsageError(_msg(
            f"adresse e-mail invalide « {text} » : écrivez-la sous la forme nom@domaine.fr",
            f"invalid email address '{text}': write it as name@domain.org",
        ))
    return text


def check_siret(value: object) -> str | None:
    """An optional SIRET: 14 digits (spaces are removed)."""
    text = clean_text(value)
    if text is None:
        return None
    digits = re.sub(r"[\s\u00a0\u202f.]", "", text)
    if re.fullmatch(r"\d{14}", digits):
        return digits
    hint_fr, hint_en = "", ""
    if re.search(r"\d[,.]?\d*E\+\d+", text, re.IGNORECASE):
        hint_fr = " (le tableur l'a transformé en nombre : mettez la colonne au format Texte)"
        hint_en = " (the spreadsheet turned it into a number: format the column as Text)"
    raise UsageError(_msg(
        f"SIRET invalide « {text} » : il faut 14 chiffres{hint_fr}",
        f"invalid SIRET '{text}': it must be 14 digits{hint_en}",
    ))


DONOR_FIELD_CHECKS: dict[str, Callable[[object], Any]] = {
    "kind": normalize_kind,
    "name": check_name,
    "contact_name": lambda v: _limited(v, 200, "nom du contact", "contact name"),
    "email": check_email,
    "phone": lambda v: _limited(v, 50, "téléphone", "phone"),
    "address": lambda v: _limited(v, 2000, "adresse", "address", multiline=True),
    "siret": check_siret,
}


def _check_date(value: date | datetime | None, fr_field: str, en_field: str) -> date | None:
    if value is None:
        return None
    day = value.date() if isinstance(value, datetime) else value
    if day > date.today():
        raise UsageError(_msg(
            f"{fr_field} dans le futur ({day.isoformat()}) : vérifiez la date (AAAA-MM-JJ)",
            f"{en_field} is in the future ({day.isoformat()}): check the date (YYYY-MM-DD)",
        ))
    return day


# --------------------------------------------------------------------------
# Donors


def _donors_named(session: Session, name: str, kind: str | None = None) -> list[Donor]:
    key = name_key(name)
    rows = session.execute(select(Donor.id, Donor.kind, Donor.name)).all()
    ids = [r.id for r in rows if name_key(r.name) == key and kind in (None, r.kind)]
    if not ids:
        return []
    return list(session.scalars(select(Donor).where(Donor.id.in_(ids)).order_by(Donor.id)))


def add_donor(
    session: Session,
    kind: str,
    name: str,
    contact_name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    siret: str | None = None,
) -> Donor:
    """Create a donor; UsageError if a field is invalid or it exists already."""
    raw = {"kind": kind, "name": name, "contact_name": contact_name, "email": email,
           "phone": phone, "address": address, "siret": siret}
    fields = {key: DONOR_FIELD_CHECKS[key](value) for key, value in raw.items()}
    existing = _donors_named(session, fields["name"], fields["kind"])
    if existing:
        twin = existing[0]
        raise UsageError(_msg(
            f"le donateur « {twin.name} » ({KIND_LABELS_FR[twin.kind]}) existe déjà "
            f"(n° {twin.id}) : utilisez-le",
            f"donor '{twin.name}' ({twin.kind}) already exists (#{twin.id}): use it",
        ))
    donor = Donor(**fields, created_at=utcnow())
    session.add(donor)
    session.flush()
    return donor


def list_donors(session: Session) -> list[Donor]:
    """Every donor, by name."""
    donors = session.scalars(select(Donor)).all()
    return sorted(donors, key=lambda d: (name_key(d.name), d.id))


def find_donor(session: Session, name_or_id: str | int) -> Donor:
    """The donor with this number (``12`` or ``#12``) or this name (any case)."""
    text = clean_text(name_or_id) or ""
    match = _ID.match(text)
    if match:
        donor = session.get(Donor, int(match.group(1)))
        if donor is not None:
            return donor
        if isinstance(name_or_id, int) or text.startswith("#"):
            raise _donor_not_found(text)
    found = _donors_named(session, text)
    if len(found) == 1:
        return found[0]
    if not found:
        raise _donor_not_found(text)
    choices = ", ".join(f"n° {d.id} ({KIND_LABELS_FR.get(d.kind, d.kind)})" for d in found)
    raise UsageError(_msg(
        f"plusieurs donateurs s'appellent « {text} » : {choices} ; donnez le numéro",
        f"several donors are named '{text}': {choices.replace('n° ', '#')}; give the number",
    ))


def _donor_not_found(text: str) -> NotFound:
    return NotFound(_msg(
        f"donateur « {text} » introuvable : voyez « imager donors list » ou créez-le avec "
        f"« imager donors add \"{text}\" --kind mairie »",
        f"donor '{text}' not found: see 'imager donors list' or create it with "
        f"'imager donors add \"{text}\" --kind town_hall'",
    ))


# --------------------------------------------------------------------------
# Donations


def _reference(value: object) -> str:
    return _required(value, 64, "référence du don", "donation reference")


def add_donation(
    session: Session,
    reference: str,
    donor: Donor | str | int,
    received_on: date,
    intake_site: str | None = None,
    notes: str | None = None,
) -> Donation:
    """Record a donation from `donor` (a Donor, its number or its name)."""
    ref = _reference(reference)
    day = _check_date(received_on, "date de réception", "reception date")
    site = _limited(intake_site, 200, "site de collecte", "intake site")
    text = clean_multiline(notes)
    donor_obj = donor if isinstance(donor, Donor) else find_donor(session, donor)
    if _donation_by_reference(session, ref) is not None:
        raise _duplicate_reference(ref)
    donation = Donation(reference=ref, donor=donor_obj, received_on=day, intake_site=site,
                        notes=text, created_at=utcnow())
    session.add(donation)
    try:
        session.flush()
    except IntegrityError as exc:  # another station recorded it meanwhile
        raise _duplicate_reference(ref) from exc
    return donation


def _duplicate_reference(ref: str) -> UsageError:
    return UsageError(_msg(
        f"le don « {ref} » existe déjà : choisissez une autre référence "
        "(voyez « imager donations list »)",
        f"donation '{ref}' already exists: choose another reference "
        "(see 'imager donations list')",
    ))


def _donation_by_reference(session: Session, ref: str) -> Donation | None:
    query = select(Donation).options(selectinload(Donation.donor))
    exact = session.scalars(query.where(Donation.reference == ref)).first()
    if exact is not None:
        return exact
    lowered = query.where(func.lower(Donation.reference) == ref.lower())
    return session.scalars(lowered).first()


def find_donation(session: Session, reference: str) -> Donation:
    """The donation with this reference (case-insensitive); NotFound says how to add it."""
    ref = clean_text(reference) or ""
    donation = _donation_by_reference(session, ref) if ref else None
    if donation is None:
        raise NotFound(_msg(
            f"don « {ref} » introuvable : créez-le avec "
            f"« imager donations add {ref} --donor DONATEUR »",
            f"donation '{ref}' not found: create it with "
            f"'imager donations add {ref} --donor DONOR'",
        ))
    return donation


def list_donations(session: Session) -> list[Donation]:
    """Every donation, most recently received first, with its donor loaded."""
    query = (
        select(Donation)
        .options(selectinload(Donation.donor))
        .order_by(Donation.received_on.desc(), Donation.id.desc())
    )
    return list(session.scalars(query))


# --------------------------------------------------------------------------
# Technicians


def add_technician(
    session: Session,
    name: str,
    level: str | None = None,
    habilitation_date: date | None = None,
) -> Technician:
    """Register a technician; UsageError if the name is taken."""
    clean = check_name(name)
    lvl = _limited(level, 50, "niveau d'habilitation", "habilitation level")
    day = _check_date(habilitation_date, "date d'habilitation", "habilitation date")
    if _technician_named(session, clean) is not None:
        raise _duplicate_technician(clean)
    tech = Technician(name=clean, habilitation_level=lvl, habilitation_date=day,
                      created_at=utcnow())
    session.add(tech)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _duplicate_technician(clean) from exc
    return tech


def _duplicate_technician(name: str) -> UsageError:
    return UsageError(_msg(
        f"le technicien « {name} » existe déjà : voyez « imager technicians list »",
        f"technician '{name}' already exists: see 'imager technicians list'",
    ))


def _technician_named(session: Session, name: str) -> Technician | None:
    key = name_key(name)
    for tech in session.scalars(select(Technician)):
        if name_key(tech.name) == key:
            return tech
    return None


def find_technician(session: Session, name: str) -> Technician:
    """The technician with this name (any case); NotFound says how to add one."""
    text = clean_text(name) or ""
    tech = _technician_named(session, text) if text else None
    if tech is None:
        raise NotFound(_msg(
            f"technicien « {text} » introuvable : ajoutez-le avec "
            f"« imager technicians add \"{text}\" »",
            f"technician '{text}' not found: add them with "
            f"'imager technicians add \"{text}\"'",
        ))
    return tech


def list_technicians(session: Session) -> list[Technician]:
    """Every technician, by name."""
    techs = session.scalars(select(Technician)).all()
    return sorted(techs, key=lambda t: (name_key(t.name), t.id))


def receive_donation(session: Session, reference: str, donor: str, donor_kind: str,
                     received_on: date, intake_site: str | None = None) -> Donation:
    """A donation from the donor named `donor` (recorded now, as `donor_kind`, if the
    station does not know it yet)."""
    try:
        known = find_donor(session, donor)
    except NotFound:
        known = add_donor(session, donor_kind, donor)
    return add_donation(session, reference, known, received_on, intake_site=intake_site)

