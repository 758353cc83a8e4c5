"""The board's "imager sticks" panel: what the dock agents said of the imager sticks
plugged into the station lately (imager.agent.stick_sync: the reports a stick brings
back are sent by themselves). A stick has no drive card: this is where the bench
sees that its reports went, or why they wait."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from imager.station.service import Station
from imager.store.db import utcnow
from imager.store.models import Agent

SHOWN_FOR = timedelta(hours=2)
# Outcomes that need a person (the others say all went well, or nothing to do).
ATTENTION = frozenset({"waiting", "unreachable", "failed", "partial", "read_only"})


def sticks(station: Station) -> list[dict[str, Any]]:
    """The sticks the dock agents saw in the last two hours, newest first."""
    since = utcnow() - SHOWN_FOR
    found = []
    with station.registry.session(readonly=True) as s:
        for agent in s.scalars(select(Agent).where(Agent.kind == "dock")):
            said = (agent.info or {}).get("stick")
            if not isinstance(said, dict):
                continue
            try:
                at = datetime.fromisoformat(str(said.get("at")))
            except ValueError:
                continue
            if at.tzinfo is not None and at >= since:
                found.append({"at": at, "dock": agent.name,
                              "text": {"fr": said.get("text") or "",
                                       "en": said.get("text_en") or said.get("text") or ""},
                              "attention": said.get("outcome") in ATTENTION})
    return sorted(found, key=lambda item: item["at"], reverse=True)
