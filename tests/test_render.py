"""Certificate PDFs: one page per drive in French or English, the donation summary
and its drive table, the CSV export; checked with poppler (pdftotext, pdfinfo,
pdfdetach, pdfimages, pdffonts) on real renderings."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import segno
from conftest import DATA, need_tool
from PIL import Image

from imager.certify import labels as L
from imager.certify import render
from imager.certify.schema import problems

SAMPLES = DATA / "certificates"
KINDS = ("erasure", "non-erasure", "destruction")
FIRMWARE = "erasure-firmware"   # a SATA SSD: sanitize, hidden areas accepted by a person
VERIFY_URL = "https://atelier.reseau-solidaire-05.example/verifier"
DONOR = "Société Générale d'Électronique Alpine"
TECHNICIAN = "Zoé Müller-Lefèvre"
NNBSP, NBSP = "\u202f", "\u00a0"


def sample(kind: str, language: str = "fr") -> dict[str, Any]:
    text = (SAMPLES / f"sample-{kind}.json").read_text(encoding="utf-8")
    record: dict[str, Any] = json.loads(text)
    record["language"] = language
    return record


def signed(record: dict[str, Any]) -> tuple[bytes, str]:
    data = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
    return data, hashlib.sha256(data).hexdigest()


def drive_pdf(record: dict[str, Any], verify_url: str = VERIFY_URL) -> tuple[bytes, str]:
    data, sha = signed(record)
    pdf = render.render_drive_pdf(record, sha256=sha, verify_url=verify_url, attachments=[
        (f"{record['id']}.json", data, "Enregistrement signé / signed record")])
    return pdf, sha


def poppler(tool: str, *args: str | Path) -> str:
    need_tool(tool)
    return subprocess.run([tool, *map(str, args)], check=True, capture_output=True,
                          text=True).stdout


def save(tmp: Path, name: str, pdf: bytes) -> Path:
    path = tmp / name
    path.write_bytes(pdf)
    return path


def text_of(path: Path, first: int | None = None) -> str:
    """The PDF's text with line breaks and runs of spaces made single spaces."""
    pages = ("-f", str(first), "-l", str(first)) if first else ()
    raw = poppler("pdftotext", *pages, path, "-")
    return " ".join(raw.replace(NBSP, " ").replace(NNBSP, " ").split())


def pages(path: Path) -> int:
    info = poppler("pdfinfo", path)
    return int(next(ln.split()[1] for ln in info.splitlines() if ln.startswith("Pages:")))


@pytest.fixture(scope="module")
def drive_pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    tmp = tmp_path_factory.mktemp("drives")
    out = {}
    for kind in KINDS:
        for language in ("fr", "en"):
            pdf, _ = drive_pdf(sample(kind, language))
            out[kind, language] = save(tmp, f"{kind}-{language}.pdf", pdf)
    return out


# -- the samples ------------------------------------------------------------------

def test_sample_records_match_the_drive_record_schema() -> None:
    for kind in KINDS:
        record = sample(kind)
        assert record["kind"] == kind
        assert problems(record) == [], kind
    assert problems(sample(FIRMWARE)) == []


# -- drive certificates -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["fr", "en"])
def test_drive_pdf_is_one_page_naming_the_donor_technician_and_hash(
        drive_pdfs: dict[tuple[str, str], Path], kind: str, language: str) -> None:
    path = drive_pdfs[kind, language]
    record = sample(kind, language)
    _, sha = signed(record)
    assert pages(path) == 1
    text = text_of(path)
    for expected in (DONOR, TECHNICIAN, record["id"], sha, record["ledger"]["prev"],
                     "Vérifier hors ligne / verify offline",
                     "imager cert verify <file> --trust station.pem",
                     "Réseau solidaire du numérique des Hautes-Alpes"):
        assert expected in text, expected


