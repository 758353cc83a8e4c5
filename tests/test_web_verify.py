"""The public verification page: real documents issued by the station's own code (an
erasure certificate of a loop device, a destruction record of a drive with a serial
number, a donation certificate, all for a private donor), then checked as anyone
does: the QR code's URL, the short path, JSON by content negotiation, a PDF or JSON
file sent from the browser, a withdrawal; never the serial number, the technician, a
private donor's name or contacts; the same not-found page for an unknown id and an
altered hash; a limit per address; no account needed, on a real `imager serve` too."""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from clirun import imager, json_lines
from conftest import LoopFactory
from fastapi.testclient import TestClient
from station_proc import Serve

from imager.certify.identity import load_profile
from imager.certify.local import LocalCheck
from imager.certify.public import NAMED_DONORS, look_up, public_fields
from imager.certify.render import qr_text
from imager.model import DriveIdentity
from imager.registry.jobs import upsert_drive
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.station.web import verify
from imager.store.db import Registry

pytestmark = pytest.mark.root

MiB = 1 << 20
DONOR = "Jeanne Martin-Rousseau"            # a private person
DONOR_EMAIL = "jeanne.martin-rousseau@courriel.example"
DONOR_PHONE = "06 12 34 56 78"
TECH = "Zoé Müller-Lefèvre"
WITNESS = "Hélène Dupré"
REF = "DON-2026-0107"
SERIAL, MODEL = "WD-WX21A9C4ZZ17", "WDC WD5000LPLX-08ZNTT0"
WHY = ("Contrôle qualité du 12 mars : le procès-verbal nomme le mauvais témoin ; un nouveau "
       "procès-verbal sera établi.")
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SITE = "https://atelier.reseau-solidaire-05.example"     # the shipped profile's verify_url


def _destroy(data: Path, serial: str) -> dict[str, Any]:
    """A destruction record of a drive registered at intake with `serial`."""
    ident = DriveIdentity(path="/dev/none", size=500107862016, model=MODEL, serial=serial,
                          transport="sata", rotational=True)
    with Registry.open(Settings(data_dir=data)) as reg, reg.session() as s:
        upsert_drive(s, ident)
    return json_lines(imager(data, "cert", "destroy", ident.key, "--technique", "shred",
                             "--witness", WITNESS, "--donation", REF, "--technician", TECH,
                             "--json").stdout)[0]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A station that erased a loop device and certified it, destroyed a drive, and
    issued the donation's certificate; the donor is a private person."""
    base = tmp_path_factory.mktemp("verify")
    loops = LoopFactory(base)
    data = base / "station"
    try:
        imager(data, "donors", "add", "--kind", "particulier", "--email", DONOR_EMAIL,
               "--phone", DONOR_PHONE, DONOR)
        imager(data, "donations", "add", "--donor", DONOR, REF)
        imager(data, "technicians", "add", "--level", "Niveau 2", TECH)
        dev = loops(16 * MiB)
        erased = json_lines(imager(data, "erase", dev, "--donation", REF, "--technician",
                                   TECH, "--json", check=False).stdout)[-1]
        assert erased["outcome"] == "erased", erased
        eff = json_lines(imager(data, "cert", "issue", str(erased["job_id"]), "--json")
                         .stdout)[0]
        des = _destroy(data, SERIAL)
        don = json_lines(imager(data, "cert", "donation", REF, "--json").stdout)[0]
        record = json.loads(Path(eff["json"]).read_bytes())["document"]
        yield {"data": data, "eff": eff, "des": des, "don": don,
               "identity": record["media"]["identity"]}
    finally:
        loops.detach_all()


@pytest.fixture
def web(docs: dict[str, Any]) -> Iterator[TestClient]:
    settings = Settings(data_dir=docs["data"])
    with Registry.open(settings) as registry:
        station = Station(settings, registry, ServicePolicy(auto_erase="never",
                                                            auto_certify=False))
        with TestClient(create_app(station), base_url=SITE) as client:
            yield client


def qr_path(doc: dict[str, Any], data: Path) -> str:
    """The path and query of the URL in the document's QR code (the renderer's own)."""
    url = qr_text(doc["id"], doc["sha256"], load_profile(Settings(data_dir=data)).verify_url)
    assert url.startswith(f"{SITE}/verifier?id="), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def seen(resp: httpx.Response) -> str:
    """The text of a page as a reader sees it (HTML entities decoded)."""
    return html.unescape(resp.text)


