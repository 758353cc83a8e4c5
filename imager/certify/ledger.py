"""The ledger: a hash-chained, append-only list of every document the station issued.

Each entry names one signed document (its id and kind, the sha256 of its JSON
and PDF files, the signing key) and is chained to the entry before it:

    hash = sha256(RFC 8785 canonical JSON of every field but "hash")
    prev = hash of the previous entry (64 zeros for seq 1)

so removing, moving or altering an entry breaks the chain after it. The table
refuses UPDATE and DELETE (triggers, migration 0002). Whoever drops them and
rewrites the whole chain is caught by a head ({"seq", "hash"}) kept elsewhere
(the signed head file a donor keeps) and by the documents, which embed their
seq and prev. `verify_chain` is pure: it checks the registry and an exported
ledger file alike, offline.

A document is never edited or removed: withdrawing one appends an entry of
kind "withdrawal" for its signed withdrawal record RET-<id>
(imager.certify.withdrawal). A signed export carries those records too, so a
donor holding only the export learns why and when a document was withdrawn.

Issuing a document (the caller builds and signs, the ledger records):

    with Ledger(registry).reserve() as slot:       # write lock held to the end
        signed = sign_document(build(slot.seq, slot.prev, slot.at), keys)
        slot.commit("erasure", doc_id, sha256_hex(signed), pdf_sha256, keys.fingerprint)
        write the files                            # an exception rolls back the entry
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from imager.certify.canonical import canonical_bytes, sha256_hex
from imager.certify.signing import Checks, Trust, read_envelope, verify_envelope
from imager.certify.withdrawal import KIND as WITHDRAWAL
from imager.certify.withdrawal import withdrawal_files
from imager.errors import UsageError
from imager.store import models
from imager.store.db import Registry, utcnow

ZERO_HASH = "0" * 64
FIELDS = ("seq", "at", "kind", "doc_id", "json_sha256", "pdf_sha256", "signer", "prev", "hash")
EXPORT_SCHEMA = "imager/ledger-export/1"
HEAD_SCHEMA = "imager/ledger-head/1"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIGNER = re.compile(r"sha256:[0-9a-f]{64}")
DOC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # also a file name


def now_text() -> str:
    """The current UTC time as the ledger writes (and hashes) it."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_hash(entry_fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of every field but "hash"."""
    return sha256_hex(canonical_bytes({k: v for k, v in entry_fields.items() if k != "hash"}))


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    at: str
    kind: str
    doc_id: str
    json_sha256: str
    pdf_sha256: str | None
    signer: str
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: models.LedgerEntry) -> LedgerEntry:
        return cls(**{name: getattr(row, name) for name in FIELDS})


@dataclass(frozen=True)
class Problem:
    """What is wrong, at which entry (None: the ledger as a whole)."""

    seq: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.seq is None else f"n° {self.seq} : {self.message}"


# --------------------------------------------------------------------------
# Pure checks (registry or exported file)


def _seq_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _field_errors(entry: Mapping[str, Any]) -> list[str]:
    """Why `entry` is not a well-formed ledger entry (empty when it is)."""
    errors = []
    missing = [f for f in FIELDS if f not in entry]
    extra = sorted(set(entry) - set(FIELDS))
    if missing:
        errors.append(f"champs absents / missing fields: {', '.join(missing)}")
    if extra:
        errors.append(f"champs inconnus / unknown fields: {', '.join(extra)}")
    seq = entry.get("seq")
    number = _seq_or_none(seq)
    if "seq" in entry and (number is None or number < 1):
        errors.append(f"seq {seq!r} n'est pas un entier ≥ 1 / is not an integer ≥ 1")
    for name in ("at", "kind", "doc_id", "signer"):
        if name in entry and not (isinstance(entry[name], str) and entry[name]):
            errors.append(f"{name} doit être un texte / must be text")
    for name in ("json_sha256", "prev", "hash"):
        if name in entry and not (isinstance(entry[name], str) and _HEX64.fullmatch(entry[name])):
            errors.append(f"{name} doit être 64 chiffres hexadécimaux / must be 64 hex digits")
    pdf = entry.get("pdf_sha256")
    if pdf is not None and not (isinstance(pdf, str) and _HEX64.fullmatch(pdf)):
        errors.append("pdf_sha256 doit être 64 chiffres hexadécimaux ou null / "
                      "must be 64 hex digits or null")
    return errors


