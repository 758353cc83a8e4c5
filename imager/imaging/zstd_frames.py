"""A zstd stream read frame by frame, with all-zero frames skipped undecoded.

Our images put long holes in ready-made frames of zeros (compress.ImageWriter):
a frame whose blocks are all RLE blocks of the byte 0. `ZstdFrames` walks the
frame structure (RFC 8878 section 3.1) as the bytes go by: such a frame is
recognised from its block headers (about 4 bytes per 128 KiB) and stands for
its zeros without being decompressed; every other frame is decompressed by
python-zstandard, fed exactly that frame's bytes. Skippable frames are
skipped. A stream cut inside a frame, or bytes that are not a frame, raise
CompressedDataError (the plain python-zstandard reader ends early without
an error instead).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol

import zstandard

from imager.imaging.stream import Readable, Stream, damaged

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"\x28\xb5\x2f\xfd"
SKIPPABLE = b"\x2a\x4d\x18"                    # after a first byte 0x50-0x5F
BLOCK_MAX = 128 << 10
RAW, RLE, COMPRESSED = 0, 1, 2
_READ = 1 << 20                                # compressed bytes read at a time
_PEEK = 64 << 10                               # a zero frame's most header bytes (2 GiB)
_ZEROS = memoryview(bytes(8 << 20))
_TINY, _TINY_BLOCKS = 64, 4                    # compressed blocks a zero frame may hold
_KNOWN: dict[bytes, int | None] = {}           # frame bytes -> its zeros (None: not zeros)


def _zeros_of(frame: bytes) -> int | None:
    """How many zeros `frame` decodes to, or None when it holds anything else
    (decoded in 1 MiB pieces the first time, then known by its bytes)."""
    known = _KNOWN.get(frame, -1)              # (one lookup: another thread may clear it)
    if known != -1:
        return known
    total, zeros = 0, _ZEROS[:1 << 20]
    reader = zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=False)
    try:
        while piece := reader.read(len(zeros)):
            if piece != zeros[:len(piece)]:
                total = -1
                break
            total += len(piece)
    except zstandard.ZstdError:
        return None                            # the normal path will say what is wrong
    if len(_KNOWN) >= 64:
        _KNOWN.clear()
    known = _KNOWN[frame] = total if total >= 0 else None
    return known


class _Frame(Protocol):
    """python-zstandard's reader of one frame (its stub leaves close() untyped)."""

    def readinto(self, buffer: memoryview, /) -> int: ...

    def close(self) -> object: ...