def never_shown(docs: dict[str, Any], text: str) -> None:
    """None of what the page must never show is in `text`."""
    profile = load_profile(Settings(data_dir=docs["data"]))
    for secret in (SERIAL, TECH, WITNESS, DONOR, DONOR_EMAIL, DONOR_PHONE, docs["identity"],
                   profile.phone, profile.email, profile.validator_name):
        assert secret not in text, secret
    assert "Martin-Rousseau" not in text and "Müller" not in text


def test_the_qr_code_of_a_certificate_says_genuine_with_the_public_fields_only(
        web: TestClient, docs: dict[str, Any]) -> None:
    page = web.get(qr_path(docs["eff"], docs["data"]), headers={"Accept": BROWSER})
    assert page.status_code == 200, seen(page)
    text = seen(page)
    assert "Ce document est authentique." in text and 'lang="fr"' in text
    for words in (docs["eff"]["id"], "Certificat d'effacement", "Clear", "Effacé et vérifié",
                  "Particulier", "Réseau solidaire du numérique des Hautes-Alpes",
                  "Modèle du support"):
        assert words in text, words
    never_shown(docs, text)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "imager_session" not in page.headers.get("set-cookie", "")


def test_a_destruction_record_shows_the_model_never_the_serial(
        web: TestClient, docs: dict[str, Any]) -> None:
    des = docs["des"]
    page = web.get(f"/v/{des['id']}/{des['sha256']}")
    assert page.status_code == 200 and "Ce document est authentique." in seen(page)
    assert MODEL in seen(page) and "Destroy" in seen(page) and "Détruit" in seen(page)
    never_shown(docs, seen(page))
    said = web.get(f"/v/{des['id']}", params={"sha256": des["sha256"]},
                   headers={"Accept": "application/json"}).json()
    assert said["state"] == "genuine" and said["withdrawal"] is None
    assert said["document"] == {
        "id": des["id"], "kind": "destruction", "issued_at": said["document"]["issued_at"],
        "issuer": "Réseau solidaire du numérique des Hautes-Alpes", "method_class": "destroy",
        "drive_model": MODEL, "outcome": "destroyed", "donor_kind": "person", "donor": None}
    never_shown(docs, json.dumps(said, ensure_ascii=False))


def test_the_pdfs_hash_and_a_donation_certificate_are_answered_too(
        web: TestClient, docs: dict[str, Any]) -> None:
    eff = docs["eff"]
    pdf_sha = hashlib.sha256(Path(eff["pdf"]).read_bytes()).hexdigest()
    by_pdf = web.get("/verifier", params={"id": eff["id"], "sha256": pdf_sha.upper()},
                     headers={"Accept": "application/json"})
    assert by_pdf.json()["state"] == "genuine"
    don = web.get(qr_path(docs["don"], docs["data"]), headers={"Accept": "application/json"})
    said = don.json()
    assert said["state"] == "genuine" and said["document"]["kind"] == "donation"
    assert said["document"]["drives"] == {"drives": 2, "erased": 1, "not_erased": 0,
                                          "destroyed": 1}
    assert said["document"]["donor"] is None
    never_shown(docs, don.text)
    page = web.get(qr_path(docs["don"], docs["data"]))
    assert "2 en tout : 1 effacé(s), 0 non effacé(s), 1 détruit(s)" in seen(page)


def test_an_unknown_id_and_an_altered_hash_get_the_same_not_found_page(
        web: TestClient, docs: dict[str, Any]) -> None:
    eff = docs["eff"]
    altered = ("0" if eff["sha256"][0] != "0" else "1") + eff["sha256"][1:]
    unknown = "EFF-2026-ZZZZ-ZZZZ"
    answers = [web.get("/verifier", params={"id": eff["id"], "sha256": altered}),
               web.get("/verifier", params={"id": unknown, "sha256": eff["sha256"]}),
               web.get(f"/v/{eff['id']}/{altered}"), web.get(f"/v/{unknown}/{eff['sha256']}"),
               web.get(f"/v/{eff['id']}"), web.get("/verifier", params={"id": eff["id"]}),
               web.get("/verifier", params={"id": "../../keys/station", "sha256": "x"})]
    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1, "the not-found pages differ"
    text = seen(answers[0])
    assert "Document introuvable, ou les informations ne correspondent pas" in text
    assert eff["id"] not in text and unknown not in text and altered not in text
    said = [web.get("/verifier", params={"id": i, "sha256": h},
                    headers={"Accept": "application/json"})
            for i, h in ((eff["id"], altered), (unknown, eff["sha256"]))]
    assert said[0].status_code == said[1].status_code == 404
    assert said[0].content == said[1].content and said[0].json()["state"] == "not_found"


