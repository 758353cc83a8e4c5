"""Run one erase job: guard, identity check, engine, report, registry.

This is where the rules meet: the guard refuses before anything is opened for
writing; the drive must be the one the job was created for; every outcome
other than a completed and verified erasure ends as a non-erased state.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imager import __version__
from imager.erase import guard
from imager.erase.engine import Execution, ResumePoint
from imager.erase.engines import ENGINES, tool_version
from imager.erase.errorlog import append_merged
from imager.erase.progress import Interrupted
from imager.errors import DeviceError, ImagerError, MethodRefused
from imager.host.blockdev import OpenDevice, open_device
from imager.inventory import lsblk
from imager.jobs.store import JobStore
from imager.jobs.uncover import uncover
from imager.model import (
    DriveIdentity,
    ErasePlan,
    EraseReport,
    Extent,
    HiddenAreaChange,
    Outcome,
    PassResult,
)
from imager.protocol.jobs import JobView
from imager.settings import Settings

PROGRESS_EVENT_SECONDS = 30.0
MAX_ERROR_EVENTS = 100

# (job_id, phase, index, done, total)
ProgressCallback = Callable[[int, str, int, int, int], None]


@dataclass
class JobSink:
    """Engine sink that checkpoints to the registry and forwards progress."""

    store: JobStore
    job_id: int
    stop: threading.Event
    on_progress: ProgressCallback | None = None
    done: list[PassResult] = field(default_factory=list)
    errors: list[Extent] = field(default_factory=list)   # current pass, merged
    position: tuple[int, int] = (0, 0)                    # (pass index, offset) reached
    plan: ErasePlan | None = None                         # the plan being run now
    _last_event: float = 0.0
    _error_events: int = 0

    def update(self, phase: str, index: int, done: int, total: int) -> None:
        if phase == "pass":
            self.position = (index, done)
        if self.on_progress:
            self.on_progress(self.job_id, phase, index, done, total)
        now = time.monotonic()
        if now - self._last_event >= PROGRESS_EVENT_SECONDS:
            self._last_event = now
            self.store.event(self.job_id, "progress", f"{phase} {index + 1}: {done}/{total}",
                             {"phase": phase, "index": index, "done": done, "total": total})

    def checkpoint(self, index: int, offset: int, seconds: float) -> None:
        self.store.save_checkpoint(self.job_id, {
            "index": index, "offset": offset, "seconds": seconds,
            "done": [dataclasses.asdict(p) for p in self.done],
            "errors": [dataclasses.asdict(e) for e in self.errors],
        })

    def io_error(self, index: int, extent: Extent) -> None:
        append_merged(self.errors, extent)
        if self._error_events < MAX_ERROR_EVENTS:
            self._error_events += 1
            self.store.event(self.job_id, "io_error",
                             f"pass {index + 1}: {extent.length} bytes at {extent.offset}: "
                             f"{extent.error}", dataclasses.asdict(extent))

    def step_done(self, result: PassResult) -> None:
        self.done.append(result)
        self.errors = []
        self.store.event(self.job_id, "pass_completed",
                         f"pass {result.index + 1} ({result.pattern}) completed",
                         dataclasses.asdict(result))
        self.checkpoint(result.index + 1, 0, 0.0)

    def stop_requested(self) -> bool:
        return self.stop.is_set()

    def verify_seed(self) -> str:
        return self.store.verify_seed(self.job_id)

    def restart(self, plan: ErasePlan) -> None:
        """Another method starts from scratch: forget the refused one's steps."""
        self.done, self.errors, self.position, self.plan = [], [], (0, 0), plan

    def passes_so_far(self) -> tuple[PassResult, ...]:
        """Completed passes plus the one cut short, with its failed extents."""
        index, offset = self.position
        plan = self.plan
        try:
            engine = ENGINES[plan.engine].for_plan(plan) if plan else None
        except (KeyError, ValueError):   # a plan its engine refuses: nothing ran
            engine = None
        if engine is None or plan is None or index < len(self.done) or (
                index >= engine.steps(plan)) or (offset == 0 and not self.errors):
            return tuple(self.done)
        failed = sum(e.length for e in self.errors)
        partial = PassResult(index=index, pattern=engine.describe_step(plan, index),
                             bytes_written=max(0, offset - failed), seconds=0.0,
                             failed_extents=tuple(self.errors))
        return (*self.done, partial)