def test_erasure_certificate_says_what_was_done_in_plain_french(
        drive_pdfs: dict[tuple[str, str], Path]) -> None:
    text = text_of(drive_pdfs["erasure", "fr"])
    for expected in ("Certificat d'effacement de données",
                     "a été effacé le 23 novembre 2026 selon la méthode Clear "
                     "(NIST SP 800-88 Rev. 2)",
                     "vérifié par relecture complète du support",
                     "67,1 Mo (64 Mio) — 67 108 864 octets", "Support virtuel (essai)",
                     "Conforme : aucun secteur différent du contenu attendu",
                     "23 novembre 2026, de 18:15:16 à 18:15:16 (heure de Paris ; UTC",
                     "Réemploi (remis à un bénéficiaire)", "Niveau 2 — effacement",
                     "Émis le 23 novembre 2026 à 18:15:36 (heure de Paris, 17:15:36 UTC)",
                     "entrée n° 1", "non renseigné", "Entreprise", "Mairie d'Embrun"):
        assert expected in text, expected


def test_erasure_certificate_in_english(drive_pdfs: dict[tuple[str, str], Path]) -> None:
    text = text_of(drive_pdfs["erasure", "en"])
    for expected in ("Certificate of data erasure", "was erased on 23 November 2026 with the "
                     "Clear method", "67.1 MB (64 MiB) — 67,108,864 bytes", "not recorded",
                     "Reuse (given to a beneficiary)", "Company"):
        assert expected in text, expected
    assert "non renseigné" not in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_non_erasure_is_never_presented_as_a_certificate_of_erasure(
        drive_pdfs: dict[tuple[str, str], Path], language: str) -> None:
    text = text_of(drive_pdfs["non-erasure", language])
    if language == "fr":
        assert "NON EFFACÉ — À DÉTRUIRE" in text
        assert "Constat de non-effacement" in text
        assert "n'atteste aucun effacement" in text
        assert "24 secteur(s) différent(s)" in text
    else:
        assert "NOT ERASED — TO BE DESTROYED" in text
        assert "does not certify any erasure" in text
    for wrong in ("Certificat d'effacement", "Certificate of data erasure",
                  "Effacé et vérifié", "Erased and verified"):
        assert wrong not in text


def test_non_erasure_lists_errors_up_to_ten_then_counts_the_rest(
        drive_pdfs: dict[tuple[str, str], Path]) -> None:
    text = text_of(drive_pdfs["non-erasure", "fr"])
    assert "octet 1 048 576, 4 096 octets : [Errno 5] Input/output error" in text
    assert text.count("[Errno 5]") == 10
    assert "… et 2 autre(s) erreur(s)" in text


def test_destruction_record_names_technique_and_witness(
        drive_pdfs: dict[tuple[str, str], Path]) -> None:
    text = text_of(drive_pdfs["destruction", "fr"])
    for expected in ("Procès-verbal de destruction", "détruit physiquement le 24 novembre 2026 "
                     "par broyage, en présence de Jean-Noël Guérin (Adjoint au maire d'Embrun)",
                     "Destroy", "Destruction constatée visuellement", "Destruction physique"):
        assert expected in text, expected
    assert "Certificat d'effacement" not in text


# -- what the result rests on, caveats, hidden areas accepted by a person ----------------

@pytest.fixture(scope="module")
def firmware_pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("firmware")
    return {lang: save(tmp, f"firmware-{lang}.pdf", drive_pdf(sample(FIRMWARE, lang))[0])
            for lang in ("fr", "en")}


def after(text: str, heading: str, *expected: str) -> None:
    """Each of `expected` is in `text`, after `heading`."""
    start = text.index(heading)
    for words in expected:
        assert words in text[start:], words


def test_firmware_certificate_says_what_the_station_proved_and_what_the_drive_reported(
        firmware_pdfs: dict[str, Path]) -> None:
    path = firmware_pdfs["fr"]
    assert pages(path) == 1
    text = text_of(path)
    assert text.index("Prouvé par la station") < text.index("Déclaré par le disque")
    after(text, "Prouvé par la station", "hdparm --sanitize-crypto-scramble",
          "envoyée par la station, qui a attendu sa fin",
          "1 026 marqueurs témoins écrits avant l'effacement, 0 retrouvé(s) après",
          "Zéros écrits ensuite sur tout l'espace adressable (500 Go)",
          "Relecture totale (100 % du support) : contenu relu conforme, zéros (0x00)")
    after(text, "Déclaré par le disque",
          "État SANITIZE du disque ATA : opération terminée sans erreur",
          "Clé de chiffrement interne remplacée",
          "y compris les zones que la station ne peut pas lire (surprovisionnement, blocs de "
          "réserve et réalloués)")
    english = text_of(firmware_pdfs["en"])
    after(english, "Proven by the station", "sent by the station, which waited for it to end",
          "1,026 canary markers written before the erasure, 0 found after it")
    after(english, "Reported by the drive", "The ATA drive's SANITIZE status: completed "
          "without error", "Internal encryption key replaced")


