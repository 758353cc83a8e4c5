"""Deployments in the registry: who may receive an image, and what was proved.

An OS image goes only onto a drive whose erasure succeeded and was verified
(an `erased` erase job, or an erasure certificate, on record) and whose state
allows imaging (erased, certified, imaged, image_failed): the unmapped areas
of the image are then already clean. `--allow-unerased` (lab use) lets a drive
without it through; the deployment then says so (no erasure job).

The drive moves imaging -> imaged, or image_failed with the reason and a next
step. A drive that already had its erasure certificate goes back to
certified: the certificate still holds, and the deployment is on record for
the documents that follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import UsageError
from imager.model import DriveIdentity
from imager.registry import items
from imager.registry.jobs import upsert_drive
from imager.registry.lifecycle import ITEM_LABELS_FR, TRANSITIONS
from imager.store.db import utcnow
from imager.store.models import Deployment, Document, Drive, Job


@dataclass(frozen=True)
class ImageInfo:
    """The image as the registry records it."""

    name: str
    version: str
    sha256: str | None
    image_size: int
    mapped_bytes: int


def erasure_on_record(s: Session, drive: Drive) -> Job | None:
    """The newest erase job of `drive` that ended erased (written and verified)."""
    return s.scalar(select(Job).where(Job.drive_id == drive.id, Job.kind == "erase",
                                      Job.state == "erased").order_by(Job.id.desc()))


def deployed(s: Session, drive: Drive) -> bool:
    """True when a system was written on `drive` and read back after its newest
    erasure (each deployment names the erasure that cleaned the drive first)."""
    erasure = erasure_on_record(s, drive)
    query = select(Deployment.id).where(Deployment.drive_id == drive.id,
                                        Deployment.ok.is_(True))
    if erasure is not None:
        query = query.where(Deployment.erasure_job_id == erasure.id)
    return s.scalar(query.limit(1)) is not None


def _certified(s: Session, drive: Drive) -> bool:
    return s.scalar(select(Document.id).where(Document.drive_id == drive.id,
                                              Document.kind == "erasure")) is not None


def begin(s: Session, ident: DriveIdentity, image: ImageInfo, *, actor: str,
          allow_unerased: bool = False) -> tuple[int, int | None]:
    """Check that the drive may receive `image` and move it to imaging:
    (drive id, erasure job id). Raises UsageError naming the drive and the fix."""
    drive = s.scalar(select(Drive).where(Drive.identity == ident.key))
    if drive is None and allow_unerased:
        drive = upsert_drive(s, ident, actor=actor)
    if drive is None:
        raise UsageError(
            f"le disque {ident.path} ({ident.key}) n'a jamais été effacé ici / drive "
            f"{ident.path} ({ident.key}) has no erasure on record: erase it first "
            "(`imager erase`), or give --allow-unerased for lab use")
    erasure = erasure_on_record(s, drive)
    again = drive.state == "imaging"      # the last deployment stopped before its end
    legal = again or "imaging" in TRANSITIONS["drive"].get(drive.state, frozenset())
    if not allow_unerased and (erasure is None and not _certified(s, drive) or not legal):
        label = ITEM_LABELS_FR.get(drive.state, drive.state)
        raise UsageError(
            f"le disque {drive.id} est « {label} » sans effacement réussi et vérifié "
            f"avant / drive {drive.id} ({ident.path}) is {drive.state} without a successful, "
            "verified erasure before it: erase it first (`imager erase`), or give "
            "--allow-unerased for lab use")
    reason = f"image {image.name} {image.version}"
    if again:
        items.note(s, drive, "imaging_again", actor=actor,
                   reason=f"{reason}; the last deployment did not finish")
    elif legal:
        items.move(s, drive, "imaging", actor=actor, reason=reason)
    else:
        items.note(s, drive, "imaging_unerased", actor=actor,
                   reason=f"{reason}, without an erasure on record (--allow-unerased)")
    return drive.id, erasure.id if erasure else None


def finish(s: Session, drive_id: int, image: ImageInfo, result: Any, *, actor: str,
           started_at: datetime, erasure_job_id: int | None,
           after: dict[str, Any] | None = None, hostname: str | None = None,
           job_id: int | None = None) -> Deployment:
    """Record the deployment (`result`: a deploy.TargetResult) and move the drive."""
    drive = s.get(Drive, drive_id)
    assert drive is not None
    error = result.error
    if result.ok and after and after.get("error"):
        error = f"after deployment: {after['error']}"
    ok = bool(result.ok) and error is None
    dep = Deployment(
        drive_id=drive.id, machine_id=drive.machine_id, erasure_job_id=erasure_job_id,
        job_id=job_id,
        image_name=image.name, image_version=image.version, image_sha256=image.sha256,
        image_size=image.image_size, mapped_bytes=image.mapped_bytes, verify=result.verify,
        verified_bytes=result.verified_bytes, ok=ok, error=error,
        detail={"mismatches": [list(m) for m in result.mismatches],
                "written_bytes": result.written_bytes, "ranges": result.ranges,
                "write_seconds": result.write_seconds,
                "sample_seed": getattr(result, "sample_seed", None),
                "verify_seconds": result.verify_seconds, "after": after},
        hostname=hostname, actor=actor, started_at=started_at, ended_at=utcnow())
    s.add(dep)
    s.flush()
    data = {"deployment": dep.id}
    if drive.state == "imaging":
        target = "imaged" if ok else "image_failed"
        items.record_move(s, drive, target, actor=actor, data=data, job_id=job_id,
                          reason=f"image {image.name} {image.version}: "
                                 + ("written and verified" if ok else str(error)))
        if ok and _certified(s, drive):
            items.record_move(s, drive, "certified", actor=actor, data=data,
                              reason="its erasure certificate still holds")
    else:
        items.note(s, drive, "imaged" if ok else "image_failed", actor=actor, data=data,
                   reason=str(error or "written and verified"))
    return dep


def deployment_summary(dep: Deployment) -> dict[str, Any]:
    return {"id": dep.id, "drive": dep.drive_id, "machine": dep.machine_id,
            "image": f"{dep.image_name} {dep.image_version}", "sha256": dep.image_sha256,
            "verify": dep.verify, "verified_bytes": dep.verified_bytes, "ok": dep.ok,
            "error": dep.error, "hostname": dep.hostname, "erasure_job": dep.erasure_job_id,
            "at": dep.ended_at.isoformat(), "by": dep.actor}


def deployments_of(s: Session, *, drive_id: int | None = None,
                   machine_id: int | None = None) -> list[Deployment]:
    q = select(Deployment).order_by(Deployment.id)
    if drive_id is not None:
        q = q.where(Deployment.drive_id == drive_id)
    if machine_id is not None:
        q = q.where(Deployment.machine_id == machine_id)
    return list(s.scalars(q))