def verify_chain(entries: Sequence[Any]) -> list[Problem]:
    """Every break in `entries` (in ledger order): altered, removed, moved or
    duplicated entries, each named by its seq."""
    problems: list[Problem] = []
    expected, prev_hash = 1, ZERO_HASH
    seen: set[int] = set()
    doc_seqs: dict[str, int] = {}
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            problems.append(Problem(None, f"l'élément {position} n'est pas une entrée / "
                                          f"item {position} is not an entry"))
            continue
        errors = _field_errors(entry)
        if errors:
            problems.append(Problem(_seq_or_none(entry.get("seq")),
                                    "entrée mal formée / malformed entry: " + "; ".join(errors)))
            expected, prev_hash = expected + 1, str(entry.get("hash"))
            continue
        seq = entry["seq"]
        if seq in seen:
            problems.append(Problem(seq, f"n° {seq} en double / seq {seq} appears twice"))
        elif seq < expected:
            problems.append(Problem(seq, f"hors d'ordre, après le n° {expected - 1} / out of "
                                         f"order, after seq {expected - 1}"))
        elif seq > expected:
            span = f"{expected}" if seq == expected + 1 else f"{expected} à / to {seq - 1}"
            problems.append(Problem(expected, f"entrée(s) {span} absente(s) avant le n° {seq}, "
                                              f"supprimée(s) ou déplacée(s) / entries missing "
                                              f"before seq {seq}: removed or moved"))
        computed = entry_hash(entry)
        if computed != entry["hash"]:
            problems.append(Problem(seq, f"empreinte fausse : l'entrée a été modifiée (calculée "
                                         f"{computed[:16]}…, inscrite {entry['hash'][:16]}…) / "
                                         "hash mismatch: the entry was altered"))
        if entry["prev"] != prev_hash:
            problems.append(Problem(seq, "lien rompu : prev n'est pas l'empreinte de l'entrée "
                                         "précédente / broken link: prev is not the previous "
                                         "entry's hash (an entry before it was removed, moved "
                                         "or rewritten)"))
        first = doc_seqs.setdefault(entry["doc_id"], seq)
        if first != seq:
            problems.append(Problem(seq, f"document {entry['doc_id']} déjà inscrit au n° {first} "
                                         f"/ already recorded at seq {first}"))
        seen.add(seq)
        expected, prev_hash = max(expected, seq + 1), entry["hash"]
    return problems


def check_head(entries: Sequence[Mapping[str, Any]], head: Mapping[str, Any]) -> list[Problem]:
    """Does the ledger hold the entry of a head kept earlier ({"seq", "hash"})?

    Catches a ledger cut after that entry, or rewritten up to it."""
    seq, kept = _seq_or_none(head.get("seq")), head.get("hash")
    if seq is None or seq < 0 or not isinstance(kept, str):
        return [Problem(None, "tête conservée illisible : il faut seq et hash / unreadable "
                              "kept head: seq and hash are required")]
    if seq == 0:
        return [] if kept == ZERO_HASH else [Problem(0, "tête vide mal formée / malformed empty "
                                                        "head")]
    found = [e for e in entries if e.get("seq") == seq]
    if not found:
        last = max((_seq_or_none(e.get("seq")) or 0 for e in entries), default=0)
        if last > seq:
            return [Problem(seq, "l'entrée de la tête conservée a été supprimée / the kept "
                                 "head's entry was removed")]
        return [Problem(seq, f"la tête conservée est absente : le registre s'arrête au n° {last}, "
                             f"des entrées ont été retirées à la fin / the kept head is missing: "
                             f"the ledger ends at seq {last}, entries were cut from its end")]
    if found[0].get("hash") != kept:
        return [Problem(seq, f"l'entrée ne correspond pas à la tête conservée : historique "
                             f"réécrit (conservée {kept[:16]}…, trouvée "
                             f"{str(found[0].get('hash'))[:16]}…) / the entry differs from the "
                             "kept head: the history was rewritten")]
    return []