def test_hidden_areas_not_checked_name_who_accepted_it_when_and_why(
        firmware_pdfs: dict[str, Path]) -> None:
    record, text = sample(FIRMWARE), text_of(firmware_pdfs["fr"])
    for expected in ("Non vérifiées (hdparm -N sans réponse)", "Accepté par",
                     "Hélène Dupré, le 24 novembre 2026 à 11:05:12 (heure de Paris, 10:05:12 UTC)",
                     record["hidden_areas_check"]["accepted"]["reason"]):
        assert expected in text, expected
    english = text_of(firmware_pdfs["en"])
    assert "Not checked (no answer to hdparm -N)" in english
    assert "Hélène Dupré, on 24 November 2026" in english


def test_plan_advice_is_printed_in_the_record_language(firmware_pdfs: dict[str, Path]) -> None:
    note = sample(FIRMWARE)["advice"][0]
    after(text_of(firmware_pdfs["fr"]), "RÉSERVES ET CONSEILS", note["fr"])
    after(text_of(firmware_pdfs["en"]), "CAVEATS AND ADVICE", note["en"])


def test_a_full_firmware_certificate_cuts_nothing_short(firmware_pdfs: dict[str, Path]) -> None:
    record = sample(FIRMWARE)
    for path in firmware_pdfs.values():
        text = text_of(path)
        assert "…" not in text
        for whole in (record["sanitization"]["standard"], record["sanitization"]["policy"]):
            assert whole in text, whole


def test_an_overwrite_rests_on_nothing_the_drive_reports(
        drive_pdfs: dict[tuple[str, str], Path]) -> None:
    text = text_of(drive_pdfs["erasure", "fr"])
    after(text, "Prouvé par la station", "1 passe(s) écrite(s) par la station sur tout l'espace "
          "adressable (67,1 Mo)")
    assert "Sans objet : ce n'est pas un disque ATA" in text
    assert "Déclaré par le disque" not in text and "RÉSERVES ET CONSEILS" not in text


def test_an_erasure_of_unchecked_hidden_areas_nobody_accepted_breaks_the_schema() -> None:
    record = sample(FIRMWARE)
    record["hidden_areas_check"]["accepted"] = None
    assert any(p.startswith("hidden_areas_check.accepted") for p in problems(record))
    record["kind"], record["id"] = "non-erasure", "NEF" + record["id"][3:]
    assert not any(p.startswith("hidden_areas_check") for p in problems(record))


def test_drive_pdf_embeds_the_signed_json(tmp_path: Path) -> None:
    record = sample("erasure")
    pdf, _ = drive_pdf(record)
    path = save(tmp_path, "c.pdf", pdf)
    listing = poppler("pdfdetach", "-list", path)
    assert f"{record['id']}.json" in listing
    poppler("pdfdetach", "-save", "1", "-o", tmp_path / "out.json", path)
    assert (tmp_path / "out.json").read_bytes() == signed(record)[0]


def test_drive_pdf_embeds_dejavu_and_is_deterministic(tmp_path: Path) -> None:
    record = sample("erasure")
    first, _ = drive_pdf(record)
    assert drive_pdf(record)[0] == first
    fonts = poppler("pdffonts", save(tmp_path, "c.pdf", first))
    assert "DejaVu-Sans" in fonts and "DejaVu-Sans-Mono" in fonts


def qr_modules(pdf: Path, tmp: Path) -> list[list[bool]]:
    poppler("pdfimages", "-png", pdf, tmp / "img")
    (png,) = sorted(tmp.glob("img-*.png"))
    image = Image.open(png).convert("L")
    return [[image.getpixel((x, y)) < 128 for x in range(image.width)]
            for y in range(image.height)]