class ZstdFrames(Stream):
    """The decompressed content of the zstd frames in `fileobj` (left open)."""

    def __init__(self, fileobj: Readable) -> None:
        super().__init__()
        self._src = fileobj
        self._buf = bytearray()                # compressed bytes read, not yet consumed
        self._at = 0                           # where the unconsumed bytes start in _buf
        self._offset = 0                       # compressed offset of _buf[0]
        self._eof = False
        self._zeros = 0                        # bytes left of the current zero frame
        self._frame: _Frame | None = None
        self._dctx = zstandard.ZstdDecompressor()
        self.zero_frames = 0                   # how many frames were skipped undecoded

    # -- the compressed bytes --------------------------------------------------
    def _have(self, count: int) -> bool:
        """At least `count` unconsumed bytes buffered (False: the file ends first)."""
        while len(self._buf) - self._at < count and not self._eof:
            if self._at >= _READ:
                del self._buf[:self._at]
                self._offset += self._at
                self._at = 0
            data = self._src.read(max(_READ, count))
            if data:
                self._buf += data
            else:
                self._eof = True
        return len(self._buf) - self._at >= count

    def _take(self, count: int) -> bytearray:
        data = self._buf[self._at:self._at + count]   # (one copy)
        self._at += len(data)
        return data

    def _where(self, ahead: int = 0) -> int:
        return self._offset + self._at + ahead

    # -- frames ------------------------------------------------------------------
    def _next_frame(self) -> bool:
        """Start the next frame; False at the end of the file."""
        while True:
            if not self._have(4):
                if len(self._buf) > self._at:
                    raise damaged("zstd", f"{len(self._buf) - self._at} stray bytes at the "
                                  f"end, from byte {self._where()}")
                return False
            magic = bytes(self._buf[self._at:self._at + 4])
            if magic[0] & 0xF0 == 0x50 and magic[1:] == SKIPPABLE:
                self._skip_skippable()
                continue
            if magic != MAGIC:
                raise damaged("zstd", f"no zstd frame at byte {self._where()}")
            zeros = self._zero_frame()
            if zeros is not None:
                self._zeros = zeros
                self.zero_frames += 1
            else:
                # The stub asks for an IO[bytes]; stream_reader only calls read().
                self._frame = self._dctx.stream_reader(
                    _FrameBytes(self),  # type: ignore[arg-type]
                    read_size=_READ, read_across_frames=False, closefd=False)
            return True

    def _skip_skippable(self) -> None:
        if not self._have(8):
            raise damaged("zstd", f"a skippable frame cut at byte {self._where()}")
        size = int.from_bytes(self._buf[self._at + 4:self._at + 8], "little")
        self._at += 8
        while size:
            if not self._have(1):
                raise damaged("zstd", f"a skippable frame cut at byte {self._where()}")
            step = min(size, len(self._buf) - self._at)
            self._at += step
            size -= step

    def _zero_frame(self) -> int | None:
        """The size of the frame at hand when it decodes to zeros only, the frame
        then consumed; None otherwise (nothing consumed). A candidate is a short
        frame of RLE blocks of 0 and a few tiny compressed ones (zstd does not
        start a frame with an RLE block); it is decoded and checked the first
        time its bytes are seen, then known by them."""
        header, checksum = self._header()
        ahead, small = header, 0                # bytes past self._at (the buffer may move)
        while ahead <= _PEEK and self._have(ahead + 4):
            at = self._at + ahead
            head = int.from_bytes(self._buf[at:at + 3], "little")
            kind, size = head >> 1 & 3, head >> 3
            if kind == RLE and self._buf[at + 3] == 0:
                ahead += 4
            elif kind == COMPRESSED and size <= _TINY and small < _TINY_BLOCKS:
                ahead, small = ahead + 3 + size, small + 1
            else:
                return None
            if head & 1:                       # the last block
                if not self._have(ahead + checksum):
                    return None
                frame = bytes(self._buf[self._at:self._at + ahead + checksum])
                zeros = _zeros_of(frame)
                if zeros is not None:
                    self._at += len(frame)
                return zeros
        return None

    def _header(self) -> tuple[int, int]:
        """(frame header size, content checksum size) of the frame at hand."""
        if not self._have(6):
            raise damaged("zstd", f"a frame header cut at byte {self._where()}")
        fhd = self._buf[self._at + 4]
        if fhd & 0x08:
            raise damaged("zstd", f"a reserved bit set in the frame at byte {self._where()}")
        single = fhd >> 5 & 1
        fcs = (single, 2, 4, 8)[fhd >> 6]
        return 5 + (not single) + (0, 1, 2, 4)[fhd & 3] + fcs, 4 if fhd & 0x04 else 0

    # -- the decompressed bytes --------------------------------------------------
    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        return self._pump(len(view), view)

    def skip(self, count: int) -> int:
        return self._pump(count, None)

    def _pump(self, count: int, view: memoryview | None) -> int:
        """Up to `count` decompressed bytes into `view`, or dropped (None)."""
        done = 0
        while done < count:
            if self._zeros:
                n = min(self._zeros, count - done)
                if view is not None:
                    n = min(n, len(_ZEROS))
                    view[done:done + n] = _ZEROS[:n]
                self._zeros -= n
            elif self._frame is not None:
                n = self._decode(self.scratch(count - done) if view is None else view[done:])
            elif not self._next_frame():
                break
            else:
                continue
            done += n
        return done

    def _decode(self, view: memoryview) -> int:
        assert self._frame is not None
        try:
            got = self._frame.readinto(view)
        except zstandard.ZstdError as exc:
            raise damaged("zstd", exc) from exc
        if not got:
            self._frame.close()
            self._frame = None
        return got

    def close(self) -> None:
        if self._frame is not None:
            self._frame.close()
            self._frame = None
        super().close()


class _FrameBytes(io.RawIOBase):
    """The compressed bytes of one frame, from its owner's buffer, found by
    walking its block headers: what python-zstandard is fed."""

    def __init__(self, owner: ZstdFrames) -> None:
        super().__init__()
        self.o = owner
        header, self.checksum = owner._header()
        self.left = header                     # bytes that can go before the next parse
        self.last = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes | bytearray:
        o, pieces, got = self.o, [], 0
        size = _READ if size is None or size < 0 else size
        while got < size:
            if not self.left:
                if not self._next_part():
                    break
                continue
            if not o._have(1):
                raise damaged("zstd", f"the file ends inside a frame, at byte {o._where()}: "
                              "it is truncated")
            n = min(self.left, size - got, len(o._buf) - o._at)
            pieces.append(o._take(n))
            self.left -= n
            got += n
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _next_part(self) -> bool:
        """Account for the next block (or the checksum); False at the frame's end."""
        o = self.o
        if self.last:
            if self.checksum:
                self.left, self.checksum = self.checksum, 0
                return True
            return False
        if not o._have(3):
            raise damaged("zstd", f"the file ends inside a frame, at byte {o._where()}: it is "
                          "truncated")
        head = int.from_bytes(o._buf[o._at:o._at + 3], "little")
        kind, size = head >> 1 & 3, head >> 3
        if kind == 3 or size > BLOCK_MAX:
            raise damaged("zstd", f"a bad block header at byte {o._where()}")
        self.left = 3 + (1 if kind == RLE else size)
        self.last = bool(head & 1)
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)
