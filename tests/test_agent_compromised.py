"""An agent revoked as compromised: the documents resting on its work are listed and
withdrawn. A real station (`imager serve`) and three real agent processes, each
watching its own lab drives: laptop-a erases two drives of one donation, laptop-b
one drive of another, laptop-c one of a third; the station certifies them and the
donation certificates are issued. laptop-a is revoked as compromised with the real
`imager` command (listing without a terminal, a "no" on a terminal, then
`--withdraw`), laptop-c through the technicians' API; only their documents are
withdrawn, and the ledger still verifies."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from clirun import env_for, imager, json_lines, spawn
from conftest import LoopFactory, need_root
from station_proc import Serve, until

from imager.host.virtual import made_up_label, write_label
from imager.registry.compromise import resting_on
from imager.settings import Settings
from imager.store.db import Registry, utcnow
from imager.store.models import Agent, AgentEvent, Document, Drive, Job, JobEvent

pytestmark = pytest.mark.root
MiB = 1 << 20
WHO = "Hélène Dupré, coordinatrice"
WHY = "portable volé sur le banc le 12 mars, sa clé a pu être copiée"
# The agents, their lab drives and their donation (references without "DON-": the
# donation certificates' ids start so).
AGENTS = {"laptop-a": (2, "GAP-2026-001"), "laptop-b": (1, "GAP-2026-002"),
          "laptop-c": (1, "GAP-2026-003")}
DOC_ID = re.compile(r"(?<![\w-])(?:EFF|NEF|DON)-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b")


def _lab_drives(base: Path, station: Path, loops: LoopFactory, rng: random.Random
                ) -> list[str]:
    """Each agent's lab drives, labelled in its own data dir (an agent run with
    --only-lab watches those only) and the station's; their serials."""
    serials = []
    for name, (count, _) in AGENTS.items():
        for i in range(count):
            label, image = made_up_label(rng), base / f"{name}-{i}.img"
            with open(image, "wb") as fh:
                fh.truncate(16 * MiB)
            for home in (base / name, station):
                write_label(Settings(data_dir=home), image, label)
            loops(0, backing=image)
            serials.append(label["serial"])
    return serials


def _issued(data: Path) -> dict[str, list[str]]:
    """The drive documents of each agent's jobs, from the registry."""
    with sqlite3.connect(data / "registry.sqlite3") as db:
        rows = db.execute("SELECT a.name, d.id FROM documents d JOIN jobs j ON d.job_id = j.id"
                          " JOIN agents a ON j.agent_id = a.id ORDER BY d.id").fetchall()
    out: dict[str, list[str]] = {name: [] for name in AGENTS}
    for name, doc_id in rows:
        out[name].append(doc_id)
    return out


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_root()
    base = tmp_path_factory.mktemp("compromised")
    loops, station = LoopFactory(base), Serve(base / "station", "--no-local-agent")
    procs: list[subprocess.Popen[str]] = []
    try:
        serials = _lab_drives(base, station.data, loops, random.Random(13))
        station.start()
        ids = {}
        for name, (_, ref) in AGENTS.items():
            procs.append(spawn(base / name, "agent", "run", "--station", station.url,
                               "--name", name, "--only-lab"))
            ids[name] = station.approve(name)
            station.post("/api/v1/donations", {"reference": ref, "donor": "Mairie de Gap",
                                               "donor_kind": "town_hall"})
        until(lambda: {d["serial"] for d in station.get("/api/v1/drives") if d["present"]}
              == set(serials), 120, "the four lab drives are reported")
        at = 0
        for count, ref in AGENTS.values():    # intake: a known donation's drives are
            station.post("/api/v1/intake", {"donation": ref,       # erased at once
                                            "drives": serials[at:at + count]})
            at += count
        until(lambda: sum(map(len, _issued(station.data).values())) == 4, 300,
              "the four drives are erased and certified")
        drives = _issued(station.data)
        donations = {name: json_lines(imager(station.data, "cert", "donation", ref, "--json")
                                      .stdout)[0]["id"] for name, (_, ref) in AGENTS.items()}
        yield {"station": station, "data": station.data, "ids": ids, "drives": drives,
               "donations": donations}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        station.close()
        loops.detach_all()