@pytest.mark.parametrize("verify_url", [VERIFY_URL, ""])
def test_qr_code_holds_the_verify_url_id_and_hash(tmp_path: Path, verify_url: str) -> None:
    record = sample("erasure")
    pdf, sha = drive_pdf(record, verify_url)
    expected = (f"{VERIFY_URL}?id={record['id']}&sha256={sha}" if verify_url
                else f"imager:{record['id']}:{sha}")
    assert render.qr_text(record["id"], sha, verify_url) == expected
    symbol = segno.make(expected, error="m", micro=False)
    want = [[bool(v) for v in row] for row in symbol.matrix_iter(scale=1, border=4)]
    assert qr_modules(save(tmp_path, "c.pdf", pdf), tmp_path) == want


def test_qr_text_keeps_an_existing_query() -> None:
    assert render.qr_text("EFF-1", "ab", "https://x.example/v?lang=fr") == \
        "https://x.example/v?lang=fr&id=EFF-1&sha256=ab"


def stress_record(language: str = "fr") -> dict[str, Any]:
    """Everything as long as the schema allows, many errors, a machine."""
    r = copy.deepcopy(sample("non-erasure", language))
    long = f"{DONOR} — « Établissements {TECHNICIAN} & Fils » … " * 12
    r["donor"]["name"] = long[:500]
    r["donation"]["intake_site"] = long[:300]
    r["machine"] = {"vendor": "LENOVO", "model": "ThinkPad T480s 20L7001XFR " * 5,
                    "serial": "PF1ABCDE" * 8, "asset_tag": "INV-2026-000123"}
    r["media"].update(manufacturer="Western Digital Corporation " * 4,
                      model="WDC WD10EZEX-08WN4A0 " * 8, serial="WD-WCC6Y" * 10)
    area = {"visible_max": 1953525168, "native_max": 1953525168, "dco_real_max": 1953525168}
    r["hidden_areas"] = {"before": area, "after": area,
                         "actions": ["HPA removed: 1953525168 -> 1953525168 sectors " * 3] * 6}
    r["sanitization"]["passes"] = [
        {"index": i, "pattern": p, "bytes_written": 10**12, "seconds": 7200.5}
        for i, p in enumerate(["zero", "ones", "random", "pattern:deadbeef"] * 3)]
    r["sanitization"]["canary"] = {"planted": 1024, "survivors": 3}
    r["sanitization"]["refused_methods"] = [
        {"method": f"nvme-sanitize-crypto-{i}", "reason": "SANICAP bit 0 clear " * 10}
        for i in range(12)]
    r["sanitization"]["policy"] = "p" * 1500
    r["outcome"]["reason"] = ("Erreur d'écriture répétée " * 100)[:2000]
    r["errors"] = r["errors"] * 5
    r["performed_by"]["habilitation"] = "Niveau 2 — effacement " * 20
    r["hidden_areas_check"] = {"status": "not-checked", "accepted": None}
    r["advice"] = [{"fr": "Zones cachées non vérifiées " * 8, "en": "Hidden areas not checked " * 8}
                   ] * 3
    return r


@pytest.mark.parametrize("language", ["fr", "en"])
def test_long_names_and_sixty_errors_still_fit_one_page(tmp_path: Path, language: str) -> None:
    record = stress_record(language)
    assert problems(record) == []
    pdf, sha = drive_pdf(record)
    path = save(tmp_path, "long.pdf", pdf)
    assert pages(path) == 1
    text = text_of(path)
    assert sha in text and record["id"] in text and record["ledger"]["prev"] in text
    assert ("autre(s) erreur(s)" if language == "fr" else "more error(s)") in text


def test_unknown_codes_print_as_is_and_missing_fields_as_not_recorded(tmp_path: Path) -> None:
    r = sample("erasure")
    r.update(donor={"name": "Mme Anaïs Roux", "kind": "ministry", "siret": None},
             donation=None, performed_by=None, verification=None, timing={},
             destination="moon", hidden_areas={"before": None, "after": None, "actions": []})
    r["media"].update(media_type="quantum", capacity_bytes=None)
    r["sanitization"].update(technique="plasma", method_type="obliterate",
                             passes=[{"index": 0}], refused_methods=[{"method": "x"}])
    r["validated_by"]["method"] = "telepathy"
    r["evidence"] = {"proven": ["telekinesis"], "reported": ["hearsay"]}
    r["errors"] = [{"offset": "?"}, "garbage"]
    pdf, _ = drive_pdf(r)
    path = save(tmp_path, "odd.pdf", pdf)
    assert pages(path) == 1
    text = text_of(path)
    for expected in ("ministry", "moon", "quantum", "plasma", "obliterate",
                     "telekinesis", "hearsay", "non renseigné", "Mme Anaïs Roux"):
        assert expected in text, expected


