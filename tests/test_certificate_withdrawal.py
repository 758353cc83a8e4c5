"""Withdrawal of a certificate, end to end with the real `imager` command: erase a loop
device, issue its certificate, withdraw it with a reason, and verify it on the station
and as a donor does (only the files, the station certificate and a fresh signed
ledger export); the ledger still verifies, a withdrawal is never repeated nor undone."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import imager, json_lines
from conftest import LoopFactory, need_tool
from test_certificates import REF, MiB, _erase, _people

from imager.certify.canonical import sha256_hex
from imager.certify.keys import station_keys
from imager.certify.ledger import Ledger, read_export
from imager.certify.signing import Checks, Trust, VerificationFailed, sign_document
from imager.certify.verify import check_signed
from imager.certify.withdrawal import document_status, withdrawal_record
from imager.settings import Settings
from imager.store.db import Registry

pytestmark = pytest.mark.root

WHO = "Hélène Dupré, coordinatrice"
WHY = ("Contrôle qualité du 12 mars : des données lisibles ont été retrouvées sur ce disque "
       "après l'effacement ; il est effacé à nouveau et recevra un nouveau certificat.")


def _withdraw(data: Path, doc_id: str, *, by: str = WHO, why: str = WHY,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    return imager(data, "cert", "withdraw", doc_id, "--by", by, "--reason", why, check=check)


def _verify(where: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return imager(where, "cert", "verify", *map(str, args), check=False)


def _state(data: Path) -> tuple[list[str], str, str]:
    """What a refused command must leave as it was: the files, the ledger, the documents."""
    return (sorted(p.name for p in (data / "documents").iterdir()),
            imager(data, "ledger", "list", "--json").stdout,
            imager(data, "cert", "list", "--json").stdout)


@pytest.fixture(scope="module")
def withdrawn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A station that erased one drive, certified it, then withdrew the certificate;
    the donor's folder holds the certificate's files, station.pem and two ledger
    exports: one made before the withdrawal, one after."""
    base = tmp_path_factory.mktemp("withdrawal")
    loops = LoopFactory(base)
    try:
        data, donor = base / "station", base / "donor"
        _people(data)
        report = _erase(data, loops(16 * MiB))
        assert report["outcome"] == "erased", report
        doc = json_lines(imager(data, "cert", "issue", str(report["job_id"]), "--json")
                         .stdout)[0]
        donor.mkdir()
        imager(data, "keys", "export", str(donor / "station.pem"))
        imager(data, "ledger", "export", "--output", str(donor / "before.json"))
        out = _withdraw(data, doc["id"])
        imager(data, "ledger", "export", "--output", str(donor / "ledger.json"))
        for key in ("json", "pdf"):
            shutil.copy(doc[key], donor)
        yield {"data": data, "doc": doc, "donor": donor, "job": report["job_id"], "out": out,
               "ret": f"RET-{doc['id']}"}
    finally:
        loops.detach_all()


def test_withdraw_prints_the_reason_whole_who_and_what_next(withdrawn: dict[str, Any]) -> None:
    out, doc = withdrawn["out"].stdout, withdrawn["doc"]
    assert f"{withdrawn['ret']}: retrait de / withdrawal of {doc['id']}" in out, out
    assert f"« {WHY} »" in out and f"décidé par / decided by {WHO}" in out
    assert "registre n° / ledger entry 2" in out
    assert "give verifiers a fresh ledger export: imager ledger export" in out
    record = json.loads((withdrawn["data"] / "documents" / f"{withdrawn['ret']}.json")
                        .read_text(encoding="utf-8"))["document"]
    assert record["kind"] == "withdrawal" and record["reason"] == WHY
    assert record["decided_by"] == {"name": WHO}
    assert record["withdraws"]["id"] == doc["id"]
    assert record["withdraws"]["sha256"] == doc["sha256"]
    assert record["withdraws"]["pdf_sha256"] == sha256_hex(Path(doc["pdf"]).read_bytes())
    assert record["ledger"]["seq"] == 2
    assert not (withdrawn["data"] / "documents" / f"{withdrawn['ret']}.pdf").exists()
    history = imager(withdrawn["data"], "drives", "show", "1").stdout
    assert "document_withdrawn" in history and "Hélène Dupré" in history, history


