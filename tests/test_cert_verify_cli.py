"""`imager cert verify` and `imager ledger` on a machine that has its own station."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from certmaker import make, pem, sample, station_under
from clirun import imager

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
