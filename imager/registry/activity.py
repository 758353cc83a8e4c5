"""What one person did, newest first: their decisions on drives and computers
(item events in their name), the jobs they started, and their actions on the
web pages (accounts, levels, agents)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.store.models import ItemEvent, Job, User, WebAction


def of_person(s: Session, user: User, *, limit: int = 300) -> list[dict[str, Any]]:
    """Up to `limit` things `user` did: {at, what, item ("drive"|"machine"|"job"|None),
    item_id, detail, and for a move: from, to}, newest first."""
    done: list[dict[str, Any]] = [{"at": a.at, "what": a.action, "item": None, "item_id": None,
             "detail": a.target}
            for a in s.scalars(select(WebAction).where(
                WebAction.actor == f"{user.name} ({user.login})")
                .order_by(WebAction.id.desc()).limit(limit))]
    done += [{"at": e.at, "what": e.kind, "from": e.from_state, "to": e.to_state,
              "item": "drive" if e.drive_id else "machine",
              "item_id": e.drive_id or e.machine_id, "detail": e.reason}
             for e in s.scalars(select(ItemEvent).where(ItemEvent.actor == user.name)
                                .order_by(ItemEvent.id.desc()).limit(limit))]
    if user.technician_id is not None:
        done += [{"at": j.created_at, "what": f"{j.kind} ({j.state})", "item": "job",
                  "item_id": j.id, "detail": j.reason or ""}
                 for j in s.scalars(select(Job).where(Job.technician_id == user.technician_id)
                                    .order_by(Job.id.desc()).limit(limit))]
    done.sort(key=lambda row: row["at"], reverse=True)
    return done[:limit]