def test_cert_verify_on_the_station_says_withdrawn_with_the_reason(
        withdrawn: dict[str, Any]) -> None:
    doc = withdrawn["doc"]
    for path in (doc["json"], doc["pdf"]):
        done = _verify(withdrawn["data"], path)
        assert done.returncode == 1, done.stdout
        assert "→ RETIRÉ, NON VALIDE / WITHDRAWN, NOT VALID" in done.stdout
        assert "→ VALIDE" not in done.stdout
        assert f"« {WHY} »" in done.stdout and WHO in done.stdout
        assert "in the ledger: entrée / entry 1" in done.stdout    # authentic, but withdrawn
        line = json_lines(_verify(withdrawn["data"], path, "--json").stdout)[0]
        assert line["ok"] is False and line["withdrawal_checked"] is True
        assert line["withdrawn"]["reason"] == WHY and line["withdrawn"]["by"] == WHO
        assert line["withdrawn"]["id"] == withdrawn["ret"]
        assert line["withdrawn"]["document"] == doc["id"]
        assert line["withdrawn"]["at"].startswith("20")


def test_a_donor_with_the_files_and_a_fresh_export_sees_the_withdrawal(
        withdrawn: dict[str, Any]) -> None:
    donor, doc = withdrawn["donor"], withdrawn["doc"]
    nowhere = donor / "nowhere"          # no registry, no key: another machine
    for name in (Path(doc["json"]).name, Path(doc["pdf"]).name):
        done = _verify(nowhere, donor / name, "--trust", donor / "station.pem",
                       "--ledger", donor / "ledger.json")
        assert done.returncode == 1, done.stdout
        assert "WITHDRAWN, NOT VALID" in done.stdout and f"« {WHY} »" in done.stdout
        assert "(export ledger.json)" in done.stdout
    # an export made before the withdrawal cannot know it, and says as of when
    old = _verify(nowhere, donor / Path(doc["pdf"]).name, "--trust", donor / "station.pem",
                  "--ledger", donor / "before.json")
    assert old.returncode == 0 and "not withdrawn as of 20" in old.stdout, old.stdout
    # without a ledger the verdict says what it could not check
    alone = _verify(nowhere, donor / Path(doc["json"]).name, "--trust", donor / "station.pem")
    assert alone.returncode == 0, alone.stdout
    assert "ledger inclusion not checked" in alone.stdout
    assert "withdrawal not checked: only the signer's ledger says whether the document was " \
           "withdrawn" in alone.stdout
    line = json_lines(_verify(nowhere, donor / Path(doc["json"]).name, "--trust",
                              donor / "station.pem", "--json").stdout)[0]
    assert line["ok"] is True and line["withdrawal_checked"] is False
    assert line["withdrawn"] is None
    assert not (nowhere / "registry.sqlite3").exists()


def test_the_withdrawal_record_verifies_and_says_what_it_withdraws(
        withdrawn: dict[str, Any]) -> None:
    ret = withdrawn["data"] / "documents" / f"{withdrawn['ret']}.json"
    for where in ([], ["--ledger", str(withdrawn["donor"] / "ledger.json")]):
        done = _verify(withdrawn["data"], ret, *where)
        assert done.returncode == 0, done.stdout
        assert f"→ VALIDE / VALID: {withdrawn['ret']} (retrait d'un document)" in done.stdout
        assert f"retire / withdraws {withdrawn['doc']['id']} (certificat d'effacement" \
               in done.stdout
        assert f"« {WHY} » — décidé par / decided by {WHO}" in done.stdout
        assert "in the ledger: entrée / entry 2" in done.stdout
        assert "withdrawal not checked" not in done.stdout


def test_the_ledger_still_verifies_and_records_the_withdrawal(
        withdrawn: dict[str, Any]) -> None:
    data = withdrawn["data"]
    done = imager(data, "ledger", "verify")
    assert "Registre intact / ledger intact" in done.stdout and "2 entrée(s)" in done.stdout
    entries = json.loads(imager(data, "ledger", "list", "--json").stdout)
    assert [(e["kind"], e["doc_id"]) for e in entries] == [
        ("erasure", withdrawn["doc"]["id"]), ("withdrawal", withdrawn["ret"])]
    assert entries[1]["pdf_sha256"] is None
    trust = Trust([station_keys(Settings(data_dir=data)).station_cert])
    export = read_export((withdrawn["donor"] / "ledger.json").read_bytes(), trust, Checks())
    assert set(export.withdrawals) == {withdrawn["ret"]}


