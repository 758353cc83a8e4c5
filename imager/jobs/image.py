"""Deploy an image of the catalogue onto drives, with the registry's checks.

The order matters: every target is checked (safety guard, identity, a
verified erasure on record, size) and moved to `imaging` in one transaction
before a byte is written: one refused drive refuses the whole deployment.
Then one decompression stream feeds every target (imager.imaging.deploy),
each is read back, customised when it passed (imager.imaging.after: grown
partition, hostname, fresh machine-id and SSH keys at first boot), and each
deployment is recorded with what it proved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from imager.errors import ImagerError, UsageError
from imager.jobs.targets import probe_targets
from imager.model import DriveIdentity
from imager.registry import deployments
from imager.registry.deployments import ImageInfo
from imager.settings import Settings
from imager.store.db import Registry, utcnow


@dataclass
class Request:
    """What to deploy where, and how."""

    entry: Any                                   # a catalogue Entry
    devices: Sequence[str]
    actor: str
    verify: str = "full"
    sample: float = 0.05
    allow_unerased: bool = False
    allow_files: bool = False
    grow: str = "now"                            # now | first-boot | no
    hostnames: dict[str, str] = field(default_factory=dict)   # device -> hostname


@dataclass
class Outcome:
    """One target: the engine's result, the after-steps, the registry's record."""

    device: str
    drive_id: int
    deployment_id: int
    ok: bool
    result: Any                                  # deploy.TargetResult
    after: dict[str, Any] | None
    error: str | None


def image_info(entry: Any) -> ImageInfo:
    m = entry.manifest
    return ImageInfo(name=entry.name, version=entry.version, sha256=m["image"]["sha256"],
                     image_size=int(m["image_size"]), mapped_bytes=int(m["mapped_bytes"]))


def _identities(req: Request, settings: Settings) -> list[DriveIdentity]:
    idents = [c.identity for c in probe_targets(req.devices, settings,
                                                allow_files=req.allow_files)]
    size = int(req.entry.manifest["image_size"])
    for ident in idents:
        if ident.size < size:
            raise UsageError(f"{ident.path} holds {ident.size} bytes, the image "
                             f"{req.entry.name} {req.entry.version} needs {size}: use a "
                             "bigger drive")
    return idents


def run(registry: Registry, settings: Settings, req: Request, *,
        progress: Callable[[str, int, int], None] | None = None,
        stop: threading.Event | None = None) -> list[Outcome]:
    """Check, deploy, verify, customise and record; one Outcome per device."""
    from imager.imaging.deploy import DeployResult, deploy, failed_result
    from imager.imaging.source import open_source
    info = image_info(req.entry)
    idents = _identities(req, settings)
    started = utcnow()
    with registry.session() as s:     # all or nothing: one refusal, nothing written
        begun = [deployments.begin(s, i, info, actor=req.actor,
                                   allow_unerased=req.allow_unerased) for i in idents]
    try:
        result = deploy(open_source(req.entry.image), req.entry.read_bmap(),
                        list(req.devices), settings=settings, verify=req.verify,
                        sample=req.sample, allow_files=req.allow_files,
                        expected_sha256=info.sha256, progress=progress, stop=stop)
    except ImagerError as exc:   # nothing verified: every drive is image_failed, and why
        result = DeployResult(
            image_size=info.image_size, mapped_bytes=info.mapped_bytes, source_sha256=None,
            seconds=0.0, targets=[failed_result(dev, verify=req.verify, error=str(exc))
                                  for dev in req.devices])
    outcomes = []
    for dev, (drive_id, erasure), target in zip(req.devices, begun, result.targets,
                                                strict=True):
        after = _after(dev, req, settings) if target.ok else None
        with registry.session() as s:
            dep = deployments.finish(s, drive_id, info, target, actor=req.actor,
                                     started_at=started, erasure_job_id=erasure, after=after,
                                     hostname=req.hostnames.get(dev))
            outcomes.append(Outcome(dev, drive_id, dep.id, dep.ok, target, after, dep.error))
    return outcomes


def _after(device: str, req: Request, settings: Settings) -> dict[str, Any]:
    """The after-deployment steps; a failure is recorded, never raised."""
    from imager.imaging.after import after_steps
    if req.allow_files and not device.startswith("/dev/"):
        return {"steps": [], "skipped": "a file, not a drive: nothing to customise"}
    return after_steps(device, settings=settings, hostname=req.hostnames.get(device),
                       grow=req.grow)
