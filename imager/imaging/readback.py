"""Read-back verification of a deployed image: what bmaptool does not do.

Every checked range is read again from the target with O_DIRECT (past the
page cache, or the check would only prove that memory holds the data) and its
checksum compared with the bmap's. "full" checks every mapped range; "sample"
checks whole ranges (a bmap checksum covers a whole range) chosen from a
seed: the first and the last range always, then ranges in the order of
sha256(seed || index) until `sample` of the mapped bytes are covered. Anyone
holding the seed and the bmap can recompute which ranges were read.
"""

from __future__ import annotations

import hashlib
import mmap
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field

from imager.erase.pipeline import prefetch
from imager.host import memory
from imager.host.blockdev import OpenDevice, aligned_buffer, drop_cache, is_gone, open_device
from imager.imaging.bmap import Bmap

CHUNK = 8 << 20
MODES = ("full", "sample", "none")


@dataclass
class ReadBack:
    """What reading one target back proved."""

    path: str
    mode: str                                   # "full" | "sample" | "none"
    verified_bytes: int = 0                     # image bytes read back and compared
    ranges: int = 0                             # ranges read back
    mismatches: list[tuple[int, int]] = field(default_factory=list)  # (offset, length)
    error: str | None = None
    seconds: float = 0.0
    seed: str | None = None                     # "sample": the seed that chose the ranges
    ended: float = 0.0                          # time.monotonic() when reading ended

    @property
    def ok(self) -> bool:
        return self.error is None and not self.mismatches


def choose(bmap: Bmap, mode: str, *, sample: float = 0.05,
           seed: str | None = None) -> tuple[list[int], str | None]:
    """(indexes of the ranges to read back, seed); the seed is made when None."""
    count = len(bmap.ranges)
    if mode == "none" or count == 0:
        return [], None
    if mode == "full":
        return list(range(count)), None
    seed = seed or secrets.token_hex(8)
    sizes = [length for _, length, _ in bmap.byte_ranges()]
    picked = {0, count - 1}
    goal, got = sample * sum(sizes), sum(sizes[i] for i in picked)
    for index in sorted(range(count), key=lambda i: _rank(seed, i)):
        if got >= goal:
            break
        if index not in picked:
            picked.add(index)
            got += sizes[index]
    return sorted(picked), seed


def _rank(seed: str, index: int) -> bytes:
    return hashlib.sha256(bytes.fromhex(seed) + index.to_bytes(8, "big")).digest()