def check_documents(entries: Sequence[LedgerEntry], documents_dir: Path) -> list[Problem]:
    """Each entry's files (<doc_id>.json, <doc_id>.pdf) exist and hash as recorded."""
    problems: list[Problem] = []
    for entry in entries:
        for suffix, expected in ((".json", entry.json_sha256), (".pdf", entry.pdf_sha256)):
            if expected is None:
                continue
            path = documents_dir / f"{entry.doc_id}{suffix}"
            try:
                actual = sha256_hex(path.read_bytes())
            except FileNotFoundError:
                problems.append(Problem(entry.seq, f"fichier absent / missing file: {path}"))
                continue
            except OSError as exc:
                problems.append(Problem(entry.seq, f"fichier illisible / unreadable file: "
                                                   f"{path}: {exc.strerror}"))
                continue
            if actual != expected:
                problems.append(Problem(entry.seq, f"fichier modifié / altered file: {path} "
                                                   f"(sha256 {actual[:16]}…, le registre dit / "
                                                   f"the ledger says {expected[:16]}…)"))
    return problems


# --------------------------------------------------------------------------
# The ledger in the registry


def _check_new(kind: str, doc_id: str, json_sha256: str, pdf_sha256: str | None,
               signer: str) -> None:
    if not kind:
        raise UsageError("type de document vide / empty document kind")
    if not DOC_ID.fullmatch(doc_id):
        raise UsageError(f"identifiant de document {doc_id!r} invalide : lettres, chiffres, "
                         f". _ - (128 au plus) / invalid document id: letters, digits, . _ - "
                         "(at most 128), it is also the file name")
    for name, value in (("json_sha256", json_sha256), ("pdf_sha256", pdf_sha256 or "0" * 64)):
        if not _HEX64.fullmatch(value):
            raise UsageError(f"{name} {value!r} : 64 chiffres hexadécimaux minuscules attendus / "
                             "expected 64 lowercase hex digits (sha256_hex of the file)")
    if not _SIGNER.fullmatch(signer):
        raise UsageError(f"signataire {signer!r} : empreinte sha256:<hex> attendue / expected "
                         "a key fingerprint sha256:<hex> (StationKeys.fingerprint)")


class Slot:
    """The next ledger position, held under the write lock until `reserve` ends.

    `session` is the transaction holding the lock: write anything that must
    commit with the entry through it (on SQLite, another write session opened
    meanwhile in the same thread would wait for this one forever)."""

    def __init__(self, session: Session, seq: int, prev: str, at: str) -> None:
        self.session, self.seq, self.prev, self.at = session, seq, prev, at
        self.entry: LedgerEntry | None = None

    def commit(self, kind: str, doc_id: str, json_sha256: str, pdf_sha256: str | None,
               signer: str) -> LedgerEntry:
        """Record the document at this slot (written when `reserve` ends without error)."""
        if self.entry is not None:
            raise UsageError(f"la place n° {self.seq} est déjà prise par {self.entry.doc_id} / "
                             f"slot {self.seq} already holds {self.entry.doc_id}: reserve again")
        _check_new(kind, doc_id, json_sha256, pdf_sha256, signer)
        taken = self.session.scalar(
            select(models.LedgerEntry.seq).where(models.LedgerEntry.doc_id == doc_id))
        if taken is not None:
            raise UsageError(f"le document {doc_id} est déjà au registre (n° {taken}) / document "
                             f"{doc_id} is already in the ledger (seq {taken}): issue a new id")
        entry = LedgerEntry(seq=self.seq, at=self.at, kind=kind, doc_id=doc_id,
                            json_sha256=json_sha256, pdf_sha256=pdf_sha256, signer=signer,
                            prev=self.prev, hash="")
        entry = dataclasses.replace(entry, hash=entry_hash(entry.to_dict()))
        self.session.add(models.LedgerEntry(**entry.to_dict()))
        self.session.flush()
        self.entry = entry
        return entry


@dataclass(frozen=True)
class LedgerCheck:
    """One check `Ledger.verify` ran and what it found."""

    name: str
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerReport:
    count: int
    head: LedgerEntry | None
    checks: list[LedgerCheck]

    @property
    def problems(self) -> list[Problem]:
        return [p for c in self.checks for p in c.problems]

    @property
    def ok(self) -> bool:
        return not self.problems


