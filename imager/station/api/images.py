"""The image store: agents deploy from it, operators list it.

`GET /api/v1/images`, and each image's files with range requests (a dropped
download resumes). Agent or operator token.
"""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from imager.station import image_store
from imager.station.api.auth import reader_check
from imager.station.service import Station


def router(station: Station) -> APIRouter:
    api = APIRouter(prefix="/api/v1/images", dependencies=[Depends(reader_check(station))])

    @api.get("")
    def images() -> list[dict[str, Any]]:
        return [image_store.describe(e) for e in image_store.catalogue(station.settings).list()]

    @api.get("/{name}/{version}/{part}")
    def image_file(name: str, version: str, part: str) -> FileResponse:
        path = image_store.file_of(station.settings, name, version, part)
        return FileResponse(path, filename=path.name,
                            media_type="application/octet-stream")

    return api
