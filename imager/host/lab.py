"""The lab bench: virtual drives (loop devices over sparse files) for a
station with no hardware, so a newcomer can run the whole flow.

Each bay is a sparse file in <data dir>/lab/ attached to a loop device and
seeded with some "donor data" (random blocks at the start, middle and end) so
that an erasure has something to remove, and labelled with a made-up drive
identity (imager.host.virtual) that follows it from one loop device to
the next.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host.devices import loop_users_of
from imager.host.files import private_dir
from imager.host.run import run
from imager.host.virtual import label_of, made_up_label, write_label
from imager.settings import Settings

SEED_BLOCK = 1 << 20


@dataclass(frozen=True)
class Bay:
    number: int
    image: Path
    device: str | None
    size: int


def lab_dir(settings: Settings) -> Path:
    return settings.data_dir / "lab"


def bays(settings: Settings) -> list[Bay]:
    """The bays that exist, attached or not."""
    out = []
    for img in sorted(lab_dir(settings).glob("bay-*.img")):
        users = loop_users_of(img, settings)
        out.append(Bay(int(img.stem.split("-")[1]), img,
                       f"/dev/{users[0]}" if users else None, img.stat().st_size))
    return out


def _seed_donor_data(image: Path, size: int) -> None:
    with open(image, "r+b") as fh:
        for off in (0, size // 2 // SEED_BLOCK * SEED_BLOCK, size - SEED_BLOCK):
            fh.seek(off)
            fh.write(os.urandom(SEED_BLOCK))


def up(settings: Settings, *, count: int, size: int) -> list[Bay]:
    """Create and attach `count` bays of `size` bytes (idempotent)."""
    if os.geteuid() != 0:
        raise ImagerError("the lab bench attaches loop devices: run it as root (sudo)")
    if size < 4 * SEED_BLOCK or size % 4096:
        raise ImagerError(f"lab drive size {size} must be a multiple of 4096 and >= 4 MiB")
    private_dir(lab_dir(settings))
    for n in range(1, count + 1):
        img = lab_dir(settings) / f"bay-{n}.img"
        if not img.exists():
            with open(img, "wb") as fh:
                fh.truncate(size)
            _seed_donor_data(img, size)
        if label_of(str(img), settings) is None:
            write_label(settings, img, made_up_label(random.Random(os.urandom(16))))
        if not loop_users_of(img, settings):
            run(["losetup", "--find", "--show", "--direct-io=on", str(img)])
    return bays(settings)


def down(settings: Settings, *, only: Iterable[int] | None = None) -> list[Bay]:
    """Detach the loop device of every bay, or of the bays numbered `only`
    (the images stay)."""
    numbers = None if only is None else set(only)
    for bay in bays(settings):
        if bay.device and (numbers is None or bay.number in numbers):
            subprocess.run(["losetup", "-d", bay.device], check=False)
    return bays(settings)