class Ledger:
    """The ledger of issued documents, in the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @contextmanager
    def reserve(self) -> Iterator[Slot]:
        """The next position, under a write lock no other process can take meanwhile.

        Leaving without `slot.commit` writes nothing; an exception rolls back."""
        with self.registry.session() as session:
            # SQLite: Registry sessions start with BEGIN IMMEDIATE (the write lock).
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("LOCK TABLE ledger_entries IN EXCLUSIVE MODE"))
            last = session.scalars(select(models.LedgerEntry)
                                   .order_by(models.LedgerEntry.seq.desc()).limit(1)).first()
            seq, prev = (last.seq + 1, last.hash) if last else (1, ZERO_HASH)
            yield Slot(session, seq, prev, now_text())

    def head(self) -> LedgerEntry | None:
        with self.registry.session(readonly=True) as s:
            row = s.scalars(select(models.LedgerEntry)
                            .order_by(models.LedgerEntry.seq.desc()).limit(1)).first()
            return LedgerEntry.from_row(row) if row else None

    def entries(self) -> list[LedgerEntry]:
        with self.registry.session(readonly=True) as s:
            rows = s.scalars(select(models.LedgerEntry).order_by(models.LedgerEntry.seq))
            return [LedgerEntry.from_row(r) for r in rows]

    def find(self, doc_id: str) -> LedgerEntry | None:
        with self.registry.session(readonly=True) as s:
            row = s.scalars(select(models.LedgerEntry)
                            .where(models.LedgerEntry.doc_id == doc_id)).first()
            return LedgerEntry.from_row(row) if row else None

    def verify(self, documents_dir: Path | None = None,
               head: Mapping[str, Any] | None = None) -> LedgerReport:
        """Check the chain, then the kept `head` and the files in `documents_dir` if given."""
        entries = self.entries()
        dicts = [e.to_dict() for e in entries]
        checks = [LedgerCheck(f"chaîne de {len(entries)} entrée(s) : empreintes, liens, numéros "
                              f"/ chain of {len(entries)} entries: hashes, links, numbers",
                              verify_chain(dicts))]
        if head is not None:
            checks.append(LedgerCheck(f"tête conservée n° {head.get('seq')} présente / kept head "
                                      f"seq {head.get('seq')} present", check_head(dicts, head)))
        if documents_dir is not None:
            checks.append(LedgerCheck(f"fichiers des documents dans / document files in "
                                      f"{documents_dir}", check_documents(entries, documents_dir)))
        return LedgerReport(len(entries), entries[-1] if entries else None, checks)

    def export_document(self, documents_dir: Path | None = None) -> dict[str, Any]:
        """Every entry, and the signed record of every withdrawal (read from
        `documents_dir`), for `sign_document`: a donor checks it offline."""
        entries = self.entries()
        return {"schema": EXPORT_SCHEMA, "kind": "ledger-export", "exported_at": now_text(),
                "entries": [e.to_dict() for e in entries], "head": _head_of(entries),
                "withdrawals": _withdrawal_texts(entries, documents_dir)}

    def head_document(self, upto: int | None = None) -> dict[str, Any]:
        """The last entry (or entry n° `upto`), for `sign_document`: the receipt a donor
        keeps, and what a station pushes to the portal with each batch of entries."""
        entries = [e for e in self.entries() if upto is None or e.seq <= upto]
        return {"schema": HEAD_SCHEMA, "kind": "ledger-head", "at": now_text(),
                **_head_of(entries), "count": len(entries)}


def _withdrawal_texts(entries: Sequence[LedgerEntry], documents_dir: Path | None,
                      ) -> dict[str, str]:
    """The signed withdrawal records of `entries`, as the export carries them; refuses
    when one is missing or is not the file the ledger recorded."""
    wanted = [e for e in entries if e.kind == WITHDRAWAL]
    if not wanted:
        return {}
    if documents_dir is None:
        raise UsageError("l'export porte les retraits : il faut le dossier des documents / "
                         "the export carries the withdrawals: give the documents directory")
    files = withdrawal_files([e.to_dict() for e in wanted], documents_dir)
    bad = [f"{documents_dir / e.doc_id}.json" for e in wanted
           if sha256_hex(files.get(e.doc_id, b"")) != e.json_sha256]
    if bad:
        raise UsageError(f"retrait(s) absent(s) ou modifié(s) / withdrawal record(s) missing "
                         f"or altered: {', '.join(bad)} — the export would not say why these "
                         "documents were withdrawn; run `imager ledger verify` and restore the "
                         "files from a backup")
    return {rid: data.decode("utf-8") for rid, data in files.items()}


def _head_of(entries: Sequence[LedgerEntry]) -> dict[str, Any]:
    return {"seq": entries[-1].seq, "hash": entries[-1].hash} if entries \
        else {"seq": 0, "hash": ZERO_HASH}


# --------------------------------------------------------------------------
# Signed ledger files, offline


def _signed(data: bytes, trust: Trust, checks: Checks,
            schema: str) -> tuple[dict[str, Any], str]:
    """The document of a signed ledger file and the key that signed it, once its signature,
    its signer's certificate chain and its schema are checked."""
    envelope = read_envelope(data, checks)
    document = verify_envelope(envelope, trust, checks)
    if document.get("schema") != schema:
        raise checks.fail(f"pas un fichier {schema} / not a {schema} file "
                          f"(schema {document.get('schema')!r})")
    return document, str(envelope["signature"]["key"])


