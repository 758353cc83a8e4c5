"""The ledger of issued documents: chain, append-only table, tampering, export, CLI.

The core tests run on SQLite and on a throwaway PostgreSQL server (the `pg`
fixtures of test_postgresql.py, marker `server`).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from clirun import imager
from conftest import HEAD, in_threads
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from test_postgresql import pg, pg_settings  # noqa: F401 - fixtures, used by name

from imager.certify.canonical import sha256_hex
from imager.certify.identity import load_profile
from imager.certify.keys import StationKeys, station_keys
from imager.certify.ledger import (
    ZERO_HASH,
    Ledger,
    check_head,
    entry_hash,
    read_head,
    verify_chain,
    verify_export,
)
from imager.certify.signing import Checks, Trust, VerificationFailed, sign_document
from imager.errors import UsageError
from imager.settings import Settings
from imager.store.db import Registry, alembic_config
from imager.store.models import Base

SIGNER = "sha256:" + "ab" * 32


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return settings if request.param == "sqlite" else request.getfixturevalue("pg_settings")


@pytest.fixture
def reg(backend: Settings) -> Iterator[Registry]:
    with Registry.open(backend) as registry:
        yield registry


def append(ledger: Ledger, count: int, docs: Path | None = None, prefix: str = "DOC",
           pause: float = 0.0) -> None:
    """Issue `count` fake documents; their files go to `docs` when given."""
    for _ in range(count):
        with ledger.reserve() as slot:
            doc_id = f"{prefix}-{slot.seq:04d}"
            body = f'{{"doc":"{doc_id}","seq":{slot.seq},"prev":"{slot.prev}"}}\n'.encode()
            pdf = b"%PDF-1.7 " + doc_id.encode()
            time.sleep(pause)
            slot.commit("erasure", doc_id, sha256_hex(body), sha256_hex(pdf), SIGNER)
            if docs is not None:
                docs.mkdir(parents=True, exist_ok=True)
                (docs / f"{doc_id}.json").write_bytes(body)
                (docs / f"{doc_id}.pdf").write_bytes(pdf)


def tamper(registry: Registry, *statements: str) -> None:
    """Run raw SQL on the ledger with its append-only triggers out of the way."""
    with registry.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for name in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS ledger_entries_no_{name}")
        else:
            conn.exec_driver_sql("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement)


def seqs(problems: list[Any]) -> set[int | None]:
    return {p.seq for p in problems}


def chain(doc_ids: list[str]) -> list[dict[str, Any]]:
    """A well-hashed chain of entries, for the pure checks."""
    entries, prev = [], ZERO_HASH
    for seq, doc_id in enumerate(doc_ids, start=1):
        fields = {"seq": seq, "at": "2026-11-23T10:00:00Z", "kind": "erasure", "doc_id": doc_id,
                  "json_sha256": sha256_hex(doc_id.encode()), "pdf_sha256": None,
                  "signer": SIGNER, "prev": prev}
        prev = entry_hash(fields)
        entries.append({**fields, "hash": prev})
    return entries


# --------------------------------------------------------------------------
# Schema


def test_migration_matches_model_and_downgrades(reg: Registry) -> None:
    assert reg.current_revision() == HEAD
    with reg.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    config = alembic_config()
    with reg.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    assert not {"ledger_entries", "documents"} & set(inspect(reg.engine).get_table_names())
    reg.upgrade()
    append(Ledger(reg), 1)
    with pytest.raises(DBAPIError, match="append-only"), reg.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM ledger_entries")


# --------------------------------------------------------------------------
# Appending and the intact chain


def test_append_and_verify(reg: Registry) -> None:
    ledger = Ledger(reg)
    assert ledger.head() is None and ledger.verify().ok
    append(ledger, 5)
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == ZERO_HASH
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert all(entry_hash(e.to_dict()) == e.hash for e in entries)
    assert ledger.head() == entries[-1]
    assert ledger.find("DOC-0003") == entries[2] and ledger.find("DOC-9999") is None
    report = ledger.verify(head={"seq": 5, "hash": entries[-1].hash})
    assert report.ok and report.count == 5 and report.head == entries[-1]


def test_triggers_refuse_update_and_delete(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 3)
    before = ledger.entries()
    statements = ["UPDATE ledger_entries SET kind = 'donation' WHERE seq = 2",
                  "DELETE FROM ledger_entries WHERE seq = 3", "DELETE FROM ledger_entries"]
    if reg.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE ledger_entries")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), reg.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert ledger.entries() == before


def test_slot_without_commit_or_with_error_writes_nothing(reg: Registry) -> None:
    ledger = Ledger(reg)
    with ledger.reserve() as slot:
        assert (slot.seq, slot.prev) == (1, ZERO_HASH)
    with pytest.raises(RuntimeError), ledger.reserve() as slot:
        slot.commit("erasure", "DOC-A", "0" * 64, None, SIGNER)
        raise RuntimeError("the PDF could not be written")
    assert ledger.entries() == []
    append(ledger, 1)
    with ledger.reserve() as slot:
        assert (slot.seq, slot.prev) == (2, ledger.entries()[0].hash)


def test_commit_refuses_bad_input(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 1)
    with ledger.reserve() as slot:
        with pytest.raises(UsageError, match="déjà au registre.*already in the ledger"):
            slot.commit("erasure", "DOC-0001", "0" * 64, None, SIGNER)
        for bad in ("../etc/passwd", "", ".hidden", "a/b"):
            with pytest.raises(UsageError, match="invalid document id"):
                slot.commit("erasure", bad, "0" * 64, None, SIGNER)
        with pytest.raises(UsageError, match="json_sha256"):
            slot.commit("erasure", "DOC-B", "XYZ", None, SIGNER)
        with pytest.raises(UsageError, match="fingerprint"):
            slot.commit("erasure", "DOC-B", "0" * 64, None, "ed25519:abc")
        slot.commit("non-erasure", "DOC-B", "0" * 64, None, SIGNER)
        with pytest.raises(UsageError, match="already holds DOC-B"):
            slot.commit("erasure", "DOC-C", "0" * 64, None, SIGNER)
    assert [e.doc_id for e in ledger.entries()] == ["DOC-0001", "DOC-B"]


# --------------------------------------------------------------------------
# Tampering (triggers dropped first)


def test_deleted_middle_entry(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 5)
    tamper(reg, "DELETE FROM ledger_entries WHERE seq = 3")
    report = ledger.verify()
    assert not report.ok
    assert seqs(report.problems) == {3, 4}  # 3 missing, 4's link broken
    assert "absente" in str(report.problems[0]) and "missing" in str(report.problems[0])


def test_altered_field(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 5)
    tamper(reg, "UPDATE ledger_entries SET kind = 'donation' WHERE seq = 2")
    problems = ledger.verify().problems
    assert seqs(problems) == {2} and "altered" in problems[0].message


def test_altered_and_rehashed_entry_breaks_the_next_link(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 5)
    forged = {**ledger.entries()[2].to_dict(), "doc_id": "FORGED"}
    forged["hash"] = entry_hash(forged)
    tamper(reg, f"UPDATE ledger_entries SET doc_id = 'FORGED', hash = '{forged['hash']}' "
                "WHERE seq = 3")
    problems = ledger.verify().problems
    assert seqs(problems) == {4} and "broken link" in problems[0].message


def test_swapped_entries(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 5)
    two, three = ledger.entries()[1], ledger.entries()[2]
    columns = ("at", "kind", "doc_id", "json_sha256", "pdf_sha256", "prev", "hash")

    def put(seq: int, values: dict[str, Any], suffix: str = "") -> str:
        sets = ", ".join(f"{c} = '{values[c]}{suffix if c == 'doc_id' else ''}'"
                         for c in columns)
        return f"UPDATE ledger_entries SET {sets} WHERE seq = {seq}"

    # doc_id is unique: park entry 2's id while moving 3's contents into it.
    tamper(reg, put(2, three.to_dict(), "-x"), put(3, two.to_dict()),
           f"UPDATE ledger_entries SET doc_id = '{three.doc_id}' WHERE seq = 2")
    assert [e.doc_id for e in ledger.entries()][1:3] == [three.doc_id, two.doc_id]
    assert {2, 3} <= seqs(ledger.verify().problems)


def test_truncated_tail_is_caught_by_the_kept_head(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 5)
    kept = ledger.head_document()
    assert (kept["seq"], kept["count"]) == (5, 5)
    tamper(reg, "DELETE FROM ledger_entries WHERE seq >= 4")
    assert ledger.verify().ok  # the chain alone cannot see a cut tail
    problems = ledger.verify(head=kept).problems
    assert seqs(problems) == {5} and "ends at seq 3" in problems[0].message


def test_rewritten_history_is_caught_by_the_kept_head(reg: Registry) -> None:
    ledger = Ledger(reg)
    append(ledger, 3)
    kept = ledger.head_document()
    tamper(reg, "DELETE FROM ledger_entries")
    append(ledger, 4, prefix="NEW")  # a whole new, self-consistent chain
    report = ledger.verify(head=kept)
    assert report.checks[0].problems == []
    assert seqs(report.problems) == {3} and "rewritten" in report.problems[0].message


def test_document_files_missing_or_altered(settings: Settings, registry: Registry) -> None:
    ledger, docs = Ledger(registry), settings.documents_dir
    append(ledger, 5, docs)
    assert ledger.verify(docs).ok
    altered = docs / "DOC-0002.json"
    data = bytearray(altered.read_bytes())
    data[3] ^= 1
    altered.write_bytes(bytes(data))
    (docs / "DOC-0004.pdf").unlink()
    problems = ledger.verify(docs).problems
    assert [(p.seq, "altered file" in p.message, "missing file" in p.message)
            for p in problems] == [(2, True, False), (4, False, True)]
    assert str(docs / "DOC-0004.pdf") in problems[1].message


# --------------------------------------------------------------------------
# The pure chain checks (what a donor runs on an exported file)


def test_verify_chain_pure() -> None:
    good = chain(["A", "B", "C", "D"])
    assert verify_chain(good) == [] and verify_chain([]) == []
    reordered = [good[0], good[2], good[1], good[3]]
    assert {2, 3, 4} <= seqs(verify_chain(reordered))
    duplicated = [*good[:3], good[2], good[3]]
    assert any("appears twice" in p.message for p in verify_chain(duplicated))
    assert seqs(verify_chain(good[1:])) == {1, 2}  # the first entry removed
    same_doc = chain(["A", "B", "A"])
    assert [(p.seq, "already recorded at seq 1" in p.message)
            for p in verify_chain(same_doc)] == [(3, True)]
    malformed = [good[0], {k: v for k, v in good[1].items() if k != "prev"}, *good[2:]]
    assert [(p.seq, "missing fields: prev" in p.message)
            for p in verify_chain(malformed)] == [(2, True)]
    assert seqs(verify_chain([*good[:2], {**good[2], "seq": True}])) == {None}


def test_check_head_pure() -> None:
    good = chain(["A", "B", "C"])
    assert check_head(good, {"seq": 2, "hash": good[1]["hash"]}) == []
    assert check_head(good, {"seq": 0, "hash": ZERO_HASH}) == []
    assert seqs(check_head(good[:1], {"seq": 2, "hash": good[1]["hash"]})) == {2}
    assert "was removed" in check_head([good[0], good[2]], {"seq": 2, "hash": "0"})[0].message
    assert seqs(check_head(good, {"seq": 2, "hash": good[2]["hash"]})) == {2}
    assert seqs(check_head(good, {"seq": "2"})) == {None}


# --------------------------------------------------------------------------
# Signed files, offline


def document_bytes(data: bytes) -> range:
    """Where the signed document lies in a signed file (keys are in canonical order)."""
    return range(data.index(b'"document":'), data.index(b',"format":'))


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 1
    return bytes(changed)


@pytest.fixture
def keys(settings: Settings) -> StationKeys:
    return station_keys(settings)


def test_signed_export_verifies_offline(registry: Registry, keys: StationKeys,
                                        tmp_path: Path) -> None:
    ledger = Ledger(registry)
    append(ledger, 4)
    data = sign_document(ledger.export_document(), keys)
    trust = Trust([keys.station_cert])
    checks = Checks()
    assert verify_export(data, trust, checks) == [e.to_dict() for e in ledger.entries()]
    assert all(ok for ok, _ in checks.lines) and "4 entries, chain intact" in checks.lines[-1][1]
    for i in document_bytes(data):  # every byte of the ledger export counts
        with pytest.raises(VerificationFailed):
            verify_export(flip(data, i), trust, Checks())
    other = StationKeys.open(tmp_path / "other-keys", load_profile(Settings(tmp_path / "o")))
    with pytest.raises(VerificationFailed, match="neither the trusted certificate"):
        verify_export(sign_document(ledger.export_document(), other), trust, Checks())


def test_one_byte_change_outside_the_document_fails(registry: Registry,
                                                    keys: StationKeys) -> None:
    ledger = Ledger(registry)
    append(ledger, 1)
    data = sign_document(ledger.export_document(), keys)
    inside = document_bytes(data)
    for i in (i for i in range(len(data)) if i not in inside):
        with pytest.raises(VerificationFailed):
            verify_export(flip(data, i), Trust([keys.station_cert]), Checks())


def test_signed_export_of_a_broken_chain_fails(registry: Registry, keys: StationKeys) -> None:
    ledger = Ledger(registry)
    append(ledger, 4)
    document = ledger.export_document()
    del document["entries"][1]
    checks = Checks()
    with pytest.raises(VerificationFailed, match="n° 2 : .*missing"):
        verify_export(sign_document(document, keys), Trust([keys.station_cert]), checks)
    assert checks.lines[-1][0] is False
    document = ledger.export_document()
    document["head"] = {"seq": 3, "hash": document["entries"][2]["hash"]}
    with pytest.raises(VerificationFailed, match="not its last entry"):
        verify_export(sign_document(document, keys), Trust([keys.station_cert]), Checks())


def test_signed_head_file(registry: Registry, keys: StationKeys) -> None:
    ledger = Ledger(registry)
    append(ledger, 2)
    document = ledger.head_document()
    trust = Trust([keys.station_cert])
    head = read_head(sign_document(document, keys), trust, Checks())
    assert head == {"seq": 2, "hash": ledger.head().hash}  # type: ignore[union-attr]
    with pytest.raises(VerificationFailed, match="imager/ledger-head/1"):
        read_head(sign_document(ledger.export_document(), keys), trust, Checks())


# --------------------------------------------------------------------------
# Concurrent appends


def test_concurrent_appends_in_threads(reg: Registry) -> None:
    ledger = Ledger(reg)
    counter = iter(range(1000))

    def issue() -> None:
        append(ledger, 3, prefix=f"T{next(counter)}", pause=0.01)

    assert in_threads(issue, 6) == []
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(1, 19))
    assert ledger.verify().ok


def _process_appends(data_dir: str, prefix: str) -> None:
    with Registry.open(Settings(data_dir=Path(data_dir))) as registry:
        append(Ledger(registry), 5, prefix=prefix, pause=0.01)


def test_concurrent_appends_in_processes(settings: Settings, registry: Registry) -> None:
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_process_appends, args=(str(settings.data_dir), f"P{i}"))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ledger = Ledger(registry)
    assert [e.seq for e in ledger.entries()] == list(range(1, 21))
    assert len({e.doc_id for e in ledger.entries()}) == 20
    assert ledger.verify().ok


# --------------------------------------------------------------------------
# The command line


def test_cli(settings: Settings, tmp_path: Path) -> None:
    with Registry.open(settings) as registry:
        append(Ledger(registry), 5, settings.documents_dir)
    data_dir = settings.data_dir
    out = imager(data_dir, "ledger", "verify").stdout
    assert "✓ chaîne de 5 entrée(s)" in out and "ledger intact" in out
    assert "DOC-0003" in imager(data_dir, "ledger", "list").stdout
    head_file, export_file = tmp_path / "head.json", tmp_path / "export.json"
    out = imager(data_dir, "ledger", "head", "--output", str(head_file)).stdout
    assert out.startswith("n° 5  sha256 ") and head_file.is_file()
    imager(data_dir, "ledger", "export", "--output", str(export_file))
    keys = StationKeys.open(data_dir / "keys", load_profile(settings))
    assert len(verify_export(export_file.read_bytes(), Trust([keys.station_cert]),
                             Checks())) == 5
    assert "kept head seq 5 present" in imager(
        data_dir, "ledger", "verify", "--head", str(head_file)).stdout

    with Registry.open(settings) as registry:
        tamper(registry, "DELETE FROM ledger_entries WHERE seq = 5")
    done = imager(data_dir, "ledger", "verify", "--head", str(head_file), check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "n° 5 : la tête conservée est absente" in done.stdout
    assert "ledger not intact" in done.stdout

    forged = bytearray(head_file.read_bytes())
    forged[forged.index(b'"seq":5') + 6] = ord("4")
    head_file.write_bytes(bytes(forged))
    done = imager(data_dir, "ledger", "verify", "--head", str(head_file), check=False)
    assert done.returncode == 1 and "invalid head file" in done.stdout
