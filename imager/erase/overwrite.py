"""The overwrite engine: write one pass over the whole device.

Large page-aligned buffers, O_DIRECT when the device takes it, the next buffer
prepared in a worker thread while the current one is written, a flush at every
checkpoint and at the end of the pass. A failing chunk is retried once, then
written sector by sector so that every failed extent is recorded and the rest
of the drive still gets erased.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

from imager.erase.errorlog import ErrorLog
from imager.erase.patterns import Source
from imager.erase.pipeline import prefetch
from imager.erase.progress import Interrupted, Sink
from imager.errors import DeviceGone
from imager.host.blockdev import OpenDevice, is_gone
from imager.model import Extent, PassResult

CHUNK = 4 << 20


def write_pass(dev: OpenDevice, source: Source, *, index: int, pattern: str, sink: Sink,
               start: int = 0, prior_errors: tuple[Extent, ...] = (), prior_seconds: float = 0.0,
               checkpoint_seconds: float = 5.0, chunk: int = CHUNK) -> PassResult:
    """Write `source` over [start, dev.size) of `dev`; return the whole pass's result.

    A resumed pass starts at `start` and brings the extents it failed on and
    the seconds it spent before the resume, so the result covers the pass."""
    t0 = time.monotonic() - prior_seconds
    errors = ErrorLog(dev.path, prior=prior_errors, on_add=lambda e: sink.io_error(index, e))
    last_cp = time.monotonic()
    pieces = ((off, min(chunk, dev.size - off)) for off in range(start, dev.size, chunk))
    fills = prefetch(pieces, lambda buf, off, n: source.fill(buf, n, off), chunk=chunk,
                     name="fill")
    with closing(fills):
        for item in fills:
            _write_chunk(dev, item.value, item.offset, errors, sink.stop_requested)
            offset = item.offset + item.length
            sink.update("pass", index, offset, dev.size)
            if time.monotonic() - last_cp >= checkpoint_seconds or sink.stop_requested():
                _flush(dev)
                sink.checkpoint(index, offset, time.monotonic() - t0)
                last_cp = time.monotonic()
                if sink.stop_requested():
                    raise Interrupted(f"stopped at offset {offset} of pass {index + 1}")
    _flush(dev)
    failed = sum(e.length for e in errors.extents)
    return PassResult(index=index, pattern=pattern, bytes_written=dev.size - failed,
                      seconds=time.monotonic() - t0, failed_extents=tuple(errors.extents))


def _flush(dev: OpenDevice) -> None:
    try:
        dev.flush()
    except OSError as exc:
        raise DeviceGone(f"{dev.path} stopped answering: flushing its write cache failed "
                         f"({exc.strerror}); drive removed or dead?") from exc


def _try(dev: OpenDevice, view: memoryview, offset: int) -> OSError | None:
    try:
        dev.pwrite(view, offset)
        return None
    except OSError as exc:
        if is_gone(exc):
            raise DeviceGone(f"{dev.path} is gone ({exc.strerror}) at offset {offset}") from exc
        return exc


def _write_chunk(dev: OpenDevice, view: memoryview, offset: int, errors: ErrorLog,
                 stop: Callable[[], bool]) -> None:
    """Write a chunk; on failure retry once, then sector by sector, recording
    each sector that fails (a stop request is honoured between sectors)."""
    if _try(dev, view, offset) is None or _try(dev, view, offset) is None:
        errors.chunk_done(all_failed=False, offset=offset)
        return
    step = dev.physical_sector
    failed = 0
    for o in range(0, len(view), step):
        if stop():
            raise Interrupted(f"stopped while rewriting sectors at offset {offset + o}")
        exc = _try(dev, view[o:o + step], offset + o)
        if exc is not None:
            failed += 1
            errors.add(offset + o, min(step, len(view) - o), exc.strerror or str(exc))
    errors.chunk_done(all_failed=failed * step >= len(view), offset=offset)