def _revoke(data: Path, agent: int, *args: str, stdin: int | None = subprocess.DEVNULL,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`imager agents revoke AGENT ...`, by default without a terminal."""
    argv = [sys.executable, "-m", "imager", "agents", "revoke", str(agent), "--by", WHO, *args]
    if input_text is None:
        return subprocess.run(argv, stdin=stdin, capture_output=True, text=True,
                              env=env_for(data), timeout=300)
    main, tty = os.openpty()                     # a terminal the technician answers on
    try:
        proc = subprocess.Popen(argv, stdin=tty, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env_for(data))
        os.write(main, input_text.encode())
        out, err = proc.communicate(timeout=300)
    finally:
        os.close(main)
        os.close(tty)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _verify(data: Path, doc_id: str) -> subprocess.CompletedProcess[str]:
    return imager(data, "cert", "verify", str(data / "documents" / f"{doc_id}.json"),
                  check=False)


def _ledger(data: Path) -> str:
    return imager(data, "ledger", "list", "--json").stdout


def _state(data: Path, agent: int) -> str:
    return next(a["state"] for a in json.loads(imager(data, "agents", "list", "--json").stdout)
                if a["id"] == agent)


def test_revoking_as_compromised_without_a_reason_is_refused(bench: dict[str, Any]) -> None:
    data, agent = bench["data"], bench["ids"]["laptop-a"]
    before = _ledger(data)
    for args, says in ((("--compromised",), "--reason is missing: say why the agent is "
                        "revoked"),
                       (("--compromised", "--reason", "volé"), "give a reason of 10 to 500 "
                        "characters"),
                       (("--withdraw", "--reason", WHY), "add --compromised")):
        done = _revoke(data, agent, *args)
        assert done.returncode == 2 and says in done.stderr, done.stderr
    assert _state(data, agent) == "active" and _ledger(data) == before


def _drive_states(data: Path, doc_ids: list[str]) -> list[str]:
    """The states of the drives the documents `doc_ids` are about."""
    with closing(sqlite3.connect(f"file:{data / 'registry.sqlite3'}?mode=ro", uri=True)) as db:
        return [db.execute("SELECT d.state FROM documents c JOIN drives d ON d.id = c.drive_id "
                           "WHERE c.id = ?", (doc,)).fetchone()[0] for doc in doc_ids]


def test_a_compromised_agent_s_documents_are_listed_then_withdrawn(
        bench: dict[str, Any]) -> None:
    data, agent = bench["data"], bench["ids"]["laptop-a"]
    mine = [*bench["drives"]["laptop-a"], bench["donations"]["laptop-a"]]
    assert len(mine) == 3
    before = _ledger(data)
    listed = _revoke(data, agent, "--compromised", "--reason", WHY)
    assert listed.returncode == 0, listed.stderr
    assert f"Agent {agent} (laptop-a) révoqué / revoked" in listed.stdout
    assert set(DOC_ID.findall(listed.stdout)) == set(mine), listed.stdout
    assert listed.stdout.count("à retirer / to withdraw") == 3
    assert "without a terminal, nothing is withdrawn (3)" in listed.stdout
    assert (f"imager agents revoke {agent} --compromised --withdraw --reason '{WHY}' --by "
            f"'{WHO}'") in listed.stdout
    assert _state(data, agent) == "revoked" and _ledger(data) == before

    refused = _revoke(data, agent, "--compromised", "--reason", WHY, input_text="n\n")
    assert "Withdraw these 3 documents? [o/N]" in refused.stdout, refused.stdout
    assert "Rien n'est retiré / nothing is withdrawn (3)" in refused.stdout
    assert "already revoked: compromis / compromised: " + WHY in refused.stdout
    assert _ledger(data) == before

    done = _revoke(data, agent, "--compromised", "--withdraw", "--reason", WHY)
    assert done.returncode == 0, done.stderr
    reason = f"agent laptop-a (n° {agent}) révoqué comme compromis / revoked as compromised: {WHY}"
    for doc_id in mine:
        assert f"RET-{doc_id}: retrait de / withdrawal of {doc_id}" in done.stdout
        verdict = _verify(data, doc_id)
        assert verdict.returncode == 1, verdict.stdout
        assert "→ RETIRÉ, NON VALIDE / WITHDRAWN, NOT VALID" in verdict.stdout
        assert f"« {reason} »" in verdict.stdout and WHO in verdict.stdout
    entries = json.loads(_ledger(data))
    assert sorted(e["doc_id"] for e in entries if e["kind"] == "withdrawal") == sorted(
        f"RET-{d}" for d in mine)
    for doc_id in (*bench["drives"]["laptop-b"], bench["donations"]["laptop-b"]):
        verdict = _verify(data, doc_id)
        assert verdict.returncode == 0 and "→ VALIDE / VALID" in verdict.stdout, verdict.stdout
    assert "Registre intact / ledger intact" in imager(data, "ledger", "verify").stdout
    assert _drive_states(data, bench["drives"]["laptop-a"]) == ["inventoried"] * 2  # again
    assert _drive_states(data, bench["drives"]["laptop-b"]) == ["certified"]

    again = _revoke(data, agent, "--compromised", "--withdraw", "--reason", WHY)
    assert again.returncode == 0, again.stderr
    assert set(DOC_ID.findall(again.stdout)) == set(mine)
    assert again.stdout.count("déjà retiré / already withdrawn: RET-") == 3
    assert "Tous déjà retirés / all already withdrawn." in again.stdout
    assert json.loads(_ledger(data)) == entries


def test_the_api_revokes_as_compromised_and_withdraws_on_request(
        bench: dict[str, Any]) -> None:
    station, agent = bench["station"], bench["ids"]["laptop-c"]
    mine = [*bench["drives"]["laptop-c"], bench["donations"]["laptop-c"]]
    body = {"reason": WHY, "by": WHO, "compromised": True}
    listed = station.post(f"/api/v1/agents/{agent}/revoke", body)
    assert listed["state"] == "revoked" and listed["newly_revoked"] is True
    assert [d["id"] for d in listed["resting"]] == mine
    assert [d["withdrawn"] for d in listed["resting"]] == [None, None]
    assert listed["resting"][1]["donation"] == AGENTS["laptop-c"][1]
    assert listed["withdrawn"] == []
    refused = station.http.post(f"/api/v1/agents/{agent}/revoke",
                                json={"reason": WHY, "by": WHO, "withdraw": True})
    assert refused.status_code == 400 and "compromised" in refused.text
    done = station.post(f"/api/v1/agents/{agent}/revoke", {**body, "withdraw": True})
    assert done["newly_revoked"] is False
    assert [w["withdraws"] for w in done["withdrawn"]] == mine
    for doc_id in mine:
        assert "WITHDRAWN, NOT VALID" in _verify(bench["data"], doc_id).stdout
    after = station.post(f"/api/v1/agents/{agent}/revoke", body)
    assert [d["withdrawn"]["withdrawal"] for d in after["resting"]] == [f"RET-{d}" for d in mine]
    assert after["withdrawn"] == []
    assert "Registre intact / ledger intact" in imager(bench["data"], "ledger", "verify").stdout


def test_the_documents_of_a_job_it_handed_on_or_reported_on_rest_on_it(
        registry: Registry, settings: Settings) -> None:
    """A job that moved to another agent with its drive, and a job whose events the
    agent reported, rest on it; a job it only sent a refused event about does not."""
    now = utcnow()
    with registry.session() as s:
        for n in (1, 2, 3):
            s.add(Agent(id=n, name=f"dock-{n}", kind="dock", host="bench", created_at=now))
        for n in (1, 2, 3, 4):
            s.add(Drive(id=n, identity=f"serial:S{n}", serial=f"S{n}", size_bytes=MiB,
                         created_at=now))
        s.flush()
        for job, agent in ((1, 2), (2, 3), (3, 3), (4, 1)):
            s.add(Job(id=job, kind="erase", state="erased", drive_id=job, device_path="/dev/x",
                      plan={}, agent_id=agent, created_at=now))
        s.flush()
        s.add(JobEvent(job_id=1, seq=1, at=now, kind="reassigned",
                       data={"from_agent": 1, "to_agent": 2}))
        for event, job, outcome in (("e2", 2, "applied"), ("e3", 3, "refused")):
            s.add(AgentEvent(id=event, agent_id=1, seq=1, at=now, received_at=now,
                             kind="job_move", job_id=job, outcome=outcome))
        for job in (1, 2, 3, 4):
            s.add(Document(id=f"EFF-TEST-000{job}", kind="erasure", drive_id=job, job_id=job,
                           issued_at=now, json_sha256="0" * 64))
    with registry.session(readonly=True) as s:
        resting = resting_on(s, 1, settings.documents_dir)
        assert sorted(d.id for d in resting) == ["EFF-TEST-0001", "EFF-TEST-0002",
                                                 "EFF-TEST-0004"]
        assert {d.drive for d in resting} == {"S1", "S2", "S4"}
        assert [d.id for d in resting_on(s, 2, settings.documents_dir)] == ["EFF-TEST-0001"]
