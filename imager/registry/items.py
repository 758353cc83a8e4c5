"""Drives and machines through their lifecycle: every move is an item event.

The one place an item changes state (`move`) checks the move against
`lifecycle.TRANSITIONS` and records who, when, why and which job. Jobs and
documents move their drive through `follow_job` and `follow_document`.

Starting an erasure is strict: a drive that may not be erased (to destroy,
destroyed, handed over...) refuses the job before anything is written. Moves
that record something that already happened (a job ended, a document was
issued) never lose that fact: when the drive's state does not allow the move,
the event is still written, as a `conflict` with both states, for a person to
look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from imager.errors import NotFound, UsageError
from imager.model import REMOVABLE_TRANSPORTS
from imager.registry.lifecycle import (
    ITEM_LABELS_FR,
    NEXT_STEPS,
    TRANSITIONS,
    check_item_move,
)
from imager.store.db import utcnow
from imager.store.models import Drive, ItemEvent, Job, Machine

Item = Drive | Machine
ItemT = TypeVar("ItemT", Drive, Machine)

# A job's state -> the state of its drive (queued changes nothing; interrupted
# leaves the drive erasing: the job is resumable).
JOB_TO_DRIVE = {"running": "erasing", "erased": "erased", "unverified": "erase_failed",
                "failed": "erase_failed", "cancelled": "inventoried"}
# A document's kind -> the state of its drive.
DOCUMENT_TO_DRIVE = {"erasure": "certified", "non-erasure": "to_destroy",
                     "destruction": "destroyed"}


def kind_of(item: Item) -> str:
    return "drive" if isinstance(item, Drive) else "machine"


def _event(s: Session, item: Item, kind: str, *, actor: str, reason: str,
           from_state: str | None, to_state: str | None, job_id: int | None,
           data: dict[str, Any] | None) -> ItemEvent:
    ev = ItemEvent(at=utcnow(), kind=kind, actor=actor, from_state=from_state,
                   to_state=to_state, reason=reason, job_id=job_id, data=data)
    if isinstance(item, Drive):
        ev.drive_id = item.id
    else:
        ev.machine_id = item.id
    s.add(ev)
    return ev


def move(s: Session, item: Item, target: str, *, actor: str, reason: str = "",
         job_id: int | None = None, data: dict[str, Any] | None = None) -> ItemEvent:
    """Move `item` to `target` (UsageError naming the legal moves if it may not)."""
    s.flush()  # a new item needs its id for the event
    check_item_move(kind_of(item), item.id, item.state, target)
    step = NEXT_STEPS.get(target)
    if step is not None:
        data = {**(data or {}), "next_step": {"fr": step[0], "en": step[1]}}
    ev = _event(s, item, "move", actor=actor, reason=reason, from_state=item.state,
                to_state=target, job_id=job_id, data=data)
    item.state = target
    if isinstance(item, Drive) and item.machine_id is not None:
        machine = s.get(Machine, item.machine_id)
        if machine is not None:
            follow_drives(s, machine, actor=actor,
                          reason=f"drive {item.id} {target}: the machine follows its drives")
    return ev


# A machine follows its drives through erasure and imaging: a failure first,
# then work under way, then the least advanced of its drives. It moves forward
# only (RANK), and waits while a drive is elsewhere (to destroy, to parts...).
_SETTLED = ("inventoried", "erased", "imaged", "certified")
_RANK = {"inventoried": 0, "erasing": 1, "erase_failed": 1, "erased": 2, "imaging": 3,
         "image_failed": 3, "imaged": 4, "certified": 5}


def machine_state(drive_states: Iterable[str]) -> str | None:
    """The state a machine's drives give it, or None when they give none (no
    drive, or one that left the flow: to destroy, to parts, not probed yet...)."""
    states = list(drive_states)
    if not states or any(st not in _RANK for st in states):
        return None
    for first in ("erase_failed", "image_failed", "erasing", "imaging"):
        if first in states:
            return first
    return min(states, key=_SETTLED.index)


def follow_drives(s: Session, machine: Machine, *, actor: str, reason: str) -> None:
    """Move `machine` where its drives put it: one legal move, or a chain of legal
    moves forward (each marked as passed through); a move backward, or with no
    legal chain, is noted as a conflict. A machine outside the flow (received,
    ready, handed over, parts...) stays."""
    if machine.state not in _RANK:
        return
    s.flush()
    target = machine_state(d.state for d in s.scalars(select(Drive).where(
        Drive.machine_id == machine.id)) if not removable_medium(d))
    if target is None or target == machine.state:
        return
    path = _path(TRANSITIONS["machine"], machine.state, target)
    ranks = [_RANK[st] for st in [machine.state, *(path or [])]]
    if path is None or (len(path) > 1 and ranks != sorted(ranks)):
        note(s, machine, "conflict", actor=actor, reason=f"{reason} (the machine is "
             f"{machine.state}: it cannot become {target})", data={"wanted": target})
        return
    for step in path:
        move(s, machine, step, actor=actor, reason=reason,
             data=None if step == target else {"passed_through": True, "towards": target})


def removable_medium(drive: Drive) -> bool:
    """A USB stick or drive, an SD card, a medium the kernel calls removable (as its
    agent's evidence said): in a laptop, something left there, not part of it."""
    seen = (drive.plan or {}).get("identity") or {}
    return bool(seen.get("removable")) or (
        drive.transport or seen.get("transport")) in REMOVABLE_TRANSPORTS


def _path(table: dict[str, frozenset[str]], start: str, goal: str) -> list[str] | None:
    """The shortest chain of legal moves from `start` to `goal` (breadth first)."""
    before: dict[str, str] = {start: start}
    todo = [start]
    while todo:
        state = todo.pop(0)
        if state == goal:
            chain = []
            while state != start:
                chain.append(state)
                state = before[state]
            return chain[::-1]
        for nxt in sorted(table.get(state, ())):
            if nxt not in before:
                before[nxt] = state
                todo.append(nxt)
    return None


def note(s: Session, item: Item, kind: str, *, actor: str, reason: str = "",
         job_id: int | None = None, data: dict[str, Any] | None = None) -> ItemEvent:
    """An event that keeps the state (plugged in, unplugged, interrupted...)."""
    s.flush()
    return _event(s, item, kind, actor=actor, reason=reason, from_state=item.state,
                  to_state=item.state, job_id=job_id, data=data)


def record_move(s: Session, item: Item, target: str, *, actor: str, reason: str = "",
                job_id: int | None = None, data: dict[str, Any] | None = None) -> None:
    """`move`, for a fact that already happened: an illegal move is kept as a conflict."""
    if item.state == target:
        note(s, item, "confirmed", actor=actor, reason=reason, job_id=job_id, data=data)
        return
    try:
        move(s, item, target, actor=actor, reason=reason, job_id=job_id, data=data)
    except UsageError as exc:
        note(s, item, "conflict", actor=actor, reason=f"{reason} ({exc})".strip(),
             job_id=job_id, data={**(data or {}), "wanted": target})


def open_jobs(s: Session, drives: Iterable[Drive]) -> list[Job]:
    """The jobs of `drives` still to run or running (queued, running, interrupted)."""
    ids = [d.id for d in drives]
    return list(s.scalars(select(Job).where(Job.drive_id.in_(ids), Job.state.in_(
        ("queued", "running", "interrupted"))))) if ids else []


def check_can_erase(drive: Drive) -> None:
    """Refuse an erase job for a drive whose state forbids erasing it."""
    if drive.state in ("erasing",):
        return  # a resumed or second attempt while the first is on record
    if "erasing" not in TRANSITIONS["drive"].get(drive.state, frozenset()):
        raise UsageError(
            f"le disque {drive.id} est « {ITEM_LABELS_FR.get(drive.state, drive.state)} » : "
            f"il ne peut pas être effacé / drive {drive.id} ({drive.identity}) is "
            f"{drive.state}: it may not be erased")


def inventoried(s: Session, drive: Drive, *, actor: str, reason: str) -> None:
    """A drive just identified by a probe: `received` (typed in at intake) -> inventoried."""
    if drive.state == "received":
        move(s, drive, "inventoried", actor=actor, reason=reason)


def actor_of(job: Job) -> str:
    if job.technician is not None:
        return job.technician.name
    return f"agent {job.agent_id}" if job.agent_id else "imager"


def follow_job(s: Session, job: Job, target: str, reason: str) -> None:
    """Move the job's drive as the job moves (strict when it starts)."""
    if job.kind == "image":
        _follow_image_job(s, job, target, reason)
        return
    drive = job.drive
    state = JOB_TO_DRIVE.get(target)
    actor = actor_of(job)
    if target == "interrupted":
        note(s, drive, "interrupted", actor=actor, reason=reason, job_id=job.id)
    elif state is None:
        return
    elif target == "running":
        if drive.state != "erasing":
            check_can_erase(drive)
            move(s, drive, "erasing", actor=actor, reason=f"job {job.id} started",
                 job_id=job.id)
    else:
        record_move(s, drive, state, actor=actor, reason=reason or f"job {job.id} {target}",
                    job_id=job.id)


def _follow_image_job(s: Session, job: Job, target: str, reason: str) -> None:
    """An image job moved its drive to imaging when it was created, and its
    deployment record moves it on (imaged, image_failed). A job that ends
    without one leaves the drive image_failed (failed), or erased (cancelled)."""
    drive, actor = job.drive, actor_of(job)
    if target == "interrupted":
        note(s, drive, "interrupted", actor=actor, reason=reason, job_id=job.id)
    elif target in ("failed", "cancelled") and drive.state == "imaging":
        record_move(s, drive, "image_failed" if target == "failed" else "erased", actor=actor,
                    reason=reason or f"job {job.id} {target}", job_id=job.id)


def follow_document(s: Session, kind: str, doc_id: str, drive_id: int | None, *,
                    actor: str) -> None:
    """Move a drive as a document about it is issued (same transaction)."""
    target = DOCUMENT_TO_DRIVE.get(kind)
    if target is None or drive_id is None:
        return
    drive = s.get(Drive, drive_id)
    if drive is None:
        return
    if target == "destroyed" and drive.state not in ("to_destroy", "destroyed") and (
            "to_destroy" in TRANSITIONS["drive"].get(drive.state, frozenset())):
        move(s, drive, "to_destroy", actor=actor, reason=f"document {doc_id}")
    record_move(s, drive, target, actor=actor, reason=f"document {doc_id}",
                    data={"document": doc_id})


def history(s: Session, item: Item) -> list[ItemEvent]:
    column = ItemEvent.drive_id if isinstance(item, Drive) else ItemEvent.machine_id
    return list(s.scalars(select(ItemEvent).where(column == item.id).order_by(ItemEvent.id)))


def find_item(s: Session, model: type[ItemT], ref: str, columns: tuple[Any, ...], *,
              missing: str) -> ItemT:
    """The one drive or machine (`model`) whose number is `ref`, else whose
    `columns` equal it; NotFound says `missing`, several say to use the number."""
    ref = ref.strip()
    if ref.lstrip("#").isdigit() and (item := s.get(model, int(ref.lstrip("#")))):
        return item
    found = list(s.scalars(select(model).where(or_(*(c == ref for c in columns)))))
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(missing)
    kind = "drive" if model is Drive else "machine"
    raise UsageError(f"{ref!r} names {len(found)} {kind}s: give the {kind} number instead")


def find_drive(s: Session, ref: str) -> Drive:
    """A drive by registry number, identity key, serial or WWN."""
    return find_item(s, Drive, ref, (Drive.identity, Drive.serial, Drive.wwn),
                     missing=f"aucun disque {ref.strip()!r} / no drive {ref.strip()!r}: give "
                             "its number, serial or WWN as listed by `imager drives list`")


def next_step(state: str) -> dict[str, str] | None:
    step = NEXT_STEPS.get(state)
    return {"fr": step[0], "en": step[1]} if step else None


def event_summary(ev: ItemEvent) -> dict[str, Any]:
    return {"id": ev.id, "at": ev.at.isoformat(), "kind": ev.kind, "actor": ev.actor,
            "from": ev.from_state, "to": ev.to_state, "reason": ev.reason,
            "job": ev.job_id, "data": ev.data}


def drive_summary(s: Session, drive: Drive, *, with_history: bool = False) -> dict[str, Any]:
    """What a technician (or the API) is told of a drive."""
    last_job = s.scalar(select(Job).where(Job.drive_id == drive.id).order_by(Job.id.desc()))
    out: dict[str, Any] = {
        "id": drive.id, "identity": drive.identity, "model": drive.model,
        "serial": drive.serial, "wwn": drive.wwn, "size": drive.size_bytes,
        "transport": drive.transport, "state": drive.state,
        "state_fr": ITEM_LABELS_FR.get(drive.state, drive.state), "present": drive.present,
        "path": drive.last_path if drive.present else None, "agent": drive.agent_id,
        "donation": drive.donation.reference if drive.donation else None,
        "machine": drive.machine_id, "next_step": next_step(drive.state),
        "planned": bool((drive.plan or {}).get("plan")),   # the station has a plan for it
        "job": {"id": last_job.id, "state": last_job.state, "reason": last_job.reason}
        if last_job else None,
    }
    if with_history:
        out["history"] = [event_summary(e) for e in history(s, drive)]
    return out
