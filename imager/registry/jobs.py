"""Jobs in the registry: creation, state moves, events, checkpoints.

Every state move goes through `lifecycle.check_move` and leaves an event.
`reconcile()` runs whenever the station or the CLI opens the registry: a job
left `running` by a process that no longer exists (SIGKILL, power cut) is
marked `interrupted`, never left running and never counted as erased.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from imager.erase.engines import ENGINES
from imager.errors import NotFound, NotYet, UsageError
from imager.host.owner import Owner
from imager.model import DriveIdentity, ErasePlan, ImagePlan
from imager.protocol.jobs import EventView, JobView, plan_of
from imager.registry import items
from imager.registry.lifecycle import check_move
from imager.store.db import Registry, utcnow
from imager.store.models import Drive, Job, JobEvent


def _view(job: Job, *, with_events: bool = False) -> JobView:
    events = tuple(EventView(e.seq, e.at, e.kind, e.message, e.data) for e in job.events) \
        if with_events else ()
    return JobView(
        id=job.id, kind=job.kind, state=job.state, device_path=job.device_path,
        drive_identity=job.drive.identity, drive_size=job.drive.size_bytes,
        plan=plan_of(job.kind, job.plan),
        checkpoint=job.checkpoint, report=job.report, reason=job.reason,
        donation=job.donation.reference if job.donation else None,
        technician=job.technician.name if job.technician else None,
        created_at=job.created_at, started_at=job.started_at, ended_at=job.ended_at,
        events=events)


def _add_event(s: Session, job: Job, kind: str, message: str = "",
               data: dict[str, Any] | None = None) -> None:
    last = s.scalar(select(func.coalesce(func.max(JobEvent.seq), 0))
                    .where(JobEvent.job_id == job.id))
    seq = (last or 0) + 1
    s.add(JobEvent(job_id=job.id, seq=seq, at=utcnow(), kind=kind, message=message, data=data))


REASSIGNED = "reassigned"    # the job event of a job that followed its drive to another agent


def passes_reported(s: Session, job: Job) -> set[int]:
    """The indices of the passes of the job's current plan recorded as completed
    (those of a plan the drive refused do not count)."""
    rows = s.execute(select(JobEvent.kind, JobEvent.data).where(
        JobEvent.job_id == job.id, JobEvent.kind.in_(("pass_completed", "method_refused")))
        .order_by(JobEvent.seq)).all()
    done: set[int] = set()
    for kind, data in rows:
        if kind == "method_refused":
            done = set()
        elif isinstance(data, dict) and isinstance(data.get("index"), int):
            done.add(data["index"])
    return done


def _set_owner(job: Job, owner: Owner | None = None) -> None:
    me = owner or Owner.me()
    job.owner_host, job.owner_boot_id = me.host, me.boot_id
    job.owner_pid, job.owner_started = me.pid, me.started


def _apply_move(s: Session, job: Job, target: str, reason: str = "",
                report: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None, owner: Owner | None = None) -> None:
    """The one place a job changes state: checked against the lifecycle table."""
    check_move(job.id, job.state, target, kind=job.kind)
    items.follow_job(s, job, target, reason)
    job.state = target
    if target == "running":
        _set_owner(job, owner)
        job.started_at = job.started_at or utcnow()
        job.reason, job.ended_at = None, None
    else:
        job.reason = reason or None
        job.ended_at = utcnow()
        job.report = report if report is not None else job.report
    _add_event(s, job, target, reason, data)


def _typed_in(s: Session, ident: DriveIdentity) -> Drive | None:
    """A drive recorded at intake by its label (`received`), now probed: it takes
    the identity the probe gives it."""
    labels = [x for x in (ident.serial, ident.wwn) if x]
    if not labels:
        return None
    drive = s.scalar(select(Drive).where(Drive.state == "received",
                                         Drive.serial.in_(labels) | Drive.wwn.in_(labels)))
    if drive is not None:
        drive.identity = ident.key
    return drive


def upsert_drive(s: Session, ident: DriveIdentity, *, actor: str = "imager") -> Drive:
    """The registry's drive for `ident` (by identity, never by device name), updated."""
    drive = s.scalar(select(Drive).where(Drive.identity == ident.key))
    if drive is None:
        drive = _typed_in(s, ident)
    if drive is None:
        drive = Drive(identity=ident.key, size_bytes=ident.size, created_at=utcnow(),
                      state="inventoried", present=False)
        s.add(drive)
        s.flush()
        items.note(s, drive, "registered", actor=actor, reason=f"identified at {ident.path}",
                   data={"identity": ident.key, "path": ident.path})
    else:
        items.inventoried(s, drive, actor=actor, reason=f"identified at {ident.path}")
    drive.model, drive.serial, drive.wwn = ident.model, ident.serial, ident.wwn
    drive.size_bytes, drive.transport = ident.size, ident.transport
    drive.rotational, drive.last_path = ident.rotational, ident.path
    s.flush()
    return drive


