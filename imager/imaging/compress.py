"""Compressed raw images: zstd (ours), xz and gzip (accepted), told apart by
their magic bytes, never by the file name.

`open_stream` gives a reader (stream.Stream) whose `readinto` fills the
whole buffer except at the end of the stream and whose `skip` drops bytes (a
hole), with every decoder's error turned into CompressedDataError.
Concatenated frames (zstd), streams (xz) and members (gzip) are read through.
zstd is read frame by frame (zstd_frames.py): the ready-made frames of zeros
ImageWriter puts in holes are skipped without being decompressed, and a
stream cut inside a frame is an error. Callers still compare the size they
read with the bmap's image_size (bmap.mapped_chunks does) and the file's
sha256 with the manifest.
"""

from __future__ import annotations

import functools
import gzip
import io
import lzma
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import zstandard

from imager.errors import ImagerError
from imager.imaging import bmap as bmaplib
from imager.imaging.stream import CompressedDataError, Readable, ReadsInto, Stream, damaged
from imager.imaging.zstd_frames import ZstdFrames

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["CompressedDataError", "ImageWriter", "Stream", "compress_file", "detect",
           "open_stream"]

KINDS = ("zstd", "xz", "gzip", "raw")
SUFFIXES = {"zstd": ".zst", "xz": ".xz", "gzip": ".gz", "raw": ""}
DEFAULT_LEVEL = {"zstd": 3, "xz": 6, "gzip": 6}
LEVELS = {"zstd": (1, 22), "xz": (0, 9), "gzip": (0, 9)}
HEAD = 6                                   # bytes `detect` needs
_MAGIC = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b", "gzip"))


def detect(source: Path | str | bytes) -> str:
    """"zstd", "xz", "gzip" or "raw" from the first bytes of a file (a path) or
    from those bytes themselves."""
    if isinstance(source, bytes | bytearray | memoryview):
        head = bytes(source[:HEAD])
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(HEAD)
        except OSError as exc:
            raise ImagerError(f"cannot read the image {source}: {exc.strerror}; check the "
                              "path") from exc
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
        return "zstd"                      # a zstd skippable frame first
    return "raw"


