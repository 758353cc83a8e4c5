"""An agent runs each job it is given once, even when the station, not yet
told that the job ended, offers it again."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imager.agent import agent as agent_module
from imager.agent.agent import Agent, AgentConfig
from imager.erase.plan import plan_for
from imager.erase.policy import load
from imager.inventory.capabilities import DriveCapabilities
from imager.model import DriveIdentity
from imager.protocol.jobs import JobView, view_from_dict, view_to_dict
from imager.settings import Settings


def test_a_job_offered_again_after_it_ended_is_not_run_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ident = DriveIdentity(path="/dev/sdz", size=1 << 20, serial="S1", model="M")
    plan = plan_for(DriveCapabilities(identity=ident, medium="unknown", transport="sata"),
                    load(None), method="nist-clear")
    job = view_to_dict(JobView(
        id=7, kind="erase", state="interrupted", device_path=ident.path,
        drive_identity=ident.key, drive_size=ident.size, plan=plan, checkpoint=None,
        report=None, reason=None, donation=None, technician=None,
        created_at=datetime.now(UTC), started_at=None, ended_at=None))
    runs: list[int] = []
    monkeypatch.setattr(agent_module, "run_erase",
                        lambda store, job_id, *a, **kw: runs.append(job_id))
    agent = Agent(Settings(data_dir=tmp_path), AgentConfig(name="t", spool=tmp_path / "s",
                                                          watch=False))
    agent.present["sdz"] = ident
    stop = threading.Event()
    for _ in range(3):       # offered again while its end is still in the outbox
        agent._maybe_run([view_from_dict(job)], stop)
        while agent.running:
            time.sleep(0.01)
    assert runs == [7]
