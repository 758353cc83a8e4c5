"""The partition table and filesystems of a disk that just received an image.

An image is smaller than the disk it is written to, so after the deployment a
GPT's backup header sits where the image ended instead of at the end of the
disk, and the last partition stops there too. This module reads the table
(`sfdisk -J`), moves the GPT backup header to the end of the disk, grows the
last partition to the end (`sfdisk -N`), makes the kernel see the new table
(`partx -u`, which also adds the partitions of a loop device attached without
partition scanning) and grows an ext2/3/4 filesystem to its partition
(`e2fsck -f -y`, `resize2fs`).

Parsing is pure (`parse_table`, `parse_blkid`, `parse_dumpe2fs`); the rest runs
tools through imager.host.run.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host import devices as hd
from imager.host.run import run
from imager.settings import Settings

EXT_TYPES = ("ext4", "ext3", "ext2")
MBR_EXTENDED = ("5", "f", "85")     # MBR types of an extended partition
SLACK = 1 << 20                     # free space at the end below this: the disk is full
GPT_ENTRY_SIZE = 128
FSCK_TIMEOUT = 3600                 # e2fsck and resize2fs of a large filesystem
_NUMBER = re.compile(r"(\d+)$")


class LayoutError(ImagerError):
    """The partition table or a filesystem of a deployed disk could not be
    read or changed; the message names the disk and what to do."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int          # in sectors of the table's sector size
    size: int
    type: str           # GPT type GUID or MBR type in hex ("83")

    @property
    def end(self) -> int:
        """The last sector of the partition."""
        return self.start + self.size - 1


@dataclass(frozen=True)
class Table:
    """A partition table as sfdisk reports it."""

    label: str                      # "gpt" or "dos"
    sector_size: int
    partitions: tuple[Partition, ...]
    last_lba: int | None = None     # GPT: the last usable sector, as the header says
    table_length: int = 128         # GPT: number of partition entries

    def last(self) -> Partition | None:
        """The partition that ends last on the disk."""
        return max(self.partitions, key=lambda p: p.end, default=None)

    def usable_end(self, disk_sectors: int) -> int:
        """The last sector a partition may use on a disk of `disk_sectors`,
        with a GPT backup header at its standard place (the disk's end)."""
        if self.label != "gpt":
            return disk_sectors - 1
        entries = -(-self.table_length * GPT_ENTRY_SIZE // self.sector_size)
        return disk_sectors - 2 - entries

    def backup_misplaced(self, disk_sectors: int) -> bool:
        """True for a GPT whose backup header is not at the end of the disk."""
        return self.label == "gpt" and self.last_lba != self.usable_end(disk_sectors)

    def extended(self) -> bool:
        """True for an MBR with an extended partition (logical partitions)."""
        return self.label == "dos" and any(p.type.lower() in MBR_EXTENDED
                                           for p in self.partitions)


def parse_table(text: str, *, device: str) -> Table:
    """The table in `sfdisk -J` output; LayoutError naming `device` if unusable."""
    try:
        pt = json.loads(text)["partitiontable"]
        parts = tuple(Partition(_number(p["node"]), int(p["start"]), int(p["size"]),
                                str(p["type"])) for p in pt.get("partitions", []))
        table = Table(label=str(pt["label"]), sector_size=int(pt.get("sectorsize", 512)),
                      partitions=parts, last_lba=pt.get("lastlba"),
                      table_length=int(pt.get("table-length", 128)))
    except (ValueError, KeyError, TypeError) as exc:
        raise LayoutError(f"cannot read the partition table of {device} ({exc}): "
                          "was the image written completely?") from exc
    if table.label not in ("gpt", "dos"):
        raise LayoutError(f"{device} has a {table.label!r} partition table: only GPT and "
                          "MBR (dos) images can be customised")
    return table


def _number(node: str) -> int:
    m = _NUMBER.search(node)
    if not m:
        raise ValueError(f"no partition number in {node!r}")
    return int(m.group(1))


def parse_blkid(text: str) -> dict[str, str]:
    """`blkid -o export` output as a mapping (TYPE, UUID, LABEL...)."""
    pairs = (ln.partition("=") for ln in text.splitlines() if "=" in ln)
    return {k.strip(): v.strip() for k, _, v in pairs}


def parse_dumpe2fs(text: str) -> int:
    """The size in bytes of the filesystem described by `dumpe2fs -h` output."""
    fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError) as exc:
        raise LayoutError(f"dumpe2fs gave no block count and size ({exc})") from exc


def read_table(device: str) -> Table:
    """The partition table of `device`."""
    result = run(["sfdisk", "-J", device], check=False)
    if not result.ok:
        raise LayoutError(f"{device} has no readable partition table "
                          f"({result.stderr.strip() or 'sfdisk failed'}): customising "
                          "needs a whole-disk image (GPT or MBR); deploy it again")
    return parse_table(result.stdout, device=device)


def disk_sectors(disk: str, table: Table, settings: Settings) -> int:
    """The size of the whole disk `disk` (sysname) in the table's sectors."""
    size512 = int((settings.sys_root / "class" / "block" / disk / "size").read_text())
    return size512 * 512 // table.sector_size


def relocate_backup(device: str) -> None:
    """Write the GPT backup header and entries at the end of the disk."""
    run(["sfdisk", "--relocate", "gpt-bak-std", "--no-reread", "--no-tell-kernel", device])


