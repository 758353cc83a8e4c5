"""The live system booted from a USB stick (`imager.boot=usb`): the stick's data
partition, the station's reachability, and what the offline agent did.

    find_data(seconds) -> str | None        the IMAGER-DATA partition (the stick's USB
                                            enumeration may end after udev settled)
    mount_data(part, mnt) -> bool           mounted read-write (ext4: the kernel asks
                                            for crc32c, in the live system's modules)
    release(mnt)                            synced and unmounted: the stick may be pulled
    reachable(url, seconds) -> bool         a TCP connection to the station opens
    spooled(spool) -> set[str]              the spool's events now, by file name
    new_events(spool, before) -> [events]   the events written since `before`
    outcome(events, image=...) -> (stage, fields)   the final screen (pure)

The stick's ESP is never mounted nor written here; the agent never offers the
stick to be erased (its data partition is mounted, and it is on USB)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imager.boot import stages, usb_data
from imager.host.run import run

FIND_SECONDS = 60.0          # a USB stick's disk may appear seconds after udev settled
STATION_SECONDS = 20.0       # a station that does not accept a connection by then: offline
KIT_IMAGES = "systeme"       # the kit's image folder (imager.agent.offline_image.KIT_IMAGES)


def find_data(seconds: float = FIND_SECONDS) -> str | None:
    """The partition labelled IMAGER-DATA (the first one, if a second stick is in),
    waiting up to `seconds` for it to appear; None if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        found = run(["blkid", "--match-token", f"LABEL={usb_data.LABEL}", "--output",
                     "device"], check=False)
        parts = sorted(line.strip() for line in found.stdout.splitlines() if line.strip())
        if parts:
            return parts[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def mount_data(part: str, mnt: Path) -> str | None:
    """Mount `part` (ext4) read-write on `mnt`; None, or why it failed."""
    mnt.mkdir(parents=True, exist_ok=True)
    done = run(["mount", "-t", "ext4", "-o", "rw,noatime", part, str(mnt)], check=False,
               timeout=120)
    if done.ok:
        return None
    return (done.stderr.strip().splitlines() or [f"mount exited {done.returncode}"])[-1]


def release(mnt: Path) -> bool:
    """Sync the stick and unmount its data partition (read-only if it stays busy);
    whether it is unmounted."""
    os.sync()
    if run(["umount", str(mnt)], check=False, timeout=120).ok:
        return True
    run(["mount", "-o", "remount,ro", str(mnt)], check=False, timeout=120)
    os.sync()
    return False


def reachable(url: str, seconds: float = STATION_SECONDS) -> bool:
    """Whether the station at `url` accepts a TCP connection within `seconds`."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=3.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)


def spooled(spool: Path) -> set[str]:
    """The events waiting in the spool now (file names)."""
    return {p.name for p in usb_data.pending(spool)}


def new_events(spool: Path, before: set[str]) -> list[dict[str, Any]]:
    """The events the spool holds that were not in `before`, in order (an event
    that cannot be read is left out: the station's sync sets it aside)."""
    events = []
    for path in usb_data.pending(spool):
        if path.name in before:
            continue
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def kit_has_image(kit: Path) -> bool:
    """Whether the offline kit carries a system to install (`imager boot usb --image`)."""
    folder = kit / KIT_IMAGES
    return folder.is_dir() and any(folder.iterdir())


def outcome(events: Iterable[Mapping[str, Any]], *, image: bool
            ) -> tuple[str, dict[str, str]]:
    """The final stage of an offline run from its spooled events: OFFLINE_DONE when
    every drive offered was erased (and, with a kit `image`, that system installed on
    each), else FAILED with NO_DRIVE, ERASE_FAILED or IMAGE_FAILED."""
    erased = failed = installed = 0
    for event in events:
        data = event.get("data") or {}
        if event.get("kind") == "offline_erasure":
            if (data.get("report") or {}).get("outcome") == "erased":
                erased += 1
            else:
                failed += 1
        elif event.get("kind") == "offline_deployment" and (data.get("result") or {}).get(
                "ok") and not (data.get("after") or {}).get("error"):
            installed += 1          # written, read back and customised, as the station counts
    counts = {"erased": str(erased), "failed": str(failed), "installed": str(installed)}
    if not erased and not failed:
        return stages.FAILED, {"reason": stages.NO_DRIVE}
    if failed:
        return stages.FAILED, {"reason": stages.ERASE_FAILED, **counts}
    if image and installed < erased:
        return stages.FAILED, {"reason": stages.IMAGE_FAILED, **counts}
    return stages.OFFLINE_DONE, {"erased": str(erased), "installed": str(installed)}
