"""Beneficiaries' messages reach the network's portal (imager.portal.messages).

In-process (the portal's app over SQLite, FastAPI's TestClient): a message is stored
once whatever the retries, every malformed one is refused with a status the laptop
takes as "never", the rate limits answer 429 with Retry-After, coordinators list
them and mark them read, the retention deletes the old ones, the profile's URL is the
portal's route.

For real: a real `imager portal serve` over HTTPS on PostgreSQL (tests/portal_net.py)
and the laptop's real payload (accueil_messages.py: its local service takes the form,
its sender posts the queue, `python -I -S` with the standard library only): the queue
empties, a retry after a lost answer is stored once, an oversized message is dropped
by the laptop after the portal's 413, and a 429 keeps the message for later.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from certmaker import make
from clirun import imager
from fastapi import FastAPI
from fastapi.testclient import TestClient
from portal_net import Portal, network_ca, portal_tls
from sqlalchemy import inspect, update
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name
from test_welcome_queue import MESSAGE, PROFILE, SCRIPT, Service, post_form
from test_welcome_queue import service as service  # noqa: F401 - the fixture, by name

from imager.certify.signing import Trust
from imager.portal import messages as msg
from imager.portal import messages_api
from imager.portal.app import Portal as PortalApp
from imager.portal.app import create_app
from imager.portal.db import PortalDb
from imager.portal.models import Message
from imager.store.db import utcnow

JSON = {"Content-Type": "application/json; charset=utf-8"}


def payload(**changes: Any) -> dict[str, Any]:
    """A message as the laptop's sender posts it."""
    return {"format": "accueil-message/1", "id": str(uuid.uuid4()),
            "written_at": "2026-12-06T10:15:00+01:00", "sent_at": "2026-12-06T11:02:13+01:00",
            "attempt": 1, "machine": "POSTE-0042", "lang": "fr", "name": "Awa",
            "text": "Bonjour, le son ne marche pas.\nMerci !", "contact": "06 00 00 00 00",
            **changes}


