"""`imager donors|donations|technicians add|list` and `imager donors import`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.store import people
from imager.store.donor_csv import import_donors_file
from imager.store.models import Donation, Donor, Technician

_FR_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the donors, donations and technicians command groups."""
    _register_donors(sub)
    _register_donations(sub)
    _register_technicians(sub)


def _register_donors(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("donors")
    dsub = p.add_subparsers(dest="donors_command", metavar="ACTION", required=True)
    add = dsub.add_parser("add", help="ajouter un donateur / add a donor")
    add.add_argument("name", metavar="NOM", help="nom / name")
    add.add_argument("--kind", required=True,
                     help="particulier|mairie|collectivité|entreprise|société|association "
                          "(person|town_hall|company|association)")
    add.add_argument("--contact", help="nom du contact / contact name")
    add.add_argument("--email", help="courriel / email")
    add.add_argument("--phone", help="téléphone / phone")
    add.add_argument("--address", help="adresse / address")
    add.add_argument("--siret", help="SIRET (14 chiffres / digits)")
    add.set_defaults(func=cmd_donors_add)
    ls = dsub.add_parser("list", help="lister les donateurs / list donors")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_donors_list)
    imp = dsub.add_parser("import", help="importer un CSV UTF-8 / import a UTF-8 CSV")
    imp.add_argument("file", type=Path, metavar="FICHIER.csv")
    imp.set_defaults(func=cmd_donors_import)


def _register_donations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("donations")
    dsub = p.add_subparsers(dest="donations_command", metavar="ACTION", required=True)
    add = dsub.add_parser("add", help="enregistrer un don / record a donation")
    add.add_argument("reference", metavar="REF", help="référence du don / donation reference")
    add.add_argument("--donor", required=True, metavar="NOM_OU_N°",
                     help="nom ou numéro du donateur / donor name or number")
    add.add_argument("--date", type=parse_date, default=None, metavar="AAAA-MM-JJ",
                     help="date de réception (aujourd'hui par défaut) / received (default today)")
    add.add_argument("--site", help="site de collecte / intake site")
    add.add_argument("--notes", help="remarques / notes")
    add.set_defaults(func=cmd_donations_add)
    ls = dsub.add_parser("list", help="lister les dons / list donations")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_donations_list)


def _register_technicians(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("technicians")
    tsub = p.add_subparsers(dest="technicians_command", metavar="ACTION", required=True)
    add = tsub.add_parser("add", help="ajouter un technicien / add a technician")
    add.add_argument("name", metavar="NOM", help="nom / name")
    add.add_argument("--level", help="niveau d'habilitation / habilitation level")
    add.add_argument("--since", type=parse_date, metavar="AAAA-MM-JJ",
                     help="date d'habilitation / habilitation date")
    add.set_defaults(func=cmd_technicians_add)
    ls = tsub.add_parser("list", help="lister les techniciens / list technicians")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_technicians_list)


def parse_date(text: str) -> date:
    """A date written AAAA-MM-JJ (ISO) or JJ/MM/AAAA (French)."""
    try:
        match = _FR_DATE.match(text.strip())
        if match:
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"date invalide « {text} » : écrivez AAAA-MM-JJ, par exemple 2024-03-15 / "
            f"invalid date '{text}': write YYYY-MM-DD, e.g. 2024-03-15"
        ) from None


# --------------------------------------------------------------------------
# Rendering


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def donor_dict(donor: Donor) -> dict[str, Any]:
    """A donor as JSON-ready data."""
    return {"id": donor.id, "kind": donor.kind, "name": donor.name,
            "contact_name": donor.contact_name, "email": donor.email, "phone": donor.phone,
            "address": donor.address, "siret": donor.siret,
            "created_at": _iso(donor.created_at)}


def donation_dict(donation: Donation) -> dict[str, Any]:
    """A donation as JSON-ready data."""
    return {"id": donation.id, "reference": donation.reference,
            "donor_id": donation.donor_id, "donor": donation.donor.name,
            "received_on": _iso(donation.received_on), "intake_site": donation.intake_site,
            "notes": donation.notes, "created_at": _iso(donation.created_at)}


def technician_dict(tech: Technician) -> dict[str, Any]:
    """A technician as JSON-ready data."""
    return {"id": tech.id, "name": tech.name, "level": tech.habilitation_level,
            "habilitation_date": _iso(tech.habilitation_date),
            "created_at": _iso(tech.created_at)}


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _print_table(title: str, columns: tuple[str, ...], rows: Sequence[Sequence[str]],
                 empty: str) -> None:
    out = console()
    if not rows:
        out.print(empty, highlight=False, markup=False)
        return
    table = new_table(title, columns)
    for row in rows:
        add_row(table, *row)
    out.print(table)