def test_drive_page_images_are_produced(drive_pdfs: dict[tuple[str, str], Path],
                                         tmp_path: Path) -> None:
    for (kind, language), path in drive_pdfs.items():
        poppler("pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", path,
                tmp_path / f"{kind}-{language}")
        (png,) = tmp_path.glob(f"{kind}-{language}*.png")
        width, height = Image.open(png).size
        assert abs(width - 496) <= 1 and abs(height - 702) <= 1  # A4 at 60 dpi


def test_templates_fetch_nothing_remote() -> None:
    for path in render.TEMPLATES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "url(//" not in text, path
    with pytest.raises(ValueError, match="disallowed protocol"):
        render._fetcher().fetch("https://example.org/logo.png")


# -- words and numbers --------------------------------------------------------------

def test_sizes_dates_and_durations_read_naturally_in_both_languages() -> None:
    assert L.capacity(500107862016, "fr") == \
        f"500{NBSP}Go (466{NBSP}Gio) — 500{NNBSP}107{NNBSP}862{NNBSP}016{NBSP}octets"
    assert L.capacity(67108864, "en") == f"67.1{NBSP}MB (64{NBSP}MiB) — 67,108,864{NBSP}bytes"
    assert L.size(1000204886016, "fr") == f"1{NBSP}To"
    assert L.day("2026-03-01", "fr") == "1er mars 2026"
    assert L.day("2026-03-01", "en") == "1 March 2026"
    summer = "2026-07-14T10:00:00+00:00"
    assert L.moment(summer, "fr") == "14 juillet 2026 à 12:00:00 (heure de Paris, 10:00:00 UTC)"
    assert L.moment(summer, "en") == "14 July 2026, 12:00:00 Paris time (10:00:00 UTC)"
    assert L.moment("2026-12-31T23:30:00Z", "fr").startswith("1er janvier 2027 à 00:30:00")
    assert L.duration(3725, "fr") == f"1{NBSP}h 02{NBSP}min"
    assert L.duration(125.2, "en") == f"2{NBSP}min 05{NBSP}s"
    assert L.percent(0.0125, "fr") == f"1,25{NNBSP}%"
    assert L.percent(1.0, "en") == "100%"


def test_codes_become_words_and_unknown_codes_stay_as_they_are() -> None:
    assert L.word("donor_kind", "town_hall", "fr") == "Mairie"
    assert L.word("technique", "crush", "en") == "crushing"
    assert L.word("validation", "read-back-sample+canaries", "fr").startswith(
        "relecture par échantillonnage")
    assert L.word("destination", "spaceship", "fr") == "spaceship"
    assert L.word("media_type", None, "fr") == "non renseigné"
    assert L.word("media_type", None, "en") == "not recorded"
    assert L.word("method", "destruction-drill", "fr") == f"Destruction physique{NBSP}: perçage"
    assert L.text("no-such-label", "fr") == "no-such-label"
    for category in L.WORDS.values():
        for fr, en in category.values():
            assert fr and en


# -- donations ---------------------------------------------------------------------

def drive_line(record: dict[str, Any], n: int) -> dict[str, Any]:
    san, ver = record["sanitization"], record["verification"]
    return {"certificate": record["id"][:9] + f"{n:04X}-TEST",
            "kind": record["kind"], "sha256": hashlib.sha256(str(n).encode()).hexdigest(),
            "manufacturer": "Samsung" if n % 2 else None,
            "model": "SSD 870 EVO 500GB" if n % 2 else "=HYPERLINK(\"x\")",
            "serial": f"S5Y{n:09d}", "capacity_bytes": 500107862016,
            "media_type": "flash", "method_type": san["method_type"],
            "technique": san["technique"], "method": san["method"],
            "verification": ver["mode"] if ver else None,
            "result": record["outcome"]["result"], "destination": record["destination"],
            "date": record["timing"]["ended_at"]}


