"""An erasure with no network: planned from the station's signed policy (the
offline kit on the stick), run by the same runner as a station's job, and
reported as one `offline_erasure` event for `imager agent sync`.

The job lives on the stick only: its steps are written as events into a
folder of their own (spool/offline/…), a trail for a person, never sent; the
station files the erasure as a job of its own at sync, once it has planned the
drive again from the evidence and found the same plan.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imager.agent.outbox import Outbox
from imager.agent.remote import RemoteJobStore
from imager.erase.offline_policy import SignedPolicy, for_offline
from imager.erase.plan import plan_for
from imager.inventory import evidence
from imager.jobs.erase import ProgressCallback, run_erase
from imager.model import DriveIdentity
from imager.protocol.jobs import JobView
from imager.settings import Settings

OFFLINE_JOB = 1            # the job's number on the stick (the station gives its own)


def erase(settings: Settings, kit: SignedPolicy, proof: evidence.DriveEvidence,
          trail: Path, stop: threading.Event, *,
          on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Erase the drive `proof` shows with the kit's policy; the `offline_erasure`
    event's data (whatever the outcome: a failure is reported too). `on_progress`
    as the erase runner's (the live system's screen)."""
    caps = evidence.read(proof, settings)
    ident = caps.identity
    plan = for_offline(plan_for(caps, kit.policy))
    view = JobView(id=OFFLINE_JOB, kind="erase", state="queued", device_path=ident.path,
                   drive_identity=ident.key, drive_size=ident.size, plan=plan,
                   checkpoint=None, report=None, reason=None, donation=None, technician=None,
                   created_at=datetime.now(UTC), started_at=None, ended_at=None)
    store = RemoteJobStore(Outbox(trail_of(trail, ident)), view)
    report = run_erase(store, OFFLINE_JOB, settings, stop=stop, device_path=ident.path,
                       on_progress=on_progress)
    return {"evidence": proof.to_dict(), "policy": kit.signed, "report": report.to_dict()}


def trail_of(folder: Path, ident: DriveIdentity) -> Path:
    """Where one offline erasure's steps are kept: per drive and start time."""
    tag = hashlib.sha256(ident.key.encode()).hexdigest()[:12]
    return folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{tag}"
