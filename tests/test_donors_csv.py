"""Donor CSV import (parse, all-or-nothing import, re-import) and the CLI end to end.

The sample files are generated here, as a spreadsheet would save them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imager.cli import main
from imager.errors import UsageError
from imager.store import people
from imager.store.db import Registry
from imager.store.donor_csv import (
    decode_csv,
    header_field,
    import_donors_file,
    parse_donors_csv,
    read_donors_csv,
)

FRENCH = (
    "nom;type;contact;courriel;téléphone;adresse;siret\n"
    "Mairie de Saint-Véran;mairie;Anne Blanc;accueil@saint-veran.fr;04 92 45 82 21;"
    "Place de la Mairie, 05350 Saint-Véran;\n"
    "Société Alpine d'Électricité;société;;contact@sae.fr;;;123 456 789 00012\n"
    "Jeanne Dupont;particulier;;;;;\n"
)
ENGLISH = (
    "Name,Kind,Contact,Email,Phone,Address,SIRET\n"
    "Mairie de Saint-Véran,town_hall,Anne Blanc,accueil@saint-veran.fr,04 92 45 82 21,"
    '"Place de la Mairie, 05350 Saint-Véran",\n'
    "Société Alpine d'Électricité,company,,contact@sae.fr,,,12345678900012\n"
    "Jeanne Dupont,person,,,,,\n"
)
EXPECTED = {
    ("town_hall", "Mairie de Saint-Véran"),
    ("company", "Société Alpine d'Électricité"),
    ("person", "Jeanne Dupont"),
}


def write_csv(path: Path, text: str, *, bom: bool = False, encoding: str = "utf-8",
              crlf: bool = True) -> Path:
    """Save `text` like a spreadsheet: CRLF line ends, optional BOM."""
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def donors_in(registry: Registry) -> set[tuple[str, str]]:
    with registry.session(readonly=True) as s:
        return {(d.kind, d.name) for d in people.list_donors(s)}


# --------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize(("text", "delimiter"), [(FRENCH, ";"), (ENGLISH, ",")])
def test_parse_variants(tmp_path: Path, text: str, delimiter: str, bom: bool) -> None:
    result = read_donors_csv(write_csv(tmp_path / "d.csv", text, bom=bom))
    assert result.errors == []
    assert result.delimiter == delimiter
    assert {(r.kind, r.name) for r in result.rows} == EXPECTED
    town = result.rows[0]
    assert town.line == 2
    assert town.contact_name == "Anne Blanc"
    assert town.email == "accueil@saint-veran.fr"
    assert town.address == "Place de la Mairie, 05350 Saint-Véran"
    assert result.rows[1].siret == "12345678900012"


@pytest.mark.parametrize(("header", "field"), [
    ("Nom", "name"), ("NAME", "name"), ("Nom / Name", "name"), ("Type de donateur", "kind"),
    ("Catégorie", "kind"), ("E-mail", "email"), ("Courriel", "email"), ("Tél.", "phone"),
    ("Téléphone", "phone"), ("Adresse postale", "address"), ("N° SIRET", "siret"),
    ("Nom du contact", "contact_name"), ("Remarques", None),
])
def test_header_names(header: str, field: str | None) -> None:
    assert header_field(header) == field


def test_quoted_multiline_value_keeps_line_numbers() -> None:
    text = ('nom;type;adresse\n'
            'Mairie de Saint-Véran;mairie;"Place de la Mairie\n05350 Saint-Véran"\n'
            '\n'
            'Jeanne;inconnu;\n')
    result = parse_donors_csv(text)
    assert result.rows[0].address == "Place de la Mairie\n05350 Saint-Véran"
    assert [(e.line, e.column) for e in result.errors] == [(5, "type")]


def test_errors_name_line_column_and_fix() -> None:
    text = ("Nom;Type;Courriel;SIRET;Remarques\n"
            "Mairie de Saint-Véran;mairie;accueil@saint-veran.fr;;ok\n"
            "Jeanne Dupont;particulier;jeanne.dupont;;\n"
            ";association;;;\n"
            "Société X;société;;1,23457E+13;\n")
    result = parse_donors_csv(text)
    assert [(e.line, e.column) for e in result.errors] == [
        (3, "Courriel"), (4, "Nom"), (5, "SIRET")]
    first = str(result.errors[0])
    assert "ligne 3" in first and "« Courriel »" in first and "nom@domaine.fr" in first
    assert "Texte" in str(result.errors[2])
    assert result.ignored_columns == ["Remarques"]


def test_missing_required_column() -> None:
    result = parse_donors_csv("nom;courriel\nJeanne;j@example.org\n")
    assert result.rows == []
    assert result.errors[0].line == 1
    assert "« type »" in str(result.errors[0])


def test_too_many_values_and_duplicates() -> None:
    text = ("nom,type,adresse\n"
            "Jeanne,particulier,1 rue A, 05000 Gap\n"
            "Éole,association,\n"
            "ÉOLE,Association,\n"
            "Paul,particulier,,,\n")
    result = parse_donors_csv(text)
    assert [e.line for e in result.errors] == [2, 4]
    assert "guillemets" in str(result.errors[0])
    assert "ligne 3" in str(result.errors[1])
    assert [r.name for r in result.rows] == ["Éole", "Paul"]


def test_empty_file() -> None:
    assert parse_donors_csv("\n\n").errors[0].line == 1


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16"])
def test_non_utf8_refused_with_clear_message(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "excel.csv", FRENCH, encoding=encoding)
    with pytest.raises(UsageError) as err:
        read_donors_csv(path)
    message = str(err.value)
    assert "CSV UTF-8" in message and "excel.csv" in message
    if encoding != "utf-16":
        assert "ligne 1" in message  # the é of « téléphone »


def test_decode_strips_bom() -> None:
    assert decode_csv("\ufeffnom".encode()) == "nom"


# --------------------------------------------------------------------------
# Importing


def test_import_then_reimport_is_idempotent(tmp_path: Path, registry: Registry) -> None:
    path = write_csv(tmp_path / "d.csv", FRENCH, bom=True)
    with registry.session() as s:
        first = import_donors_file(s, path)
    assert len(first.created) == 3
    with registry.session() as s:
        again = import_donors_file(s, path)
    assert (len(again.created), len(again.completed), len(again.unchanged)) == (0, 0, 3)
    assert donors_in(registry) == EXPECTED


def test_reimport_matches_case_insensitively_and_completes(tmp_path: Path,
                                                           registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "association", "Éole")
    path = write_csv(tmp_path / "d.csv", "nom,type,courriel\nÉOLE,association,eole@example.org\n")
    with registry.session() as s:
        result = import_donors_file(s, path)
    assert (len(result.created), len(result.completed)) == (0, 1)
    with registry.session(readonly=True) as s:
        (eole,) = people.list_donors(s)
    assert (eole.name, eole.email) == ("Éole", "eole@example.org")


def test_bad_line_imports_nothing(tmp_path: Path, registry: Registry) -> None:
    path = write_csv(tmp_path / "d.csv", FRENCH + "Paul;ministère;;;;;\n")
    with pytest.raises(UsageError) as err, registry.session() as s:
        import_donors_file(s, path)
    message = str(err.value)
    assert "rien n'a été importé" in message and "nothing was imported" in message
    assert "ligne 5, colonne « type »" in message
    assert donors_in(registry) == set()


# --------------------------------------------------------------------------
# The CLI end to end


def run(tmp_path: Path, *argv: str) -> int:
    return main(["--data-dir", str(tmp_path / "data"), *argv])


def run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    capsys.readouterr()
    assert run(tmp_path, *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGER_DB_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    path = write_csv(tmp_path / "donateurs.csv", FRENCH + "Paul;particulier;;;;;\n", bom=True)
    assert run(tmp_path, "donors", "import", str(path)) == 0
    assert "4 créé(s) / created" in capsys.readouterr().out
    assert run(tmp_path, "donors", "import", str(path)) == 0
    assert "0 créé(s) / created" in capsys.readouterr().out

    assert run(tmp_path, "donors", "add", "Association Éole", "--kind", "association",
               "--email", "eole@example.org") == 0
    donors = run_json(tmp_path, capsys, "donors", "list")
    assert {d["name"] for d in donors} >= {"Mairie de Saint-Véran", "Association Éole"}
    assert len(donors) == 5

    assert run(tmp_path, "donations", "add", "DON-2024-001", "--donor",
               "mairie de saint-véran", "--date", "2024-03-15", "--site", "Briançon") == 0
    assert run(tmp_path, "donations", "add", "DON-2024-002", "--donor", "Association Éole") == 0
    donations = run_json(tmp_path, capsys, "donations", "list")
    assert [d["reference"] for d in donations] == ["DON-2024-002", "DON-2024-001"]
    assert donations[1]["donor"] == "Mairie de Saint-Véran"
    assert donations[1]["intake_site"] == "Briançon"

    assert run(tmp_path, "technicians", "add", "Zoé Müller", "--level", "N2",
               "--since", "2023-01-10") == 0
    techs = run_json(tmp_path, capsys, "technicians", "list")
    assert techs[0]["name"] == "Zoé Müller" and techs[0]["habilitation_date"] == "2023-01-10"

    assert run(tmp_path, "donors", "list") == 0
    table = capsys.readouterr().out
    assert "Nom / Name" in table and "Société Alpine d'Électricité" in table


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGER_DB_URL", raising=False)
    assert run(tmp_path, "donations", "add", "DON-1", "--donor", "Inconnu") == 2
    assert "imager donors add" in capsys.readouterr().err
    assert run(tmp_path, "donors", "add", "X", "--kind", "ministère") == 2
    assert "type de donateur inconnu" in capsys.readouterr().err

    bad = write_csv(tmp_path / "bad.csv", "nom;type\nA;particulier\nB;ministère\n")
    assert run(tmp_path, "donors", "import", str(bad)) == 2
    assert "ligne 3" in capsys.readouterr().err
    latin = write_csv(tmp_path / "latin.csv", FRENCH, encoding="latin-1")
    assert run(tmp_path, "donors", "import", str(latin)) == 2
    assert "CSV UTF-8" in capsys.readouterr().err
    assert run_json(tmp_path, capsys, "donors", "list") == []

    with pytest.raises(SystemExit):
        run(tmp_path, "donations", "add", "DON-1", "--donor", "X", "--date", "2024-02-30")
    assert "AAAA-MM-JJ" in capsys.readouterr().err
