"""An image job on an agent: deploy from the station's image store, read back,
customise, report.

The station checked the drive when it made the job (a verified erasure on
record); the agent streams the image over HTTP (a dropped connection resumes
with a range request), writes and reads it back on the drive it holds, then
reports the deployment as an event. The station records it and moves the
drive. A drive pulled out fails the job ("drive removed"); an agent stopped
mid-way leaves it interrupted, to be written again from the start.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from imager.agent.client import StationClient
from imager.agent.remote import RemoteJobStore
from imager.errors import ImagerError
from imager.imaging import bmap as bmaplib
from imager.imaging.after import after_steps
from imager.imaging.deploy import deploy, failed_result
from imager.imaging.source import open_source
from imager.model import ImagePlan
from imager.settings import Settings

log = logging.getLogger(__name__)


def run_image(store: RemoteJobStore, path: str, settings: Settings, client: StationClient, *,
              stop: threading.Event,
              on_progress: Callable[[str, int, int], None] | None = None) -> None:
    """Run the image job of `store` onto `path`; every step becomes an event."""
    view = store.job
    plan: ImagePlan = view.plan
    store.move(view.id, "running", reason=f"{plan.method} onto {path}")
    headers = {"Authorization": f"Bearer {client.token}"}
    try:
        bmap = bmaplib.parse(client.fetch(plan.urls["bmap"]), source=plan.urls["bmap"])
        result = deploy(open_source(client.url + plan.urls["image"], headers=headers), bmap,
                        [path], settings=settings, verify=plan.verify, sample=plan.sample,
                        expected_sha256=plan.sha256 or None, progress=on_progress,
                        stop=stop)
        target = result.targets[0]
    except ImagerError as exc:
        target = failed_result(path, verify=plan.verify, error=str(exc))
    removed = getattr(stop, "removed", None)     # the agent's JobStop says why it stopped
    if removed:
        target = dataclasses.replace(target, ok=False, error=f"drive removed ({removed})")
    elif stop.is_set() and not target.ok:
        store.move(view.id, "interrupted", reason="the agent stopped during the deployment; "
                                                  "it is written again from the start")
        return
    after = after_steps(path, settings=settings, hostname=plan.hostname,
                        grow=plan.grow) if target.ok else None
    store.event(view.id, "deployment", f"{plan.method}: " + (
        "written and verified" if target.ok else str(target.error)),
        {"result": dataclasses.asdict(target), "after": after})
    ok = target.ok and not (after or {}).get("error")
    why = target.error or (after or {}).get("error")
    store.move(view.id, "imaged" if ok else "failed",
               reason="" if ok else f"deployment failed: {why}")
    log.info("job %s: %s onto %s: %s", view.id, plan.method, path, "ok" if ok else why)
