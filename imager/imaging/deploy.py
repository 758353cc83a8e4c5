"""The deployment engine: one compressed image onto one or more drives at once.

Before a byte is written every target passes the safety guard, is opened
exclusively (O_EXCL, O_DIRECT where it can) and is at least as big as the
image: one refused target refuses the whole deployment (an exception).

Then a pipeline of threads shares a ring of large aligned buffers:

    source -> [reader: hash the compressed bytes, decompress, keep mapped data]
                 |  each filled buffer goes, read-only, to every consumer:
                 +-> [hasher: sha256 of each range, compared with the bmap's]
                 +-> [writer 1: O_DIRECT pwrite, fsync]  ...  [writer N]

A buffer returns to the ring when every consumer is done with it, so memory
stays bounded (DEPTH * CHUNK) and one decompression feeds N drives. Only
mapped ranges are written; holes are dropped (frames of zeros are not even
decoded). A range whose checksum differs means a corrupt image: everything
stops and no target is ok. A target that fails (I/O error, unplugged) fails
alone.

Read-back runs behind the writes, one thread per target: each writer keeps
the buffers it wrote and flushes every CHECKPOINT bytes (or when it keeps a
quarter of the ring); its read-back thread then reads those ranges from the
target with O_DIRECT and compares them byte for byte (memcmp) with the kept
buffers, whose checksums the hasher compares with the bmap, and gives the
buffers back. So a range is read back only after the flush that made it
durable, most of the read-back overlaps the writes, and it costs no second
sha256 per target (readback.Comparer; readback.verify_targets hashes a
drive again later, against the bmap alone).

Alignment: ranges start on bmap blocks (4 KiB), and each piece sits at a
4 KiB-aligned place of its buffer, so writes go straight to the device. The
only unaligned write is an image's last partial block: its covering sectors
are read from the target, the image bytes laid over them, and written back,
so nothing past ImageSize changes.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import NamedTuple

from imager.erase import guard
from imager.errors import ImagerError, RefusedDevice, UsageError
from imager.host.blockdev import OpenDevice, aligned_buffer, drop_cache, is_gone, open_device
from imager.imaging import compress
from imager.imaging.bmap import Bmap, human_size
from imager.imaging.readback import (
    MODES,
    Comparer,
    ReadBack,
    choose,
    covering,
    verify_targets,
    watch,
)
from imager.imaging.source import Prefetched, Source
from imager.settings import Settings

__all__ = ["CHUNK", "DEPTH", "CorruptImage", "DeployResult", "TargetResult", "deploy",
           "verify_targets"]

CHUNK = 8 << 20                # bytes per buffer of the ring
DEPTH = 16                     # buffers in the ring (memory: CHUNK * DEPTH)
ALIGN = 4096                   # where pieces start in a buffer (O_DIRECT memory alignment)
SKIP_STEP = 64 << 20           # hole bytes dropped between two looks at an abort
CHECKPOINT = 32 << 20          # bytes written between two flushes (then read back)
_FIX = "get the image again and check it (`imager image verify NAME`)"


class CorruptImage(ImagerError):
    """The image does not match its bmap or its manifest: nothing it wrote is ok."""


@dataclass
class TargetResult:
    """One target of a deployment."""

    path: str
    ok: bool                       # written, fsynced AND verified as asked
    written_bytes: int
    ranges: int                    # ranges written
    verify: str                    # "full" | "sample" | "none"
    verified_bytes: int
    mismatches: list[tuple[int, int]]   # (offset, length) of ranges that read back wrong
    error: str | None              # why not ok, for a person
    write_seconds: float           # writing and flushing
    verify_seconds: float          # what the read-back added after the write (it runs behind
                                   # the writes from the first checkpoint on)
    sample_seed: str | None = None      # "sample": the seed that chose the ranges read back


@dataclass
class DeployResult:
    """A whole deployment: the image as read and every target."""

    image_size: int
    mapped_bytes: int
    source_sha256: str | None      # sha256 of the compressed stream as read (None: not all read)
    targets: list[TargetResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.targets) and all(t.ok for t in self.targets)


def failed_result(path: str, *, verify: str, error: str) -> TargetResult:
    """A target on which nothing could be done (the deployment never started)."""
    return TargetResult(path=path, ok=False, written_bytes=0, ranges=0, verify=verify,
                        verified_bytes=0, mismatches=[], error=error, write_seconds=0.0,
                        verify_seconds=0.0)


def deploy(source: Source, bmap: Bmap, targets: Sequence[str], *, settings: Settings,
           verify: str = "full", sample: float = 0.05, allow_files: bool = False,
           expected_sha256: str | None = None,
           progress: Callable[[str, int, int], None] | None = None,
           stop: threading.Event | None = None, chunk: int = CHUNK,
           depth: int = DEPTH) -> DeployResult:
    """Write the image of `source` (compressed zstd/xz/gzip, or raw) described by
    `bmap` onto every target, fsync, and read back as `verify` says ("full":
    every range; "sample": a seeded choice of whole ranges, see readback.py).

    Raises RefusedDevice/UsageError/SourceError before anything is written;
    after that, problems are reported on the targets (`DeployResult.ok`).
    `progress(phase, done, total)` is called about four times a second for
    phase "write" (mapped bytes on every target) and "verify" (bytes read back,
    all targets). `stop` ends the run at the next buffer; the targets are then
    not ok ("stopped ...").
    """
    _check_request(bmap, targets, verify, sample, chunk)
    t0 = time.monotonic()
    with ExitStack() as stack:
        devs = _open_targets(targets, bmap, settings, allow_files=allow_files, stack=stack)
        tap = stack.enter_context(Prefetched(stack.enter_context(closing(source.open()))))
        kind = compress.detect(tap.peek(compress.HEAD))
        stream = stack.enter_context(compress.open_stream(tap, kind))
        run = _Run(bmap, devs, chunk=chunk, depth=depth, stop=stop,
                   check=_Check.of(bmap, verify, sample))
        run.start(stream)
        run.wait(lambda: _tick(run, progress))
        digest = tap.sha256.hexdigest() if run.finished else None
        run.fail(_sha_error(source, digest, expected_sha256))
        results = [w.result(run.error) for w in run.writers]
    return DeployResult(bmap.image_size, bmap.mapped_bytes, digest, results,
                        time.monotonic() - t0)


def _tick(run: _Run, progress: Callable[[str, int, int], None] | None) -> None:
    run.check_stop()
    if progress is not None:
        progress("write", run.done, run.bmap.mapped_bytes)
        if run.check.mode != "none":
            progress("verify", run.verified, run.check.bytes * len(run.writers))


def _sha_error(source: Source, digest: str | None, expected: str | None) -> str | None:
    if digest is None or expected is None or digest == expected.strip().lower():
        return None
    return (f"the image {source.name} is not the one its manifest names: its sha256 is "
            f"{digest}, the manifest says {expected}; {_FIX}")


# --- before anything is written -----------------------------------------------

def _check_request(bmap: Bmap, targets: Sequence[str], verify: str, sample: float,
                   chunk: int) -> None:
    if not targets:
        raise UsageError("no target given: name at least one drive")
    if verify not in MODES:
        raise UsageError(f"verify must be one of {', '.join(MODES)}, not {verify!r}")
    if verify == "sample" and not 0 < sample <= 1:
        raise UsageError(f"the sample fraction {sample} must be above 0 and at most 1 "
                         "(0.05 reads back about 5% of the image)")
    if chunk % ALIGN or chunk < ALIGN:
        raise UsageError(f"the buffer size {chunk} must be a multiple of {ALIGN}")
    missing = [r for r in bmap.ranges if not r.sha256]
    if missing:
        raise UsageError(f"the bmap has no checksum for blocks {missing[0].first}-"
                         f"{missing[0].last}: a deployment checks every range; make the bmap "
                         "again with checksums (`imager image create`)")


def _open_targets(targets: Sequence[str], bmap: Bmap, settings: Settings, *,
                  allow_files: bool, stack: ExitStack) -> list[OpenDevice]:
    """Guard, exclusive open and size check of every target, all before any write."""
    _refuse_duplicates(targets)
    for path in targets:
        guard.check(path, settings, allow_files=allow_files)
    devs = [stack.enter_context(open_device(path, write=True)) for path in targets]
    for dev in devs:
        if dev.size < bmap.image_size:
            raise RefusedDevice(dev.path, [
                f"it holds {dev.size} bytes ({human_size(dev.size)}) and the image needs "
                f"{bmap.image_size} bytes ({human_size(bmap.image_size)}): use a bigger drive"])
    return devs


def _refuse_duplicates(targets: Sequence[str]) -> None:
    seen: dict[tuple[int, int], str] = {}
    for path in targets:
        try:
            st = os.stat(path)
        except OSError:
            continue                      # the guard names a missing device
        key = (0, st.st_rdev) if stat.S_ISBLK(st.st_mode) else (st.st_dev, st.st_ino)
        if key in seen:
            raise UsageError(f"{path} and {seen[key]} are the same drive: give it once")
        seen[key] = path


# --- the write pipeline ---------------------------------------------------------

@dataclass(frozen=True)
class _Check:
    """What to read back: the mode, the ranges chosen (indexes), the seed and
    the bytes they hold."""

    bmap: Bmap
    mode: str
    indexes: list[int]
    seed: str | None
    bytes: int

    @classmethod
    def of(cls, bmap: Bmap, mode: str, sample: float) -> _Check:
        indexes, seed = choose(bmap, mode, sample=sample)
        spans = list(bmap.byte_ranges())
        return cls(bmap, mode, indexes, seed, sum(spans[i][1] for i in indexes))


class _Piece(NamedTuple):
    offset: int           # in the image (and on the target)
    length: int
    at: int               # in the buffer
    range_index: int      # the bmap range
    last: bool            # the range's last piece


class _Chunk:
    """A filled buffer shared read-only by the hasher and every writer."""

    __slots__ = ("view", "pieces", "users", "run")

    def __init__(self, view: memoryview, pieces: list[_Piece], users: int, run: _Run) -> None:
        self.view, self.pieces, self.users, self.run = view, pieces, users, run

    def release(self) -> None:
        """One consumer is done; the last one gives the buffer back to the ring."""
        run = self.run
        with run.lock:
            self.users -= 1
            if self.users:
                return
            run.done += sum(p.length for p in self.pieces)
        run.ring.put(self.view)


class _Run:
    """The shared state of one deployment's write phase."""

    def __init__(self, bmap: Bmap, devs: list[OpenDevice], *, chunk: int, depth: int,
                 stop: threading.Event | None, check: _Check) -> None:
        self.bmap, self.stop, self.check = bmap, stop, check
        self.chunk = chunk
        self.hold = max(1, depth // 4)         # buffers a writer keeps before it flushes
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.error: str | None = None          # for every target: corrupt image, stopped...
        self.done = 0                          # mapped bytes on every target
        self.verified = 0                      # bytes read back, all targets
        self.finished = False                  # the whole compressed stream was read
        self.ring: queue.Queue[memoryview] = queue.Queue()
        for _ in range(depth):
            self.ring.put(memoryview(aligned_buffer(chunk))[:chunk])
        self.hashes: queue.Queue[_Chunk | None] = queue.Queue()
        self.writers = [_Writer(dev, self) for dev in devs]
        self.threads: list[threading.Thread] = []

    def fail(self, error: str | None) -> None:
        """Stop everything; `error` becomes every target's error (first one wins)."""
        if error is None:
            return
        with self.lock:
            self.error = self.error or error
        self.abort.set()

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            self.fail(f"stopped after {self.done} of {self.bmap.mapped_bytes} image bytes: "
                      "the drive holds part of the image; deploy again")

    def take(self) -> memoryview | None:
        """A free buffer, or None once the run is aborted (or stopped)."""
        self.check_stop()
        while not self.abort.is_set():
            try:
                return self.ring.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def deliver(self, view: memoryview, pieces: list[_Piece]) -> None:
        chunk = _Chunk(view, pieces, 1 + len(self.writers), self)
        self.hashes.put(chunk)
        for writer in self.writers:
            writer.queue.put(chunk)

    def writer_failed(self) -> None:
        if all(w.error is not None for w in self.writers):
            self.abort.set()                   # nobody left to write for

    def count_verified(self, count: int) -> None:
        with self.lock:
            self.verified += count

    def start(self, stream: compress.Stream) -> None:
        reader = _Reader(self, stream)
        jobs = [(reader.loop, "deploy-read"), (self._hash_loop, "deploy-hash")]
        jobs += [(w.loop, f"deploy-write-{i}") for i, w in enumerate(self.writers)]
        if self.check.mode != "none":
            jobs += [(w.read_back, f"deploy-check-{i}") for i, w in enumerate(self.writers)]
        self.threads = [threading.Thread(target=job, name=name, daemon=True)
                        for job, name in jobs]
        for t in self.threads:
            t.start()

    def wait(self, tick: Callable[[], object]) -> None:
        """Join every thread, ticking; on an exception here (^C) stop them first."""
        try:
            watch(self.threads, tick)
        except BaseException:
            self.fail("interrupted: the deployment did not finish; deploy again")
            for t in self.threads:
                t.join()
            raise

    def _hash_loop(self) -> None:
        """Checksum each range once, on the stream, and compare it with the bmap."""
        spans = list(self.bmap.byte_ranges())
        hasher = self.bmap.hasher()
        while (chunk := self.hashes.get()) is not None:
            try:
                for p in chunk.pieces if not self.abort.is_set() else ():
                    hasher.update(chunk.view[p.at:p.at + p.length])
                    if p.last:
                        self.fail(_range_error(self.bmap, p.range_index, spans,
                                               hasher.hexdigest()))
                        hasher = self.bmap.hasher()
            except Exception as exc:           # a bug: fail loudly, keep the ring turning
                self.fail(f"checking the image failed: {exc!r}")
            finally:
                chunk.release()


def _range_error(bmap: Bmap, index: int, spans: Sequence[tuple[int, int, object]],
                 digest: str) -> str | None:
    rng = bmap.ranges[index]
    if digest == rng.sha256:
        return None
    offset, length, _ = spans[index]
    return (f"the image is corrupt: range {index + 1} of {len(bmap.ranges)} (blocks "
            f"{rng.first}-{rng.last}, {length} bytes at byte {offset}) has {bmap.checksum_type} "
            f"{digest}, its bmap says {rng.sha256}; the deployment stopped there and no drive "
            f"holds a good image: {_FIX}")


class _Aborted(Exception):
    """The run was aborted while the reader skipped a hole."""


class _Reader:
    """The decompression thread: fills ring buffers with the mapped data, in order."""

    def __init__(self, run: _Run, stream: compress.Stream) -> None:
        self.run, self.stream = run, stream
        self.pos = 0                           # decompressed bytes consumed

    def loop(self) -> None:
        try:
            if self._mapped():
                self._rest()
                self.run.finished = True
        except _Aborted:
            pass
        except ImagerError as exc:
            self.run.fail(str(exc))
        except Exception as exc:               # a bug: fail loudly, never hang
            self.run.fail(f"reading the image failed: {exc!r}")
        finally:
            for q in [self.run.hashes, *(w.queue for w in self.run.writers)]:
                q.put(None)

    def _mapped(self) -> bool:
        """Deliver every mapped range; False when the run was aborted."""
        view: memoryview | None = None
        pieces: list[_Piece] = []
        fill = 0
        for index, (offset, length, _) in enumerate(self.run.bmap.byte_ranges()):
            self._skip(offset - self.pos)
            end = offset + length
            while offset < end:
                if view is None:
                    view, pieces, fill = self.run.take(), [], 0
                    if view is None:
                        return False
                at = -(-fill // ALIGN) * ALIGN
                size = min(len(view) - at, end - offset)
                if size <= 0:
                    self.run.deliver(view, pieces)
                    view = None
                    continue
                self._fill(view[at:at + size])
                pieces.append(_Piece(offset, size, at, index, offset + size == end))
                fill, offset = at + size, offset + size
        if view is not None:
            self.run.deliver(view, pieces)
        return not self.run.abort.is_set()

    def _fill(self, view: memoryview) -> None:
        self._advance(self.stream.readinto(view), len(view))

    def _advance(self, got: int, wanted: int) -> None:
        self.pos += got
        if got < wanted:
            raise CorruptImage(f"the image ends at byte {self.pos}, its bmap says "
                               f"{self.run.bmap.image_size} bytes: the compressed file is "
                               f"truncated or is not this bmap's image; {_FIX}")

    def _skip(self, count: int) -> None:
        """Drop `count` bytes (a hole: frames of zeros are not even decoded);
        stops when the run is aborted."""
        while count > 0:
            if self.run.abort.is_set():
                raise _Aborted
            size = min(count, SKIP_STEP)
            self._advance(self.stream.skip(size), size)
            count -= size

    def _rest(self) -> None:
        """Read to the end: the holes after the last range, the size, the whole file hashed."""
        self._skip(self.run.bmap.image_size - self.pos)
        if self.stream.read(1):
            raise CorruptImage(f"the image goes on past the {self.run.bmap.image_size} bytes "
                               f"its bmap says: it is not this bmap's image; {_FIX}")
        while self.stream.read(CHUNK):         # a decoder may leave the file's last bytes
            pass


class _Writer:
    """One target: a thread writes each shared buffer's pieces, keeps the
    buffers (when reading back) and flushes at every checkpoint; another
    thread then reads back what that flush made durable and compares it with
    the kept buffers, which it gives back to the ring."""

    def __init__(self, dev: OpenDevice, run: _Run) -> None:
        self.dev, self.run = dev, run
        self.queue: queue.Queue[_Chunk | None] = queue.Queue()
        self.error: str | None = None
        self.written = self.ranges = self.unflushed = 0
        self.seconds = 0.0
        self.finished: float | None = None     # monotonic time writing ended
        self.comparing = run.check.mode != "none"
        self.held: list[_Chunk] = []           # written, not flushed yet
        self.flushed: queue.Queue[list[_Chunk] | None] = queue.Queue()
        self.check: ReadBack | None = None

    def loop(self) -> None:
        t0 = time.monotonic()
        try:
            while (chunk := self.queue.get()) is not None:
                kept = False
                try:
                    if self.error is None and not self.run.abort.is_set():
                        self._write(chunk)
                        kept = self.comparing
                except OSError as exc:
                    self._failed(exc)
                except Exception as exc:       # a bug: this target fails, others go on
                    self._failed(OSError(0, repr(exc)))
                finally:
                    if kept:
                        self.held.append(chunk)
                    else:
                        chunk.release()
                if self.error is None and (self.unflushed >= CHECKPOINT or
                                           len(self.held) >= self.run.hold):
                    self._checkpoint()
            if self.error is None:
                self._checkpoint()             # also after a stop: keep what was written
        finally:                               # never leave a buffer or the reader waiting
            self._give_back()
            self.flushed.put(None)
            self.seconds = time.monotonic() - t0
            self.finished = time.monotonic()

    def _write(self, chunk: _Chunk) -> None:
        for p in chunk.pieces:
            self._write_at(chunk.view[p.at:p.at + p.length], p.offset)
            self.written += p.length
            self.unflushed += p.length
            if p.last:
                self.ranges += 1

    def _write_at(self, data: memoryview, offset: int) -> None:
        """Straight O_DIRECT write; a partial last sector goes through `_patch`."""
        sector = self.dev.logical_sector if self.dev.direct else 1
        if offset % sector:
            _patch(self.dev, data, offset)
            return
        body = len(data) - len(data) % sector
        if body:
            self.dev.pwrite(data[:body], offset)
        if body < len(data):
            _patch(self.dev, data[body:], offset + body)

    def _checkpoint(self) -> None:
        """Flush; then the buffers written so far may be read back."""
        try:
            if self.dev.direct:
                self.dev.flush()
            else:
                drop_cache(self.dev)           # fsync, and what is read back is not cached
        except OSError as exc:
            self.error = (f"{self.dev.path}: flushing the drive's cache failed "
                          f"({exc.strerror}): drive removed or failing?")
            self.run.writer_failed()
            self._give_back()
            return
        self.unflushed = 0
        if self.held:
            self.flushed.put(self.held)
            self.held = []

    def _give_back(self) -> None:
        """Buffers that will not be read back (a failure) go back to the ring."""
        for chunk in self.held:
            chunk.release()
        self.held = []

    def _failed(self, exc: OSError) -> None:
        where = f"{self.dev.path} failed while writing the image ({exc.strerror})"
        self.error = (f"{where}: was the drive unplugged?" if is_gone(exc) else
                      f"{where} after {self.written} bytes: the drive is failing or was "
                      "pulled out; retire it or deploy again")
        self.run.writer_failed()
        self._give_back()

    def read_back(self) -> None:
        """The read-back thread of this target: compares every flushed buffer's
        pieces of the chosen ranges with the target, then releases the buffer.
        Whatever happens, every buffer handed to it goes back to the ring."""
        check = self.run.check
        result = ReadBack(self.dev.path, check.mode, seed=check.seed)
        comparer: Comparer | None = None
        t0 = time.monotonic()
        try:
            comparer = Comparer(self.dev, result, check.bmap, check.indexes,
                                self.run.count_verified, chunk=self.run.chunk)
        except Exception as exc:               # e.g. no memory: this target fails
            result.error = f"reading {self.dev.path} back failed: {exc!r}"
        try:
            while (chunks := self.flushed.get()) is not None:
                for chunk in chunks:
                    try:
                        if comparer and not comparer.gone and not self.run.abort.is_set():
                            for p in chunk.pieces:
                                comparer.piece(p.range_index, p.offset,
                                               chunk.view[p.at:p.at + p.length], p.last)
                    except Exception as exc:   # a bug: this target fails, others go on
                        result.error = f"reading {self.dev.path} back failed: {exc!r}"
                        comparer = None
                    finally:
                        chunk.release()
        finally:
            if comparer is not None:
                comparer.close()
            result.ended = time.monotonic()
            result.seconds = result.ended - t0
            self.check = result

    def result(self, error: str | None) -> TargetResult:
        """This target's result; `error` is the run's (corrupt image, stopped...)."""
        mode, check = self.run.check.mode, self.check
        error = self.error or error or (check.error if check else None)
        if error is None and mode != "none" and check is None:
            error = f"{self.dev.path} was not read back: deploy again"
        if error is None and check is not None and check.verified_bytes < self.run.check.bytes:
            error = (f"{self.dev.path} was read back only in part ({check.verified_bytes} of "
                     f"{self.run.check.bytes} bytes): deploy again")
        # the read-back overlaps the writes: count the time it added after them
        tail = max(0.0, check.ended - self.finished) if check and self.finished else 0.0
        return TargetResult(
            path=self.dev.path, ok=error is None, written_bytes=self.written,
            ranges=self.ranges, verify=mode,
            verified_bytes=check.verified_bytes if check else 0,
            mismatches=list(check.mismatches) if check else [], error=error,
            write_seconds=self.seconds, verify_seconds=tail,
            sample_seed=check.seed if check else None)


def _patch(dev: OpenDevice, data: memoryview, offset: int) -> None:
    """Write `data` where O_DIRECT cannot take it as is (an image's partial last
    sector): read the covering sectors from the target, lay `data` over them,
    write them back. Bytes of the sectors outside `data` keep their value."""
    start, size = covering(offset, len(data), dev.logical_sector)
    with memoryview(aligned_buffer(size)) as whole, whole[:size] as span:
        dev.preadinto(span, start)
        span[offset - start:offset - start + len(data)] = data
        dev.pwrite(span, start)