def resume_point(checkpoint: dict[str, Any] | None) -> ResumePoint:
    if not checkpoint:
        return ResumePoint()
    done = tuple(PassResult.from_dict(p) for p in checkpoint["done"])
    errors = tuple(Extent(**e) for e in checkpoint.get("errors", ()))
    return ResumePoint(checkpoint["index"], checkpoint["offset"], done, errors,
                       checkpoint.get("seconds", 0.0))


def check_identity(job: JobView, current: DriveIdentity) -> None:
    """The drive at the job's path must be the job's drive (identity and size)."""
    if current.key != job.drive_identity or current.size != job.drive_size:
        raise DeviceError(
            f"{current.path} is not the drive of job {job.id} (expected "
            f"{job.drive_identity}, {job.drive_size} bytes; found {current.key}, "
            f"{current.size} bytes): plug in the right drive, or give its new device path")


def choose_start(job: JobView, current: DriveIdentity, *, explicit_device: bool) -> ResumePoint:
    """Where to start: the checkpoint, unless the drive cannot be proven the same."""
    resume = resume_point(job.checkpoint)
    if resume == ResumePoint() or current.provable:
        return resume
    if not explicit_device:
        raise DeviceError(
            f"the drive of job {job.id} has no serial number or WWN, so the station cannot "
            f"prove {current.path} is still that drive: resume it with "
            f"`imager jobs resume {job.id} --device PATH` to erase it again from the start")
    return ResumePoint()


def _preflight(store: JobStore, job: JobView, path: str, settings: Settings, *,
               allow_files: bool, explicit_device: bool,
               ) -> tuple[DriveIdentity, ResumePoint, int | None]:
    try:
        facts = guard.check(path, settings, allow_files=allow_files)
        ident = lsblk.probe(path, settings)
        check_identity(job, ident)
        return ident, choose_start(job, ident, explicit_device=explicit_device), facts.rdev
    except Exception as exc:
        err = exc if isinstance(exc, ImagerError) else DeviceError(f"{path}: {exc}")
        if job.state == "queued":  # never started: it fails; an interrupted one waits
            store.move(job.id, "failed", reason=str(err))
        else:
            store.event(job.id, "resume_refused", str(err))
        raise err from exc


def _same_device(dev: OpenDevice, rdev: int | None) -> None:
    if rdev is not None and os.fstat(dev.fd).st_rdev != rdev:
        raise DeviceError(f"{dev.path} changed between the safety check and the opening "
                          "(drive swapped?): nothing was written; start again")


def run_erase(store: JobStore, job_id: int, settings: Settings, *,
              stop: threading.Event, on_progress: ProgressCallback | None = None,
              allow_files: bool = False, device_path: str | None = None) -> EraseReport:
    """Run (or resume) erase job `job_id` to a terminal or interrupted state."""
    job = store.get(job_id)
    path = device_path or job.device_path
    ident, resume, rdev = _preflight(store, job, path, settings, allow_files=allow_files,
                                     explicit_device=device_path is not None)
    store.move(job_id, "running", data={"resume": dataclasses.asdict(resume)})
    if resume != ResumePoint():
        store.event(job_id, "resumed", f"resumed at pass {resume.index + 1}, offset "
                    f"{resume.offset}", {"index": resume.index, "offset": resume.offset})
    sink = JobSink(store, job_id, stop, on_progress, list(resume.done), list(resume.errors),
                   (resume.index, resume.offset), job.plan)
    started = datetime.now(UTC)
    hidden = None
    try:
        ident, hidden = _uncovered(store, job, path, ident, rdev, settings)
        with open_device(path, write=True) as dev:
            _same_device(dev, rdev)
            ex = _run_plan(store, job_id, dev, sink, resume, settings.checkpoint_seconds)
    except Interrupted as exc:
        ex = _cut_short(sink, "interrupted", str(exc))
    except Exception as exc:  # a failing drive, or a bug: never reported erased
        reason = str(exc) if isinstance(exc, ImagerError) else (
            f"{path}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror
            else f"internal error ({type(exc).__name__}: {exc}); please report it")
        ex = _cut_short(sink, "failed", reason)
    removed = getattr(stop, "removed", None)   # set by an agent that saw the drive go
    if removed and ex.outcome in ("interrupted", "failed"):
        ex = dataclasses.replace(ex, outcome="failed", reason=f"drive removed ({removed}) "
                                 f"during the erasure: {ex.reason}")
    plan = sink.plan or job.plan
    return _finish(store, job, plan, ident, dataclasses.replace(ex, hidden=hidden), started)