class _Decompressed(Stream):
    """A decoder stream whose readinto fills the buffer unless the stream ends."""

    def __init__(self, decoder: ReadsInto, kind: str) -> None:
        super().__init__()
        self._decoder, self.kind = decoder, kind

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        try:
            while done < len(view):
                got = self._decoder.readinto(view[done:])
                if not got:
                    break
                done += got
        except (lzma.LZMAError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise damaged(self.kind, exc) from exc
        return done

    def close(self) -> None:
        if not self.closed:
            self._decoder.close()
        super().close()


def open_stream(fileobj: Readable, kind: str) -> Stream:
    """A reader of the raw image compressed as `kind` in `fileobj` (see module doc).

    Closing it leaves `fileobj` open. "raw" returns a reader of `fileobj` itself.
    """
    decoder: ReadsInto
    if kind == "zstd":
        return ZstdFrames(fileobj)
    if kind == "xz":
        # The stub asks for an IO[bytes]; LZMAFile only calls the file object's read().
        decoder = lzma.LZMAFile(fileobj, "rb")  # type: ignore[arg-type]
    elif kind == "gzip":
        decoder = gzip.GzipFile(fileobj=fileobj, mode="rb")
    elif kind == "raw":
        decoder = _Unclosing(fileobj)
    else:
        raise ImagerError(f"unknown compression {kind!r}: one of {', '.join(KINDS)}")
    return _Decompressed(decoder, kind)


class _Unclosing(io.RawIOBase):
    def __init__(self, fileobj: Readable) -> None:
        super().__init__()
        self._fileobj = fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        return self._fileobj.readinto(buffer)


class Writable(Protocol):
    """Where ImageWriter puts the compressed image: a file, a hashing writer."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class _Sink(Protocol):
    """A compressor's input (zstd, xz or gzip)."""

    def write(self, data: bytes | memoryview, /) -> object: ...

    def close(self) -> object: ...


class ImageWriter:
    """Compresses a raw image to a file object: `write` data, `write_zeros` for
    holes; closing it ends the stream, not the file object.

    zstd: long runs of zeros (ZERO_FRAME bytes or more) become copies of one
    ready-made frame, so holes cost no compression time; the output is then
    several frames, which zstd, bmaptool and `open_stream` read through.
    Frames carry a content checksum. `threads` -1 means one per CPU (zstd only).
    """

    def __init__(self, fileobj: Writable, kind: str = "zstd", *, level: int | None = None,
                 threads: int = -1) -> None:
        if kind not in DEFAULT_LEVEL:
            raise ImagerError(f"cannot compress as {kind!r}: one of zstd, xz, gzip")
        self.kind, self._out = kind, fileobj
        self._level = DEFAULT_LEVEL[kind] if level is None else level
        low, high = LEVELS[kind]
        if not low <= self._level <= high:
            raise ImagerError(f"niveau de compression refusé / {kind} level {self._level} must "
                              f"be from {low} to {high} (default {DEFAULT_LEVEL[kind]})")
        self._threads, self._zeros = threads, 0
        self._cctx = zstandard.ZstdCompressor(level=self._level, threads=threads,
                                              write_checksum=True) if kind == "zstd" else None
        self._stream: _Sink | None = None

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _writer(self) -> _Sink:
        if self._stream is None:
            self._stream = self._open()
        return self._stream

    def _open(self) -> _Sink:
        # The zstd and xz stubs ask for an IO[bytes]; both only call write() (zstd also
        # flush(), which Writable has).
        if self._cctx is not None:
            return self._cctx.stream_writer(self._out,  # type: ignore[arg-type]
                                            closefd=False)
        if self.kind == "xz":
            return lzma.LZMAFile(self._out, "wb",  # type: ignore[arg-type]
                                 preset=self._level, check=lzma.CHECK_CRC64)
        return gzip.GzipFile(fileobj=self._out, mode="wb", compresslevel=self._level, mtime=0)

    def write(self, data: bytes | memoryview) -> None:
        if self._zeros:
            self._flush_zeros()
        self._writer().write(data)

    def write_zeros(self, count: int) -> None:
        """`count` zero bytes (a hole of the raw image)."""
        self._zeros += count

    def _flush_zeros(self) -> None:
        count, self._zeros = self._zeros, 0
        if self._cctx is not None and count >= ZERO_FRAME:
            if self._stream is not None:       # end the frame of the data before
                self._stream.close()
                self._stream = None
            frame = _zero_frame(self._level)
            for _ in range(count // ZERO_FRAME):
                self._out.write(frame)
            count %= ZERO_FRAME
        zeros = memoryview(_ZEROS)
        while count:
            length = min(count, len(zeros))
            self._writer().write(zeros[:length])
            count -= length

    def close(self) -> None:
        if self._zeros:
            self._flush_zeros()
        if self._stream is None and self._cctx is None:
            self._writer()                     # an empty xz/gzip stream is still a stream
        if self._stream is not None:
            self._stream.close()
            self._stream = None


ZERO_FRAME = 64 << 20
_ZEROS = bytes(8 << 20)


@functools.lru_cache(maxsize=4)
def _zero_frame(level: int) -> bytes:
    """One zstd frame of ZERO_FRAME zero bytes (about 2 KiB)."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(
        bytes(ZERO_FRAME))


def compress_file(src: Path, dst: Path, *, kind: str = "zstd", level: int | None = None,
                  threads: int = -1, block_size: int = 4096) -> None:
    """Compress the (sparse) raw file `src` to `dst`; holes are not read from disk."""
    size = Path(src).stat().st_size
    ranges = bmaplib.map_file(src, block_size=block_size)
    fd = os.open(src, os.O_RDONLY)
    try:
        with open(dst, "wb") as out, ImageWriter(out, kind, level=level,
                                                 threads=threads) as writer:
            for index, data in bmaplib.walk(fd, ranges, block_size=block_size, image_size=size):
                if index is None:
                    writer.write_zeros(len(data))
                else:
                    writer.write(data)
    except OSError as exc:
        raise ImagerError(f"cannot write {dst}: {exc.strerror}; choose a writable directory "
                          "with enough space") from exc
    finally:
        os.close(fd)
