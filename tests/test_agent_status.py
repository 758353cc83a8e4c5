"""The agent says where it is in its status file (`AgentConfig.status`), for the
live system's screen: unreachable station (each attempt), pending with the
pairing code a technician types, registered once approved, refused, job progress.
Against a real station process over HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from station_proc import Serve, bare_station, free_port

from imager.agent import agent as agent_module
from imager.agent.agent import Agent, AgentConfig
from imager.erase.plan import plan_for
from imager.erase.policy import load
from imager.inventory.capabilities import DriveCapabilities
from imager.model import DriveIdentity
from imager.protocol.jobs import JobView
from imager.settings import Settings

station = pytest.fixture(name="station")(bare_station)


def _status(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _agent(tmp_path: Path, url: str) -> tuple[Agent, Path]:
    status = tmp_path / "run" / "status.json"
    status.parent.mkdir()
    config = AgentConfig(name="portable LIVE-1", spool=tmp_path / "spool", station=url,
                         kind="machine", watch=False, status=status)
    return Agent(Settings(data_dir=tmp_path / "data"), config), status


def test_an_unreachable_station_is_said_at_each_attempt(tmp_path: Path) -> None:
    agent, status = _agent(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert not agent.register(threading.Event(), attempts=2)
    said = _status(status)
    assert said["state"] == "unreachable" and said["attempt"] == 2 and said["trusted"]
    assert "unreachable" in said["error"]


def test_pending_with_its_code_then_registered_once_approved(tmp_path: Path,
                                                            station: Serve) -> None:
    station.start()
    agent, status = _agent(tmp_path, station.url)
    assert not agent.register(threading.Event(), attempts=3, wait_pending=False)
    pending = _status(status)
    assert agent.pending is not None
    assert pending["state"] == "pending" and pending["code"] == agent.pending.pairing_code
    assert pending["agent"] == agent.pending.agent and len(pending["code"]) == 9
    number = station.approve("portable LIVE-1")
    assert agent.register(threading.Event(), attempts=3)
    assert _status(status) == {**_status(status), "state": "registered", "agent": number}


def test_a_refusal_is_said_with_its_reason(tmp_path: Path, station: Serve) -> None:
    station.start()
    agent, status = _agent(tmp_path, station.url)
    agent.config.boot_token = "not-a-token-the-station-issued"
    assert not agent.register(threading.Event(), attempts=3)
    said = _status(status)
    assert said["state"] == "refused" and "boot token" in said["reason"]


def test_a_job_says_its_progress_then_its_end(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ident = DriveIdentity(path="/dev/sdz", size=1 << 20, serial="S1", model="M")
    plan = plan_for(DriveCapabilities(identity=ident, medium="unknown", transport="sata"),
                    load(None), method="nist-clear")
    view = JobView(id=7, kind="erase", state="queued", device_path=ident.path,
                   drive_identity=ident.key, drive_size=ident.size, plan=plan,
                   checkpoint=None, report=None, reason=None, donation=None,
                   technician=None, created_at=datetime.now(UTC), started_at=None,
                   ended_at=None)
    seen: list[dict[str, Any]] = []

    def erase(store: Any, job_id: int, *args: Any, on_progress: Any, **kw: Any) -> None:
        on_progress(job_id, "overwrite", 0, 512, 1024)
        seen.append(_status(status))
    monkeypatch.setattr(agent_module, "run_erase", erase)
    agent, status = _agent(tmp_path, f"http://127.0.0.1:{free_port()}")
    agent.present["sdz"] = ident
    agent._maybe_run([view], threading.Event())
    deadline = time.monotonic() + 10
    while agent.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[0]["state"] == "job" and seen[0]["job"] == 7 and seen[0]["kind"] == "erase"
    assert (seen[0]["phase"], seen[0]["done"], seen[0]["total"]) == ("overwrite", 512, 1024)
    assert _status(status)["state"] == "job-ended" and _status(status)["job"] == 7


def test_no_status_file_no_writes(tmp_path: Path) -> None:
    config = AgentConfig(name="dock", spool=tmp_path / "spool",
                         station=f"http://127.0.0.1:{free_port()}", watch=False)
    agent = Agent(Settings(data_dir=tmp_path / "data"), config)
    assert not agent.register(threading.Event(), attempts=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool"]
