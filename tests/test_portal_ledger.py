"""How the portal judges a station's ledger batch against the copy it holds
(imager.portal.receive.new_entries), as data: extending it, resending it, forking it,
going backwards, leaving a gap, breaking the chain, slipping in another key's entry.
And the portal's migrations give its models' schema on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name

from imager.certify.ledger import ZERO_HASH, entry_hash
from imager.portal.db import PortalDb
from imager.portal.models import PortalBase
from imager.portal.receive import Refused, new_entries

KEY, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def chain(count: int, *, salt: str = "", signer: str = KEY,
          start: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`count` well-chained entries (after `start`), each naming its own document."""
    entries = list(start or [])
    for _ in range(count):
        seq = len(entries) + 1
        entry = {"seq": seq, "at": "2026-12-07T10:00:00Z", "kind": "destruction",
                 "doc_id": f"DES-2026-{salt}{seq:04d}", "json_sha256": f"{seq:064x}",
                 "pdf_sha256": None, "signer": signer,
                 "prev": entries[-1]["hash"] if entries else ZERO_HASH, "hash": ""}
        entry["hash"] = entry_hash(entry)
        entries.append(entry)
    return entries


def head(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seq": entries[-1]["seq"], "hash": entries[-1]["hash"]} if entries \
        else {"seq": 0, "hash": ZERO_HASH}


def reason(stored: list[dict[str, Any]], pushed: list[dict[str, Any]],
           said: dict[str, Any]) -> str:
    with pytest.raises(Refused) as refused:
        new_entries(stored, pushed, said, KEY)
    return refused.value.reason


def test_a_batch_extends_the_held_ledger_and_a_resent_one_adds_nothing() -> None:
    held = chain(3)
    longer = chain(2, start=held)
    assert new_entries(held, longer[2:], head(longer), KEY) == longer[3:]
    assert new_entries(held, longer, head(longer), KEY) == longer[3:]       # overlap
    assert new_entries(held, held, head(held), KEY) == []                   # resent
    assert new_entries([], held, head(held), KEY) == held                   # first push


def test_forks_backwards_gaps_breaks_and_other_keys_are_refused() -> None:
    held = chain(3)
    assert reason(held, held[:1], head(held[:1])) == "backwards"
    other = chain(3, salt="X")                              # the same seqs, other hashes
    assert reason(held, other, head(other)) == "fork"
    assert reason(held, [], head(other)) == "fork"          # a head alone forks too
    longer = chain(1, start=other)
    assert reason(held, longer, head(longer)) == "fork"     # entry 1 differs
    five = chain(2, start=held)
    assert reason(held, five[4:], head(five)) == "gap"      # entry 4 left out
    broken = [dict(e) for e in five]
    broken[3]["doc_id"] = "DES-2026-EDITED"                 # altered after hashing
    assert reason(held, broken[3:], head(broken)) == "chain"
    theirs = chain(1, signer=OTHER, start=held)
    assert reason(held, theirs[3:], head(theirs)) == "other-station"
    assert reason(held, five[3:], {"seq": 5, "hash": "f" * 64}) == "fork"   # wrong head


@pytest.fixture
def portal_db(pg: PgServer, tmp_path: Path) -> PortalDb:  # noqa: F811
    return PortalDb.open_url(pg.create_database("t_portal_schema"))


@pytest.mark.server
def test_portal_migrations_match_its_models_and_keep_ledgers_append_only(
        portal_db: PortalDb) -> None:
    with portal_db as db:
        assert db.current_revision() == "p0002"
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": "portal_alembic_version"})
            assert compare_metadata(context, PortalBase.metadata) == []
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO portal_stations (key, name, certificates, "
                              "first_seen_at, head_seq, head_hash) VALUES ('k', 'n', '', "
                              "now(), 0, '0')"))
            conn.execute(text("INSERT INTO portal_ledger_entries VALUES (1, 1, 'a', 'k', "
                              "'d', 'h', NULL, 's', 'p', 'x')"))
        for statement in ("UPDATE portal_ledger_entries SET kind = 'b'",
                          "DELETE FROM portal_ledger_entries",
                          "TRUNCATE portal_ledger_entries"):
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
                conn.execute(text(statement))
