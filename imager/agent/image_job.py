"""An image job on an agent: deploy from the station's image store, read back,
customise, report.

The station checked the drive when it made the job (a verified erasure on
record); the agent streams the image over HTTP (a dropped connection resumes
with a range request), writes and reads it back on the drive it holds, then
reports the deployment as an event. The station records it and moves the
drive. A drive pulled out fails the job ("drive removed"); an agent stopped
mid-way leaves it interrupted, to be written again from the start.

The jobs of a batch (several drives of one agent asked together) are written
from one stream (run_images): one download, one decompression, each drive
written, read back and customised on its own; a drive pulled out fails alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence

from imager.agent.client import StationClient
from imager.agent.remote import JobOnDrive, JobStop, RemoteJobStore
from imager.errors import ImagerError, RefusedDevice
from imager.imaging import bmap as bmaplib
from imager.imaging.after import after_steps
from imager.imaging.deploy import TargetResult, deploy, failed_result
from imager.model import ImagePlan
from imager.settings import Settings

log = logging.getLogger(__name__)


def run_image(store: RemoteJobStore, path: str, settings: Settings, client: StationClient, *,
              stop: JobStop,
              on_progress: Callable[[str, int, int], None] | None = None) -> None:
    """Run the image job of `store` onto `path`; every step becomes an event.
    Its stop (the drive pulled out, the agent stopping) ends the deployment."""
    run_images([JobOnDrive(store, path, stop)], settings, client, stop=stop,
               on_progress=on_progress)


def run_images(targets: Sequence[JobOnDrive], settings: Settings, client: StationClient, *,
               stop: threading.Event,
               on_progress: Callable[[str, int, int], None] | None = None) -> None:
    """Run image jobs of the same image (a batch) from one stream onto their
    drives. `stop` ends them all; a drive pulled out fails alone (its writes fail)."""
    plan: ImagePlan = targets[0].store.job.plan
    for t in targets:
        t.store.move(t.store.job.id, "running", reason=f"{plan.method} onto {t.path}" + (
            f" (with {len(targets) - 1} more drives, one stream)" if len(targets) > 1 else ""))
    results = _deploy(targets, settings, client, stop=stop, on_progress=on_progress)
    for target in targets:
        try:
            _report(target, results[target.path], settings, stopped=stop.is_set())
        except Exception as exc:               # one drive's failure must not strand the rest
            log.exception("job %s: reporting failed", target.store.job.id)
            try:
                target.store.move(target.store.job.id, "failed",
                                  reason=f"deployment failed: reporting it failed ({exc!r})")
            except ImagerError:
                pass                           # it had ended already


def _deploy(targets: Sequence[JobOnDrive], settings: Settings, client: StationClient, *,
            stop: threading.Event,
            on_progress: Callable[[str, int, int], None] | None) -> dict[str, TargetResult]:
    """Each target's result, by path. A drive the engine refuses (it checks them all
    before writing any) fails alone: the others are deployed without it."""
    plan: ImagePlan = targets[0].store.job.plan
    results: dict[str, TargetResult] = {}
    paths = [t.path for t in targets]
    try:
        bmap = bmaplib.parse(client.fetch(plan.urls["bmap"]), source=plan.urls["bmap"])
        while paths:
            try:
                done = deploy(client.source(plan.urls["image"]), bmap, paths,
                              settings=settings, verify=plan.verify,
                              sample=plan.sample, expected_sha256=plan.sha256 or None,
                              progress=on_progress, stop=stop)
                results.update((r.path, r) for r in done.targets)
                break
            except RefusedDevice as exc:
                if exc.device not in paths or len(paths) == 1:
                    raise
                results[exc.device] = failed_result(exc.device, verify=plan.verify,
                                                    error=str(exc))
                paths.remove(exc.device)
    except ImagerError as exc:
        results.update((p, failed_result(p, verify=plan.verify, error=str(exc)))
                       for p in paths)
    return results


def _report(target: JobOnDrive, result: TargetResult, settings: Settings, *,
            stopped: bool) -> None:
    """Customise a written drive, then report its deployment and move its job."""
    store, view = target.store, target.store.job
    plan: ImagePlan = view.plan
    if target.stop.removed:
        result = dataclasses.replace(result, ok=False,
                                     error=f"drive removed ({target.stop.removed})")
    elif stopped and not result.ok:
        store.move(view.id, "interrupted", reason="the agent stopped during the deployment; "
                                                  "it is written again from the start")
        return
    after = after_steps(target.path, settings=settings, hostname=plan.hostname,
                        grow=plan.grow) if result.ok else None
    store.event(view.id, "deployment", f"{plan.method}: " + (
        "written and verified" if result.ok else str(result.error)),
        {"result": dataclasses.asdict(result), "after": after})
    ok = result.ok and not (after or {}).get("error")
    why = result.error or (after or {}).get("error")
    store.move(view.id, "imaged" if ok else "failed",
               reason="" if ok else f"deployment failed: {why}")
    log.info("job %s: %s onto %s: %s", view.id, plan.method, target.path,
             "ok" if ok else why)
