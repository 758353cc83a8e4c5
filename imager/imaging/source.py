"""Where a deployment reads its compressed image: a local file or an HTTP URL.

A Source only hands out the compressed bytes as a stream; the deployment
engine detects the compression, decompresses, hashes and checks them.

The HTTP source streams with large reads and survives a dropped connection:
it reconnects with `Range: bytes=N-` where it stopped, accepts only a
`206 Partial Content` that starts at N, and refuses to go on if the file
changed meanwhile (ETag or Last-Modified differ). After `attempts` retries
in a row without a byte received it gives up with SourceError.
The station serves its catalogue this way (Starlette FileResponse honours
Range requests).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import mmap
import os
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from imager.erase.pipeline import prefetch
from imager.errors import ImagerError
from imager.imaging.stream import ReadsInto

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

READ = 1 << 20                    # bytes read at a time (network buffer, read-ahead block)
AHEAD = 8                         # blocks read ahead by Prefetched
ATTEMPTS = 5                      # retries after a failure, without progress, before giving up
BACKOFF = 0.5                     # seconds before the first retry, doubled after each
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class SourceError(ImagerError):
    """The compressed image cannot be read from its source (file or station)."""


class Source(Protocol):
    """Compressed image bytes, as a stream: `open()` may be called more than once."""

    name: str

    def open(self) -> ReadsInto:
        """A new stream of the compressed image from its first byte."""
        ...


def open_source(ref: str | Path, *, headers: dict[str, str] | None = None,
                auth: httpx.Auth | None = None, verify: ssl.SSLContext | bool = True,
                sni_hostname: str | None = None, attempts: int = ATTEMPTS,
                backoff: float = BACKOFF) -> Source:
    """The Source for `ref`: an http(s):// URL (with optional request headers, or
    an httpx `auth` that signs each request, e.g. an agent's proof; `verify` and
    `sni_hostname` as the station client's: the TLS context pinning the station's
    CA, the name its certificate is checked against) or a local path."""
    text = str(ref)
    if re.match(r"https?://", text, re.IGNORECASE):
        return HttpSource(text, headers=headers, auth=auth, verify=verify,
                          sni_hostname=sni_hostname, attempts=attempts, backoff=backoff)
    if headers or auth:
        raise SourceError(f"{text} is a local path, and HTTP headers were given for it: give "
                          "an http(s):// URL, or no headers")
    return FileSource(Path(ref))


class FileSource:
    """A compressed image in a local file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = str(path)

    def open(self) -> ReadsInto:
        try:
            fh = open(self.path, "rb", buffering=0)    # closed by the caller
        except OSError as exc:
            raise SourceError(f"cannot read the image {self.path}: {exc.strerror}; check the "
                              "path (`imager image list` shows the catalogue)") from exc
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fh


class _Blocks(io.RawIOBase):
    """A reader over blocks of bytes: `_block()` gives the next one, b"" at the end."""

    _rest = memoryview(b"")

    def _block(self) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def peek(self, size: int) -> bytes:
        """At least `size` first bytes (fewer at the end), read again by `read`."""
        while len(self._rest) < size and (data := self._block()):
            self._rest = memoryview(bytes(self._rest) + data)
        return bytes(self._rest)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if not self._rest:
            self._rest = memoryview(self._block())
        data = bytes(self._rest[:size])
        self._rest = self._rest[len(data):]
        return data

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)