def test_cert_list_shows_the_withdrawn_document_as_such(withdrawn: dict[str, Any]) -> None:
    data, doc = withdrawn["data"], withdrawn["doc"]
    rows = {r["id"]: r for r in json_lines(imager(data, "cert", "list", "--json").stdout)}
    assert rows[doc["id"]]["withdrawn"]["reason"] == WHY
    assert rows[doc["id"]]["withdrawn"]["withdrawal"] == withdrawn["ret"]
    assert rows[withdrawn["ret"]]["kind"] == "withdrawal"
    assert rows[withdrawn["ret"]]["withdraws"] == doc["id"]
    text = imager(data, "cert", "list").stdout
    line = next(x for x in text.splitlines() if x.startswith(doc["id"]))
    assert "RETIRÉ / WITHDRAWN" in line and f"« {WHY} »" in line


def test_withdrawing_twice_a_withdrawal_or_an_unknown_id_is_refused(
        withdrawn: dict[str, Any]) -> None:
    data, doc = withdrawn["data"], withdrawn["doc"]
    before = _state(data)
    twice = _withdraw(data, doc["id"], why="Une seconde fois, par erreur.", check=False)
    assert twice.returncode == 2
    assert "already withdrawn, a document is withdrawn once" in twice.stderr
    assert f"« {WHY} »" in twice.stderr                     # says the first decision whole
    itself = _withdraw(data, withdrawn["ret"], check=False)
    assert itself.returncode == 2
    assert "is a withdrawal record, it cannot itself be withdrawn" in itself.stderr
    unknown = _withdraw(data, "EFF-2026-AAAA-BBBB", check=False)
    assert unknown.returncode == 2
    assert "no document 'EFF-2026-AAAA-BBBB' on this station" in unknown.stderr
    for by, why, says in (("", WHY, "who withdraws it?"), (WHO, "parce que", "why?")):
        bad = _withdraw(data, doc["id"], by=by, why=why, check=False)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
    assert _state(data) == before


def test_document_status_genuine_withdrawn_or_unknown(withdrawn: dict[str, Any]) -> None:
    """The library call the verification page and the portal make: pure, over the
    entries and withdrawal records of a verified export."""
    donor, doc = withdrawn["donor"], withdrawn["doc"]
    trust = Trust([station_keys(Settings(data_dir=withdrawn["data"])).station_cert])
    export = read_export((donor / "ledger.json").read_bytes(), trust, Checks())
    entries = {e["doc_id"]: e for e in export.entries}
    pdf_sha = sha256_hex(Path(doc["pdf"]).read_bytes())
    for sha in (doc["sha256"], pdf_sha):
        status = document_status(doc["id"], sha, entries, export.withdrawals)
        assert status.state == "withdrawn" and status.seq == 1
        assert status.withdrawal is not None and status.withdrawal.reason == WHY
        assert status.to_dict()["withdrawal"]["by"] == WHO
    ret_sha = sha256_hex((withdrawn["data"] / "documents" / f"{withdrawn['ret']}.json")
                         .read_bytes())
    assert document_status(withdrawn["ret"], ret_sha, entries, export.withdrawals).state \
        == "genuine"
    assert document_status("EFF-2026-AAAA-BBBB", pdf_sha, entries, {}).state == "unknown"
    altered = document_status(doc["id"], "0" * 64, entries, export.withdrawals)
    assert altered.state == "unknown" and "altered?" in altered.detail
    # an export without the record still says withdrawn, and where the reason is
    bare = document_status(doc["id"], pdf_sha, entries, {})
    assert bare.state == "withdrawn" and bare.withdrawal is not None
    assert bare.withdrawal.reason is None and f"{withdrawn['ret']}.json" in bare.detail
    before = read_export((donor / "before.json").read_bytes(), trust, Checks())
    assert document_status(doc["id"], pdf_sha, {e["doc_id"]: e for e in before.entries},
                           before.withdrawals).state == "genuine"