def _kind_label(kind: str) -> str:
    return f"{people.KIND_LABELS_FR.get(kind, kind)} / {kind}"


# --------------------------------------------------------------------------
# Handlers


def cmd_donors_add(args: argparse.Namespace, ctx: Context) -> int:
    """imager donors add NAME --kind K ..."""
    with ctx.registry.session() as s:
        donor = people.add_donor(s, args.kind, args.name, contact_name=args.contact,
                                 email=args.email, phone=args.phone, address=args.address,
                                 siret=args.siret)
    print(f"Donateur enregistré / Donor added: n° {donor.id} {donor.name} "
          f"({_kind_label(donor.kind)})")
    return 0


def cmd_donors_list(args: argparse.Namespace, ctx: Context) -> int:
    """imager donors list [--json]"""
    with ctx.registry.session(readonly=True) as s:
        donors = people.list_donors(s)
    if args.json:
        _print_json([donor_dict(d) for d in donors])
        return 0
    rows = [(str(d.id), d.name, _kind_label(d.kind), d.contact_name or "", d.email or "",
             d.phone or "", d.siret or "") for d in donors]
    _print_table("Donateurs / Donors",
                 ("N°", "Nom / Name", "Type / Kind", "Contact", "Courriel / Email",
                  "Téléphone / Phone", "SIRET"), rows,
                 "Aucun donateur / No donors: imager donors add NOM --kind mairie")
    return 0


def cmd_donors_import(args: argparse.Namespace, ctx: Context) -> int:
    """imager donors import FILE.csv (all or nothing)."""
    with ctx.registry.session() as s:
        result = import_donors_file(s, args.file)
    if result.ignored_columns:
        ignored = ", ".join(f"« {c} »" for c in result.ignored_columns)
        print(f"imager: attention / warning: colonnes ignorées / ignored columns: {ignored}",
              file=sys.stderr)
    created, completed, unchanged = (len(result.created), len(result.completed),
                                     len(result.unchanged))
    print(f"Import terminé / Import done: {created} créé(s) / created, "
          f"{completed} complété(s) / completed, {unchanged} inchangé(s) / unchanged")
    return 0


def cmd_donations_add(args: argparse.Namespace, ctx: Context) -> int:
    """imager donations add REF --donor NAME_OR_ID [--date] [--site] [--notes]"""
    received = args.date or date.today()
    with ctx.registry.session() as s:
        donation = people.add_donation(s, args.reference, args.donor, received,
                                       intake_site=args.site, notes=args.notes)
        donor_name = donation.donor.name
    print(f"Don enregistré / Donation recorded: {donation.reference} "
          f"({donor_name}, {donation.received_on.isoformat()})")
    return 0


def cmd_donations_list(args: argparse.Namespace, ctx: Context) -> int:
    """imager donations list [--json]"""
    with ctx.registry.session(readonly=True) as s:
        donations = people.list_donations(s)
        data = [donation_dict(d) for d in donations]
    if args.json:
        _print_json(data)
        return 0
    rows = [(d["reference"], d["received_on"], d["donor"], d["intake_site"] or "",
             d["notes"] or "") for d in data]
    _print_table("Dons / Donations",
                 ("Référence / Reference", "Reçu le / Received", "Donateur / Donor",
                  "Site", "Remarques / Notes"), rows,
                 "Aucun don / No donations: imager donations add REF --donor NOM")
    return 0


def cmd_technicians_add(args: argparse.Namespace, ctx: Context) -> int:
    """imager technicians add NAME [--level L] [--since DATE]"""
    with ctx.registry.session() as s:
        tech = people.add_technician(s, args.name, level=args.level,
                                     habilitation_date=args.since)
    print(f"Technicien enregistré / Technician added: n° {tech.id} {tech.name}")
    return 0


def cmd_technicians_list(args: argparse.Namespace, ctx: Context) -> int:
    """imager technicians list [--json]"""
    with ctx.registry.session(readonly=True) as s:
        techs = people.list_technicians(s)
    if args.json:
        _print_json([technician_dict(t) for t in techs])
        return 0
    rows = [(str(t.id), t.name, t.habilitation_level or "", _iso(t.habilitation_date) or "")
            for t in techs]
    _print_table("Techniciens / Technicians",
                 ("N°", "Nom / Name", "Niveau / Level", "Habilité depuis / Since"), rows,
                 "Aucun technicien / No technicians: imager technicians add NOM")
    return 0
