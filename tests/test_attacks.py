"""The attacker on the workshop LAN, against a real station over real HTTPS
(`imager serve --lab --tls`), issue 13. Two real agents (`imager agent run`)
are enrolled and approved by a technician, the first holds the lab drives and
erased one (certified); a third agent is enrolled to be revoked. Each attack is
built by hand (httpx and the project's own request signing) and must be
refused with a message naming the problem, and leave every table of the
registry but the log of agents' events, the documents directory and the ledger
head as they were (tests/attacker.py: `dump`). docs/attacks.md is the table of
these attacks and their outcomes."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import route_table
from attacker import Attacker, Dump, changes, dump, event, private_key, rogue_station
from clirun import spawn
from conftest import need_root
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from station_proc import Serve, until

from imager.agent.client import StationClient, StationNotTrusted
from imager.agent.tls import StationTrust
from imager.certify.identity import load_profile
from imager.certify.keys import keys_dir
from imager.model import DriveIdentity, ErasePlan, EraseReport, PassResult, VerifyResult
from imager.protocol import proof
from imager.registry.agents import PAIRING_TRIES
from imager.settings import Settings
from imager.station.tls import TlsCa

pytestmark = pytest.mark.root

TECHNICIAN = "Lina (tests)"


@dataclass(frozen=True)
class Known:
    """An enrolled agent: its number, what it claimed, its key."""

    id: int
    name: str
    host: str
    key: Ed25519PrivateKey


@dataclass
class Bench:
    station: Serve
    attacker: Attacker
    first: Known            # dock-1, `imager agent run --only-lab`: holds the lab drives
    second: Known           # dock-2, `imager agent run --no-watch`: holds nothing
    third: Known            # laptop-3, enrolled by hand and approved: revoked by its test
    agents: list[subprocess.Popen[str]]
    job: int                # the erase job dock-1 ran: erased, certified
    erased: dict[str, Any]  # its drive
    spare: dict[str, Any]   # the other lab drive dock-1 holds
    tmp: Path

    def dump(self, **volatile: frozenset[str]) -> Dump:
        return dump(self.station.data, also_volatile=volatile)

    def operator(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A technician's call (the operator token)."""
        return self.station.http.request(method, path, json=body)

    def db(self) -> closing[sqlite3.Connection]:
        """The station's SQLite registry, for what the API does not show (the agents'
        event log, a drive's plan as its agent sent it) and to move a token's clock."""
        return closing(sqlite3.connect(self.station.data / "registry.sqlite3", timeout=30))


def _agent(station: Serve, tmp: Path, name: str, *flags: str) -> subprocess.Popen[str]:
    """`imager agent run` pinned to the station's CA, with its key in tmp/NAME.key."""
    return spawn(station.data if "--only-lab" in flags else tmp / name, "agent", "run",
                 "--station", station.url, "--ca", str(station.ca), "--name", name,
                 "--key", str(tmp / f"{name}.key"), "--spool", str(tmp / f"spool-{name}"),
                 *flags)