class RegistryJobStore:
    """All job reads and writes go through here.

    Each call is its own transaction, unless the store is `bound` to a session
    (the station applies an agent's event and records its id in one).
    """

    def __init__(self, registry: Registry, *, session: Session | None = None) -> None:
        self.registry = registry
        self._bound = session

    def bound(self, session: Session) -> RegistryJobStore:
        """This store, writing in `session` (committed by its owner)."""
        return RegistryJobStore(self.registry, session=session)

    @contextmanager
    def _session(self, readonly: bool = False) -> Iterator[Session]:
        if self._bound is not None:
            yield self._bound
            return
        with self.registry.session(readonly=readonly) as s:
            yield s

    def _job(self, s: Session, job_id: int) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}: list them with `imager jobs list`")
        return job

    def create_erase(self, ident: DriveIdentity, plan: ErasePlan, *,
                     donation_id: int | None = None, technician_id: int | None = None,
                     agent_id: int | None = None) -> int:
        with self._session() as s:
            drive = upsert_drive(s, ident)
            items.check_can_erase(drive)
            if donation_id is not None and drive.donation_id is None:
                drive.donation_id = donation_id
            job = Job(kind="erase", state="queued", drive_id=drive.id, device_path=ident.path,
                      plan=plan.to_dict(), donation_id=donation_id,
                      technician_id=technician_id, agent_id=agent_id, created_at=utcnow())
            _set_owner(job)  # the creator owns it until it runs
            s.add(job)
            s.flush()
            _add_event(s, job, "created", f"erase {ident.path} with {plan.method}",
                       {"identity": ident.key, "plan": plan.to_dict()})
            return job.id

    def create_image(self, drive_id: int, device_path: str, plan: ImagePlan, *,
                     donation_id: int | None = None, technician_id: int | None = None,
                     agent_id: int | None = None) -> int:
        """An image job for a drive that `deployments.begin` let through."""
        with self._session() as s:
            job = Job(kind="image", state="queued", drive_id=drive_id, device_path=device_path,
                      plan=plan.to_dict(), donation_id=donation_id,
                      technician_id=technician_id, agent_id=agent_id, created_at=utcnow())
            _set_owner(job)
            s.add(job)
            s.flush()
            _add_event(s, job, "created", f"{plan.method} onto {device_path}", plan.to_dict())
            return job.id

    def get(self, job_id: int, *, with_events: bool = False) -> JobView:
        with self._session(readonly=True) as s:
            return _view(self._job(s, job_id), with_events=with_events)

    def list(self, states: tuple[str, ...] = ()) -> list[JobView]:
        with self._session(readonly=True) as s:
            q = select(Job).order_by(Job.id)
            if states:
                q = q.where(Job.state.in_(states))
            return [_view(j) for j in s.scalars(q)]

    def move(self, job_id: int, target: str, *, reason: str = "",
             report: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
             owner: Owner | None = None) -> None:
        """A state move, with its event; terminal moves close the job. `owner`:
        the process that runs it (default: this one)."""
        with self._session() as s:
            _apply_move(s, self._job(s, job_id), target, reason, report, data, owner)

    def event(self, job_id: int, kind: str, message: str = "",
              data: dict[str, Any] | None = None) -> None:
        with self._session() as s:
            _add_event(s, self._job(s, job_id), kind, message, data)

    def replace_plan(self, job_id: int, plan: ErasePlan, *, kind: str, message: str) -> None:
        """The job goes on with another plan (the drive refused a method): the
        checkpoint of the old one no longer applies."""
        with self._session() as s:
            job = self._job(s, job_id)
            job.plan, job.checkpoint = plan.to_dict(), None
            _add_event(s, job, kind, message, {"plan": plan.to_dict()})

    def record_drive(self, ident: DriveIdentity) -> None:
        """The drive as it is now (e.g. its size once its HPA is removed)."""
        with self._session() as s:
            upsert_drive(s, ident)

    def save_checkpoint(self, job_id: int, checkpoint: dict[str, Any]) -> None:
        with self._session() as s:
            self._job(s, job_id).checkpoint = checkpoint

    def verify_seed(self, job_id: int) -> str:
        """The seed of a sampled verification, drawn once every write pass of the
        current plan is recorded (NotYet before), recorded in the plan and the history."""
        with self._session() as s:
            job = self._job(s, job_id)
            plan = ErasePlan.from_dict(job.plan) if job.kind == "erase" else None
            if plan is None or plan.verify != "sample":
                raise UsageError(f"job {job_id} has no sampled verification: it needs no seed")
            if plan.verify_seed:
                return plan.verify_seed
            if job.state != "running":
                raise UsageError(f"job {job_id} is {job.state}, not running: no seed is drawn")
            steps = ENGINES[plan.engine].for_plan(plan).steps(plan)
            missing = sorted(set(range(steps)) - passes_reported(s, job))
            if missing:
                passes = ", ".join(str(i + 1) for i in missing)
                raise NotYet(f"job {job_id}: write pass(es) {passes} of {steps} not reported "
                             "yet; the verification seed is drawn once they are: report "
                             "them, then ask again")
            seed = os.urandom(16).hex()
            job.plan = {**job.plan, "verify_seed": seed}
            _add_event(s, job, "verify_seed", f"verification seed drawn after the {steps} "
                       "write pass(es)", {"seed": seed})
            return seed

    def reconcile(self) -> builtins.list[int]:
        """Jobs whose owner process died: running -> interrupted (resumable),
        queued -> failed (never started). Returns their ids."""
        stale = []
        with self._session() as s:
            for job in s.scalars(select(Job).where(Job.state.in_(("running", "queued")))):
                if job.state == "queued" and job.agent_id is not None:
                    continue  # waiting for its agent, which may start it later
                owner = Owner(job.owner_host or "", job.owner_boot_id or "",
                              job.owner_pid or 0, job.owner_started or 0.0)
                if owner.alive():
                    continue
                if job.state == "running":
                    _apply_move(s, job, "interrupted",
                                f"the process running it (pid {job.owner_pid}) stopped "
                                "without finishing (killed or power cut); resume it with "
                                f"`imager jobs resume {job.id}`")
                else:
                    _apply_move(s, job, "failed", f"never started: the process that "
                                f"created it (pid {job.owner_pid}) stopped first")
                stale.append(job.id)
        return stale