@dataclass(frozen=True)
class LedgerExport:
    """A verified signed ledger export."""

    entries: list[dict[str, Any]]
    signer: str       # the key of the station that exported it
    withdrawals: dict[str, bytes] = field(default_factory=dict)  # signed records, by id
    exported_at: str = ""     # what it says of withdrawals holds as of then


def _export_withdrawals(document: Mapping[str, Any], entries: Sequence[Mapping[str, Any]],
                        ) -> tuple[dict[str, bytes], list[Problem]]:
    """The withdrawal records an export carries (an export made before withdrawals
    existed has none), each checked against its ledger entry."""
    given = document.get("withdrawals", {})
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        return {}, [Problem(None, "retraits illisibles : un objet {id: fichier signé} attendu / "
                                  "unreadable withdrawals: an object {id: signed file} expected")]
    by_id = {e.get("doc_id"): e for e in entries}
    files, problems = {}, []
    for rid, signed in given.items():
        entry, data = by_id.get(rid), signed.encode("utf-8")
        if entry is None or entry.get("kind") != WITHDRAWAL \
                or entry.get("json_sha256") != sha256_hex(data):
            problems.append(Problem(_seq_or_none((entry or {}).get("seq")),
                                    f"le retrait {rid} joint n'est pas celui que le registre "
                                    f"garde / the withdrawal record {rid} carried is not the "
                                    "one the ledger recorded"))
        files[rid] = data
    return files, problems


def read_export(data: bytes, trust: Trust, checks: Checks) -> LedgerExport:
    """The entries of a signed ledger export and its signer, once its signature and chain
    are checked. Raises VerificationFailed (through `checks.fail`) naming every problem."""
    document, signer = _signed(data, trust, checks, EXPORT_SCHEMA)
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise checks.fail("l'export ne contient pas de liste d'entrées / the export holds no "
                          "list of entries")
    problems = verify_chain(entries)
    head = _head_of([LedgerEntry(**e) for e in entries]) if not problems else {}
    if not problems and document.get("head") != head:
        problems.append(Problem(None, f"la tête de l'export {document.get('head')!r} n'est "
                                      "pas sa dernière entrée / the export's head is not its "
                                      "last entry"))
    withdrawals, wrong = _export_withdrawals(document, entries) if not problems else ({}, [])
    problems += wrong
    if problems:
        raise checks.fail("registre rompu / broken ledger: " + "; ".join(map(str, problems)))
    checks.ok(f"registre : {len(entries)} entrée(s), chaîne intacte / ledger: {len(entries)} "
              f"entries, chain intact (head seq {head['seq']} {head['hash'][:16]}…)")
    return LedgerExport(entries, signer, withdrawals, str(document.get("exported_at", "")))


def verify_export(data: bytes, trust: Trust, checks: Checks) -> list[dict[str, Any]]:
    """The entries of a signed ledger export (`read_export`)."""
    return read_export(data, trust, checks).entries


def read_head(data: bytes, trust: Trust, checks: Checks) -> dict[str, Any]:
    """The {"seq", "hash"} of a signed head file, once its signature is checked."""
    return read_signed_head(data, trust, checks)[0]


def read_signed_head(data: bytes, trust: Trust, checks: Checks) -> tuple[dict[str, Any], str]:
    """`read_head`, and the key that signed the head (the portal takes a station's head
    from that station only)."""
    document, signer = _signed(data, trust, checks, HEAD_SCHEMA)
    seq, hash_ = _seq_or_none(document.get("seq")), document.get("hash")
    if not (seq is not None and seq >= 0
            and isinstance(hash_, str) and _HEX64.fullmatch(hash_)):
        raise checks.fail("fichier de tête illisible : seq et hash attendus / unreadable "
                          "head file: seq and hash expected")
    head = {"seq": seq, "hash": hash_}
    checks.ok(f"tête / head seq {head['seq']} {head['hash']}")
    return head, signer