def test_a_look_up_takes_the_same_time_for_an_unknown_id_and_an_altered_hash(
        docs: dict[str, Any]) -> None:
    settings = Settings(data_dir=docs["data"])
    eff = docs["eff"]
    altered = eff["sha256"][:-1] + ("0" if eff["sha256"][-1] != "0" else "1")
    with Registry.open(settings) as registry:
        local = LocalCheck(settings, registry).current()

        def fastest(doc_id: str, sha: str) -> float:
            best = 1.0
            for _ in range(300):
                start = time.perf_counter()
                assert look_up(doc_id, sha, local, settings.documents_dir) is None
                best = min(best, time.perf_counter() - start)
            return best

        unknown, wrong = fastest("EFF-2026-ZZZZ-ZZZZ", eff["sha256"]), fastest(eff["id"], altered)
        start = time.perf_counter()
        assert look_up(eff["id"], eff["sha256"], local, settings.documents_dir) is not None
        found = time.perf_counter() - start
    print(f"look-up: unknown id {unknown * 1e6:.1f} µs, altered hash {wrong * 1e6:.1f} µs, "
          f"genuine (file verified) {found * 1e3:.1f} ms")
    assert unknown < 1e-3 and wrong < 1e-3        # no file read, no signature checked


def test_json_by_content_negotiation_and_html_otherwise(web: TestClient,
                                                        docs: dict[str, Any]) -> None:
    path = qr_path(docs["eff"], docs["data"])
    for accept in ("application/json", "application/json, text/html;q=0.5"):
        resp = web.get(path, headers={"Accept": accept})
        assert resp.headers["content-type"] == "application/json", accept
        assert resp.json()["document"]["method_class"] == "clear"
        assert resp.headers["vary"] == "Accept"
    for accept in (BROWSER, "*/*", "text/html, application/json", ""):
        resp = web.get(path, headers={"Accept": accept})
        assert resp.headers["content-type"].startswith("text/html"), accept


def test_english_on_request_keeping_the_id_and_hash(web: TestClient,
                                                    docs: dict[str, Any]) -> None:
    page = web.get(qr_path(docs["eff"], docs["data"]) + "&lang=en")
    assert "This document is genuine." in seen(page) and 'lang="en"' in seen(page)
    assert "Certificate of erasure" in seen(page) and "Erased and verified" in seen(page)
    french = re.search(r'href="([^"]+)" lang="fr"', seen(page))
    assert french, seen(page)
    back = web.get("/verifier" + french.group(1).replace("&amp;", "&"))
    assert "Ce document est authentique." in seen(back)


def test_after_withdraw_the_page_says_withdrawn_with_the_date_and_reason(
        web: TestClient, docs: dict[str, Any]) -> None:
    data = docs["data"]
    des = _destroy(data, "WD-WX21A9C4ZZ99")
    before = web.get(f"/v/{des['id']}/{des['sha256']}", headers={"Accept": "application/json"})
    assert before.json()["state"] == "genuine"
    imager(data, "cert", "withdraw", des["id"], "--by", WITNESS, "--reason", WHY)
    page = web.get(f"/v/{des['id']}/{des['sha256']}")
    assert page.status_code == 200
    assert "Ce document a été retiré." in seen(page) and "Il n'est plus valable." in seen(page)
    assert f"« {WHY} »" in seen(page) and "Retiré le " in seen(page)
    said = web.get(f"/v/{des['id']}/{des['sha256']}",
                   headers={"Accept": "application/json"}).json()
    assert said["state"] == "withdrawn" and said["withdrawal"]["reason"] == WHY
    assert said["withdrawal"]["at"].startswith("20") and "by" not in said["withdrawal"]
    assert WITNESS not in seen(page) and "WD-WX21A9C4ZZ99" not in seen(page)


def test_lookups_are_limited_per_address(web: TestClient, docs: dict[str, Any]) -> None:
    for n in range(verify.LOOKUPS):
        assert web.get("/v/EFF-2026-ZZZZ-ZZZZ/" + "0" * 64).status_code == 404, n
    refused = web.get(qr_path(docs["eff"], docs["data"]))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert "Trop de vérifications depuis cet ordinateur. Attendez une minute" in seen(refused)
    assert web.get("/verifier").status_code == 200              # the form still opens


def _send(web: TestClient, name: str, data: bytes, **headers: str) -> Any:
    return web.post("/verifier", files={"file": (name, data)},
                    headers={"Accept": "application/json", **headers})


