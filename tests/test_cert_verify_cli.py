"""`imager cert verify` and `imager ledger` on a machine that has its own station:
which ledger is consulted, the certificate chain checks, and a quiet stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from certmaker import make, pem, sample, station_under
from clirun import imager, json_lines
from test_ledger import tamper

from imager.certify.canonical import sha256_hex
from imager.certify.keys import StationKeys, station_keys
from imager.certify.ledger import Ledger
from imager.certify.pades import sign_pdf
from imager.certify.render import render_drive_pdf
from imager.certify.signing import sign_document
from imager.settings import Settings
from imager.store.db import Registry


def _issue(settings: Settings, keys: StationKeys, doc_id: str, *,
           record_in_ledger: bool = True, with_pdf: bool = False) -> bytes:
    """A signed record of `keys`' station (and its signed PDF), entered in the ledger of
    `settings`' registry; the files go to its documents directory."""
    with Registry.open(settings) as registry, Ledger(registry).reserve() as slot:
        record: dict[str, Any] = {**sample(), "id": doc_id,
                                  "ledger": {"seq": slot.seq, "prev": slot.prev}}
        signed = sign_document(record, keys)
        files = {".json": signed}
        if with_pdf:
            pdf = render_drive_pdf(record, sha256=sha256_hex(signed), verify_url="",
                                   attachments=[(f"{doc_id}.json", signed, "signed record")])
            files[".pdf"] = sign_pdf(pdf, keys, reason="test", location="Gap")
        if record_in_ledger:
            slot.commit("erasure", doc_id, sha256_hex(signed),
                        sha256_hex(files[".pdf"]) if with_pdf else None, keys.fingerprint)
            settings.documents_dir.mkdir(parents=True, exist_ok=True)
            for suffix, data in files.items():
                (settings.documents_dir / f"{doc_id}{suffix}").write_bytes(data)
    return signed


@pytest.fixture
def here(settings: Settings) -> StationKeys:
    """This machine's station: keys, and a ledger holding one document."""
    keys = station_keys(settings)
    _issue(settings, keys, "EFF-2026-HERE-0001")
    return keys


@pytest.fixture
def there(tmp_path: Path) -> tuple[Settings, StationKeys]:
    """Another station, whose documents a donor brings here."""
    other = Settings(data_dir=tmp_path / "other-station")
    return other, station_keys(other)


@pytest.fixture
def theirs(there: tuple[Settings, StationKeys], tmp_path: Path) -> tuple[Path, Path]:
    """A document of the other station, and that station's certificate to trust."""
    other, their_keys = there
    doc, trust = tmp_path / "theirs.json", tmp_path / "other.pem"
    doc.write_bytes(_issue(other, their_keys, "EFF-2026-THEM-0001"))
    trust.write_bytes(pem(their_keys.station_cert))
    return doc, trust


def test_another_station_document_is_not_checked_against_this_station_ledger(
        settings: Settings, here: StationKeys, there: tuple[Settings, StationKeys],
        theirs: tuple[Path, Path], tmp_path: Path) -> None:
    other, their_keys = there
    doc, trust = theirs
    out = imager(settings.data_dir, "cert", "verify", str(doc), "--trust", str(trust))
    assert "→ VALIDE / VALID" in out.stdout, out.stdout
    assert "ledger not consulted, it is not the signer's (registre de cette station / this " \
           f"station's ledger: keys {here.fingerprint}; signer {their_keys.fingerprint})" \
           in out.stdout, out.stdout
    assert "absent du registre" not in out.stdout
    assert "withdrawal not checked: only the signer's ledger says whether the document was " \
           "withdrawn" in out.stdout
    line = json_lines(imager(settings.data_dir, "cert", "verify", str(doc), "--trust",
                             str(trust), "--json").stdout)[0]
    assert line["ok"] is True and line["ledger_checked"] is False
    assert line["withdrawal_checked"] is False and line["withdrawn"] is None
    assert "give --ledger the signing station's signed export" in line["ledger_note"]


def test_a_ledger_export_is_consulted_for_its_own_station_only(
        settings: Settings, here: StationKeys, there: tuple[Settings, StationKeys],
        theirs: tuple[Path, Path], tmp_path: Path) -> None:
    other, their_keys = there
    doc, trust = theirs
    their_export, our_export = tmp_path / "their-ledger.json", tmp_path / "our-ledger.json"
    imager(other.data_dir, "ledger", "export", "--output", str(their_export))
    imager(settings.data_dir, "ledger", "export", "--output", str(our_export))
    out = imager(settings.data_dir, "cert", "verify", str(doc), "--trust", str(trust),
                 "--ledger", str(their_export)).stdout
    assert "in the ledger: entrée / entry 1" in out and "VALIDE / VALID" in out, out

