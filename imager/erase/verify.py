"""Read-back verification: full, or sampled per NIST SP 800-88 Rev. 1 §4.7.

Rev. 1 was withdrawn on 26 September 2025; Rev. 2 has no equivalent sampling
rule, so the station keeps this one, cited in the edition that states it.

Sampling divides the medium into at least 1,000 subsections and reads two
non-overlapping pseudorandom windows in each, plus the first and last
addressable blocks, for at least 10 % of the medium. Window positions come
from SHA-256(seed, subsection, k): anyone holding the recorded seed can
recompute exactly which bytes were read.
"""

from __future__ import annotations

import hashlib
import mmap
import time
from collections.abc import Iterator
from contextlib import closing

from imager.erase.errorlog import ErrorLog
from imager.erase.patterns import Source
from imager.erase.pipeline import prefetch
from imager.erase.progress import Interrupted, Sink
from imager.errors import DeviceGone
from imager.host import memory
from imager.host.blockdev import OpenDevice, aligned_buffer, is_gone
from imager.model import VerifyMode, VerifyResult

CHUNK = 4 << 20
MIN_SUBSECTIONS = 1000
MIN_COVERAGE = 0.10
EDGE_BYTES = 1 << 20


def _draw(seed: bytes, section: int, k: int) -> int:
    h = hashlib.sha256(seed + section.to_bytes(8, "big") + k.to_bytes(1, "big")).digest()
    return int.from_bytes(h[:8], "big")


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, ln in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            prev_off, prev_ln = out[-1]
            out[-1] = (prev_off, max(prev_ln, off + ln - prev_off))
        else:
            out.append((off, ln))
    return out


def subsection_size(size: int, align: int, subsections: int = MIN_SUBSECTIONS) -> int:
    """Bytes per subsection; 0 when the medium is too small to sample (read it all)."""
    sub = (size // subsections) // align * align
    return sub if sub >= 2 * align else 0


def sample_ranges(size: int, align: int, seed: bytes, *, subsections: int = MIN_SUBSECTIONS,
                  coverage: float = MIN_COVERAGE) -> list[tuple[int, int]]:
    """The (offset, length) windows a sampled verification reads, merged and sorted."""
    sub = subsection_size(size, align, subsections)
    if not sub:  # tiny medium: read it all
        return [(0, size)]
    win = -(-int(sub * coverage / 2) // align) * align  # ceil to alignment
    win = max(win, align)
    ranges = [(0, min(EDGE_BYTES, size)), (max(0, size - EDGE_BYTES), min(EDGE_BYTES, size))]
    for s in range(subsections):
        base = s * sub
        span = (sub - 2 * win) // align + 1  # possible aligned starts for a window pair
        x, y = sorted((_draw(seed, s, 0) % span, _draw(seed, s, 1) % span))
        ranges.append((base + x * align, win))
        ranges.append((base + y * align + win, win))
    tail = subsections * sub
    if tail < size:  # the remainder after the last whole subsection
        ranges.append((tail, size - tail))
    return _merge(ranges)


def _pieces(ranges: list[tuple[int, int]], chunk: int) -> Iterator[tuple[int, int]]:
    for off, ln in ranges:
        for o in range(off, off + ln, chunk):
            yield o, min(chunk, off + ln - o)


class _Checker:
    """Compares read-back pieces against the expected stream."""

    def __init__(self, dev: OpenDevice, source: Source) -> None:
        self.dev, self.source = dev, source
        self._probe = aligned_buffer(dev.physical_sector)
        self.errors = ErrorLog(dev.path)
        self.first_bad: int | None = None
        self.bad_sectors = 0
        self.bytes_read = 0

    def check(self, off: int, n: int, buf: mmap.mmap, error: OSError | None) -> None:
        if error is not None:
            self._read_failed(off, n, error)
            return
        self.bytes_read += n
        self.errors.chunk_done(all_failed=False, offset=off)
        if not memory.equal(buf, self.source.expected(n, off)):
            self._locate(off, bytes(memoryview(buf)[:n]))

    def _read_failed(self, off: int, n: int, exc: OSError) -> None:
        """A piece failed twice: read it sector by sector to pin the bad extents."""
        if is_gone(exc):
            raise DeviceGone(f"{self.dev.path} is gone ({exc.strerror}) at offset {off}")
        step, bad = self.dev.physical_sector, 0
        for o in range(off, off + n, step):
            ln = min(step, off + n - o)
            try:
                with memoryview(self._probe) as mv, mv[:ln] as view:
                    self.dev.preadinto(view, o)
            except OSError as err:
                if is_gone(err):
                    raise DeviceGone(f"{self.dev.path} is gone ({err.strerror}) at {o}") from err
                self.errors.add(o, ln, f"read: {err.strerror}")
                bad += 1
                continue
            self.bytes_read += ln
            if not memory.equal(self._probe, self.source.expected(ln, o)):
                self._locate(o, self._probe[:ln])
        self.errors.chunk_done(all_failed=bad * step >= n, offset=off)

    def _locate(self, off: int, data: bytes) -> None:
        step = self.dev.logical_sector
        expected = self.source.expected(len(data), off)
        for o in range(0, len(data), step):
            if data[o:o + step] != expected[o:o + step]:
                self.bad_sectors += 1
                if self.first_bad is None:
                    first = next(i for i in range(o, o + step) if data[i] != expected[i])
                    self.first_bad = off + first


def _read(dev: OpenDevice, buf: mmap.mmap, off: int, n: int) -> OSError | None:
    """Read one piece into `buf`, retrying once; the error is returned, not raised."""
    with memoryview(buf) as whole, whole[:n] as view:
        for attempt in (1, 2):
            try:
                dev.preadinto(view, off)
                return None
            except OSError as exc:
                if attempt == 2 or is_gone(exc):
                    return exc
    raise AssertionError("unreachable")


def verify(dev: OpenDevice, source: Source, *, mode: VerifyMode, pattern: str, index: int,
           sink: Sink, seed: str | None = None, chunk: int = CHUNK) -> VerifyResult:
    """Read back `dev` (all of it, or the sampled windows) against `source`."""
    t0 = time.monotonic()
    align = max(dev.logical_sector, 4096) if dev.size % 4096 == 0 else dev.logical_sector
    if mode == "sample":
        ranges = sample_ranges(dev.size, align, bytes.fromhex(seed or ""))
    else:
        ranges = [(0, dev.size)]
    total = sum(ln for _, ln in ranges)
    checker = _Checker(dev, source)
    items = prefetch(_pieces(ranges, chunk), lambda buf, off, n: _read(dev, buf, off, n),
                     chunk=chunk, name="read")
    with closing(items):
        for item in items:
            checker.check(item.offset, item.length, item.buf, item.value)
            sink.update("verify", index, checker.bytes_read, total)
            if sink.stop_requested():
                raise Interrupted(f"stopped during verification at offset {item.offset}")
    ok = checker.first_bad is None and not checker.errors.extents
    return VerifyResult(
        mode=mode, pattern=pattern, bytes_read=checker.bytes_read,
        coverage=round(total / dev.size, 6) if dev.size else 1.0,
        seconds=time.monotonic() - t0, ok=ok, seed=seed,
        subsections=MIN_SUBSECTIONS if mode == "sample" and subsection_size(dev.size, align)
        else 0,
        first_bad_offset=checker.first_bad, mismatched_sectors=checker.bad_sectors,
        failed_extents=tuple(checker.errors.extents))
