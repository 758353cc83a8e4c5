"""What identifies a build: the spec as canonical data, its hash, the time every
file of the image carries (SOURCE_DATE_EPOCH) and the identifiers derived from it
(filesystem UUIDs, GPT GUIDs), so that the same spec gives the same image."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

from imager.errors import UsageError
from imager.profile.buildspec import BuildSpec

_VERSION_DATE = re.compile(r"(\d{4})\.(\d{1,2})(?:\.\d+)?")


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_data(spec: BuildSpec) -> dict[str, Any]:
    """The spec as JSON-able data; files and local .deb by their sha256."""
    return {
        "name": spec.name, "version": spec.version, "suite": spec.suite,
        "mirror": spec.mirror, "security_mirror": spec.security_mirror,
        "components": list(spec.components), "packages": list(spec.packages),
        "locale": spec.locale, "keyboard": [spec.keyboard_layout, spec.keyboard_variant],
        "timezone": spec.timezone, "hostname": spec.hostname, "disk_gib": spec.disk_gib,
        "local_debs": [file_digest(p.read_bytes()) for p in spec.local_debs],
        "released": spec.released,
        "files": [[f.path, f.mode, file_digest(f.content)] for f in spec.files],
        "enable_units": list(spec.enable_units),
    }


def spec_sha256(spec: BuildSpec) -> str:
    blob = json.dumps(spec_data(spec), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def release_day(spec: BuildSpec) -> date:
    """The spec's release day: `released`, else from a YYYY.MM[.N] version."""
    if spec.released:
        try:
            return date.fromisoformat(spec.released)
        except ValueError:
            raise UsageError(f"date de version invalide / released {spec.released!r} of the "
                             f"profile {spec.name} is not an ISO date: write it as "
                             "2026-12-01") from None
    match = _VERSION_DATE.fullmatch(spec.version)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise UsageError(f"date de version inconnue / the profile {spec.name} version "
                         f"{spec.version!r} says no date: give `released` (ISO date, e.g. "
                         "2026-12-01) or a version such as 2026.12.1")
    return date(int(match[1]), int(match[2]), 1)


def source_date_epoch(spec: BuildSpec) -> int:
    """SOURCE_DATE_EPOCH of the build: midnight UTC of the release day."""
    day = release_day(spec)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def derived_uuid(spec: BuildSpec, purpose: str) -> uuid.UUID:
    """A stable UUID for `purpose` ("root", "disk", "esp-part"...) of this spec."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"imager-os:{spec_sha256(spec)}:{purpose}")


def fat_volume_id(spec: BuildSpec) -> str:
    """The EFI partition's FAT volume id (8 hex digits), stable for this spec."""
    return derived_uuid(spec, "esp-fat").hex[:8].upper()
