"""The station's images as the API serves them: the catalogue's files by part.

Parts: `image` (the compressed raw image), `bmap`, `manifest` and `signed`
(the signed manifest, when the station could sign it). Only these files are
served: names come from the catalogue, never from the request path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imager.errors import NotFound
from imager.settings import Settings

PARTS = ("image", "bmap", "manifest", "signed")


def catalogue(settings: Settings) -> Any:
    from imager.imaging.catalogue import Catalogue
    return Catalogue.of(settings)


def describe(entry: Any) -> dict[str, Any]:
    """What an agent needs to pick and fetch an image."""
    m = entry.manifest
    base = f"/api/v1/images/{entry.name}/{entry.version}"
    return {"name": entry.name, "version": entry.version, "profile": m.get("profile"),
            "image_size": m["image_size"], "mapped_bytes": m["mapped_bytes"],
            "built": m.get("built"), "sha256": m["image"]["sha256"],
            "compressed_size": m["image"]["size"], "signed": entry.signed,
            "urls": {part: f"{base}/{part}" for part in PARTS
                     if part != "signed" or entry.signed}}


def file_of(settings: Settings, name: str, version: str, part: str) -> Path:
    """The file behind /api/v1/images/NAME/VERSION/PART (NotFound names the fix)."""
    if part not in PARTS:
        raise NotFound(f"image part {part!r}: use one of {', '.join(PARTS)}")
    entry = catalogue(settings).get(name, version)
    path: Path = {"image": entry.image, "bmap": entry.bmap_path, "manifest": entry.files.manifest,
            "signed": entry.files.signed}[part]
    if not path.exists():
        raise NotFound(f"image {name} {version} has no {part} file ({path.name}): "
                       "check it with `imager image verify`")
    return path
