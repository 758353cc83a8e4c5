"""Decisions a person records about a certificate: accepting hidden areas not checked
(before it), withdrawing it (after: `Issuer.withdraw`, with the same rules for who
and why, `who_and_why`).

An ATA drive that did not answer `hdparm -N` may hide sectors (HPA, DCO)
that the erasure never reached; so may a drive behind a USB or SAS adapter
that could be a SATA disk (nothing the station read says it is not). Its
certificate of erasure needs a person to accept that, for that erase job:
the decision is an event of the drive in the registry (kind
`hidden_areas_accepted`, the person as actor, the reason, the job), and the
certificate prints who, when and why.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.certify.record import hidden_areas_status, iso
from imager.errors import NotFound, UsageError
from imager.model import EraseReport
from imager.registry import items
from imager.store.db import Registry
from imager.store.models import Drive, ItemEvent, Job

HIDDEN_AREAS_ACCEPTED = "hidden_areas_accepted"
REASON = (10, 500)   # characters: a reason, not "ok", that the certificate prints whole
MAX_NAME = 200       # item_events.actor
NOTHING_TO_ACCEPT = {"checked": "the station checked the hidden areas of its drive",
                     "not-applicable": "its drive is no ATA drive, it has no hidden areas to check"}


def who_and_why(by: str, reason: str, *, asking: str, printed: str) -> tuple[str, str]:
    """The name of the person deciding and the reason, tidied; refuses an empty name or
    a reason too short to be one (or too long to be `printed` whole); `asking` is the
    question in English ("who accepts it?")."""
    by, reason = by.strip(), " ".join(reason.split())
    if not 0 < len(by) <= MAX_NAME:
        raise UsageError(f"qui décide ? / {asking} give the name of the person deciding "
                         f"(--by NAME, at most {MAX_NAME} characters)")
    if not REASON[0] <= len(reason) <= REASON[1]:
        raise UsageError(f"pourquoi ? / why? give a reason of {REASON[0]} to {REASON[1]} "
                         f"characters (--reason TEXT; this one has {len(reason)}): it is "
                         f"printed whole {printed}")
    return by, reason


def hidden_areas_acceptance(s: Session, drive_id: int, job_id: int) -> dict[str, str] | None:
    """The latest decision accepting the unchecked hidden areas of `job_id`, as
    the record prints it ({by, at, reason}), or None."""
    ev = s.scalars(select(ItemEvent).where(
        ItemEvent.drive_id == drive_id, ItemEvent.job_id == job_id,
        ItemEvent.kind == HIDDEN_AREAS_ACCEPTED).order_by(ItemEvent.id.desc())).first()
    if ev is None:
        return None
    return {"by": ev.actor, "at": iso(ev.at), "reason": ev.reason}


def _erase_job(s: Session, job_id: int) -> tuple[Job, EraseReport]:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}: list them with `imager jobs list`")
    if job.kind != "erase" or job.report is None:
        raise UsageError(f"job {job_id} is a {job.state} {job.kind} job: only a finished "
                         "erase job can have its hidden areas accepted")
    return job, EraseReport.from_dict(job.report)


def accept_hidden_areas(registry: Registry, job_id: int, *, by: str, reason: str,
                        ) -> dict[str, str]:
    """Record that the person `by` accepts, for `reason`, to certify the erasure
    of job `job_id` although its drive's hidden areas were not checked; the
    decision as the certificate will print it."""
    by, reason = who_and_why(by, reason, asking="who accepts it?",
                             printed="on the certificate")
    with registry.session() as s:
        job, report = _erase_job(s, job_id)
        status = hidden_areas_status(report)
        if status != "not-checked":
            raise UsageError(f"tâche {job_id} : rien à accepter / job {job_id}: nothing to "
                             f"accept, {NOTHING_TO_ACCEPT[status]}")
        drive = s.get(Drive, job.drive_id)
        assert drive is not None
        ev = items.note(s, drive, HIDDEN_AREAS_ACCEPTED, actor=by, reason=reason,
                        data={"medium": report.plan.medium, "identity": report.device.key},
                        job_id=job_id)
        return {"by": by, "at": iso(ev.at), "reason": reason}