def covering(offset: int, length: int, align: int) -> tuple[int, int]:
    """(start, length) of the `align`-aligned span holding [offset, offset+length)."""
    start = offset - offset % align
    end = -(-(offset + length) // align) * align
    return start, end - start


@dataclass(frozen=True)
class _Piece:
    index: int            # the range
    offset: int           # image bytes [offset, offset+length) of that range
    length: int
    last: bool            # the range's last piece


def _pieces(bmap: Bmap, indexes: Iterable[int], chunk: int,
            plan: list[_Piece]) -> Iterator[tuple[int, int]]:
    """(number in `plan`, length) of each piece to read; `plan` grows as it goes
    (`indexes` may be a generator that waits for ranges to be written)."""
    spans = list(bmap.byte_ranges())
    for index in indexes:
        offset, length, _ = spans[index]
        for start in range(offset, offset + length, chunk):
            size = min(chunk, offset + length - start)
            plan.append(_Piece(index, start, size, start + size == offset + length))
            yield len(plan) - 1, size


def _span_size(dev: OpenDevice, chunk: int) -> int:
    """A buffer for `chunk` image bytes and the partial sectors around them."""
    return chunk + 2 * max(dev.logical_sector, 4096)


def read_span(dev: OpenDevice, buf: mmap.mmap, offset: int,
              length: int) -> tuple[memoryview, OSError | None]:
    """Read image bytes [offset, offset+length) through the aligned span covering
    them, into `buf`: (those bytes, error)."""
    align = dev.logical_sector if dev.direct else 1
    start, size = covering(offset, length, align)
    view = memoryview(buf)[:size]
    try:
        dev.preadinto(view, start)
    except OSError as exc:
        return view[:0], exc
    head = offset - start
    return view[head:head + length], None


def read_back(dev: OpenDevice, bmap: Bmap, indexes: Iterable[int], *, mode: str,
              seed: str | None = None, chunk: int = CHUNK,
              counted: Callable[[int], None] = lambda n: None,
              stop: threading.Event | None = None) -> ReadBack:
    """Read the ranges `indexes` of `bmap` back from `dev`; compare their checksums.

    `counted(n)` is called as n more bytes are checked. A range that reads
    back wrong, or cannot be read, is a mismatch; a device that is gone ends
    the check with an error. `stop` ends it early with the error "stopped".
    A device without O_DIRECT must have its cache dropped first (drop_cache).
    """
    t0 = time.monotonic()
    checker = _Checker(ReadBack(dev.path, mode, seed=seed), bmap, counted)
    plan: list[_Piece] = []
    reads = prefetch(_pieces(bmap, indexes, chunk, plan),
                     lambda buf, k, n: read_span(dev, buf, plan[k].offset, plan[k].length),
                     chunk=_span_size(dev, chunk), name="readback")
    with closing(reads):
        for item in reads:
            data, error = item.value
            if not checker.piece(plan[item.offset], data, error):
                break
            if stop is not None and stop.is_set():
                checker.result.error = "stopped"
                break
    checker.result.ended = time.monotonic()
    checker.result.seconds = checker.result.ended - t0
    return checker.result


class _Tally:
    """What a read-back found so far, range by range (see ReadBack)."""

    def __init__(self, result: ReadBack, bmap: Bmap, counted: Callable[[int], None]) -> None:
        self.result, self.bmap, self.counted = result, bmap, counted
        self.spans = list(bmap.byte_ranges())
        self.broken: int | None = None          # a range already wrong: skip its rest

    def checked(self, length: int) -> None:
        self.result.verified_bytes += length
        self.counted(length)

    def wrong(self, index: int) -> None:
        self._mismatch(index, f"{self.result.path} reads back wrong: the data at byte "
                              f"{self.spans[index][0]} differs from the image (failing "
                              "drive, or written by someone else meanwhile); erase the "
                              "drive and deploy again, or retire it")

    def _mismatch(self, index: int, why: str) -> None:
        offset, length, _ = self.spans[index]
        self.result.mismatches.append((offset, length))
        self.result.error = self.result.error or why

    def unreadable(self, index: int, offset: int, exc: OSError) -> bool:
        """A read failed; False when reading must stop (the device is gone)."""
        if is_gone(exc):
            self.result.error = (f"{self.result.path} is gone ({exc.strerror}) while reading "
                                 "it back: was the drive unplugged?")
            return False
        if index != self.broken:
            self.broken = index
            self._mismatch(index, f"{self.result.path} cannot be read back at byte {offset} "
                                  f"({exc.strerror}): the drive is failing; retire it")
        return True


class _Checker(_Tally):
    """Hashes the pieces of each range as they are read and compares the
    checksum with the bmap's."""

    def __init__(self, result: ReadBack, bmap: Bmap, counted: Callable[[int], None]) -> None:
        super().__init__(result, bmap, counted)
        self.hasher = bmap.hasher()

    def piece(self, piece: _Piece, data: memoryview, error: OSError | None) -> bool:
        """Check one piece; False when reading must stop (device gone)."""
        go_on = True
        if error is not None:
            go_on = self.unreadable(piece.index, piece.offset, error)
        elif piece.index != self.broken:
            self.hasher.update(data)
            self.checked(piece.length)
            if piece.last:
                self.result.ranges += 1
                if self.hasher.hexdigest() != self.bmap.ranges[piece.index].sha256:
                    self.wrong(piece.index)
        if piece.last:
            self.hasher = self.bmap.hasher()
        return go_on


class Comparer(_Tally):
    """Reads back what a deployment just wrote and compares it, byte for byte
    (memcmp), with the buffer it was written from, whose range checksums the
    deployment checks against the bmap: the same proof as hashing the target
    again, for a fraction of the CPU. Only the ranges `indexes` are compared."""

    def __init__(self, dev: OpenDevice, result: ReadBack, bmap: Bmap, indexes: Iterable[int],
                 counted: Callable[[int], None], *, chunk: int) -> None:
        super().__init__(result, bmap, counted)
        self.dev, self.indexes = dev, frozenset(indexes)
        self.buf = aligned_buffer(_span_size(dev, chunk))
        self.gone = False                      # stop comparing (device gone, or a bug)
        self.differs: int | None = None

    def piece(self, index: int, offset: int, data: memoryview, last: bool) -> None:
        """Compare the image bytes `data` at `offset` (range `index`) with the target."""
        if self.gone or index not in self.indexes:
            return
        if index not in (self.broken, self.differs):
            back, error = read_span(self.dev, self.buf, offset, len(data))
            if error is not None:
                self.gone = not self.unreadable(index, offset, error)
                return
            self.checked(len(data))
            if not memory.same(back, data):
                self.differs = index           # said once per range
                self.wrong(index)
        if last and index != self.broken:
            self.result.ranges += 1

    def close(self) -> None:
        self.buf.close()


def verify_devices(devs: Sequence[OpenDevice], bmap: Bmap, *, mode: str = "full",
                   sample: float = 0.05, seed: str | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   stop: threading.Event | None = None) -> list[ReadBack]:
    """Read back every open device in parallel (one thread each); the same ranges
    (and seed, for "sample") for all. `progress("verify", done, total)` is
    called from this thread about four times a second."""
    indexes, seed = choose(bmap, mode, sample=sample, seed=seed)
    spans = list(bmap.byte_ranges())
    total = sum(spans[i][1] for i in indexes) * len(devs)
    results: list[ReadBack | None] = [None] * len(devs)
    done = [0]
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            done[0] += n

    def run(i: int) -> None:
        try:
            if not devs[i].direct:
                drop_cache(devs[i])
            results[i] = read_back(devs[i], bmap, indexes, mode=mode, seed=seed,
                                   counted=count, stop=stop)
        except Exception as exc:  # reported on its target, the others go on
            results[i] = ReadBack(devs[i].path, mode, seed=seed,
                                  error=f"reading {devs[i].path} back failed: {exc}")

    threads = [threading.Thread(target=run, args=(i,), name=f"verify-{i}", daemon=True)
               for i in range(len(devs))]
    for t in threads:
        t.start()
    watch(threads, lambda: progress and progress("verify", done[0], total))
    return [r for r in results if r is not None]


def watch(threads: Sequence[threading.Thread], tick: Callable[[], object], *,
          every: float = 0.25) -> None:
    """Join `threads`, calling `tick()` every `every` seconds and once at the end."""
    for t in threads:
        while t.is_alive():
            t.join(every)
            tick()
    tick()


def verify_targets(bmap: Bmap, targets: Sequence[str], *, mode: str = "full",
                   sample: float = 0.05, seed: str | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   stop: threading.Event | None = None) -> list[ReadBack]:
    """Read back already written targets (paths) against `bmap`, e.g. to check a
    drive again later; opened read-only (O_DIRECT where possible)."""
    with ExitStack() as stack:
        devs = [stack.enter_context(open_device(path, write=False)) for path in targets]
        return verify_devices(devs, bmap, mode=mode, sample=sample, seed=seed,
                              progress=progress, stop=stop)
