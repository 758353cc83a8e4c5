"""An agent that goes silent mid-erase, over real HTTP with a real agent process
on a lab drive: its running job is marked interrupted after the station's
agent timeout. If the agent was only cut off (SIGSTOP, like a lost network),
its run goes on when it is back and the job revives and ends erased. If it
died (SIGKILL, like a power cut) and comes back as another agent, the job
follows the drive and resumes from its checkpoint."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import spawn
from conftest import need_root
from station_proc import Serve, slow_policy, until

from imager.host.virtual import made_up_label, write_label
from imager.settings import Settings

pytestmark = pytest.mark.root
MiB = 1 << 20


@pytest.fixture
def station(tmp_path: Path, faultdisk: Callable[..., Any],
            loopdev: Callable[..., str]) -> Iterator[Serve]:
    need_root()
    # A slow lab drive (32 MiB/s, three passes: about 9 s), so the run is seen mid-way
    # and cut off, whatever the machine's speed: at page-cache speed a whole erasure
    # once reached the station in one batch of events, never seen running.
    disk = faultdisk(96 * MiB, attach=False, write_rate=32 * MiB)
    data = tmp_path / "station"
    label = made_up_label(random.Random(7))
    for image in (disk.image, disk.backing):
        write_label(Settings(data_dir=data), image, label)
    loopdev(0, backing=disk.image)
    serve = Serve(data, "--no-local-agent", "--agent-timeout", "1.5", "--auto-erase",
                  "always", IMAGER_CHECKPOINT_SECONDS="0.2",
                  IMAGER_ERASE_POLICY=str(slow_policy(tmp_path)))
    agents: list[subprocess.Popen[str]] = []
    serve.agents = agents   # type: ignore[attr-defined]
    try:
        yield serve
    finally:
        for proc in agents:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(30)
        serve.close()


def _agent(station: Serve, name: str) -> subprocess.Popen[str]:
    proc = spawn(station.data, "agent", "run", "--station", station.url, "--name", name,
                 "--only-lab", "--spool", str(station.data / "spool" / name))
    station.agents.append(proc)   # type: ignore[attr-defined]
    station.approve(name)
    return proc


def _job_mid_way(station: Serve) -> dict[str, Any]:
    def mid() -> dict[str, Any] | None:
        jobs = station.get("/api/v1/jobs")
        return next((j for j in jobs if j["state"] == "running" and j["checkpoint"]
                     and (j["checkpoint"]["index"], j["checkpoint"]["offset"]) > (0, 0)), None)
    return until(mid, 120, "the job runs, with a checkpoint past its start")


def _refused(station: Serve) -> list[tuple[Any, ...]]:
    with sqlite3.connect(station.data / "registry.sqlite3") as db:
        return db.execute("SELECT id, detail FROM agent_events WHERE outcome = 'refused'"
                          ).fetchall()


def _until_state(station: Serve, job_id: int, state: str, seconds: float) -> dict[str, Any]:
    return until(lambda: (j := station.get(f"/api/v1/jobs/{job_id}"))["state"] == state and j,
                 seconds, f"job {job_id} is {state}")


def test_agent_cut_off_then_back_its_run_goes_on(station: Serve) -> None:
    station.start()
    agent = _agent(station, "laptop-1")
    job = _job_mid_way(station)
    agent.send_signal(signal.SIGSTOP)            # no more requests: silent, not dead
    cut = _until_state(station, job["id"], "interrupted", 30)
    assert "laptop-1 silent" in cut["reason"]
    drive = station.get(f"/api/v1/drives/{job['drive_identity']}")
    assert drive["state"] == "erasing"
    assert drive["history"][-1]["kind"] == "interrupted"

    agent.send_signal(signal.SIGCONT)
    done = _until_state(station, job["id"], "erased", 120)
    kinds = [(e["kind"], e["message"]) for e in done["events"]]
    revived = [m for k, m in kinds if k == "running" and "laptop-1 is back" in m]
    assert len(revived) == 1, kinds
    assert sum(k == "running" for k, _ in kinds) == 2     # started, revived: never rerun
    assert not _refused(station)
    until(lambda: station.get(f"/api/v1/drives/{job['drive_identity']}")["state"]
          == "certified", 60, "the drive is certified")


def test_agent_dies_drive_on_another_agent_job_resumes_there(station: Serve) -> None:
    station.start()
    first = _agent(station, "laptop-1")
    job = _job_mid_way(station)
    first.kill()                                  # power cut: the run is gone
    first.wait(30)
    cut = _until_state(station, job["id"], "interrupted", 30)
    checkpoint = cut["checkpoint"]
    assert checkpoint and "laptop-1 silent" in cut["reason"]

    _agent(station, "laptop-1-rebooted")         # the drive shows up on another agent
    done = _until_state(station, job["id"], "erased", 180)
    kinds = [e["kind"] for e in done["events"]]
    assert "reassigned" in kinds and "resumed" in kinds, kinds
    resumed = next(e for e in done["events"] if e["kind"] == "resumed")
    assert (resumed["data"]["index"], resumed["data"]["offset"]) >= (
        checkpoint["index"], checkpoint["offset"]) > (0, 0)
    assert not _refused(station)
