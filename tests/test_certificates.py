"""Certificates end to end, with the real `imager` command: erase loop devices,
issue documents, verify them offline as a donor would (another machine: only
the station certificate and the files), and tamper with them."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from certmaker import make
from clirun import imager, json_lines
from conftest import need_tool
from cryptography.hazmat.primitives import serialization

from imager.certify.keys import station_keys
from imager.certify.ledger import verify_export
from imager.certify.signing import Checks
from imager.certify.verify import LedgerSource, trust_from, verify_file
from imager.errors import UsageError
from imager.inventory import lsblk
from imager.model import DriveIdentity
from imager.registry.issue import Issuer, find_drive
from imager.registry.jobs import RegistryJobStore, upsert_drive
from imager.settings import Settings
from imager.store.db import Registry

MiB = 1 << 20
DONOR = "Société Générale d'Électronique Alpine"
TECH = "Zoé Müller-Lefèvre"
REF = "DON-2026-0042"

pytestmark = pytest.mark.root


def _people(data: Path) -> None:
    imager(data, "donors", "add", "--kind", "entreprise", "--siret", "73282932000074", DONOR)
    imager(data, "donations", "add", "--donor", DONOR, "--site", "Mairie d'Embrun", REF)
    imager(data, "technicians", "add", "--level", "Niveau 2", TECH)


def _erase(data: Path, dev: str) -> dict:
    out = imager(data, "erase", dev, "--donation", REF, "--technician", TECH, "--json",
                 check=False)
    return json_lines(out.stdout)[-1]


def _issued(out: str) -> list[dict]:
    return json_lines(out)


@pytest.fixture
def station(tmp_path: Path, loopdev: Callable[..., str]) -> dict:
    """A station with one erased drive and its certificate issued."""
    data = tmp_path / "station"
    _people(data)
    dev = loopdev(16 * MiB)
    with open(dev, "r+b") as fh:
        fh.write(os.urandom(MiB))
    report = _erase(data, dev)
    assert report["outcome"] == "erased"
    doc = _issued(imager(data, "cert", "issue", str(report["job_id"]), "--json").stdout)[0]
    donor_dir = tmp_path / "donor"   # what the donor receives: no registry, no key
    donor_dir.mkdir()
    imager(data, "keys", "export", str(donor_dir / "station.pem"))
    imager(data, "ledger", "export", "--output", str(donor_dir / "ledger.json"))
    for key in ("json", "pdf"):
        shutil.copy(doc[key], donor_dir)
    return {"data": data, "doc": doc, "donor": donor_dir, "job": report["job_id"]}


def _verify(donor: Path, *files: str | Path, ledger: bool = True,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    extra = ["--ledger", str(donor / "ledger.json")] if ledger else []
    return imager(donor / "nowhere", "cert", "verify", *map(str, files), "--trust",
                  str(donor / "station.pem"), *extra, check=check)


def test_certificate_verifies_offline_with_only_the_station_certificate(station: dict) -> None:
    donor, doc = station["donor"], station["doc"]
    for name in (Path(doc["json"]).name, Path(doc["pdf"]).name):
        out = _verify(donor, donor / name, check=True)
        assert "VALIDE / VALID" in out.stdout, out.stdout
        assert "in the ledger" in out.stdout
        assert "Ed25519" in out.stdout
    assert "PAdES" in _verify(donor, donor / Path(doc["pdf"]).name).stdout
    without = _verify(donor, donor / Path(doc["json"]).name, ledger=False, check=True)
    assert "ledger inclusion not checked" in without.stdout
    assert not (donor / "nowhere" / "registry.sqlite3").exists()


def test_the_record_says_who_what_and_how(station: dict) -> None:
    envelope = json.loads(Path(station["doc"]["json"]).read_text(encoding="utf-8"))
    rec = envelope["document"]
    assert rec["kind"] == "erasure" and rec["id"].startswith("EFF-")
    assert rec["donor"]["name"] == DONOR and rec["donation"]["reference"] == REF
    assert rec["performed_by"]["name"] == TECH
    assert rec["sanitization"]["method_type"] == "clear"
    assert rec["sanitization"]["tool"].startswith("imager ")
    assert rec["verification"]["mode"] == "full" and rec["verification"]["ok"] is True
    assert rec["outcome"]["result"] == "erased" and rec["destination"] == "reuse"
    assert rec["media"]["capacity_bytes"] == 16 * MiB
    assert rec["ledger"]["seq"] == 1


def test_any_byte_changed_in_the_pdf_fails(station: dict) -> None:
    donor = station["donor"]
    pdf = donor / Path(station["doc"]["pdf"]).name
    data = pdf.read_bytes()
    trust = trust_from([donor / "station.pem"])
    checks = Checks()
    ledger = LedgerSource({e["doc_id"]: e for e in verify_export(
        (donor / "ledger.json").read_bytes(), trust, checks)}, "export")
    assert verify_file(pdf, trust, ledger).ok
    rng = random.Random(7)
    bad = donor / "altered.pdf"
    for pos in rng.sample(range(len(data)), 400):
        mutated = bytearray(data)
        mutated[pos] = (mutated[pos] + rng.randrange(1, 256)) % 256
        bad.write_bytes(bytes(mutated))
        assert not verify_file(bad, trust, ledger).ok, f"byte {pos}/{len(data)} changed"
    bad.write_bytes(data.replace(b"/Contents <", b"/Contents <", 1))  # sanity: unchanged
    assert verify_file(bad, trust, ledger).ok
    out = _verify(donor, bad.with_name("altered.pdf"))
    assert out.returncode == 0


def test_pdf_text_and_pages(station: dict, tmp_path: Path) -> None:
    need_tool("pdftotext")
    pdf = station["doc"]["pdf"]
    text = subprocess.run(["pdftotext", "-layout", pdf, "-"], capture_output=True, text=True,
                          check=True).stdout
    for words in (DONOR, TECH, "Certificat d'effacement", "Clear", REF):
        assert words in text, words
    info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M), info
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", pdf,
                    str(tmp_path / "page")], check=True)
    assert (tmp_path / "page-1.png").stat().st_size > 10_000


def test_failed_and_unfinished_jobs_get_no_certificate(
        tmp_path: Path, faultdisk: Callable[..., object]) -> None:
    data = tmp_path / "station"
    _people(data)
    disk = faultdisk(16 * MiB, [(8 * MiB, 4096)])
    report = _erase(data, disk.device)
    assert report["outcome"] == "failed"
    doc = _issued(imager(data, "cert", "issue", str(report["job_id"]), "--json").stdout)[0]
    assert doc["kind"] == "non-erasure" and doc["id"].startswith("NEF-")
    rec = json.loads(Path(doc["json"]).read_text(encoding="utf-8"))["document"]
    assert rec["sanitization"]["method_type"] is None
    assert rec["destination"] == "destruction" and rec["errors"]
    text = subprocess.run(["pdftotext", doc["pdf"], "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "NON EFFACÉ" in text and "Certificat d'effacement" not in text
    # a job that has not ended, and one that was interrupted: nothing is issued
    settings = Settings(data_dir=data)
    with Registry.open(settings) as reg:
        store = RegistryJobStore(reg)
        view = store.get(report["job_id"])
        queued = store.create_erase(DriveIdentity(path="/dev/none", size=MiB, serial="Q1"),
                                    view.plan)
        interrupted = store.create_erase(DriveIdentity(path="/dev/none2", size=MiB,
                                                       serial="Q2"), view.plan)
        store.move(interrupted, "running")
        store.move(interrupted, "interrupted", reason="power cut",
                   report={**view.report, "outcome": "interrupted", "job_id": interrupted})
        issuer = Issuer(settings, reg)
        with pytest.raises(UsageError, match="unfinished"):
            issuer.for_job(queued)
        with pytest.raises(UsageError, match="interrupted"):
            issuer.for_job(interrupted)
    out = imager(data, "cert", "issue", str(queued), check=False)
    assert out.returncode == 2 and "jobs resume" in out.stderr


def test_donation_certificate_csv_destruction_and_ledger(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    data = tmp_path / "station"
    _people(data)
    devs = [loopdev(8 * MiB) for _ in range(3)]
    for dev in devs[:2]:
        assert _erase(data, dev)["outcome"] == "erased"
    out = imager(data, "cert", "donation", REF, check=False)
    assert out.returncode == 2 and "without a document" in out.stderr
    issued = _issued(imager(data, "cert", "issue", "--donation", REF, "--json").stdout)
    assert [d["kind"] for d in issued] == ["erasure", "erasure"]
    again = _issued(imager(data, "cert", "issue", "--donation", REF, "--json").stdout)
    assert all(d["existing"] for d in again)           # idempotent: nothing new
    # the third drive, registered at intake, is shredded in front of a witness
    ident = lsblk.probe(devs[2], Settings(data_dir=data))
    with Registry.open(Settings(data_dir=data)) as reg, reg.session() as s:
        upsert_drive(s, ident)
    des = _issued(imager(data, "cert", "destroy", ident.key, "--technique", "shred",
                         "--witness", "Hélène Dupré", "--donation", REF, "--technician", TECH,
                         "--json").stdout)[0]
    assert des["id"].startswith("DES-")
    with Registry.open(Settings(data_dir=data)) as reg, reg.session() as s:
        assert find_drive(s, ident.key).identity == ident.key
    don = _issued(imager(data, "cert", "donation", REF, "--json").stdout)[0]
    rec = json.loads(Path(don["json"]).read_text(encoding="utf-8"))["document"]
    assert rec["summary"] == {"drives": 3, "erased": 2, "clear": 2, "purge": 0,
                              "not_erased": 0, "destroyed": 1}
    assert {d["certificate"] for d in rec["drives"]} == {issued[0]["id"], issued[1]["id"],
                                                          des["id"]}
    csv = Path(don["csv"])
    assert csv.read_text(encoding="utf-8").count("\n") >= 4
    for f in (don["json"], don["pdf"], don["csv"]):
        out = imager(data, "cert", "verify", f, check=False)
        assert out.returncode == 0, out.stdout
    csv.write_bytes(csv.read_bytes().replace(b"shred", b"shrad", 1) if b"shred" in
                    csv.read_bytes() else csv.read_bytes() + b" ")
    assert imager(data, "cert", "verify", str(csv), check=False).returncode == 1
    # the ledger holds all six documents, and notices a file altered afterwards
    ok = imager(data, "ledger", "verify")
    assert ok.returncode == 0
    pdf = Path(issued[0]["pdf"])
    pdf.write_bytes(pdf.read_bytes() + b"%")
    assert imager(data, "ledger", "verify", check=False).returncode == 1


def test_a_station_whose_certificate_expired_issues_nothing(station: dict) -> None:
    """A document signed under an expired certificate would fail every verification:
    the station refuses to issue it, and says how to renew, before the ledger moves."""
    data = station["data"]
    keys = station_keys(Settings(data_dir=data))
    expired = make("imager station atelier-gap", key=keys.signing_key, days=(-30, -1))
    (data / "keys" / "station.crt").write_bytes(
        expired.cert.public_bytes(serialization.Encoding.PEM))
    before = json_lines(imager(data, "cert", "list", "--json").stdout)
    out = imager(data, "cert", "issue", str(station["job"]), "--again", check=False)
    assert out.returncode == 2, out.stderr
    assert "this station's keys cannot sign" in out.stderr and "expired" in out.stderr
    assert "imager keys csr" in out.stderr
    assert json_lines(imager(data, "cert", "list", "--json").stdout) == before
