"""The job store of an agent: every write becomes an event for the station.

The erase runner (imager.jobs.erase) takes a store; on the station it is
the registry, in an agent it is this one. The job's state is kept here too,
so the runner reads back what it wrote. Every durable event names the process
running the job (`owner`): the station knows a run that went on while it could
not hear the agent from the late events of a run that died.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imager.agent.outbox import Outbox
from imager.errors import UsageError
from imager.host.owner import Owner
from imager.model import DriveIdentity, ErasePlan
from imager.protocol.jobs import JobView
from imager.registry.lifecycle import check_move


class JobStop(threading.Event):
    """The stop signal of one job; `removed` says the drive was pulled out."""

    removed: str | None = None

    def drive_removed(self, why: str) -> None:
        self.removed = why
        self.set()


@dataclass
class JobOnDrive:
    """A job an agent runs: its store (events), its drive's path, its stop."""

    store: RemoteJobStore
    path: str
    stop: JobStop


class RemoteJobStore:
    """`seeds(job_id)`: asks the station for a sampled verification's seed."""

    def __init__(self, outbox: Outbox, job: JobView,
                 seeds: Callable[[int], str] | None = None) -> None:
        self.outbox = outbox
        self.job = job
        self.seeds = seeds
        self.owner = dataclasses.asdict(Owner.me())

    def _put(self, kind: str, data: dict[str, Any]) -> None:
        self.outbox.put(kind, {**data, "owner": data.get("owner") or self.owner})

    def get(self, job_id: int, *, with_events: bool = False) -> JobView:
        return self.job

    def move(self, job_id: int, target: str, *, reason: str = "",
             report: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
             owner: Owner | None = None) -> None:
        check_move(job_id, self.job.state, target, kind=self.job.kind)
        self._put("job_move", {"job": job_id, "target": target, "reason": reason,
                               "report": report, "data": data,
                               "owner": dataclasses.asdict(owner) if owner else None})
        self.job = dataclasses.replace(self.job, state=target, reason=reason or None,
                                       report=report if report is not None else self.job.report)

    def event(self, job_id: int, kind: str, message: str = "",
              data: dict[str, Any] | None = None) -> None:
        self._put("job_event", {"job": job_id, "kind": kind, "message": message, "data": data})

    def replace_plan(self, job_id: int, plan: ErasePlan, *, kind: str, message: str) -> None:
        self._put("job_plan", {"job": job_id, "plan": plan.to_dict(), "kind": kind,
                               "message": message})
        self.job = dataclasses.replace(self.job, plan=plan, checkpoint=None)

    def record_drive(self, ident: DriveIdentity) -> None:
        self._put("job_drive", {"job": self.job.id, "identity": dataclasses.asdict(ident)})

    def save_checkpoint(self, job_id: int, checkpoint: dict[str, Any]) -> None:
        self._put("job_checkpoint", {"job": job_id, "checkpoint": checkpoint})
        self.job = dataclasses.replace(self.job, checkpoint=checkpoint)

    def verify_seed(self, job_id: int) -> str:
        if self.seeds is None:
            raise UsageError(f"job {job_id}: its sampled verification needs a seed from the "
                             "station, and this agent has none to ask (offline)")
        return self.seeds(job_id)

    def progress(self, job_id: int, phase: str, index: int, done: int, total: int) -> None:
        self.outbox.put("progress", {"job": job_id, "phase": phase, "index": index,
                                     "done": done, "total": total}, durable=False)