def test_a_file_sent_from_the_browser_is_verified_by_the_projects_code(
        web: TestClient, docs: dict[str, Any]) -> None:
    eff = docs["eff"]
    pdf, signed = Path(eff["pdf"]).read_bytes(), Path(eff["json"]).read_bytes()
    for name, data in (("certificat.pdf", pdf), ("certificat.json", signed)):
        said = _send(web, name, data).json()
        assert said["state"] == "genuine", said
        assert said["document"]["id"] == eff["id"]
        never_shown(docs, json.dumps(said, ensure_ascii=False))
    page = web.post("/verifier", files={"file": ("c.pdf", pdf)})
    assert "Ce document est authentique." in seen(page)
    never_shown(docs, seen(page))
    middle = len(pdf) // 2
    altered = pdf[:middle] + bytes([pdf[middle] ^ 0x01]) + pdf[middle + 1:]
    bad = web.post("/verifier", files={"file": ("c.pdf", altered)})
    assert bad.status_code == 200
    assert "Ce document n'est pas authentique, ou il a été modifié." in seen(bad)
    assert eff["id"] not in seen(bad)
    raw = web.post("/verifier", content=signed, headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    assert raw.json()["state"] == "genuine"


def test_a_file_too_large_empty_or_sent_from_another_site_is_refused(
        web: TestClient, docs: dict[str, Any]) -> None:
    pdf = Path(docs["eff"]["pdf"]).read_bytes()
    for headers in ({"Origin": "https://ailleurs.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        refused = web.post("/verifier", files={"file": ("c.pdf", pdf)}, headers=headers)
        assert refused.status_code == 403, headers
        assert "envoyé depuis un autre site web" in seen(refused)
    for headers in ({"Origin": SITE}, {"Sec-Fetch-Site": "same-origin", "Origin": SITE}):
        assert _send(web, "c.pdf", pdf, **headers).json()["state"] == "genuine"
    big = web.post("/verifier", files={"file": ("c.pdf", b"%PDF" + b"0" * verify.MAX_UPLOAD)})
    assert big.status_code == 413 and "Ce fichier est trop gros." in seen(big)
    empty = web.post("/verifier", files={"file": ("c.pdf", b"")})
    assert empty.status_code == 400 and "Choisissez le fichier PDF ou JSON" in seen(empty)


def test_the_form_is_accessible_and_needs_no_account(web: TestClient) -> None:
    page = web.get("/verifier", follow_redirects=False)
    assert page.status_code == 200
    form = seen(page)
    assert '<html lang="fr">' in form and "<main" in form and "<h1>Vérifier un document" in form
    for field in ("doc-id", "sha256", "file"):
        assert f'<label for="{field}">' in form and f'id="{field}"' in form
    assert 'enctype="multipart/form-data"' in form and 'name="csrf"' not in form


def test_public_fields_name_an_organisation_never_a_person(docs: dict[str, Any]) -> None:
    record = json.loads(Path(docs["eff"]["json"]).read_bytes())["document"]
    assert public_fields(record)["donor"] is None
    for kind in NAMED_DONORS:
        company = {**record, "donor": {"name": "Mairie d'Embrun", "kind": kind, "siret": None}}
        assert public_fields(company)["donor"] == "Mairie d'Embrun"
    odd = {**record, "donor": {"name": DONOR, "kind": "unknown-kind", "siret": None}}
    assert public_fields(odd)["donor"] is None


def test_the_page_at_the_qr_url_of_a_real_imager_serve(docs: dict[str, Any]) -> None:
    server = Serve(docs["data"], "--no-local-agent", "--auto-erase", "never")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as anyone:   # no token, no cookie
            page = anyone.get(qr_path(docs["eff"], docs["data"]))
        assert page.status_code == 200 and "Ce document est authentique." in seen(page)
        never_shown(docs, seen(page))
    finally:
        server.close()


@pytest.mark.parametrize(("url", "path"), [
    ("https://atelier.example/verifier", "/verifier"), ("https://x.example/check/", "/check"),
    ("https://x.example/a/b?station=gap", "/a/b"), ("", verify.DEFAULT_PATH),
    ("https://x.example/", verify.DEFAULT_PATH), ("https://x.example/login", verify.DEFAULT_PATH),
    ("https://x.example/{id}", verify.DEFAULT_PATH)])
def test_the_page_is_at_the_path_of_the_profiles_verify_url(
        url: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "station.yaml"
    profile.write_text(f'organisation: "Atelier"\nverify_url: "{url}"\n', encoding="utf-8")
    monkeypatch.setenv("IMAGER_STATION_PROFILE", str(profile))
    assert verify.verify_path(Settings(data_dir=tmp_path)) == path


def test_wants_json_reads_the_accept_header() -> None:
    assert verify.wants_json("application/json")
    assert verify.wants_json("text/html;q=0.1, application/json")
    assert not verify.wants_json("text/html, application/json")
    assert not verify.wants_json(BROWSER) and not verify.wants_json("")
    assert not verify.wants_json("application/json;q=oops")