def _known(station: Serve, agent_id: int, key: Ed25519PrivateKey) -> Known:
    [row] = [a for a in station.get("/api/v1/agents") if a["id"] == agent_id]
    return Known(agent_id, row["name"], row["host"], key)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    need_root()
    tmp = tmp_path_factory.mktemp("attacks")
    station = Serve(tmp / "station", "--tls", "--lab", "2", "--lab-size-mib", "16",
                    "--no-local-agent", "--auto-erase", "never", tls=True,
                    IMAGER_CHECKPOINT_SECONDS="0.2")
    processes: list[subprocess.Popen[str]] = []
    attacker = None
    try:
        station.start()
        attacker = Attacker(station.url, station.ca)
        processes += [_agent(station, tmp, "dock-1", "--only-lab"),
                      _agent(station, tmp, "dock-2", "--no-watch")]
        first = _known(station, station.approve("dock-1"), private_key(tmp / "dock-1.key"))
        second = _known(station, station.approve("dock-2"), private_key(tmp / "dock-2.key"))
        third_key = Ed25519PrivateKey.generate()
        enrolled = attacker.enrol(third_key, "laptop-3", "live-3").json()
        station.post(f"/api/v1/agents/{enrolled['id']}/approve", {"by": TECHNICIAN})
        third = _known(station, enrolled["id"], third_key)

        def lab_drives() -> list[dict[str, Any]] | None:
            held = [d for d in station.get("/api/v1/drives") if d["present"]
                    and d["agent"] == first.id]
            return held if len(held) == 2 else None

        erased, spare = until(lab_drives, 60, "dock-1 reports the two lab drives")
        job = station.post(f"/api/v1/drives/{erased['id']}/erase", {})["job"]
        erased = until(lambda: next((d for d in station.get("/api/v1/drives") if d["id"] ==
                                     erased["id"] and d["state"] == "certified"), None),
                       120, "dock-1 erases a lab drive and the station certifies it")
        yield Bench(station, attacker, first, second, third, processes, job, erased, spare,
                    tmp)
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        if attacker is not None:
            attacker.close()
        station.close()


# -- how a refusal reads -----------------------------------------------------------------


def refused(resp: httpx.Response, status: int, *words: str) -> None:
    """The station answered `status` with an error naming the problem (`words`)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    error = resp.json()["error"]
    for word in words:
        assert word in error, error


def refused_event(answer: dict[str, Any], *words: str) -> None:
    """One event's answer: refused, the reason naming the problem."""
    assert answer["outcome"] == "refused", answer
    for word in words:
        assert word in answer["detail"], answer["detail"]


def unplugged(drive: dict[str, Any]) -> dict[str, Any]:
    """The event saying `drive` left its dock."""
    return event("drive_detached", {"identity": drive["identity"], "path": drive["path"],
                                    "reason": "unplugged"})


def made_up_drive(serial: str) -> dict[str, Any]:
    """A SATA SSD nobody plugged in, as an agent would describe it."""
    return {"path": "/dev/sdz", "size": 16 << 20, "model": "Samsung SSD 870 EVO 500GB",
            "serial": serial, "transport": "sata", "rotational": False}


def made_up_evidence(serial: str) -> dict[str, Any]:
    """The same drive, as big as its model says, reported by its evidence (lsblk's
    output, no other tool)."""
    return evidence("/dev/sdz", 500_107_862_016, serial=serial,
                    model="Samsung SSD 870 EVO 500GB")


# -- 1. re-registration under another agent's name and host -------------------------------


def test_enrolling_under_an_agents_name_and_host_takes_nothing(bench: Bench) -> None:
    """A new key claiming dock-1's name and host is another agent, pending; dock-1
    keeps its identity and its work."""
    first, attacker, thief = bench.first, bench.attacker, Ed25519PrivateKey.generate()
    before = bench.dump()
    told = attacker.enrol(thief, first.name, first.host, kind="dock")
    assert told.status_code == 200, told.text
    newcomer = told.json()
    assert newcomer["state"] == "pending" and newcomer["id"] != first.id
    assert newcomer["policy"] is None and newcomer["fingerprint"] != proof.fingerprint(
        proof.public_hex(first.key))
    # dock-1's public key, presented by the thief: the request is not signed with it
    refused(attacker.call("POST", "/api/v1/agents", {
        "public_key": proof.public_hex(first.key), "name": first.name, "kind": "dock",
        "host": first.host}, key=thief), 401, "not signed with the key it enrols")
    for method, path, body in (("POST", "/api/v1/events", {"events": [unplugged(bench.spare)]}),
                               ("GET", "/api/v1/jobs/next", None)):
        refused(attacker.call(method, path, body, key=thief), 403,
                f"agent {newcomer['id']} ", "is waiting for a technician")
    me = attacker.call("GET", "/api/v1/agents/me", key=first.key).json()
    assert me["id"] == first.id and me["state"] == "active"
    assert [p.poll() for p in bench.agents] == [None, None]     # the real agents go on
    diff = changes(before, bench.dump())
    assert list(diff) == ["agents"] and diff["agents"]["gone"] == [], diff
    [row] = diff["agents"]["new"]
    assert row["key_id"] == proof.key_id(proof.public_hex(thief)) and row["state"] == "pending"


