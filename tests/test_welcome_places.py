"""Digital-mediation places for the welcome page: the national open-data schema
(LaMednum standard-mediation-num, its schema.json applied as it is), the real
example file it publishes, the Hautes-Alpes places shipped with the profile,
broken rows reported and skipped, opening hours said in plain words."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from imager.errors import UsageError
from imager.profile.welcome import opening_hours
from imager.profile.welcome.places import SCHEMA, import_places
from imager.profile.welcome.tableschema import TableSchema

DATA = Path(__file__).parent / "data" / "welcome"


def describe(hours: str, lang: str) -> list[str] | None:
    """The hours in words, the non-breaking spaces of "9 h 30" read as spaces."""
    said = opening_hours.describe(hours, lang)
    return None if said is None else [line.replace("\u00a0", " ") for line in said]


EXAMPLE = DATA / "exemple-valide.csv"             # real, from LaMednum (see .source)
SHIPPED = Path(__file__).parents[1] / "profiles" / "bureau-solidaire" / "welcome" / "lieux.csv"


def _example_rows() -> tuple[list[str], dict[str, str]]:
    header, row = list(csv.reader(io.StringIO(EXAMPLE.read_text(encoding="utf-8"))))
    return header, dict(zip(header, row, strict=True))


def _write(path: Path, header: list[str], rows: list[dict[str, str]],
           delimiter: str = ",") -> Path:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[row.get(name, "") for name in header] for row in rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_the_recorded_files_say_where_they_come_from() -> None:
    for data in (EXAMPLE, SHIPPED, SCHEMA):
        source = data.with_name(data.name + ".source").read_text(encoding="utf-8")
        assert "repository:" in source and "commit:" in source, data


def test_the_published_example_is_valid_and_kept_only_in_its_own_departement() -> None:
    in_05 = import_places(EXAMPLE, departements=["05"])
    assert in_05.places == () and in_05.problems == () and in_05.outside_area == 1
    [place] = import_places(EXAMPLE, departements=["51"]).places
    assert (place.name, place.commune, place.postcode) == ("Anonymal", "Reims", "51100")
    assert place.address == "12 BIS RUE DE LECLERCQ"
    assert place.phone is not None and place.phone.href == "tel:+33180059880"
    assert place.phone.national == "01 80 05 98 80"
    assert describe(place.hours, "fr") == [
        "Du lundi au vendredi : de 9 h à 12 h et de 14 h à 18 h 30.",
        "Le samedi : de 8 h 30 à 12 h."]
    assert "Insertion professionnelle via le numérique" in place.services


def test_the_shipped_hautes_alpes_places_are_all_valid_and_in_the_area() -> None:
    found = import_places(SHIPPED, departements=["05"])
    assert found.problems == () and found.outside_area == 0
    assert len(found.places) == 26
    assert all(p.postcode.startswith("05") for p in found.places)
    ecrins = next(p for p in found.places if p.name.startswith("Espace France Services du"))
    assert ecrins.commune == "L'Argentière-la-Bessée"
    assert ecrins.phone is not None and ecrins.phone.national == "04 92 20 18 80"
    assert describe(ecrins.hours, "fr") == [
        "Le lundi : de 9 h à 12 h et de 13 h 30 à 18 h 30.",
        "Mardi et vendredi : de 9 h à 12 h 15.",
        "Mercredi et jeudi : de 9 h à 12 h 15 et de 13 h 30 à 17 h 30."]
    chorges = next(p for p in found.places if p.commune == "Chorges")
    assert chorges.hours_lines("fr") is None                # not OSM: shown as written
    assert chorges.hours.startswith("Lundi au Mardi de 13h30")


def test_broken_rows_are_reported_with_line_field_and_why_and_the_others_kept(
        tmp_path: Path) -> None:
    header, good = _example_rows()
    gap = {**good, "id": "gap-1", "commune": "Gap", "code_postal": "05000",
           "code_insee": "05061"}
    rows = [
        gap,                                                               # line 2
        {**gap, "id": "bad-cp", "code_postal": "5120"},                    # line 3
        {**gap, "id": "bad-tel", "telephone": "04 92 20 18 80"},           # line 4
        {**gap, "id": "bad-service", "services": "Aide aux démarches administratives|"
                                                 "Réparer des vélos"},     # line 5
        {**gap, "id": "gap-1"},                                            # line 6
        {**gap, "id": "no-name", "nom": ""},                               # line 7
        {**gap, "id": "bad-date", "date_maj": "02/04/2024"},               # line 8
        {**gap, "id": "bad-lat", "latitude": "44,55"},                     # line 9
        {**gap, "id": "gap-2", "horaires": "Lundi matin"},                 # line 10
    ]
    path = _write(tmp_path / "lieux.csv", header, rows)
    with path.open("a", encoding="utf-8") as out:
        out.write('"short-row","05000"\n')                                 # line 11
    found = import_places(path, departements=["05"])
    assert [p.id for p in found.places] == ["gap-1", "gap-2"]
    said = {(p.line, p.field): p.why for p in found.problems}
    assert said.keys() == {(3, "code_postal"), (4, "telephone"), (5, "services"),
                           (6, "id"), (7, "nom"), (8, "date_maj"), (9, "latitude"),
                           (11, "row")}
    assert "does not match the pattern ^\\d{5}$" in said[3, "code_postal"]
    assert "unknown item(s) 'Réparer des vélos'" in said[5, "services"]
    assert "Acquisition de matériel informatique à prix solidaire" in said[5, "services"]
    assert said[6, "id"] == "'gap-1' is already used on line 2: each place needs its own id"
    assert said[7, "nom"] == "missing: this column is required"
    assert "is not a date (expected e.g. 2024-04-02)" in said[8, "date_maj"]
    assert "2 values for 32 columns" in said[11, "row"]
    assert str(found.problems[0]).startswith(f"{path}:3: code_postal: ")
    gap2 = found.places[1]
    assert gap2.hours_lines("fr") is None and gap2.hours == "Lundi matin"


def test_a_file_without_a_required_column_is_refused_with_the_fix(tmp_path: Path) -> None:
    header, good = _example_rows()
    path = _write(tmp_path / "lieux.csv", [h for h in header if h != "code_postal"], [good])
    with pytest.raises(UsageError, match=r"lieux.csv:1: missing required column "
                                         r"'code_postal' \(Code postal\): add it"):
        import_places(path, departements=["05"])


def test_a_spreadsheet_export_with_semicolons_and_a_bom_is_read(tmp_path: Path) -> None:
    header, good = _example_rows()
    path = _write(tmp_path / "lieux.csv", header, [{**good, "code_postal": "05000"}], ";")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(import_places(path, departements=["05"]).places) == 1


def test_a_file_that_is_not_utf8_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "lieux.csv"
    path.write_bytes(EXAMPLE.read_text(encoding="utf-8").encode("latin-1", "replace"))
    with pytest.raises(UsageError, match="is not UTF-8 text .* save it again as « CSV UTF-8 »"):
        import_places(path, departements=["51"])


def test_a_schema_with_a_rule_imager_does_not_apply_is_refused(tmp_path: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    schema["fields"][2]["constraints"]["minimumWords"] = 2
    changed = tmp_path / "schema.json"
    changed.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(UsageError, match="field 'nom' uses constraint.*minimumWords.*update "
                                         "imager/profile/welcome/tableschema.py"):
        TableSchema.from_file(changed)


def test_the_shipped_schema_is_read_from_its_own_file() -> None:
    schema = TableSchema.from_file(SCHEMA)
    assert schema.primary_key == ("id",)
    assert [f.name for f in schema.fields if f.required] == [
        "id", "pivot", "nom", "commune", "code_postal", "adresse", "date_maj"]
    assert schema.unique_fields() == ("id",)


@pytest.mark.parametrize(("hours", "fr", "en"), [
    ("Mo-Fr 09:00-12:00", ["Du lundi au vendredi : de 9 h à 12 h."],
     ["Monday to Friday: 9:00 to 12:00."]),
    ("Mo,We,Th 09:00-12:00,13:30-16:30; Tu 13:30-16:30",
     ["Lundi, mercredi et jeudi : de 9 h à 12 h et de 13 h 30 à 16 h 30.",
      "Le mardi : de 13 h 30 à 16 h 30."],
     ["Monday, Wednesday and Thursday: 9:00 to 12:00 and 13:30 to 16:30.",
      "Tuesday: 13:30 to 16:30."]),
    ("Mo-Fr 09:00-17:00; We off; PH off",
     ["Lundi, mardi, jeudi et vendredi : de 9 h à 17 h.", "Fermé les jours fériés."],
     ["Monday, Tuesday, Thursday and Friday: 9:00 to 17:00.", "Closed on public holidays."]),
    ("Mo-We,Fr 10:00-12:00", ["Du lundi au mercredi et le vendredi : de 10 h à 12 h."],
     ["Monday to Wednesday and Friday: 10:00 to 12:00."]),
    ("Mo-Fr 08:00-12:00; Sa 09:00-12:00; Mo 14:00-16:00",
     ["Le lundi : de 14 h à 16 h.", "Du mardi au vendredi : de 8 h à 12 h.",
      "Le samedi : de 9 h à 12 h."],                  # a later rule overrides Monday
     ["Monday: 14:00 to 16:00.", "Tuesday to Friday: 8:00 to 12:00.",
      "Saturday: 9:00 to 12:00."]),
    ("24/7", ["Tous les jours, jour et nuit."], ["Every day, day and night."]),
    ("09:00-18:00", ["Du lundi au dimanche : de 9 h à 18 h."],
     ["Monday to Sunday: 9:00 to 18:00."]),
])
def test_common_opening_hours_are_said_in_plain_words(hours: str, fr: list[str],
                                                      en: list[str]) -> None:
    assert describe(hours, "fr") == fr
    assert describe(hours, "en") == en


@pytest.mark.parametrize("hours", [
    "Lundi au vendredi 9h-12h", "Jan-Jun Mo-Fr 09:00-12:00", "Sa-Mo 10:00-12:00",
    "Mo-Fr 22:00-02:00", 'Mo-Fr 09:00-12:00 "sur rendez-vous"', "PH 10:00-12:00",
    "Mo-Fr 09:00-12:00 || Sa off", "week 1-53/2 Fr 09:00-12:00", "Mo off", "",
])
def test_other_forms_are_left_as_written(hours: str) -> None:
    assert describe(hours, "fr") is None
