"""The attacker of tests/test_attacks.py, on the workshop LAN: requests built by
hand and signed with the project's own proof code (imager.protocol.proof) over
the station's real HTTPS; a rogue HTTPS server for the agents to refuse; and a
dump of what an attack must leave as it was."""

from __future__ import annotations

import hashlib
import http.server
import json
import sqlite3
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from certmaker import tls_server_context
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imager.protocol import proof
from imager.station.tls import TlsCa

# -- requests ------------------------------------------------------------------------


class Attacker:
    """An HTTPS client of the station that signs (or not) what it is told to."""

    def __init__(self, url: str, ca: Path) -> None:
        self.http = httpx.Client(base_url=url, timeout=30,
                                 verify=ssl.create_default_context(cafile=ca))

    def call(self, method: str, path: str, body: Any = None, *,
             key: Ed25519PrivateKey | None = None, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        """`method path` with `body` as JSON, signed with `key` if given."""
        content = b"" if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if key is not None:
            sent.update(proof.sign(key, method, path, content))
        return self.http.request(method, path, content=content, headers={**sent,
                                                                         **(headers or {})})

    def enrol(self, key: Ed25519PrivateKey, name: str, host: str, **extra: Any
              ) -> httpx.Response:
        return self.call("POST", "/api/v1/agents", {
            "public_key": proof.public_hex(key), "name": name, "kind": "machine",
            "host": host, **extra}, key=key)

    def send(self, key: Ed25519PrivateKey, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Events sent as the agent holding `key`: the station's answer for each."""
        resp = self.call("POST", "/api/v1/events", {"events": list(events)}, key=key)
        assert resp.status_code == 200, resp.text
        results: list[dict[str, Any]] = resp.json()["results"]
        return results

    def close(self) -> None:
        self.http.close()


def event(kind: str, data: dict[str, Any], *, id: str | None = None) -> dict[str, Any]:
    """An event envelope as an agent writes it (imager.protocol.events)."""
    now = datetime.now(UTC)
    return {"id": id or uuid.uuid4().hex, "seq": int(now.timestamp() * 1e6),
            "at": now.isoformat(), "v": 2, "kind": kind, "data": data}


def private_key(path: Path) -> Ed25519PrivateKey:
    """An agent's key file, as `imager agent run --key` wrote it."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


# -- what an attack must not change ---------------------------------------------------

# What agents sent, applied or refused: the station logs a refused event there, so
# the log grows with every attack that reaches it. No other table is a log.
LOGS = frozenset({"agent_events"})
# Written by legitimate traffic on every request, whatever its outcome: the station
# stamps the agent's last request (a refused event of a known agent too, and
# GET /agents/me). That an agent was heard is not something an attack may change.
VOLATILE = {"agents": frozenset({"last_seen_at"})}


@dataclass(frozen=True)
class Dump:
    """Every table of the registry but the logs (rows as column -> value), the
    files of the documents directory (name -> sha256) and the ledger head."""

    tables: dict[str, list[dict[str, Any]]]
    documents: dict[str, str]
    ledger_head: tuple[int, str] | None


def dump(data: Path, *, also_volatile: dict[str, frozenset[str]] | None = None) -> Dump:
    """The station's state in `data` (its SQLite registry opened read-only)."""
    also = also_volatile or {}
    volatile = {t: VOLATILE.get(t, frozenset()) | also.get(t, frozenset())
                for t in {*VOLATILE, *also}}
    uri = f"file:{data / 'registry.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        db.row_factory = sqlite3.Row
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        tables = {name: [{k: row[k] for k in row.keys() if k not in volatile.get(name, ())}
                         for row in db.execute(f'SELECT * FROM "{name}" ORDER BY 1')]
                  for name in names if name not in LOGS}
        head = db.execute("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"
                          ).fetchone()
    folder = data / "documents"
    documents = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(folder.iterdir())} if folder.is_dir() else {}
    return Dump(tables, documents, tuple(head) if head else None)


def changes(before: Dump, after: Dump) -> dict[str, Any]:
    """What differs, table by table ({"gone": rows, "new": rows}), documents and
    ledger head: empty when the attack changed nothing."""
    out: dict[str, Any] = {}
    for name in sorted(set(before.tables) | set(after.tables)):
        old, new = before.tables.get(name, []), after.tables.get(name, [])
        if old != new:
            out[name] = {"gone": [r for r in old if r not in new],
                         "new": [r for r in new if r not in old]}
    if before.documents != after.documents:
        out["documents/"] = {"gone": sorted(set(before.documents) - set(after.documents)),
                             "new": sorted(set(after.documents) - set(before.documents))}
    if before.ledger_head != after.ledger_head:
        out["ledger head"] = {"gone": before.ledger_head, "new": after.ledger_head}
    return out


# -- a rogue station ---------------------------------------------------------------------


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers every request as a station would ({"status": "ok"}), noting its path."""

    seen: list[str]

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = b'{"status": "ok", "results": [], "jobs": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer   # noqa: N815 (http.server's names)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def rogue_station(folder: Path, issuer: TlsCa, *, days: tuple[int, int]
                  ) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server on 127.0.0.1 whose certificate `issuer` made for that address,
    valid from now + days[0] to now + days[1]: its URL, and the requests it got."""
    context = tls_server_context(issuer, folder, days=days)
    seen: list[str] = []
    handler = type("Rogue", (_Answers,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