# -- 2. a stolen bearer token, without the key ---------------------------------------------


def _stolen(bench: Bench, how: str) -> httpx.Response:
    """An agent request made with what an eavesdropper could hold, but not the key."""
    first, thief = bench.first, Ed25519PrivateKey.generate()
    body = {"events": [unplugged(bench.spare)]}
    content = json.dumps(body).encode()
    if how == "the operator's token on an agent's route":
        headers = {"Authorization": bench.station.http.headers["Authorization"]}
    elif how == "the agent's key id, no signature":
        headers = {proof.KEY: proof.key_id(proof.public_hex(first.key))}
    elif how == "the agent's key id, signed by another key":
        headers = {**proof.sign(thief, "POST", "/api/v1/events", content),
                   proof.KEY: proof.key_id(proof.public_hex(first.key))}
    elif how == "the agent's proof of another request":
        headers = proof.sign(first.key, "POST", "/api/v1/events", b'{"events": []}')
    else:   # "an agent's proof on a technician's route"
        return bench.attacker.call("POST", f"/api/v1/agents/{bench.second.id}/rename",
                                   {"name": "stolen", "by": first.name}, key=first.key)
    return bench.attacker.call("POST", "/api/v1/events", body, headers=headers)


@pytest.mark.parametrize("how, why", [
    ("the operator's token on an agent's route", "unsigned request: missing X-Imager-Key"),
    ("the agent's key id, no signature", "unsigned request: missing X-Imager-Time"),
    ("the agent's key id, signed by another key", "the signature is not this agent's"),
    ("the agent's proof of another request", "the signature is not this agent's over this "
                                             "request"),
    ("an agent's proof on a technician's route", "missing token"),
])
def test_a_stolen_token_without_the_key_is_refused(bench: Bench, how: str, why: str) -> None:
    before = bench.dump()
    refused(_stolen(bench, how), 401, why)
    assert changes(before, bench.dump()) == {}


# -- 3. a replayed signed request -----------------------------------------------------------


def test_a_replayed_signed_request_is_refused(bench: Bench) -> None:
    """A request captured on the wire (whole: headers and body) is good once, and only
    within the time window."""
    content = b'{"events": []}'
    captured = {**proof.sign(bench.first.key, "POST", "/api/v1/events", content),
                "Content-Type": "application/json"}
    http = bench.attacker.http
    assert http.post("/api/v1/events", content=content, headers=captured).status_code == 200
    before = bench.dump()
    refused(http.post("/api/v1/events", content=content, headers=captured), 401,
            "replayed request (nonce already seen)")
    old = proof.sign(bench.first.key, "GET", "/api/v1/jobs/next", b"",
                     now=datetime.now(UTC).timestamp() - 3600)
    refused(http.get("/api/v1/jobs/next", headers=old), 401,
            "away from the station's clock (at most 60 s)")
    assert changes(before, bench.dump()) == {}


# -- 4. replayed events ---------------------------------------------------------------------


def test_replayed_events_are_answered_duplicate_and_change_nothing(bench: Bench) -> None:
    """dock-1's own event ids sent again, by dock-1, with other contents (a spool
    tampered with, or synced twice): each is answered duplicate, none applied."""
    with bench.db() as db:
        sent = db.execute("SELECT id, kind, job_id FROM agent_events WHERE agent_id = ? AND "
                          "outcome = 'applied' ORDER BY seq", (bench.first.id,)).fetchall()
        logged = db.execute("SELECT count(*) FROM agent_events").fetchone()[0]
    attached = [i for i, kind, _ in sent if kind == "drive_attached"]
    moved = [i for i, kind, job in sent if kind == "job_move" and job == bench.job]
    assert len(attached) == 2 and len(moved) == 2, sent
    replays = [unplugged(bench.spare) | {"id": attached[1]},
               event("job_move", {"job": bench.job, "target": "failed",
                                  "reason": "replayed"}, id=moved[-1]),
               event("progress", {"job": bench.job, "phase": "pass", "index": 0, "done": 0,
                                  "total": 1}, id=moved[0])]
    before = bench.dump()
    answers = bench.attacker.send(bench.first.key, *replays)
    assert [a["outcome"] for a in answers] == ["duplicate"] * 3, answers
    assert changes(before, bench.dump()) == {}
    with bench.db() as db:      # not even logged again
        assert db.execute("SELECT count(*) FROM agent_events").fetchone()[0] == logged


