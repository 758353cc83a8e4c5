"""An imager USB stick's data partition as this host sees it: recognised, found,
mounted, its spool listed. The stick is written by imager.boot.usb (which says
what the partition holds, in imager.boot.usb_data); the dock agent syncs it when
it comes back (imager.agent.stick_sync) and the safety guard never lets it be
erased (imager.erase.guard): its spool may hold the only proof of an erasure.

A stick is recognised by reading its partition table from the disk itself
(GPT: the partition named IMAGER-DATA, or one whose ext4 filesystem carries
that label; a filesystem on the whole disk too): no udev database to wait for
(there is none without udevd), no partition scan by the kernel needed (a loop
device without --partscan), no child process that the guard's scan of /proc
would take for another program holding the drive open.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from imager.errors import UsageError
from imager.host import devices
from imager.host.loopdev import mounted
from imager.host.run import ToolFailed, run
from imager.settings import Settings

LABEL = "IMAGER-DATA"
SPOOL = "spool"
# The outbox's spool format (imager.agent.outbox, which this layer does not import).
SUFFIX, SENT = ".event.json", "sent"

GPT_SIGNATURE = b"EFI PART"
EXT4_MAGIC = 0xEF53
SUPERBLOCK = 1024                    # an ext2/3/4 superblock's offset in its filesystem
MAX_ENTRIES = 1024


def recognise(device: str, settings: Settings) -> str | None:
    """The kernel name of the IMAGER-DATA partition of the disk `device` (sdb3,
    loop4p3), the disk's own name when the filesystem is on the whole disk, or
    None when `device` is no imager stick (or cannot be read)."""
    name = os.path.basename(os.path.realpath(device))
    try:
        with open(device, "rb", buffering=0) as fh:
            number = data_partition_number(fh.fileno(), _sector(name, settings))
    except OSError:
        return None
    if number is None:
        return None
    if number == 0:
        return name
    return f"{name}p{number}" if name[-1].isdigit() else f"{name}{number}"


def data_partition_number(fd: int, sector: int = 512) -> int | None:
    """The number of the partition holding IMAGER-DATA (by GPT name, or by its ext4
    label), 0 for an ext4 filesystem so labelled on the whole device, None when
    there is neither. Reads the open device `fd`, nothing else."""
    if _ext4_label(fd, 0) == LABEL:
        return 0
    for size in dict.fromkeys((sector, 512, 4096)):
        entries = _gpt_entries(fd, size)
        if entries is None:
            continue
        for number, (first, name) in entries.items():
            if name == LABEL or _ext4_label(fd, first * size) == LABEL:
                return number
        return None
    return None


def read_only(name: str, settings: Settings) -> bool:
    """Whether the kernel shows the disk `name` read-only (a stick's write-protect
    switch, a loop attached --read-only): its spool cannot be moved to sent/."""
    try:
        return (settings.sys_root / "class" / "block" / name / "ro").read_text().strip() == "1"
    except OSError:
        return False


def _sector(name: str, settings: Settings) -> int:
    node = settings.sys_root / "class" / "block" / name / "queue" / "logical_block_size"
    try:
        return int(node.read_text())
    except (OSError, ValueError):
        return 512


def _gpt_entries(fd: int, sector: int) -> dict[int, tuple[int, str]] | None:
    """{partition number: (first sector, GPT name)} of a GPT whose header is at
    LBA 1 with sectors of `sector` bytes; None when there is no such header."""
    header = os.pread(fd, 92, sector)
    if len(header) < 92 or header[:8] != GPT_SIGNATURE:
        return None
    start, count, size = struct.unpack_from("<QII", header, 72)
    if size < 128 or count == 0:
        return None
    table = os.pread(fd, min(count, MAX_ENTRIES) * size, start * sector)
    out = {}
    for i in range(len(table) // size):
        entry = table[i * size:(i + 1) * size]
        if entry[:16] == bytes(16):            # type GUID zero: an unused entry
            continue
        first = struct.unpack_from("<Q", entry, 32)[0]
        name = entry[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        out[i + 1] = (first, name)
    return out


def _ext4_label(fd: int, offset: int) -> str | None:
    """The volume label of an ext2/3/4 filesystem starting at `offset`, if one is there."""
    block = os.pread(fd, 136, offset + SUPERBLOCK)
    if len(block) < 136 or struct.unpack_from("<H", block, 0x38)[0] != EXT4_MAGIC:
        return None
    return block[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace")


# -- the partition, mounted -------------------------------------------------------

def probe(part: str) -> dict[str, str]:
    """`blkid -p -o export` of one partition (LABEL, TYPE...), {} if blank."""
    result = run(["blkid", "-p", "-o", "export", part], check=False)
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def find(device: str, settings: Settings) -> str | None:
    """The data partition of the stick `device` (the disk, or that partition): by
    its filesystem's label, or by its GPT name when the filesystem is damaged
    (then mounting it fails, and nothing overwrites it); a disk with no
    partition is itself a candidate."""
    name = os.path.basename(os.path.realpath(device))
    disk = devices.disk_of(name, settings)
    candidates = [name] if disk != name else devices.partitions_of(disk, settings) or [disk]
    for part in (f"/dev/{p}" for p in candidates):
        found = probe(part)
        if LABEL in (found.get("LABEL"), found.get("PART_ENTRY_NAME")):
            return part
    return None


def mountpoint_of(part: str, settings: Settings) -> Path | None:
    """Where `part` is mounted already (a desktop's automount), if it is."""
    rdev = os.stat(part).st_rdev
    devno = f"{os.major(rdev)}:{os.minor(rdev)}"
    return next((Path(m.mountpoint) for m in devices.read_mounts(settings)
                 if m.devno == devno), None)


@contextmanager
def opened(part: str, settings: Settings, *, read_only: bool = False) -> Iterator[Path]:
    """The data partition's root: where it is mounted already, else mounted for the
    block in a private folder (read-only: the journal still replays) and unmounted."""
    already = mountpoint_of(part, settings)
    if already is not None:
        yield already
        return
    with tempfile.TemporaryDirectory(prefix="imager-stick-") as folder, ExitStack() as stack:
        try:
            root = stack.enter_context(mounted(part, Path(folder), fstype="ext4",
                                               options=("ro",) if read_only else ()))
        except ToolFailed as exc:
            raise UsageError(
                f"impossible de lire la partition de données {part} : elle peut contenir des "
                f"rapports non envoyés / cannot mount the stick's data partition, which may "
                f"hold reports not yet sent ({exc}): repair it on the station (`e2fsck -f "
                f"{part}`) and try again; only to throw its reports away for good, clear the "
                "stick first (`wipefs --all` on the stick)") from exc
        yield root


def pending(spool: Path) -> list[Path]:
    """The events in a stick's spool that the station has not acknowledged."""
    return sorted(spool.glob(f"*{SUFFIX}"))


def sent(spool: Path) -> list[Path]:
    """The events the station acknowledged (kept on the stick)."""
    return sorted((spool / SENT).glob(f"*{SUFFIX}"))
