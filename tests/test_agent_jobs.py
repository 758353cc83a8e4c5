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


def test_an_agent_refused_by_a_clock_set_wrong_tries_again(tmp_path: Path) -> None:
    """A 401 (the request's proof out of the station's window: a clock set wrong, fixed
    later by NTP) is tried again; a 403 (revoked) is not."""
    from imager.agent.client import Enrolment, StationRefused
    agent = Agent(Settings(data_dir=tmp_path), AgentConfig(name="t", spool=tmp_path / "s",
                                                          watch=False))
    answers: list[Exception | Enrolment] = [
        StationRefused("signed +3600 s away from the station's clock", status=401),
        StationRefused("signed +3600 s away from the station's clock", status=401),
        Enrolment(3, "active", "ABCD-EF01-2345-6789", None, None)]

    def call() -> Enrolment:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    active = answers[-1]
    assert agent._retrying(threading.Event(), None, call) == active and answers == []
    answers[:] = [StationRefused("agent 3 revoked", status=403),
                  Enrolment(3, "active", "ABCD-EF01-2345-6789", None, None)]
    assert agent._retrying(threading.Event(), None, call) is None and len(answers) == 1