def _cut_short(sink: JobSink, outcome: Outcome, reason: str) -> Execution:
    passes = sink.passes_so_far()
    canary = next((p.canary for p in passes if p.canary is not None), None)
    return Execution(passes, None, outcome, reason, canary)


def _uncovered(store: JobStore, job: JobView, path: str, ident: DriveIdentity,
               rdev: int | None, settings: Settings,
               ) -> tuple[DriveIdentity, HiddenAreaChange | None]:
    """Hidden areas removed while the device is held with O_EXCL and proven the
    one the guard checked (the change is permanent: never on another drive)."""
    if job.plan.hidden is None:   # not an ATA drive, or hdparm -N did not answer
        return ident, None
    with open_device(path, write=True) as dev:
        _same_device(dev, rdev)
        now, change = uncover(store, job, path, ident, settings)
    if now.key != ident.key:
        raise DeviceError(f"{path} changed identity while its hidden areas were removed "
                          f"({ident.key} became {now.key}): check the drive and start again")
    return now, change


def _run_plan(store: JobStore, job_id: int, dev: OpenDevice, sink: JobSink,
              resume: ResumePoint, checkpoint_seconds: float) -> Execution:
    """Run the plan's first method; when the drive refuses it, go on with the next.
    `sink.plan` is always the plan being run (the report's plan)."""
    plan = sink.plan
    assert plan is not None
    while True:
        try:
            engine = ENGINES[plan.engine].for_plan(plan)
            return engine.execute(dev, plan, sink=sink, resume=resume,
                                  checkpoint_seconds=checkpoint_seconds)
        except MethodRefused as exc:
            refused = plan.refuse(str(exc))
            following = refused.fallback()
            if following is None:
                store.replace_plan(job_id, refused, kind="method_refused",
                                   message=f"{plan.method} refused: {exc}")
                sink.restart(refused)
                tried = "; ".join(f"{r.method}: {r.reason}" for r in refused.refused)
                return Execution((), None, "failed",
                                 f"the drive refused every method of its plan ({tried})")
            store.replace_plan(job_id, following, kind="method_refused",
                               message=f"{plan.method} refused: {exc}; "
                                       f"falling back to {following.method}")
            plan, resume = following, ResumePoint()
            sink.restart(plan)


def _finish(store: JobStore, job: JobView, plan: ErasePlan, ident: DriveIdentity,
            ex: Execution, started: datetime) -> EraseReport:
    report = EraseReport(
        job_id=job.id, device=ident, plan=plan, started_at=job.started_at or started,
        ended_at=datetime.now(UTC), passes=ex.passes, verification=ex.verification,
        outcome=ex.outcome, reason=ex.reason, technician=job.technician,
        donation=job.donation, software=f"imager {__version__}", tool=tool_version(plan.engine),
        errors=tuple(e for p in ex.passes for e in p.failed_extents), canary=ex.canary,
        hidden_areas=ex.hidden)
    store.move(job.id, ex.outcome, reason=ex.reason, report=report.to_dict())
    return report