# -- 5. a revoked agent ---------------------------------------------------------------------


def test_a_revoked_agent_is_refused_at_its_next_request(bench: Bench) -> None:
    third, attacker = bench.third, bench.attacker
    assert attacker.call("GET", "/api/v1/jobs/next", key=third.key).status_code == 200
    revoked = bench.operator("POST", f"/api/v1/agents/{third.id}/revoke",
                             {"reason": "laptop stolen from the workshop", "by": TECHNICIAN})
    assert revoked.json()["state"] == "revoked", revoked.text
    before = bench.dump()
    why = (f"agent {third.id} révoqué / revoked: laptop stolen from the workshop "
           f"(by {TECHNICIAN})")
    attached = event("drive_attached", {"evidence": made_up_evidence("S6PXNS0T500005")})
    for method, path, body in (("POST", "/api/v1/events", {"events": [attached]}),
                               ("GET", "/api/v1/jobs/next", None),
                               ("GET", "/api/v1/agents/me", None)):
        refused(attacker.call(method, path, body, key=third.key), 403, why)
    refused(attacker.enrol(third.key, third.name, third.host), 403,
            "a revoked key never enrols again")
    assert changes(before, bench.dump()) == {}


# -- 6. pairing codes -----------------------------------------------------------------------


def test_pairing_codes_cannot_be_guessed(bench: Bench) -> None:
    """A pending agent may do nothing; wrong codes typed on the technicians' route
    are counted against every pending code, which is void after PAIRING_TRIES."""
    attacker, victim, intruder = (bench.attacker, Ed25519PrivateKey.generate(),
                                  Ed25519PrivateKey.generate())
    code = attacker.enrol(victim, "laptop-6", "live-6").json()["pairing_code"]
    pending = attacker.enrol(intruder, "laptop-6b", "live-6b").json()
    # The count of wrong codes is the refusal's own trace (like a log): it alone moves.
    counted = {"agents": frozenset({"pairing_failures"})}
    before = bench.dump(**counted)
    refused(attacker.call("POST", "/api/v1/events", {"events": [unplugged(bench.spare)]},
                          key=intruder), 403, f"agent {pending['id']} ",
            "is waiting for a technician")
    wrong = next(c for c in ("0000-0000", "1111-1111") if c != code)
    for _ in range(PAIRING_TRIES):
        refused(bench.operator("POST", "/api/v1/agents/pair", {"code": wrong, "by": "Mallory"}),
                400, "unknown or expired pairing code", f"allow {PAIRING_TRIES} wrong tries")
    refused(bench.operator("POST", "/api/v1/agents/pair", {"code": code, "by": TECHNICIAN}),
            400, "unknown or expired pairing code")          # the right one is void now
    assert attacker.call("GET", "/api/v1/agents/me", key=victim).json()["state"] == "pending"
    assert changes(before, bench.dump(**counted)) == {}
    with bench.db() as db:
        assert db.execute("SELECT pairing_failures FROM agents WHERE key_id = ?", (
            proof.key_id(proof.public_hex(victim)),)).fetchone()[0] == PAIRING_TRIES


# -- 7. boot tokens ---------------------------------------------------------------------------

MAC, SERIAL = "52:54:00:12:34:56", "PF2ABCDE"


