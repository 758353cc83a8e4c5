"""A system installed with no network: the offline kit on the stick may carry one
image of the station's catalogue (its signed manifest, compressed image and bmap);
once a laptop's drive is erased and verified offline, the agent writes it, reads
it back in full, customises it and spools one `offline_deployment` event.

The station records the deployment at sync only after the drive's offline erasure
was accepted, and only for an image its catalogue holds with the same sha256: it
knows exactly what was written. The image's signature is checked on the laptop
against the station certificate the kit carries, before anything is written.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imager.certify.keys import load_cert
from imager.certify.signing import Trust
from imager.erase.offline_policy import KIT_CERT
from imager.errors import ImagerError, UsageError
from imager.imaging.after import after_steps
from imager.imaging.catalogue import Catalogue, Entry
from imager.imaging.deploy import deploy, failed_result
from imager.imaging.source import open_source
from imager.settings import Settings

KIT_IMAGES = "systeme"           # the kit's folder holding one catalogue image


def write_image(kit: Path, entry: Entry) -> Entry:
    """Copy one catalogue image into the kit (a catalogue of its own, one image)."""
    folder = Catalogue(kit / KIT_IMAGES)
    for old in folder.list():
        folder.remove(old.name, old.version)
    return folder.add(entry.files.manifest)


def kit_image(kit: Path) -> Entry | None:
    """The kit's image, its signature checked against the kit's station certificate
    and its files against the manifest; None when the kit carries none."""
    folder = kit / KIT_IMAGES
    if not folder.is_dir():
        return None
    images = Catalogue(folder).list()
    if not images:
        return None
    if len(images) > 1:
        raise UsageError(f"{folder} holds {len(images)} images: the offline kit carries one "
                         "(make the kit again with `imager agent kit DIR --image NAME`)")
    entry = images[0]
    report = Catalogue(folder).verify(entry, trust=Trust(load_cert(kit / KIT_CERT)),
                                      require_signature=True)
    if not report.ok:
        problems = "; ".join(text for status, text in report.lines if status == "fail")
        raise UsageError(f"système du kit refusé / the kit's image {entry.name} "
                         f"{entry.version} is refused: {problems}")
    return entry


def install(settings: Settings, entry: Entry, path: str, identity: str,
            stop: threading.Event, *,
            progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Write `entry` onto the drive at `path` (erased and verified just before), read
    it back in full and customise it: the `offline_deployment` event's data,
    whatever the outcome (a failure is reported too). `progress(phase, done, total)`
    as the deployment's (the live system's screen)."""
    sha256 = str(entry.manifest["image"]["sha256"])
    try:
        done = deploy(open_source(entry.image), entry.read_bmap(), [path], settings=settings,
                      verify="full", expected_sha256=sha256, stop=stop, progress=progress)
        (result,) = done.targets
    except ImagerError as exc:
        result = failed_result(path, verify="full", error=str(exc))
    after = after_steps(path, settings=settings, hostname=None, grow="now") \
        if result.ok else None
    return {"identity": identity,
            "image": {"name": entry.name, "version": entry.version, "sha256": sha256},
            "result": dataclasses.asdict(result), "after": after}
