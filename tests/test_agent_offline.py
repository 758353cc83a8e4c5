"""Offline agent over real HTTP: a laptop's agent with no station spools its
report (to a USB stick); `imager agent sync` fails clearly while the station is
down and loses nothing, uploads once it is up (as the laptop's agent), and a
second upload of the same events is answered "duplicate", never applied twice.
Then the technician confirms or overrides the triage proposal."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from clirun import imager
from station_proc import Serve, bare_station, free_port

SUFFIX = ".event.json"


station = pytest.fixture(name="station")(bare_station)


def _count(data: Path, query: str) -> int:
    with sqlite3.connect(data / "registry.sqlite3") as db:
        return db.execute(query).fetchone()[0]


def _sync(data: Path, url: str, spool: Path, *, check: bool = True):  # noqa: ANN202
    return imager(data, "agent", "sync", "--station", url, "--spool", str(spool), "--name",
                  "bench-station", check=check)


def _enrolled_sync(station: Serve, spool: Path):  # noqa: ANN202
    """The first sync of a spool whose agent the station does not know yet: it asks
    to be enrolled and sends nothing; a technician approves it; then it syncs."""
    first = _sync(station.data, station.url, spool, check=False)
    assert first.returncode == 2 and "waits for a technician" in first.stderr, first.stderr
    assert "nothing was sent" in first.stderr
    station.approve(json.loads((spool / "agent.json").read_text())["name"])
    return _sync(station.data, station.url, spool)


def test_offline_spool_synced_once_then_duplicates(tmp_path: Path, station: Serve) -> None:
    laptop, stick = tmp_path / "laptop", tmp_path / "usb" / "spool"
    imager(laptop, "agent", "run", "--machine", "--once", "--name", "live-usb",
           "--spool", str(stick))
    spooled = sorted(stick.glob(f"*{SUFFIX}"))
    assert [json.loads(p.read_text())["kind"] for p in spooled] == ["machine_inventory"]
    assert json.loads((stick / "agent.json").read_text())["name"] == "live-usb"
    copy = tmp_path / "usb-copy"
    shutil.copytree(stick, copy)

    # The station is down: a clear error, nothing sent, the spool intact.
    down = _sync(tmp_path / "bench", f"http://127.0.0.1:{free_port()}", stick, check=False)
    assert down.returncode == 2
    assert "unreachable after 3 attempts" in down.stderr and str(stick) in down.stderr
    assert sorted(stick.glob(f"*{SUFFIX}")) == spooled

    station.start()
    up = _enrolled_sync(station, stick)
    assert "applied 1," in up.stdout and "duplicates 0" in up.stdout, up.stdout
    assert "live-usb (machine)" in up.stdout
    assert not list(stick.glob(f"*{SUFFIX}"))
    [machine] = station.get("/api/v1/machines")
    assert machine["state"] == "inventoried" and machine["proposal"]["orientation"]
    events_before = _count(station.data, "SELECT count(*) FROM item_events")

    again = _sync(station.data, station.url, copy)
    assert "applied 0," in again.stdout and "duplicates 1" in again.stdout, again.stdout
    assert len(station.get("/api/v1/machines")) == 1
    assert _count(station.data, "SELECT count(*) FROM item_events") == events_before
    assert _count(station.data, "SELECT count(*) FROM agents WHERE name = 'live-usb'") == 1
    assert _count(station.data, "SELECT count(*) FROM agents WHERE name = 'bench-station'") == 0


def test_technician_confirms_or_overrides_triage(tmp_path: Path, station: Serve) -> None:
    spool = tmp_path / "spool"
    imager(tmp_path / "laptop", "agent", "run", "--machine", "--once", "--spool", str(spool))
    station.start()
    _enrolled_sync(station, spool)
    imager(station.data, "technicians", "add", "Lina Martin")
    [machine] = station.get("/api/v1/machines")
    proposed = machine["proposal"]["orientation"]
    other = "recycling" if proposed != "recycling" else "parts"

    no_reason = station.http.post(f"/api/v1/machines/{machine['id']}/orientation",
                                  json={"choice": other, "technician": "Lina Martin"})
    assert no_reason.status_code == 400
    assert "--why" in no_reason.json()["error"]
    assert station.get(f"/api/v1/machines/{machine['id']}")["orientation"] is None

    done = station.post(f"/api/v1/machines/{machine['id']}/orientation",
                        {"choice": other, "technician": "Lina Martin",
                         "why": "charnière cassée / broken hinge"})
    assert done["orientation"] == other
    assert done["state"] == {"recycling": "to_recycling", "parts": "to_parts"}[other]
    view = json.loads(imager(station.data, "machines", "show", str(machine["id"]),
                             "--json").stdout)
    last = view["history"][-1]
    assert last["kind"] == "orientation" and last["actor"] == "Lina Martin"
    assert last["data"]["proposed"] == proposed and last["data"]["agrees"] is False
    assert last["reason"] == "charnière cassée / broken hinge"
    listed = imager(station.data, "machines", "list").stdout
    assert "Lina" not in listed and ("recyclage" in listed or "pièces" in listed)


def test_the_laptops_secure_boot_state_travels_with_its_spool(tmp_path: Path,
                                                               station: Serve) -> None:
    """The Secure Boot state is read on the laptop and written with the spool's identity:
    the station that syncs it records the laptop's, not its own."""
    stick = tmp_path / "spool"
    imager(tmp_path / "laptop", "agent", "run", "--machine", "--once", "--name", "live-usb",
           "--boot", "usb", "--spool", str(stick))
    identity = json.loads((stick / "agent.json").read_text())
    assert identity["secure_boot"] is None        # this machine: no UEFI variables here
    (stick / "agent.json").write_text(json.dumps({**identity, "secure_boot": True}))
    station.start()
    _enrolled_sync(station, stick)
    with sqlite3.connect(station.data / "registry.sqlite3") as db:
        (info,) = db.execute("SELECT info FROM agents WHERE name = 'live-usb'").fetchone()
    assert json.loads(info) == {"boot": "usb", "secure_boot": True}
