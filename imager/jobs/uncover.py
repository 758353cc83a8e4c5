"""Before an erase: remove the HPA/DCO the plan found, once, and remember it.

The change (state before and after, commands run) is an event of the job, so
a resumed job neither runs the removal again nor loses it from its report;
the drive's recorded size becomes the uncovered one, so the identity check
of a resumed job expects the new size.
"""

from __future__ import annotations

import dataclasses

from imager.erase.hidden import remove_hidden
from imager.host.run import Runner, run
from imager.inventory import lsblk
from imager.jobs.store import JobStore
from imager.model import DriveIdentity, HiddenAreaChange
from imager.protocol.jobs import JobView
from imager.settings import Settings

EVENT = "hidden_areas"


def _recorded(store: JobStore, job_id: int) -> HiddenAreaChange | None:
    for e in reversed(store.get(job_id, with_events=True).events):
        if e.kind == EVENT and e.data:
            return HiddenAreaChange.from_dict(e.data)
    return None


def uncover(store: JobStore, job: JobView, path: str, ident: DriveIdentity, settings: Settings,
            *, runner: Runner = run) -> tuple[DriveIdentity, HiddenAreaChange | None]:
    """Remove what the plan saw hidden (once per job); the drive as it is now."""
    before = job.plan.hidden
    if before is None:
        return ident, None
    done = _recorded(store, job.id)
    if done is not None:
        return ident, done
    change = remove_hidden(path, before, runner=runner)
    message = ("nothing hidden" if not change.actions else
               f"uncovered {before.hpa_hidden} HPA and {before.dco_hidden} DCO sectors")
    store.event(job.id, EVENT, message, dataclasses.asdict(change))
    if not change.actions:
        return ident, change
    now = lsblk.probe(path, settings)
    store.record_drive(now)
    return now, change
