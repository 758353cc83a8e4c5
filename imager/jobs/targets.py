"""The drives a command will write: each guarded, probed and given once."""

from __future__ import annotations

from collections.abc import Sequence

from imager.erase import guard
from imager.errors import UsageError
from imager.inventory.capabilities import DriveCapabilities
from imager.inventory.probe import probe
from imager.settings import Settings


def probe_targets(devices: Sequence[str], settings: Settings, *,
                  allow_files: bool = False) -> list[DriveCapabilities]:
    """Refuse (before anything is written) a device the safety guard refuses, or
    a drive named twice, by path or under two paths; then each one's probe."""
    if len(set(devices)) != len(devices):
        raise UsageError("the same device is given twice")
    for dev in devices:
        guard.check(dev, settings, allow_files=allow_files)
    caps = [probe(d, settings) for d in devices]
    seen: dict[str, str] = {}
    for ident in (c.identity for c in caps):
        if ident.key in seen:
            raise UsageError(f"{ident.path} and {seen[ident.key]} are the same drive "
                             f"({ident.key}): give it once")
        seen[ident.key] = ident.path
    return caps