def donation(n: int, language: str = "fr") -> dict[str, Any]:
    base = sample("erasure", language)
    kinds = [sample(k) for k in KINDS]
    drives = [drive_line(kinds[0] if i % 10 else kinds[1 + (i // 10) % 2], i)
              for i in range(n)]
    results = [d["result"] for d in drives]
    record = {
        "schema": "imager/donation-record/1", "kind": "donation",
        "id": "DON-2026-7K3M-9QXA", "issued_at": "2026-11-25T10:00:00+00:00",
        "language": language, "issuer": base["issuer"],
        "ledger": {"seq": 40, "prev": "ab" * 32}, "donor": base["donor"],
        "donation": base["donation"],
        "validated_by": {k: base["validated_by"][k] for k in ("name", "title", "organisation")},
        "summary": {"drives": n, "erased": results.count("erased"),
                    "clear": sum(d["method_type"] == "clear" for d in drives), "purge": 0,
                    "not_erased": results.count("failed"),
                    "destroyed": results.count("destroyed")},
        "drives": drives, "csv_sha256": "0" * 64}
    record["csv_sha256"] = hashlib.sha256(render.donation_csv(record)).hexdigest()
    return record


def donation_pdf(record: dict[str, Any], tmp: Path) -> Path:
    data, sha = signed(record)
    pdf = render.render_donation_pdf(record, sha256=sha, verify_url=VERIFY_URL, attachments=[
        (f"{record['id']}.json", data, "signed record"),
        (f"{record['id']}.csv", render.donation_csv(record), "CSV")])
    return save(tmp, "donation.pdf", pdf)


def test_donation_pdf_has_a_summary_page_then_every_drive(tmp_path: Path) -> None:
    record = donation(12)
    assert problems(record) == []
    path = donation_pdf(record, tmp_path)
    assert pages(path) == 2
    summary = text_of(path, 1)
    for expected in (DONOR, "Bilan du traitement des supports d'un don", record["id"],
                     "Supports reçus 12", "Effacés et vérifiés 10", "Non effacés (à détruire) 1",
                     "Détruits physiquement 1", "CE QUE SIGNIFIENT CES DOCUMENTS",
                     "n'atteste aucun effacement", record["csv_sha256"],
                     "imager cert verify <file> --trust station.pem"):
        assert expected in summary, expected
    table = text_of(path, 2)
    for drive in record["drives"]:
        assert drive["certificate"] in table and drive["serial"] in table
    assert "NON effacé — à détruire" in table and "Réemploi" in table
    listing = poppler("pdfdetach", "-list", path)
    assert f"{record['id']}.json" in listing and f"{record['id']}.csv" in listing


def test_donation_pdf_in_english(tmp_path: Path) -> None:
    path = donation_pdf(donation(3, "en"), tmp_path)
    text = text_of(path)
    assert "Media sanitization summary of a donation" in text
    assert "Drives received 3" in text and "Serial" in text


def test_five_hundred_drives_render_with_the_header_on_every_page(tmp_path: Path) -> None:
    record = donation(500)
    path = donation_pdf(record, tmp_path)    # its time: bench/certificates.py
    count = pages(path)
    assert count > 10
    for page in range(2, count + 1):
        text = text_of(path, page)
        assert "N° de série" in text and "Vérification" in text, page
    last = text_of(path, count)
    assert record["drives"][-1]["certificate"] in last


def test_donation_csv_is_semicolon_separated_utf8_and_deterministic() -> None:
    record = donation(12)
    data = render.donation_csv(record)
    assert data == render.donation_csv(copy.deepcopy(record))
    assert not data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=";"))
    assert rows[0][:4] == ["N°", "Document", "Type de document", "SHA-256"]
    assert len(rows) == 13 and all(len(row) == len(rows[0]) for row in rows)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["Document"] == record["drives"][0]["certificate"]
    assert first["Capacité (octets)"] == "500107862016"
    assert first["Modèle"] == "'=HYPERLINK(\"x\")"  # never a live formula
    assert first["Fabricant"] == ""  # null stays empty
    english = render.donation_csv({**record, "language": "en"}).decode("utf-8")
    assert english.startswith("No.;Document;Document type;SHA-256;")