def post(client: TestClient, body: dict[str, Any], *, key: str | None = "same",
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    given = {**JSON, **(headers or {})}
    if key is not None:
        given["Idempotency-Key"] = body["id"] if key == "same" else key
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    return client.post(msg.MESSAGES_PATH, content=data, headers=given)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[PortalDb]:
    opened = PortalDb.open_url(f"sqlite:///{tmp_path / 'portal.sqlite3'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def client(db: PortalDb) -> Iterator[TestClient]:
    app = create_app(PortalApp(db, Trust([make("AC du réseau", pathlen=1).cert])))
    with TestClient(app, base_url="https://portail.test") as http:
        yield http


def test_a_message_is_stored_once_whatever_the_retries(client: TestClient,
                                                       db: PortalDb) -> None:
    body = payload(text="Bonjour,\n\tl'écran reste noir 😕")
    first = post(client, body)
    assert first.status_code == 201, first.text
    assert first.json() == {"id": body["id"], "stored": True}
    again = post(client, {**body, "attempt": 2, "sent_at": "2026-12-06T12:00:00+01:00"})
    assert again.status_code == 200 and again.json()["stored"] is False
    assert post(client, body, key=None).status_code == 200     # the key is optional
    [held] = msg.recent(db)
    assert (held.id, held.machine, held.lang, held.name, held.contact, held.text) == (
        body["id"], "POSTE-0042", "fr", "Awa", "06 00 00 00 00", body["text"])
    assert held.written_at.isoformat() == "2026-12-06T09:15:00+00:00"
    assert held.read_at is None
    # Nothing of the request is kept beside the message: no address, no headers.
    columns = {c["name"] for c in inspect(db.engine).get_columns("portal_messages")}
    assert columns == {"id", "machine", "lang", "name", "contact", "text", "written_at",
                       "received_at", "read_at", "read_by"}


LONG = "é" * 2049                  # 4098 bytes: over the laptop's 4 KiB


@pytest.mark.parametrize(("changes", "status", "said"), [
    ({"format": "accueil-message/2"}, 422, "format"),
    ({"id": "not-a-uuid"}, 422, "UUID"),
    ({"id": str(uuid.uuid4()).upper()}, 422, "UUID"),
    ({"written_at": "2026-12-06T10:15:00"}, 422, "offset"),       # no offset
    ({"written_at": "hier"}, 422, "ISO 8601"),
    ({"sent_at": "1970-01-01T00:00:00+00:00"}, 422, "between"),
    ({"lang": "de"}, 422, "lang"),
    ({"attempt": 0}, 422, "attempt"),
    ({"attempt": "1"}, 422, "attempt"),
    ({"machine": "poste 42;rm"}, 422, "machine"),
    ({"text": "   \n "}, 422, "vide"),
    ({"text": "Bonjour\x1b[31m"}, 422, "U+001B"),
    ({"text": "Bonjour\x00"}, 422, "U+0000"),
    ({"text": "Bonjour\x85"}, 422, "U+0085"),                      # a C1 control
    ({"name": "Awa\nBé"}, 422, "U+000A"),
    ({"name": None}, 422, "name"),
    ({"extra": "field"}, 422, "extra"),
    ({"text": LONG}, 413, "text"),
    ({"name": "n" * 201}, 413, "name"),
    ({"contact": "c" * 301}, 413, "contact"),
])
def test_every_malformed_message_is_refused_for_good(client: TestClient, db: PortalDb,
                                                     changes: dict[str, Any], status: int,
                                                     said: str) -> None:
    answer = post(client, payload(**changes))
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]
    assert "Retry-After" not in answer.headers       # the laptop drops it: never retried
    assert msg.recent(db) == []


def test_type_size_key_and_json_are_checked_before_anything_is_stored(
        client: TestClient, db: PortalDb) -> None:
    body = payload()
    assert post(client, body, headers={"Content-Type": "text/plain"}).status_code == 415
    assert post(client, body, headers={"Content-Type": "application/json; charset=latin-1"}
                ).status_code == 415
    assert post(client, body, key=str(uuid.uuid4())).status_code == 400   # another id
    assert post(client, body, raw=b'{"format": ').status_code == 400
    assert post(client, body, raw=b"\xff\xfe{}").status_code == 400
    assert post(client, body, raw=b"[]").status_code == 422
    big = post(client, body, raw=json.dumps({**body, "text": "a" * 17000}).encode())
    assert big.status_code == 413 and "at most 16384" in big.json()["error"]
    assert msg.recent(db) == []
    assert post(client, body).status_code == 201      # the same message, well sent


def test_rate_limits_answer_429_with_retry_after(db: PortalDb) -> None:
    app = FastAPI()
    app.include_router(messages_api.router(db, msg.MessagePolicy(per_address=(3, 60.0),
                                                                 overall=(5, 120.0))))
    here = TestClient(app, client=("192.0.2.10", 50000))
    there = TestClient(app, client=("192.0.2.20", 50000))
    assert [post(here, payload()).status_code for _ in range(4)] == [201, 201, 201, 429]
    busy = post(here, payload())
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "20"   # 60 s / 3
    answers = [post(there, payload()) for _ in range(3)]      # everyone's 5 are spent
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[-1].headers["Retry-After"] == "24"                     # 120 s / 5
    assert len(msg.recent(db)) == 5


def test_coordinators_list_and_mark_read_and_old_messages_go(db: PortalDb) -> None:
    ids = []
    for n, machine in enumerate(("POSTE-0001", "POSTE-0002", "POSTE-0001")):
        incoming = msg.parse(json.dumps(payload(machine=machine, text=f"n°{n}")).encode(),
                             content_type="application/json", key=None)
        assert msg.store(db, incoming)
        ids.append(incoming.id)
        time.sleep(0.01)
    assert [m.text for m in msg.recent(db)] == ["n°2", "n°1", "n°0"]     # latest first
    assert [m.text for m in msg.recent(db, machine="POSTE-0001", limit=1)] == ["n°2"]
    assert msg.mark_read(db, [ids[0], "0" * 36], by="Hélène Dupré") == ["0" * 36]
    assert [m.id for m in msg.recent(db, unread=True)] == [ids[2], ids[1]]
    read = next(m for m in msg.recent(db) if m.id == ids[0])
    assert read.read_by == "Hélène Dupré" and read.read_at is not None
    assert json.loads(json.dumps(read.to_dict()))["read_by"] == "Hélène Dupré"
    with db.session() as s:
        s.execute(update(Message).where(Message.id == ids[1])
                  .values(received_at=utcnow() - timedelta(days=31)))
    assert msg.purge(db, 90) == 0
    assert msg.purge(db, 30) == 1
    assert {m.id for m in msg.recent(db)} == {ids[0], ids[2]}


def test_the_receiving_portal_applies_the_retention(db: PortalDb) -> None:
    app = FastAPI()
    app.include_router(messages_api.router(db, msg.MessagePolicy(keep_days=7)))
    old = msg.parse(json.dumps(payload()).encode(), content_type="application/json", key=None)
    msg.store(db, old)
    with db.session() as s:
        s.execute(update(Message).values(received_at=utcnow() - timedelta(days=8)))
    assert post(TestClient(app), payload()).status_code == 201
    assert old.id not in {m.id for m in msg.recent(db)} and len(msg.recent(db)) == 1


def test_the_cli_lists_marks_read_and_purges(db: PortalDb, tmp_path: Path) -> None:
    url = str(db.url)
    incoming = msg.parse(json.dumps(payload(text="Le wifi ne marche pas.\nMerci")).encode(),
                         content_type="application/json", key=None)
    msg.store(db, incoming)
    data = tmp_path / "coordinator"
    listed = imager(data, "portal", "messages", "--db", url).stdout
    assert "NON LU / UNREAD" in listed and "   Le wifi ne marche pas." in listed
    assert "POSTE-0042" in listed and "Awa — 06 00 00 00 00" in listed
    unknown = imager(data, "portal", "messages", "--db", url, "--mark-read", "nope",
                     check=False)
    assert unknown.returncode == 2 and "inconnu(s) / unknown: nope" in unknown.stderr
    imager(data, "portal", "messages", "--db", url, "--mark-read", incoming.id, "--by", "Léa")
    unread = json.loads(imager(data, "portal", "messages", "--db", url, "--unread",
                               "--json").stdout)
    assert unread == []
    [read] = json.loads(imager(data, "portal", "messages", "--db", url, "--json").stdout)
    assert read["read_by"] == "Léa" and read["text"] == "Le wifi ne marche pas.\nMerci"
    purged = imager(data, "portal", "messages", "--db", url, "--purge", "--keep-days", "1",
                    "--json")
    assert json.loads(purged.stdout) == {"deleted": 0}


def test_the_shipped_profile_sends_to_the_portals_route() -> None:
    spec = yaml.safe_load((PROFILE / "welcome.yaml").read_text(encoding="utf-8"))
    assert urlsplit(spec["messages"]["portal_url"]).path == msg.MESSAGES_PATH


# -- for real: `imager portal serve` (HTTPS, PostgreSQL) and the laptop's payload ---------


@pytest.fixture(scope="module")
def real(pg: PgServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
         ) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("messages")
    _, ca_file = network_ca(base / "ca")
    tls = portal_tls(base / "tls")
    database = pg.create_database("messages")
    portal = Portal(base / "portal", database, ca_file, tls)
    try:
        portal.start()
        db = PortalDb.open_url(database)
        try:
            yield {"portal": portal, "db": db, "url": portal.url + msg.MESSAGES_PATH,
                   "ca": tls.ca, "database": database}
        finally:
            db.close()
    finally:
        portal.stop()


def sender(service: Service, real: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """One round of the laptop's real sender, trusting the portal's test CA (the
    laptop trusts the public CAs of its system; the test's CA stands for them)."""
    return subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "send", "--once",
                           "--queue", str(service.queue), "--portal", real["url"],
                           "--machine", "POSTE-0042", "--timeout", "20"],
                          capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "SSL_CERT_FILE": str(real["ca"])})