def _boot_token(bench: Bench, case: str) -> str:
    """A boot token for the laptop MAC/SERIAL, in the state `case` says."""
    if case == "unknown":
        return "made-up-token-" + "x" * 20
    token: str = bench.operator("POST", "/api/v1/boot-tokens", {
        "mac": MAC, "serial": SERIAL, "by": "boot service"}).json()["token"]
    if case == "used":          # the laptop it was made for enrolled with it
        done = bench.attacker.enrol(Ed25519PrivateKey.generate(), "laptop-7", "live-7",
                                    boot_token=token, macs=[MAC], serial=SERIAL)
        assert done.json()["state"] == "active", done.text
    if case == "expired":       # ten minutes later: the registry's clock moved on
        with bench.db() as db, db:          # (the second `db`: one transaction, committed)
            db.execute("UPDATE boot_tokens SET expires_at = ? WHERE used_at IS NULL",
                       ((datetime.now(UTC) - timedelta(seconds=1)).strftime(
                           "%Y-%m-%d %H:%M:%S.%f"),))
    return token


@pytest.mark.parametrize("case, macs, serial, why", [
    ("used", [MAC], SERIAL, "was already used: a boot token enrols one agent"),
    ("expired", [MAC], SERIAL, "expired: boot the laptop again"),
    ("fresh", ["02:00:00:00:00:01"], SERIAL, "belongs to another laptop (MAC, serial)"),
    ("fresh", [MAC], "OTHER-SERIAL", "belongs to another laptop (MAC, serial)"),
    ("unknown", [MAC], SERIAL, "unknown boot token"),
], ids=["reused", "expired", "another MAC", "another serial", "made up"])
def test_a_boot_token_enrols_its_own_laptop_once(bench: Bench, case: str, macs: list[str],
                                                 serial: str, why: str) -> None:
    token = _boot_token(bench, case)
    before = bench.dump()
    refused(bench.attacker.enrol(Ed25519PrivateKey.generate(), "laptop-7", "live-7",
                                 boot_token=token, macs=macs, serial=serial), 403, why)
    assert changes(before, bench.dump()) == {}


# -- 8. a station the agent cannot trust --------------------------------------------------------


@pytest.mark.parametrize("certificate", ["from another CA", "expired"])
def test_an_agent_refuses_a_station_whose_certificate_it_cannot_trust(
        bench: Bench, certificate: str) -> None:
    """A rogue HTTPS server on the LAN: its certificate comes from another CA (someone
    in between), or from the station's own CA but expired. The agent, pinned to the
    station's CA, sends it nothing."""
    if certificate == "from another CA":
        settings, days = Settings(data_dir=bench.tmp / "rogue"), (-1, 30)
        why = "does not chain to the CA this agent pins"
    else:
        settings, days = Settings(data_dir=bench.station.data), (-400, -1)
        why = "certificate has expired"
    issuer = TlsCa.open(keys_dir(settings), load_profile(settings))
    before = bench.dump()
    with rogue_station(bench.tmp / "rogue-server", issuer, days=days) as (url, seen):
        client = StationClient(url, bench.first.key, trust=StationTrust(bench.station.ca))
        try:
            for call in (client.health, lambda: client.send([unplugged(bench.spare)]),
                         lambda: client.next_work(0)):
                with pytest.raises(StationNotTrusted, match="certificate not trusted"
                                   ) as refusal:
                    call()
                assert why in str(refusal.value)
        finally:
            client.close()
        started = spawn(bench.tmp / "laptop-8", "agent", "run", "--station", url, "--ca",
                        str(bench.station.ca), "--spool", str(bench.tmp / "spool-laptop-8"))
        _, err = started.communicate(timeout=60)
        assert started.returncode == 2 and why in err, err
        assert seen == []                   # not one request reached it
    assert changes(before, bench.dump()) == {}


# -- 9. events for what another agent holds ---------------------------------------------------