class HttpSource:
    """A compressed image at an http(s) URL, resumed with Range requests.
    `verify`: the TLS context (a station's pinned CA) or True for the system's
    store; `sni_hostname`: the name its certificate is checked against, when not
    the URL's host."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None,
                 auth: httpx.Auth | None = None, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF, timeout: float = 30.0,
                 verify: ssl.SSLContext | bool = True, sni_hostname: str | None = None) -> None:
        self.name = self.url = url
        self.headers = dict(headers or {})
        self.auth = auth
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.verify, self.sni_hostname = verify, sni_hostname

    def open(self) -> ReadsInto:
        stream = _HttpStream(self)
        stream.connect()
        return io.BufferedReader(stream, buffer_size=READ)


class _HttpStream(_Blocks):
    """The body of one GET, reconnected with Range where it broke off."""

    def __init__(self, source: HttpSource) -> None:
        super().__init__()
        self.source = source
        self.client = httpx.Client(timeout=httpx.Timeout(source.timeout, connect=10.0),
                                   follow_redirects=True, auth=source.auth,
                                   verify=source.verify,
                                   headers={**source.headers, "Accept-Encoding": "identity"})
        self.pos = 0                               # bytes received so far
        self.total: int | None = None
        self.validators: dict[str, str] = {}
        self.resumes = 0                           # reconnections done (for reports, tests)
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())

    def connect(self) -> None:
        """(Re)open the body at `pos`, retrying with a growing pause."""
        failures = 0
        while True:
            try:
                self._open()
                return
            except httpx.TransportError as exc:
                failures += 1
                self._pause_or_give_up(failures, exc)

    def _pause_or_give_up(self, failures: int, exc: Exception) -> None:
        """Wait before the next try; after `attempts` retries, give up."""
        if failures > self.source.attempts:
            self.close()
            why = f"{type(exc).__name__}: {exc}"
            if self.pos == 0 and self.total is None:
                raise SourceError(f"cannot fetch the image {self.source.url} ({why}), "
                                  f"{failures} times: check the network and that the station "
                                  "is running") from exc
            raise SourceError(
                f"the download of {self.source.url} broke off at byte {self.pos} ({why}) and "
                f"{failures - 1} attempts to resume failed: check the network and that the "
                "station is running, then deploy again") from exc
        time.sleep(self.source.backoff * 2 ** (failures - 1))

    def _open(self) -> None:
        self._drop()
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        extensions = {"sni_hostname": self.source.sni_hostname} if self.source.sni_hostname \
            else {}
        request = self.client.build_request("GET", self.source.url, headers=headers,
                                            extensions=extensions)
        response = self.client.send(request, stream=True)
        try:
            self._accept(response)
        except BaseException:
            response.close()
            raise
        self._response = response
        self._chunks = response.iter_raw()    # as received: a cut loses nothing

    def _accept(self, response: httpx.Response) -> None:
        """Check the status, the range and that the file did not change."""
        url, status = self.source.url, response.status_code
        if status in (401, 403):
            raise SourceError(f"the station refused the image {url} (HTTP {status}): check "
                              "the agent's enrolment or token")
        if status == 404:
            raise SourceError(f"no image at {url} (HTTP 404): check its name and version "
                              "(`imager image list` on the station)")
        if self.pos == 0:
            if status != 200:
                raise SourceError(f"fetching the image {url} failed: HTTP {status}")
            length = response.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
            self.validators = {k: v for k in ("ETag", "Last-Modified")
                               if (v := response.headers.get(k))}
            return
        self._accept_resume(response)

    def _accept_resume(self, response: httpx.Response) -> None:
        url, status = self.source.url, response.status_code
        if status != 206:
            raise SourceError(f"the server of {url} cannot resume the download at byte "
                              f"{self.pos}: it answered HTTP {status} to a Range request, not "
                              "206; serve the image with Range support and deploy again")
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match[1]) != self.pos:
            raise SourceError(f"the server of {url} resumed at the wrong place (Content-Range "
                              f"{response.headers.get('Content-Range')!r}, asked from byte "
                              f"{self.pos}): deploy again")
        for key, before in self.validators.items():
            now = response.headers.get(key)
            if now != before:
                raise SourceError(f"the image {url} changed during the download ({key} was "
                                  f"{before!r}, now {now!r}): deploy again from the start")

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _block(self) -> bytes:
        """The next piece of the body, reconnecting when the connection breaks."""
        failures = 0
        while True:
            try:
                data = next(self._chunks, b"")
                self.pos += len(data)
                if data or self.total is None or self.pos >= self.total:
                    return data
                raise httpx.RemoteProtocolError(f"the body ended at byte {self.pos} of "
                                                f"{self.total}")
            except httpx.TransportError as exc:
                failures += 1
                self._pause_or_give_up(failures, exc)
                self.resumes += 1
                try:
                    self._open()
                except httpx.TransportError as again:
                    self._chunks = _failing(again)

    def close(self) -> None:
        if not self.closed:
            self._drop()
            self.client.close()
        super().close()


def _failing(exc: Exception) -> Iterator[bytes]:
    """An iterator that raises `exc`: a failed reconnection counts as a failure."""
    yield from ()                              # a generator: raises at the first next()
    raise exc


class Prefetched(_Blocks):
    """A stream read ahead in its own thread, hashed (sha256) as it is read, so
    that file or network waits and hashing overlap the reader's work; its
    first bytes can be peeked (for `compress.detect`). Closing it ends the
    thread, not `raw`."""

    def __init__(self, raw: ReadsInto, *, block: int = READ, depth: int = AHEAD) -> None:
        super().__init__()
        self.raw, self.sha256 = raw, hashlib.sha256()
        self._items = prefetch(itertools.repeat((0, block)), self._fetch, chunk=block,
                               depth=depth, name="source-fetch")
        self._eof = self._done = False         # the fetch thread's end, the reader's

    def _fetch(self, buf: mmap.mmap, _offset: int, size: int) -> int:
        """In the fetch thread: one block of the stream, hashed (0: the end)."""
        if self._eof:
            return 0
        with memoryview(buf) as whole, whole[:size] as view:
            got = self.raw.readinto(view) or 0
            self.sha256.update(view[:got])
        self._eof = not got
        return got

    def _block(self) -> bytes:
        """The next fetched block (b"" at the end), in the reader's thread."""
        if self._done:
            return b""
        item = next(self._items)
        self._done = not item.value
        return item.buf[:item.value]

    def close(self) -> None:
        if not self.closed:
            self._items.close()                # ends the thread
        super().close()