def held(real: dict[str, Any], ids: list[str]) -> list[msg.MessageView]:
    return [m for m in msg.recent(real["db"], limit=10_000) if m.id in ids]


def test_the_laptops_queue_empties_into_the_real_portal(service: Service,  # noqa: F811
                                                        real: dict[str, Any]) -> None:
    assert post_form(service, MESSAGE).status == 200
    assert post_form(service, {**MESSAGE, "text": "Second message", "lang": "en"}).status \
        == 200
    ids = [m["id"] for m in service.messages()]
    done = sender(service, real)
    assert "round: sent 2, kept 0, dropped 0, waiting 0" in done.stderr, done.stderr
    assert service.files() == []
    found = {m.text: m for m in held(real, ids)}
    assert set(found) == {MESSAGE["text"].replace("\r\n", "\n"), "Second message"}
    assert found["Second message"].lang == "en"
    assert all(m.machine == "POSTE-0042" and m.name == "Awa" for m in found.values())
    listed = imager(Path(real["portal"].folder), "portal", "messages", "--db",
                    real["database"], "--unread", "--json").stdout
    assert {m["id"] for m in json.loads(listed)} >= set(ids)


def test_a_retry_after_a_lost_answer_is_stored_once(service: Service,  # noqa: F811
                                                    real: dict[str, Any],
                                                    tmp_path: Path) -> None:
    assert post_form(service, {**MESSAGE, "text": "Une seule fois"}).status == 200
    [path] = service.files()
    kept = shutil.copy2(path, tmp_path / path.name)
    first = sender(service, real)
    assert "(HTTP 201, attempt 1)" in first.stderr, first.stderr
    shutil.copy2(kept, path)        # the laptop never heard the answer: it sends again
    again = sender(service, real)
    assert "(HTTP 200, attempt 1)" in again.stderr and service.files() == [], again.stderr
    message_id = json.loads(Path(kept).read_text(encoding="utf-8"))["id"]
    assert [m.text for m in held(real, [message_id])] == ["Une seule fois"]