def _theirs(bench: Bench, what: str) -> dict[str, Any]:
    """An event of dock-2 about dock-1's job or drive."""
    job = bench.job
    if what == "drive_detached of its drive":
        return unplugged(bench.spare)
    data: dict[str, Any] = {
        "job_move of its job": {"target": "failed", "reason": "taken over"},
        "progress of its job": {"phase": "pass", "index": 0, "done": 1, "total": 2},
        "job_event of its job": {"kind": "note", "message": "taken over"},
        "job_checkpoint of its job": {"checkpoint": {"index": 0, "offset": 0}},
        "job_drive of its job": {"identity": made_up_drive("S6PXNS0T900009")},
    }[what]
    return event(what.split()[0], {"job": job, **data})


@pytest.mark.parametrize("what", [
    "job_move of its job", "progress of its job", "job_event of its job",
    "job_checkpoint of its job", "job_drive of its job", "drive_detached of its drive"])
def test_events_about_another_agents_job_or_drive_are_refused(bench: Bench, what: str) -> None:
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, _theirs(bench, what))
    if what.endswith("drive"):
        refused_event(answer, f"held by agent {bench.first.id}, not by agent "
                              f"{bench.second.id}: only its holder reports it unplugged")
    else:
        refused_event(answer, f"job {bench.job} is not a job of agent {bench.second.name}")
    assert changes(before, bench.dump()) == {}


# -- 10. every route without credentials -------------------------------------------------------

# Answered to anyone, on purpose: says the station is up and its version, nothing else.
# (The boot artefacts - kernel, initrd, boot scripts - will be public too when the boot
# service serves them from this app; they hold single-use boot tokens only.)
PUBLIC = {("GET", "/api/v1/health")}
# The web pages anyone reaches, with what they answer without a session: the sign-in
# form, the way to it, the setup link's page (unknown link: 404), the sign-in and setup
# forms (no form token: 403; no valid link: 404), the style sheet, the public verification
# page (its form; a file sent that is no signed document: 200 "not genuine"; an id without
# its hash: the not-found page). Every other page sends the browser to the sign-in page (303).
WEB_PUBLIC = {("GET", "/login"): 200, ("GET", "/"): 303, ("GET", "/setup"): 404,
              ("POST", "/login"): 403, ("POST", "/setup"): 404,
              ("GET", "/static/style.css"): 200,
              ("GET", "/verifier"): 200, ("POST", "/verifier"): 200,
              ("GET", "/v/{doc_id}"): 404, ("GET", "/v/{doc_id}/{sha256}"): 404}
# Routes that read their body before the caller's proof (enrolment checks the key the
# body names against the signature): a well-formed body reaches that check.
BODIES = {("POST", "/api/v1/agents"): {"public_key": "ab" * 32, "name": "x", "host": "x"}}


def test_every_route_refuses_a_caller_without_credentials(bench: Bench) -> None:
    routes = route_table.routes(bench.tmp / "route-table")
    assert len(routes) > 20 and PUBLIC <= set(routes), routes
    before = bench.dump()
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        body = BODIES.get((method, template), None if method == "GET" else {})
        resp = bench.attacker.call(method, path, body)
        if (method, template) in PUBLIC:
            assert resp.status_code == 200, resp.text
            continue
        if (method, template) in WEB_PUBLIC:
            assert resp.status_code == WEB_PUBLIC[method, template], (method, template, resp)
            continue
        if not template.startswith("/api/"):
            assert resp.status_code == 303, (
                f"{method} {template} answered {resp.status_code} without a session: "
                f"a page must send the browser to /login, or be listed in WEB_PUBLIC")
            assert resp.headers["location"].startswith("/login?next="), resp.headers
            continue
        assert resp.status_code == 401, (
            f"{method} {template} answered {resp.status_code} to a caller without "
            f"credentials: protect it (operator_check, agent_check) or add it to PUBLIC "
            f"saying why ({resp.text})")
        assert re.search("missing token|unsigned request", resp.json()["error"]), resp.text
    for docs in ("/docs", "/redoc", "/openapi.json"):     # served only with --api-docs
        assert bench.attacker.call("GET", docs).status_code == 404
    assert changes(before, bench.dump()) == {}



