"""Canaries around firmware erasure: markers written before, looked for after.

A drive that reports a successful sanitize/format but still returns one of
the markers did not erase what it claimed; the job fails with that finding.
Markers are one block each at the first block, the last block and
pseudorandom offsets derived from the seed (SHA-256), so a verifier holding
the seed can recompute where they were. There are COUNT of them (or one a
block on a small drive): a firmware that skipped 1 % of the medium escapes
1,024 markers with a chance of 0.99^1024 ≈ 3·10⁻⁵, 5 % with ≈ 10⁻²³; they
cost some 20 seconds of seeks on a hard disk, next to nothing on flash.
"""

from __future__ import annotations

import hashlib

from imager.host import memory
from imager.host.blockdev import OpenDevice, aligned_buffer
from imager.model import CanaryCheck

MAGIC = b"IMAGER-CANARY\0"
COUNT = 1024


def offsets(size: int, block: int, seed: bytes, count: int = COUNT) -> tuple[int, ...]:
    """First block, last block and `count` pseudorandom blocks, sorted, distinct."""
    blocks = size // block
    chosen = {0, blocks - 1}
    for i in range(count):
        h = hashlib.sha256(seed + b"canary" + i.to_bytes(4, "big")).digest()
        chosen.add(int.from_bytes(h[:8], "big") % blocks)
    return tuple(sorted(b * block for b in chosen))


def marker(seed: bytes, offset: int, n: int) -> bytes:
    """The marker block for `offset`: MAGIC, then a SHA-256 stream of (seed, offset)."""
    out = bytearray(MAGIC)
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + offset.to_bytes(8, "big") +
                              counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:n])


def plant(dev: OpenDevice, seed: bytes) -> tuple[int, ...]:
    """Write the markers and flush them to the medium; return their offsets."""
    block = dev.physical_sector
    buf = aligned_buffer(block)
    where = offsets(dev.size, block, seed)
    with memoryview(buf) as mv, mv[:block] as view:
        for off in where:
            buf[:block] = marker(seed, off, block)
            dev.pwrite(view, off)
    dev.flush()
    return where


def survivors(dev: OpenDevice, seed: bytes, where: tuple[int, ...]) -> CanaryCheck:
    """Read each marker place back; a block equal to its marker, or starting
    with MAGIC, survived the erase."""
    block = dev.physical_sector
    buf = aligned_buffer(block)
    found = []
    with memoryview(buf) as mv, mv[:block] as view:
        for off in where:
            dev.preadinto(view, off)
            if memory.equal(buf, marker(seed, off, block)) or buf[:len(MAGIC)] == MAGIC:
                found.append(off)
    return CanaryCheck(len(where), tuple(found), block)
