"""What every decompressed image stream offers (compress.open_stream gives one)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Protocol

from imager.errors import ImagerError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SCRATCH = 8 << 20


class CompressedDataError(ImagerError):
    """A compressed image cannot be decoded: damaged, truncated or not an image."""


def damaged(kind: str, why: object) -> CompressedDataError:
    return CompressedDataError(
        f"the {kind} image cannot be decompressed ({why}): the file is damaged or "
        "truncated; get it again and check it (`imager image verify NAME`)")


class ReadsInto(Protocol):
    """A binary file object that fills a buffer: a file, an HTTP body, a decoder."""

    def readinto(self, buffer: WriteableBuffer, /) -> int | None: ...

    def close(self) -> None: ...


class Readable(ReadsInto, Protocol):
    """What a compressed image is read from: a file, a BytesIO, source.Prefetched."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class Stream(io.RawIOBase):
    """A decompressed image: `readinto` fills the buffer unless the stream ends;
    `skip(count)` drops up to `count` bytes and says how many it dropped."""

    def readable(self) -> bool:
        return True

    _scratch: memoryview | None = None

    def scratch(self, count: int) -> memoryview:
        """A buffer of up to `count` bytes (at most 8 MiB) to decode into and drop."""
        if self._scratch is None:
            self._scratch = memoryview(bytearray(SCRATCH))
        return self._scratch[:min(count, SCRATCH)]

    def skip(self, count: int) -> int:
        done = 0
        while done < count:
            got = self.readinto(self.scratch(count - done))
            if not got:
                break
            done += got
        return done
