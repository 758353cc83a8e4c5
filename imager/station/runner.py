"""Run one erase job: guard, identity check, engine, report, registry.

This is where the rules meet: the guard refuses before anything is opened for
writing; the drive must be the one the job was created for; every outcome
other than a completed and verified erasure ends as a non-erased state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imager import __version__
from imager.erase import guard
from imager.erase.engine import ENGINES, Execution, ResumePoint
from imager.erase.progress import Interrupted
from imager.errors import DeviceError, ImagerError
from imager.host.blockdev import open_device
from imager.inventory import lsblk
from imager.model import DriveIdentity, EraseReport, Extent, PassResult
from imager.settings import Settings
from imager.station.jobs import JobStore, JobView

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
    errors: list[Extent] = field(default_factory=list)
    _last_event: float = 0.0
    _error_events: int = 0

    def update(self, phase: str, index: int, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(self.job_id, phase, index, done, total)
        now = time.monotonic()
        if now - self._last_event >= PROGRESS_EVENT_SECONDS:
            self._last_event = now
            self.store.event(self.job_id, "progress", f"{phase} {index + 1}: {done}/{total}",
                             {"phase": phase, "index": index, "done": done, "total": total})

    def checkpoint(self, index: int, offset: int) -> None:
        self.store.save_checkpoint(self.job_id, {
            "index": index, "offset": offset,
            "done": [dataclasses.asdict(p) for p in self.done],
            "errors": [dataclasses.asdict(e) for e in self.errors],
        })

    def io_error(self, index: int, extent: Extent) -> None:
        self.errors.append(extent)
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
        self.checkpoint(result.index + 1, 0)

    def stop_requested(self) -> bool:
        return self.stop.is_set()


def resume_point(checkpoint: dict | None) -> ResumePoint:
    if not checkpoint:
        return ResumePoint()
    done = tuple(PassResult(**{**p, "failed_extents": tuple(
        Extent(**e) for e in p["failed_extents"])}) for p in checkpoint["done"])
    errors = tuple(Extent(**e) for e in checkpoint.get("errors", ()))
    return ResumePoint(checkpoint["index"], checkpoint["offset"], done, errors)


def check_identity(job: JobView, current: DriveIdentity) -> None:
    if current.key != job.drive_identity:
        raise DeviceError(
            f"{job.device_path} is not the drive of job {job.id} (expected "
            f"{job.drive_identity}, found {current.key}): plug in the right drive, "
            "or give its new device path")


def run_erase(store: JobStore, job_id: int, settings: Settings, *,
              stop: threading.Event, on_progress: ProgressCallback | None = None,
              allow_files: bool = False, device_path: str | None = None) -> EraseReport:
    """Run (or resume) erase job `job_id` to a terminal or interrupted state."""
    job = store.get(job_id)
    path = device_path or job.device_path
    try:
        guard.check(path, settings, allow_files=allow_files)
        ident = lsblk.probe(path, settings)
        check_identity(job, ident)
    except ImagerError as exc:
        if job.state == "queued":  # never started: it fails; an interrupted one waits
            store.move(job_id, "failed", reason=str(exc))
        else:
            store.event(job_id, "resume_refused", str(exc))
        raise
    resume = resume_point(job.checkpoint)
    store.move(job_id, "running", reason="", data={"resume": dataclasses.asdict(resume)})
    if job.checkpoint:
        store.event(job_id, "resumed", f"resumed at pass {resume.index + 1}, offset "
                    f"{resume.offset}", {"index": resume.index, "offset": resume.offset})
    sink = JobSink(store, job_id, stop, on_progress, list(resume.done), list(resume.errors))
    started = datetime.now(UTC)
    try:
        with open_device(path, write=True) as dev:
            ex = ENGINES["overwrite"]().execute(
                dev, job.plan, sink=sink, resume=resume,
                checkpoint_seconds=settings.checkpoint_seconds)
    except Interrupted as exc:
        ex = Execution(tuple(sink.done), None, "interrupted", str(exc))
    except ImagerError as exc:
        ex = Execution(tuple(sink.done), None, "failed", str(exc))
    except OSError as exc:
        ex = Execution(tuple(sink.done), None, "failed", f"{path}: {exc.strerror or exc}")
    except Exception as exc:  # a bug must still end the job, never as erased
        ex = Execution(tuple(sink.done), None, "failed",
                       f"internal error ({type(exc).__name__}: {exc}); please report it")
    return _finish(store, job, ident, ex, started)


def _finish(store: JobStore, job: JobView, ident: DriveIdentity, ex: Execution,
            started: datetime) -> EraseReport:
    first_start = job.started_at or started
    report = EraseReport(
        job_id=job.id, device=ident, plan=job.plan, started_at=first_start,
        ended_at=datetime.now(UTC), passes=ex.passes, verification=ex.verification,
        outcome=ex.outcome, reason=ex.reason, technician=job.technician,
        donation=job.donation, software=f"imager {__version__}",
        errors=tuple(e for p in ex.passes for e in p.failed_extents))
    store.move(job.id, ex.outcome, reason=ex.reason, report=report.to_dict())
    return report
