"""End to end over real HTTP on loopback: `imager serve --lab 4`, its local
agent, a donation, four drives erased in parallel and certified, the station
killed (-9) mid-erase, restarted, the jobs resumed; nothing lost or twice."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import imager
from conftest import need_root
from station_proc import Serve, until

pytestmark = pytest.mark.root
LAB_MIB = 192


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Serve]:
    need_root()
    serve = Serve(tmp_path / "station", "--lab", "4", "--lab-size-mib", str(LAB_MIB),
                  IMAGER_CHECKPOINT_SECONDS="0.2")
    try:
        yield serve
    finally:
        serve.close()


def _registry(data: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "registry.sqlite3") as db:
        return db.execute(query).fetchall()


def test_lab_donation_erased_in_parallel_certified_and_survives_kill_9(
        station: Serve) -> None:
    station.start()
    drives = until(lambda: [d for d in station.get("/api/v1/drives") if d["present"]]
                   if len(station.get("/api/v1/drives")) == 4 else None, 60,
                   "the four lab drives are registered")
    assert {d["state"] for d in drives} == {"inventoried"}
    assert all(d["identity"].startswith("wwn:") and d["serial"] for d in drives)
    station.post("/api/v1/donations", {"reference": "DON-E2E-1", "donor": "Mairie de Gap",
                                       "donor_kind": "town_hall", "site": "Gap"})
    # intake by serial: the drives of a known donation start on their own
    attached = station.post("/api/v1/intake", {"donation": "DON-E2E-1",
                                               "drives": [d["serial"] for d in drives]})
    assert [a["new"] for a in attached["attached"]] == [False] * 4

    def running_mid_way() -> list[dict[str, Any]]:
        jobs = station.get("/api/v1/jobs")
        mid = [j for j in jobs if j["state"] == "running" and j["checkpoint"]
               and j["checkpoint"]["offset"] > 0]
        return mid if len(jobs) == 4 and len(mid) >= 2 else []

    until(running_mid_way, 120, "the four jobs run, two of them mid-way")
    assert {d["state"] for d in station.get("/api/v1/drives")} <= {"erasing", "erased",
                                                                   "certified"}
    station.kill(signal.SIGKILL)
    killed = _registry(station.data, "SELECT id, checkpoint FROM jobs WHERE state = 'running'")
    assert killed, "the kill came after every job had ended"

    station.start()   # same data dir, same lab bays: the jobs resume
    def all_certified() -> list[dict[str, Any]]:
        ds = station.get("/api/v1/drives")
        return ds if all(d["state"] == "certified" for d in ds) else []

    done = until(all_certified, 300, "the four drives are certified")
    assert len(done) == 4 and all(d["donation"] == "DON-E2E-1" for d in done)
    jobs = station.get("/api/v1/jobs")
    assert sorted(j["state"] for j in jobs) == ["erased"] * 4, jobs
    for job_id, checkpoint in killed:   # each goes on from its last checkpoint
        events = station.get(f"/api/v1/jobs/{job_id}")["events"]
        kinds = [e["kind"] for e in events]
        assert kinds.count("interrupted") == 1 and kinds[-1] == "erased", kinds
        # it resumes at or past the position recorded when it was killed (the
        # spool may hold a later checkpoint that reached the station after)
        at_kill = json.loads(checkpoint) if checkpoint else None
        resumed = [e["data"] for e in events if e["kind"] == "resumed"]
        if at_kill is not None:
            assert resumed, kinds
            assert (resumed[0]["index"], resumed[0]["offset"]) >= (at_kill["index"],
                                                                   at_kill["offset"])
    for d in done:
        moves = [(e["from"], e["to"]) for e in station.get(f"/api/v1/drives/{d['id']}")[
            "history"] if e["kind"] == "move"]
        assert moves[0] == ("inventoried", "erasing") and moves[-1] == ("erased", "certified")
    station.kill(signal.SIGTERM)
    # nothing lost, nothing twice
    docs = _registry(station.data, "SELECT drive_id, kind FROM documents")
    assert sorted(docs) == [(i, "erasure") for i in range(1, 5)]
    assert len(_registry(station.data, "SELECT seq FROM ledger_entries")) == 4
    assert _registry(station.data, "SELECT count(*) FROM jobs")[0][0] == 4
    created = _registry(station.data, "SELECT count(*) FROM job_events WHERE kind='created'")
    assert created[0][0] == 4
    refused = _registry(station.data,
                        "SELECT kind, detail FROM agent_events WHERE outcome = 'refused'")
    assert refused == []
    imager(station.data, "ledger", "verify")
    assert list((station.data / "spool" / "station-docks").glob("*.event.json")) == []