def _queue_by_hand(service: Service, count: int, **fields: Any) -> list[str]:
    """Messages written into the queue as the local service writes them (a queue from
    an older version, or edited by hand, may hold what the service would refuse)."""
    service.queue.mkdir(mode=0o700, parents=True, exist_ok=True)
    ids = []
    for n in range(count):
        message = {"id": str(uuid.uuid4()), "written_at": "2026-12-06T10:15:00+01:00",
                   "lang": "fr", "name": "", "contact": "", "text": f"message {n}",
                   "attempts": 0, "next_attempt": 0.0, "last_error": "", **fields}
        path = service.queue / f"{time.time_ns():020d}-{message['id']}.json"
        path.write_text(json.dumps(message, ensure_ascii=False), encoding="utf-8")
        path.chmod(0o600)
        ids.append(message["id"])
    return ids


def test_an_oversized_message_is_dropped_by_the_laptop_after_the_portals_413(
        service: Service, real: dict[str, Any]) -> None:  # noqa: F811
    ids = _queue_by_hand(service, 1, text="trop long " * 2000)       # a 20 kB request
    ids += _queue_by_hand(service, 1, text="é" * 2100)               # 4.2 kB of text
    done = sender(service, real)
    assert done.stderr.count("the portal refused it for good (HTTP 413)") == 2, done.stderr
    assert service.files() == [] and held(real, ids) == []


def test_a_busy_portal_answers_429_and_the_laptop_keeps_the_message(
        service: Service, real: dict[str, Any]) -> None:  # noqa: F811
    """Last of the module: it spends this address's allowance (30 per 10 minutes)."""
    ids = _queue_by_hand(service, 40)
    before = time.time()
    done = sender(service, real)
    kept = service.messages()
    assert len(kept) >= 10, done.stderr
    assert {m["last_error"] for m in kept} == {"HTTP 429"}
    assert all(m["next_attempt"] >= before + 20 for m in kept)      # Retry-After: 600 / 30
    assert len(held(real, ids)) == 40 - len(kept)
    assert not set(m["id"] for m in kept) & {m.id for m in held(real, ids)}