# -- 11. bodies too large to read ---------------------------------------------------------


def test_a_body_too_large_or_without_a_length_is_not_read(bench: Bench) -> None:
    """Before any signature is checked the body is hashed: an unauthenticated client
    must not make the station read gigabytes. A declared 65 MiB body is answered 413
    before being read; a chunked body without a length, 411."""
    before = bench.dump()
    huge = bench.attacker.http.post("/api/v1/events", content=b"{" + b" " * (65 << 20) + b"}",
                                    headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "request too large" in huge.json()["error"], huge.text

    def chunks() -> Iterator[bytes]:
        yield b'{"events": []}'
    chunked = bench.attacker.http.post("/api/v1/events", content=chunks(),
                                       headers={"Content-Type": "application/json"})
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["error"]
    assert changes(before, bench.dump()) == {}


# -- in progress (issue 13 part 4): the station plans and checks reports -------------------
# Each attack goes the way today's protocol allows; today the station accepts it (the
# vulnerability), so each fails, as its strict xfail says. These run last: what they
# get through changes the registry.

LAB_PLAN_STEP = {"method": "nist-clear", "passes": [{"kind": "zero"}], "engine": "overwrite",
                 "standard": "NIST SP 800-88 Rev. 2 Clear (overwrite, single pass, fixed "
                             "value)", "options": {}, "technique": "overwrite",
                 "sanitization_class": "clear"}
FORGED_PLANS = {
    # what the policy makes for a SATA SSD is firmware sanitize first, read back in full:
    # this one runs a single host pass and reads nothing back
    "a plan the policy does not make": {"steps": [LAB_PLAN_STEP], "verify": "none",
                                        "medium": "sata-ssd"},
    # a single zero pass is Clear in the catalogue; this one says Purge
    "a class above the catalogue": {"steps": [{**LAB_PLAN_STEP, "sanitization_class": "purge",
                                               "standard": "NIST SP 800-88 Rev. 2 Purge"}],
                                    "verify": "full", "medium": "sata-ssd"},
}


def refused_plan(resp: httpx.Response) -> None:
    """Refused as a whole (422 naming the plan) or as one event (refused, naming it)."""
    if resp.status_code == 422:
        assert "plan" in resp.json()["error"], resp.text
        return
    assert resp.status_code == 200, resp.text
    [answer] = resp.json()["results"]
    refused_event(answer, "plan")


@pytest.mark.parametrize("forgery", list(FORGED_PLANS))
def test_a_plan_the_agent_made_up_is_refused(bench: Bench, forgery: str) -> None:
    attached = event("drive_attached", {
        "evidence": made_up_evidence(f"S6PXNS0T1{len(forgery)}"),
        "plan": FORGED_PLANS[forgery]})
    before = bench.dump()
    refused_plan(bench.attacker.call("POST", "/api/v1/events", {"events": [attached]},
                                     key=bench.second.key))
    assert changes(before, bench.dump()) == {}


def _own_job(bench: Bench, serial: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """A job of dock-2, running, on a drive it says it holds (reported by made-up
    evidence: the station plans it): the job id, the drive's identity, the plan."""
    [attached] = bench.attacker.send(bench.second.key, event("drive_attached", {
        "evidence": made_up_evidence(serial)}))
    assert attached["outcome"] == "applied", attached
    drive = next(d for d in bench.station.get("/api/v1/drives") if d["serial"] == serial)
    job: int = bench.station.post(f"/api/v1/drives/{drive['id']}/erase", {})["job"]
    [running] = bench.attacker.send(bench.second.key, event("job_move", {
        "job": job, "target": "running"}))
    assert running["outcome"] == "applied", running
    with bench.db() as db:
        ident = json.loads(db.execute("SELECT plan FROM drives WHERE id = ?",
                                      (drive["id"],)).fetchone()[0])["identity"]
    return job, ident, bench.station.get(f"/api/v1/jobs/{job}")["plan"]


def _made_up_report(job: int, ident: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """A report of an erasure nobody ran: one pass over the whole drive, read back."""
    size, now = ident["size"], datetime.now(UTC)
    return EraseReport(
        job_id=job, device=DriveIdentity(**ident), plan=ErasePlan.from_dict(plan),
        started_at=now - timedelta(seconds=2), ended_at=now,
        passes=(PassResult(0, "zero", size, 0.05),),
        verification=VerifyResult("full", "zero", size, 1.0, 0.03, True,
                                  seed=plan["verify_seed"]),
        outcome="erased", software="imager 0.1.0", tool="imager 0.1.0").to_dict()


def _job_failed(bench: Bench, before: Dump, job: int, answer: dict[str, Any],
                word: str = "report") -> None:
    """The event is refused, nothing is certified, and the job fails with the reason
    (the issue says so): the job, its drive and their histories move, nothing else."""
    refused_event(answer, word)
    diff = changes(before, bench.dump())
    assert set(diff) <= {"jobs", "job_events", "drives", "item_events"}, diff
    with bench.db() as db:
        state, reason = db.execute("SELECT state, reason FROM jobs WHERE id = ?",
                                   (job,)).fetchone()
    assert state == "failed" and word in reason, (state, reason, diff)


def test_a_made_up_report_is_refused(bench: Bench) -> None:
    job, ident, plan = _own_job(bench, "XATTACKREPORT01")
    report = _made_up_report(job, ident, plan)
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, event("job_move", {
        "job": job, "target": "erased", "report": report}))
    _job_failed(bench, before, job, answer)


def test_a_report_copied_from_another_job_is_refused(bench: Bench) -> None:
    job, _, _ = _own_job(bench, "XATTACKCOPIED02")
    copied = bench.station.get(f"/api/v1/jobs/{bench.job}")["report"]
    assert copied["outcome"] == "erased"
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, event("job_move", {
        "job": job, "target": "erased", "report": copied}))
    _job_failed(bench, before, job, answer)


def test_a_plan_replaced_mid_job_is_refused(bench: Bench) -> None:
    """job_plan (a drive refused a method: the job goes on with the next one) naming a
    plan that is not the job's own next method: here, Purge for a single zero pass."""
    job, _, plan = _own_job(bench, "XATTACKJOBPLAN3")
    forged = {**plan, "steps": FORGED_PLANS["a class above the catalogue"]["steps"]}
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, event("job_plan", {
        "job": job, "plan": forged, "kind": "fallback", "message": "the drive refused"}))
    _job_failed(bench, before, job, answer, "plan")


