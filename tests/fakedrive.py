"""What the firmware-engine tests share: what a drive's firmware does to the
medium when a fake tool "runs" an erase, and a sink that keeps the progress."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from imager.erase.progress import NullSink

MiB = 1 << 20


def overwrite_all(path: str, pattern: bytes | None) -> None:
    """`pattern` everywhere on the device at `path`, or random bytes when None
    (a crypto erase: the old ciphertext under a key nobody has)."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        for off in range(0, size, MiB):
            fh.seek(off)
            n = min(MiB, size - off)
            fh.write(os.urandom(n) if pattern is None else pattern * n)
        os.fsync(fh.fileno())


def fill(pattern: bytes | None) -> Callable[[str], None]:
    """overwrite_all as an effect to run on a device path later."""
    return lambda path: overwrite_all(path, pattern)


@dataclass
class RecordingSink(NullSink):
    updates: list[tuple[str, int, int, int]] = field(default_factory=list)

    def update(self, phase: str, index: int, done: int, total: int) -> None:
        self.updates.append((phase, index, done, total))
