"""What each overwrite pass writes, at any offset.

A source fills a buffer with the bytes that belong at a device offset, and
gives the expected bytes for verification. Random passes use an AES-256-CTR
keystream keyed by the recorded seed: the counter is the 16-byte block index
of the device offset, so any range can be regenerated on its own (sampled
verification, resume after a crash).
"""

from __future__ import annotations

import mmap
import threading
from abc import ABC, abstractmethod
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from imager.errors import UsageError
from imager.model import PassSpec

AES_BLOCK = 16
CACHED_SLICES = 4


@lru_cache(maxsize=4)
def _zeros(n: int) -> bytes:
    return bytes(n)


class Source(ABC):
    """The content of one pass as a function of the device offset."""

    @abstractmethod
    def fill(self, buf: mmap.mmap, n: int, offset: int) -> memoryview:
        """Put the n bytes belonging at `offset` at the start of `buf`
        (allocated by host.blockdev.aligned_buffer, so it has slack) and
        return a view of them."""

    @abstractmethod
    def expected(self, n: int, offset: int) -> bytes:
        """The n bytes that must be read back at `offset`."""


class Repeating(Source):
    """A byte pattern repeated from device offset 0 (zero, ones, pattern:hex)."""

    def __init__(self, pattern: bytes) -> None:
        if not pattern:
            raise UsageError("empty pattern: give at least one byte, e.g. pattern:55aa")
        self.pattern = pattern
        self._lock = threading.Lock()
        self._base = b""
        self._slices: dict[tuple[int, int], bytes] = {}  # a few (n, phase), newest last
        self._filled: dict[int, tuple[mmap.mmap, int, int]] = {}

    def _bytes(self, n: int, phase: int) -> bytes:
        """The n bytes starting at `phase` of the repeated pattern (few cached)."""
        with self._lock:
            hit = self._slices.get((n, phase))
            if hit is None:
                if len(self._base) < n + len(self.pattern):
                    self._base = self.pattern * ((n + len(self.pattern)) // len(self.pattern) + 1)
                hit = self._base[phase:phase + n]
                if len(self._slices) >= CACHED_SLICES:
                    self._slices.pop(next(iter(self._slices)))
                self._slices[(n, phase)] = hit
            return hit

    def fill(self, buf: mmap.mmap, n: int, offset: int) -> memoryview:
        phase = offset % len(self.pattern)
        held = self._filled.get(id(buf))
        if held is None or held[0] is not buf or held[1:] != (n, phase):
            buf[:n] = self._bytes(n, phase)
            self._filled[id(buf)] = (buf, n, phase)
        return memoryview(buf)[:n]

    def expected(self, n: int, offset: int) -> bytes:
        return self._bytes(n, offset % len(self.pattern))


class Keystream(Source):
    """AES-256-CTR keystream; the 32-byte seed is the key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError(f"random seed must be 32 bytes (64 hex digits), got {len(seed)}")
        self.algorithm = algorithms.AES(seed)

    def _encryptor(self, offset: int) -> CipherContext:
        if offset % AES_BLOCK:
            raise ValueError(f"offset {offset} is not a multiple of {AES_BLOCK}")
        counter = (offset // AES_BLOCK).to_bytes(16, "big")
        return Cipher(self.algorithm, modes.CTR(counter)).encryptor()

    def fill(self, buf: mmap.mmap, n: int, offset: int) -> memoryview:
        view = memoryview(buf)
        self._encryptor(offset).update_into(_zeros(n), view[: n + AES_BLOCK - 1])
        return view[:n]

    def expected(self, n: int, offset: int) -> bytes:
        return self._encryptor(offset).update(_zeros(n))


def source_for(spec: PassSpec) -> Source:
    """The source that writes (and verifies) one pass."""
    if spec.kind == "zero":
        return Repeating(b"\x00")
    if spec.kind == "ones":
        return Repeating(b"\xff")
    if spec.kind == "pattern":
        return Repeating(bytes.fromhex(spec.pattern or ""))
    if spec.kind == "random":
        return Keystream(bytes.fromhex(spec.seed or ""))
    raise UsageError(f"unknown pass kind {spec.kind!r}: use zero, ones, pattern:HEX or random")