# -- found while writing this suite, not refused today --------------------------------------

def test_a_drive_another_agent_holds_is_not_taken_by_attaching_it(bench: Bench) -> None:
    """dock-2 says dock-1's lab drive, plugged in on dock-1, is now on dock-2."""
    with bench.db() as db:
        spare = json.loads(db.execute("SELECT plan FROM drives WHERE id = ?",
                                      (bench.spare["id"],)).fetchone()[0])
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, event("drive_attached", {
        "evidence": spare["evidence"]}))
    refused_event(answer, "plugged in on agent dock-1")
    assert changes(before, bench.dump()) == {}


def test_a_job_drive_event_cannot_rewrite_another_drive(bench: Bench) -> None:
    """dock-2, with a job of its own, reports as 'its job's drive' the identity of the
    drive dock-1 erased (certified), with another size and model."""
    job, _, _ = _own_job(bench, "XATTACKJOBDRV04")
    with bench.db() as db:
        erased = json.loads(db.execute("SELECT plan FROM drives WHERE id = ?",
                                       (bench.erased["id"],)).fetchone()[0])["identity"]
    before = bench.dump()
    [answer] = bench.attacker.send(bench.second.key, event("job_drive", {
        "job": job, "identity": {**erased, "size": 1 << 40, "model": "made up"}}))
    _job_failed(bench, before, job, answer, "drive")