def test_a_ledger_export_given_for_another_station_fails_the_verdict(
        settings: Settings, here: StationKeys, there: tuple[Settings, StationKeys],
        theirs: tuple[Path, Path], tmp_path: Path) -> None:
    """Asked to check the inclusion with --ledger, a ledger that cannot say anything of
    the document is no answer: NOT VALID, naming both stations' keys and the fix."""
    other, their_keys = there
    doc, _ = theirs
    our_export, both = tmp_path / "our-ledger.json", tmp_path / "both.pem"
    imager(settings.data_dir, "ledger", "export", "--output", str(our_export))
    both.write_bytes(pem(their_keys.station_cert, here.station_cert))
    args = ("cert", "verify", str(doc), "--trust", str(both), "--ledger", str(our_export))
    done = imager(settings.data_dir, *args, check=False)
    assert done.returncode == 1, done.stdout
    assert "→ NON VALIDE / NOT VALID" in done.stdout and "→ VALIDE" not in done.stdout
    assert "the ledger given is not the signer's, so the ledger inclusion cannot be checked " \
           f"(export our-ledger.json: keys {here.fingerprint}; document signed by " \
           f"{their_keys.fingerprint})" in done.stdout, done.stdout
    assert "give --ledger the signing station's signed export" in done.stdout
    done = imager(settings.data_dir, *args, "--json", check=False)
    line = json_lines(done.stdout)[0]
    assert done.returncode == 1 and line["ok"] is False and line["ledger_checked"] is False
    assert line["checks"][-1]["ok"] is False
    assert their_keys.fingerprint in line["checks"][-1]["check"]


def test_this_station_documents_are_checked_against_its_ledger(
        settings: Settings, here: StationKeys, tmp_path: Path) -> None:
    ours = tmp_path / "ours.json"
    ours.write_bytes(_issue(settings, here, "EFF-2026-HERE-0002"))
    out = imager(settings.data_dir, "cert", "verify", str(ours)).stdout
    assert "in the ledger: entrée / entry 2" in out and "VALIDE / VALID" in out, out
    unrecorded = tmp_path / "unrecorded.json"
    unrecorded.write_bytes(_issue(settings, here, "EFF-2026-HERE-0003", record_in_ledger=False))
    done = imager(settings.data_dir, "cert", "verify", str(unrecorded), check=False)
    assert done.returncode == 1
    assert "EFF-2026-HERE-0003 absent du registre / not in the ledger" in done.stdout


def test_a_damaged_ledger_fails_this_station_documents_only(
        settings: Settings, here: StationKeys, there: tuple[Settings, StationKeys],
        tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_bytes(_issue(settings, here, "EFF-2026-HERE-0002"))
    other, their_keys = there
    theirs.write_bytes(_issue(other, their_keys, "EFF-2026-THEM-0001"))
    (tmp_path / "both.pem").write_bytes(pem(here.station_cert, their_keys.station_cert))
    with Registry.open(settings) as registry:
        tamper(registry, "UPDATE ledger_entries SET kind = 'destruction' WHERE seq = 1")
    done = imager(settings.data_dir, "cert", "verify", str(ours), str(theirs), "--trust",
                  str(tmp_path / "both.pem"), check=False)
    assert done.returncode == 1
    mine, other_station = done.stdout.split(f"{theirs}:")
    assert "this station's ledger is damaged: run `imager ledger verify`" in mine
    assert "NON VALIDE / NOT VALID" in mine
    assert "ledger not consulted" in other_station and "→ VALIDE" in other_station


def test_cert_verify_prints_no_warning(settings: Settings, here: StationKeys) -> None:
    _issue(settings, here, "EFF-2026-HERE-0002", with_pdf=True)
    files = [str(settings.documents_dir / f"EFF-2026-HERE-0002{s}") for s in (".json", ".pdf")]
    out = imager(settings.data_dir, "cert", "verify", *files)
    assert out.stdout.count("→ VALIDE / VALID") == 2, out.stdout
    assert "PAdES" in out.stdout
    assert out.stderr == ""


def test_ledger_commands_refuse_an_expired_station_certificate(
        settings: Settings, here: StationKeys, tmp_path: Path) -> None:
    expired = make("imager station expirée", key=here.signing_key, pathlen=0,
                   days=(-3650, -1))
    head = tmp_path / "head.json"
    imager(settings.data_dir, "ledger", "head", "--output", str(head))
    assert "kept head seq 1 present" in imager(settings.data_dir, "ledger", "verify", "--head",
                                               str(head)).stdout
    with Registry.open(settings) as registry:
        head.write_bytes(sign_document(Ledger(registry).head_document(),
                                       station_under(here, expired)))
    (settings.data_dir / "keys" / "station.crt").write_bytes(pem(expired.cert))
    done = imager(settings.data_dir, "ledger", "verify", "--head", str(head), check=False)
    assert done.returncode == 1
    assert "the certificate CN=imager station expirée expired on" in done.stdout, done.stdout
    assert "invalid head file: ledger not verified" in done.stdout
    for command, output in (("export", tmp_path / "export.json"),
                            ("head", tmp_path / "head2.json")):
        done = imager(settings.data_dir, "ledger", command, "--output", str(output),
                      check=False)
        assert done.returncode == 2, done.stdout
        assert "this station's keys cannot sign: le certificat « CN=imager station " \
               "expirée » a expiré le" in done.stderr, done.stderr
        assert not output.exists()