def test_a_withdrawn_certificate_is_not_handed_out_again(withdrawn: dict[str, Any]) -> None:
    data, job = withdrawn["data"], str(withdrawn["job"])
    refused = imager(data, "cert", "issue", job, check=False)
    assert refused.returncode == 2, refused.stdout
    assert "this drive's document was withdrawn" in refused.stderr
    assert f"imager cert issue {job} --again" in refused.stderr
    new = json_lines(imager(data, "cert", "issue", job, "--again", "--json").stdout)[0]
    assert new["id"] != withdrawn["doc"]["id"] and not new["existing"]
    done = _verify(data, new["pdf"])
    assert done.returncode == 0 and "not withdrawn as of" in done.stdout, done.stdout


def test_a_forged_withdrawal_record_or_export_is_refused(withdrawn: dict[str, Any]) -> None:
    """A withdrawal record whose id does not name what it withdraws is refused even when
    well signed; an export whose withdrawal record is not the one the ledger recorded
    fails."""
    settings = Settings(data_dir=withdrawn["data"])
    keys, doc = station_keys(settings), withdrawn["doc"]
    trust = Trust([keys.station_cert])
    good = json.loads((settings.documents_dir / f"{withdrawn['ret']}.json")
                      .read_text(encoding="utf-8"))["document"]
    checks = Checks()
    with pytest.raises(VerificationFailed, match="does not name the withdrawn document"):
        check_signed(sign_document({**good, "id": "RET-EFF-2026-AAAA-BBBB"}, keys), trust,
                     checks)
    entry = {"doc_id": doc["id"], "kind": "erasure", "json_sha256": doc["sha256"],
             "pdf_sha256": None, "seq": 1}
    made = withdrawal_record(entry, issued_at=good["withdraws"]["issued_at"], reason=WHY,
                             by=WHO, issuer=good["issuer"], ledger=good["ledger"])
    assert check_signed(sign_document(made, keys), trust, Checks())[0]["id"] == good["id"]
    with Registry.open(settings) as registry:
        document = Ledger(registry).export_document(settings.documents_dir)
    rid = withdrawn["ret"]
    document["withdrawals"][rid] = document["withdrawals"][rid].replace(WHY, WHY[:-1] + "!")
    checks = Checks()
    with pytest.raises(VerificationFailed, match=f"the withdrawal record {rid} carried is not "
                                                 "the one the ledger recorded"):
        read_export(sign_document(document, keys), trust, checks)


def test_withdrawal_of_a_donation_certificate_and_of_a_drive_it_lists(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    need_tool("pdftotext")
    data = tmp_path / "station"
    _people(data)
    for _ in range(2):
        assert _erase(data, loopdev(8 * MiB))["outcome"] == "erased"
    drives = json_lines(imager(data, "cert", "issue", "--donation", REF, "--json").stdout)
    don = json_lines(imager(data, "cert", "donation", REF, "--json").stdout)[0]
    # withdrawing a drive certificate: the donation certificate that lists it is named
    out = _withdraw(data, drives[0]["id"]).stdout
    assert f"the donation certificate {don['id']} lists it: withdraw it too" in out, out
    listed = _verify(data, don["json"])
    assert listed.returncode == 0, listed.stdout         # the donation record itself stands
    assert f"! un document de ce don a été retiré / a document this donation lists was " \
           f"withdrawn: {drives[0]['id']} retiré le" in listed.stdout
    refused = imager(data, "cert", "donation", REF, check=False)
    assert refused.returncode == 2 and "this drive's document was withdrawn" in refused.stderr
    # withdrawing the donation certificate: its PDF and its CSV say so too
    _withdraw(data, don["id"])
    for path in (don["json"], don["pdf"], don["csv"]):
        done = _verify(data, path)
        assert done.returncode == 1 and "WITHDRAWN, NOT VALID" in done.stdout, done.stdout
        assert f"{don['id']} retiré le / withdrawn on" in done.stdout
    assert imager(data, "ledger", "verify").returncode == 0
    # an export must carry every withdrawal's record: a missing one is named
    ret = data / "documents" / f"RET-{don['id']}.json"
    ret.rename(ret.with_suffix(".bak"))
    missing = imager(data, "ledger", "export", "--output", str(tmp_path / "l.json"), check=False)
    assert missing.returncode == 2 and f"missing or altered: {ret}" in missing.stderr
    assert not (tmp_path / "l.json").exists()
    assert imager(data, "ledger", "verify", check=False).returncode == 1
    ret.with_suffix(".bak").rename(ret)
    imager(data, "ledger", "export", "--output", str(tmp_path / "l.json"))
