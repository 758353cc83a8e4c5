"""Sending a drive to destruction: a drive whose erasure failed goes with the
signed record of that failure (the non-erasure record moves it); any other drive a
person sends there says why, in its history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import UsageError
from imager.registry import items
from imager.store.models import Document, Drive, Job

FAILED = ("failed", "unverified")


def unrecorded_failure(s: Session, drive: Drive) -> int | None:
    """The drive's last erase job when it failed with a report and no document
    records it yet (its id): the non-erasure record to issue before destruction."""
    job = s.scalar(select(Job).where(Job.drive_id == drive.id, Job.kind == "erase")
                   .order_by(Job.id.desc()).limit(1))
    if job is None or job.state not in FAILED or job.report is None:
        return None
    recorded = s.scalar(select(Document.id).where(Document.job_id == job.id).limit(1))
    return None if recorded else job.id


def send(s: Session, drive: Drive, *, actor: str, reason: str) -> None:
    """Move `drive` to destruction by hand, with the reason (UsageError without one,
    or from a state that cannot go there)."""
    if not reason.strip():
        raise UsageError(f"drive {drive.id}: say why it goes to destruction (the reason "
                         "stays in its history)")
    items.move(s, drive, "to_destroy", actor=actor, reason=reason.strip())