def room_to_grow(table: Table, sectors: int) -> bool:
    """True when the last partition stops more than SLACK before the usable end."""
    last = table.last()
    if last is None:
        return False
    return (table.usable_end(sectors) - last.end) * table.sector_size >= SLACK


def grow_last(device: str, table: Table) -> Table:
    """Grow the last partition to the end of the disk; return the new table."""
    last = table.last()
    assert last is not None
    run(["sfdisk", "-q", "-N", str(last.number), "--no-reread", "--no-tell-kernel",
         device], input=",+\n")
    return read_table(device)


@dataclass(frozen=True)
class KernelPartition:
    sysname: str
    path: str           # its device node
    start: int          # 512-byte sectors, as sysfs says
    size: int


def kernel_partitions(disk: str, settings: Settings) -> dict[int, KernelPartition]:
    """The partitions the kernel knows on `disk`, by number."""
    out = {}
    for name in hd.partitions_of(disk, settings):
        node = settings.sys_root / "class" / "block" / name
        out[int(_read(node / "partition"))] = KernelPartition(
            name, str(settings.dev_root / name), int(_read(node / "start")),
            int(_read(node / "size")))
    return out


def _read(path: Path) -> str:
    return path.read_text().strip()


def reread(device: str, disk: str, table: Table, settings: Settings,
           ) -> dict[int, KernelPartition]:
    """Make the kernel use `table` (partx -u), check that it does, and wait for
    the partitions' device nodes; return them by number."""
    # partx -u leaves some stale partitions (a moved start, a number beyond the
    # table): then the kernel forgets them all and learns the table again.
    settle()
    for argvs in ([["partx", "-u", device]],
                  [["partx", "-d", device], ["partx", "-a", device]]):
        for argv in argvs:
            run(argv, check=False)
        seen = kernel_partitions(disk, settings)
        stale = _stale(table, seen)
        if not stale:
            break
    else:
        raise LayoutError(f"the kernel still uses an old partition table of {device} "
                          f"(partition(s) {', '.join(map(str, stale))}): is a partition in "
                          "use? Close what uses it, or unplug and plug the drive, then "
                          "customise again")
    _wait_for_nodes(settings, [seen[p.number].sysname for p in table.partitions])
    return {p.number: seen[p.number] for p in table.partitions}


def settle() -> None:
    """Let udev finish the rescan that writing the table (or closing a disk written
    to: udev watches them) caused, if udev runs."""
    if shutil.which("udevadm") and Path("/run/udev/control").exists():
        run(["udevadm", "settle", "--timeout=10"], check=False, timeout=15)


def _stale(table: Table, seen: dict[int, KernelPartition]) -> list[int]:
    """Numbers of the partitions of `table` the kernel does not see as they are."""
    scale = table.sector_size // 512
    wrong = {p.number for p in table.partitions
             if (k := seen.get(p.number)) is None
             or (k.start, k.size) != (p.start * scale, p.size * scale)}
    return sorted(wrong | (seen.keys() - {p.number for p in table.partitions}))


def scans_partitions(disk: str, settings: Settings) -> bool:
    """False for a loop device attached without partition scanning (losetup
    without -P): the kernel keeps partitions added to it by partx until they are
    deleted, even after the loop device is detached."""
    flag = settings.sys_root / "class" / "block" / disk / "loop" / "partscan"
    return not flag.exists() or _read(flag) == "1"


def forget_partitions(device: str) -> None:
    """Delete the kernel's partitions of `device` (partx -d); the table stays."""
    run(["partx", "-d", device], check=False)


def _wait_for_nodes(settings: Settings, names: list[str], *, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while missing := [n for n in names if not (settings.dev_root / n).exists()]:
        if time.monotonic() > deadline:
            raise LayoutError(f"no device node for {', '.join(missing)} in "
                              f"{settings.dev_root} after {seconds:.0f} s: is udev running?")
        time.sleep(0.05)


def fs_type(path: str) -> str | None:
    """The filesystem type on `path` (blkid's low-level probe), None if none."""
    result = run(["blkid", "-p", "-o", "export", path], check=False)
    return parse_blkid(result.stdout).get("TYPE") if result.ok else None


def ext_size(path: str) -> int:
    """The size in bytes of the ext2/3/4 filesystem on `path`."""
    return parse_dumpe2fs(run(["dumpe2fs", "-h", path]).stdout)


def grow_ext(path: str, *, partition_bytes: int) -> tuple[int, int] | None:
    """Check and grow the ext2/3/4 filesystem on `path` to its partition;
    (size before, size after) in bytes, or None when it already fills it."""
    before = ext_size(path)
    if partition_bytes - before < 64 * 1024:
        return None
    fsck = run(["e2fsck", "-f", "-y", path], check=False, timeout=FSCK_TIMEOUT)
    if fsck.returncode not in (0, 1, 2):      # 1, 2: errors corrected
        tail = (fsck.stderr.strip() or fsck.stdout.strip()).splitlines()[-1:]
        raise LayoutError(f"e2fsck could not repair the filesystem on {path} (exit "
                          f"{fsck.returncode}: {' '.join(tail)}): the image may be damaged "
                          "or use ext4 features this station's e2fsprogs lacks; deploy "
                          "again, or use grow='first-boot'")
    run(["resize2fs", path], timeout=FSCK_TIMEOUT)
    return before, ext_size(path)
