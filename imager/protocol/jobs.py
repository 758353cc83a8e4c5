"""A job as the agent receives it: a snapshot detached from the registry.

The station sends jobs as JSON (`view_to_dict`), the agent reads them back
(`view_from_dict`); both sides hold the same `JobView`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imager.model import ErasePlan, ImagePlan


@dataclass(frozen=True)
class EventView:
    seq: int
    at: datetime
    kind: str
    message: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job, detached from the database session."""

    id: int
    kind: str
    state: str
    device_path: str
    drive_identity: str
    drive_size: int
    plan: Any                  # ErasePlan, or ImagePlan for an image job
    checkpoint: dict[str, Any] | None
    report: dict[str, Any] | None
    reason: str | None
    donation: str | None
    technician: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    events: tuple[EventView, ...] = ()


def plan_of(kind: str, data: dict[str, Any]) -> ErasePlan | ImagePlan:
    """A job's plan from its JSON: an erase plan, or what an image job writes."""
    return ImagePlan.from_dict(data) if kind == "image" else ErasePlan.from_dict(data)


def view_to_dict(job: JobView) -> dict[str, Any]:
    """A job as JSON (what an agent receives)."""
    out = dataclasses.asdict(job)
    out["plan"] = job.plan.to_dict()
    for key in ("created_at", "started_at", "ended_at"):
        out[key] = out[key].isoformat() if out[key] else None
    out["events"] = []
    return out


def view_from_dict(data: dict[str, Any]) -> JobView:
    """The job an agent received."""
    fields = {f.name for f in dataclasses.fields(JobView)} - {"events"}
    values = {k: data[k] for k in fields}
    values["plan"] = plan_of(data["kind"], data["plan"])
    for key in ("created_at", "started_at", "ended_at"):
        values[key] = datetime.fromisoformat(data[key]) if data[key] else None
    return JobView(**values)
