"""Collects the extents a drive failed on, merged, and tells when to give up."""

from __future__ import annotations

from collections.abc import Callable

from imager.errors import DeviceGone
from imager.model import Extent

MAX_EXTENTS = 4096
GONE_AFTER_DEAD_CHUNKS = 4


def append_merged(extents: list[Extent], new: Extent) -> None:
    """Append `new`, merging it into the last extent when they touch."""
    last = extents[-1] if extents else None
    if last and last.offset + last.length == new.offset and last.error == new.error:
        extents[-1] = Extent(last.offset, last.length + new.length, new.error)
    else:
        extents.append(new)


class ErrorLog:
    def __init__(self, path: str, *, prior: tuple[Extent, ...] = (),
                 on_add: Callable[[Extent], None] | None = None) -> None:
        self.path = path
        self.extents: list[Extent] = list(prior)
        self.dead_chunks = 0
        self.on_add = on_add

    def add(self, offset: int, length: int, error: str) -> None:
        extent = Extent(offset, length, error)
        if self.on_add:
            self.on_add(extent)
        append_merged(self.extents, extent)
        if len(self.extents) > MAX_EXTENTS:
            raise DeviceGone(f"{self.path}: more than {MAX_EXTENTS} failed extents; "
                             "the drive is failing, send it to destruction")

    def chunk_done(self, *, all_failed: bool, offset: int) -> None:
        """Give up when several chunks in a row failed entirely (drive gone or dead)."""
        self.dead_chunks = self.dead_chunks + 1 if all_failed else 0
        if self.dead_chunks >= GONE_AFTER_DEAD_CHUNKS:
            raise DeviceGone(f"{self.path} stopped answering: every access failed for "
                             f"{self.dead_chunks} chunks in a row up to offset {offset} "
                             "(drive removed or dead)")
