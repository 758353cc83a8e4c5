"""An image job over real HTTP: `imager serve --lab 1` erases and certifies its lab
drive, then a technician asks for the OS image; the local agent streams it from
the station's image store, writes it, reads it back and customises it; the
station records the deployment and the drive comes back to certified."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import imager
from conftest import need_root
from station_proc import Serve, until
from test_image_after import GPT, build_image

pytestmark = pytest.mark.root


@pytest.fixture(params=[1])
def station(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Serve]:
    """`imager serve --lab N` (N: the test's parameter, 1 by default) with an image."""
    need_root()
    serve = Serve(tmp_path / "station", "--lab", str(request.param), "--lab-size-mib", "160",
                  "--auto-erase", "always")
    imager(serve.data, "image", "create", str(build_image(tmp_path, GPT)), "--name", "bureau",
           "--version", "2026.11")
    imager(serve.data, "technicians", "add", "Lina Martin")
    try:
        yield serve
    finally:
        serve.close()


def test_agent_deploys_from_the_station_and_the_drive_is_recorded(station: Serve) -> None:
    station.start()
    drive = until(lambda: next((d for d in station.get("/api/v1/drives")
                                if d["state"] == "certified"), None), 120,
                  "the lab drive is erased and certified")
    job_id = station.post(f"/api/v1/drives/{drive['id']}/image",
                          {"image": "bureau", "technician": "Lina Martin",
                           "hostname": "pc-rs05-0042"})["job"]
    assert station.get(f"/api/v1/drives/{drive['id']}")["state"] == "imaging"
    again = station.http.post(f"/api/v1/drives/{drive['id']}/image", json={"image": "bureau"})
    assert again.status_code == 400 and "already has job" in again.json()["error"]

    job = until(lambda: (j := station.get(f"/api/v1/jobs/{job_id}"))["state"] not in (
        "queued", "running") and j, 120, "the image job ends")
    assert job["state"] == "imaged", job
    [deployment] = [e for e in job["events"] if e["kind"] == "deployment"]
    result = deployment["data"]["result"]
    assert result["ok"] and result["verify"] == "full"
    assert result["verified_bytes"] == result["written_bytes"] > 0
    assert deployment["data"]["after"]["hostname"] == "pc-rs05-0042"

    view = station.get(f"/api/v1/drives/{drive['id']}")
    assert view["state"] == "certified"         # its erasure certificate still holds
    moves = [(e["from"], e["to"]) for e in view["history"] if e["kind"] == "move"]
    assert moves[-3:] == [("certified", "imaging"), ("imaging", "imaged"),
                          ("imaged", "certified")]
    with sqlite3.connect(station.data / "registry.sqlite3") as db:
        rows = db.execute("SELECT ok, job_id, erasure_job_id, hostname, actor FROM deployments"
                          ).fetchall()
        refused = db.execute("SELECT detail FROM agent_events WHERE outcome = 'refused'"
                             ).fetchall()
    [(ok, dep_job, erasure, hostname, actor)] = rows
    assert (ok, dep_job, hostname) == (1, job_id, "pc-rs05-0042") and erasure is not None
    assert actor == "agent station-docks" and not refused
    listed = json.loads(imager(station.data, "jobs", "list", "--json").stdout)
    assert [j["state"] for j in listed if j["id"] == job_id] == ["imaged"]


@pytest.mark.parametrize("station", [3], indirect=True)
def test_a_docks_drives_are_imaged_from_one_stream(station: Serve) -> None:
    station.start()
    drives = until(lambda: (ds := [d for d in station.get("/api/v1/drives")
                                   if d["state"] == "certified"]) and len(ds) == 3 and ds,
                   180, "the three lab drives are erased and certified")
    ids = [d["id"] for d in drives]
    # one refused drive refuses the whole request: nothing queued, nothing moved
    refused = station.http.post("/api/v1/drives/image",
                                json={"drives": [ids[0], ids[0]], "image": "bureau"})
    assert refused.status_code == 400 and "named twice" in refused.json()["error"]
    hostname = station.http.post("/api/v1/drives/image", json={
        "drives": ids, "image": "bureau", "hostname": "pc-1"})
    assert hostname.status_code == 400 and "one machine" in hostname.json()["error"]
    assert all(station.get(f"/api/v1/drives/{i}")["state"] == "certified" for i in ids)

    held = os.open(drives[2]["path"], os.O_RDONLY | os.O_EXCL)   # in use by someone else
    try:
        jobs = station.post("/api/v1/drives/image", {"drives": ids, "image": "bureau",
                                                     "technician": "Lina Martin"})["jobs"]
        assert len(jobs) == 3
        again = station.http.post("/api/v1/drives/image", json={"drives": [ids[2]],
                                                                 "image": "bureau"})
        assert again.status_code == 400 and "already has job" in again.json()["error"]
        ended = [until(lambda j=j: (v := station.get(f"/api/v1/jobs/{j}"))["state"] not in (
            "queued", "running") and v, 180, f"image job {j} ends") for j in jobs]
    finally:
        os.close(held)
    for job in ended:
        [running] = [e for e in job["events"] if e["kind"] == "running"]
        assert "with 2 more drives, one stream" in running["message"]
    # the drive in use fails alone, refused before anything was written on any drive
    assert ended[2]["state"] == "failed" and "open by another program" in ended[2]["reason"]
    assert station.get(f"/api/v1/drives/{ids[2]}")["state"] == "image_failed"
    for job in ended[:2]:
        assert job["state"] == "imaged", job
        [deployment] = [e for e in job["events"] if e["kind"] == "deployment"]
        result = deployment["data"]["result"]
        assert result["ok"] and result["verified_bytes"] == result["written_bytes"] > 0
    assert len({j["plan"]["batch"] for j in ended}) == 1 and ended[0]["plan"]["batch"]
    assert [station.get(f"/api/v1/drives/{i}")["state"] for i in ids[:2]] == ["certified"] * 2
    with sqlite3.connect(station.data / "registry.sqlite3") as db:
        assert db.execute("SELECT ok, count(*) FROM deployments GROUP BY ok ORDER BY ok"
                          ).fetchall() == [(0, 1), (1, 2)]