def ready_for_a_job(s: Session, drive: Drive) -> DriveIdentity:
    """A drive with no open job, plugged in and probed: its identity as probed."""
    open_job = s.scalar(select(Job).where(Job.drive_id == drive.id, Job.state.in_(
        ("queued", "running", "interrupted"))))
    if open_job is not None:
        raise UsageError(f"drive {drive.id} already has job {open_job.id} ({open_job.state})")
    probe = drive.plan or {}
    if not drive.present or probe.get("identity") is None:
        raise UsageError(f"le disque {drive.id} n'est pas branché / drive {drive.id} is "
                         "not plugged in: plug it into a dock first")
    return DriveIdentity(**probe["identity"])


def _station_plan(drive: Drive) -> ErasePlan:
    planned = (drive.plan or {}).get("plan")
    if planned is None:
        problems = "; ".join((drive.plan or {}).get("problems") or ()) or "none listed"
        raise UsageError(f"drive {drive.id}: no method of the erase policy can run on it "
                         f"({problems}); choose another method, or send it to destruction")
    return ErasePlan.from_dict(planned)


def erase_job_for(store: RegistryJobStore, s: Session, drive: Drive, *,
                  technician_id: int | None, donation_id: int | None,
                  plan: ErasePlan | None = None) -> int:
    """An erase job for a plugged-in drive, with the station's plan for it or
    `plan` (its id)."""
    ident = ready_for_a_job(s, drive)
    if plan is None:
        plan = _station_plan(drive)
    return store.bound(s).create_erase(ident, plan, donation_id=donation_id,
                                       technician_id=technician_id, agent_id=drive.agent_id)

