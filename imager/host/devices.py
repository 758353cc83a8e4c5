"""Facts about block devices from /sys and /proc, for the safety guard.

Everything is read at call time; nothing here writes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from imager.settings import Settings

SYSTEM_MOUNTPOINTS = ("/", "/boot", "/boot/efi", "/efi", "/usr", "/var")


@dataclass(frozen=True)
class Mount:
    devno: str          # "major:minor"
    mountpoint: str
    source: str
    fstype: str


@dataclass(frozen=True)
class DeviceFacts:
    """What the guard needs to know about one target path."""

    path: str
    exists: bool
    is_block: bool = False
    is_file: bool = False
    sysname: str | None = None
    disk: str | None = None                  # whole-disk sysname
    read_only: bool = False
    related: frozenset[str] = frozenset()     # disk, partitions, holders (sysnames)
    mounts: tuple[tuple[str, str], ...] = ()  # (sysname, mountpoint) on related devices
    system_roles: tuple[tuple[str, str], ...] = ()  # (sysname, root|boot|swap|...)
    openers: tuple[tuple[int, str], ...] = ()       # (pid, command) holding it open
    loop_users: tuple[str, ...] = ()         # loop devices backed by this file
    excluded: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def read_mounts(settings: Settings) -> list[Mount]:
    """Parse /proc/self/mountinfo."""
    text = (settings.proc_root / "self" / "mountinfo").read_text()
    return parse_mountinfo(text)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 2:
            continue
        mounts.append(Mount(fields[2], _unescape(fields[4]), _unescape(rfields[1]), rfields[0]))
    return mounts


def _unescape(s: str) -> str:
    return s.encode().decode("unicode_escape") if "\\" in s else s


def read_swaps(settings: Settings) -> list[str]:
    """Device paths of active swap areas (from /proc/swaps)."""
    lines = (settings.proc_root / "swaps").read_text().splitlines()[1:]
    return [ln.split()[0] for ln in lines if ln.strip()]


def sysname_of_devno(devno: str, settings: Settings) -> str | None:
    link = settings.sys_root / "dev" / "block" / devno
    return link.resolve().name if link.exists() else None


def disk_of(sysname: str, settings: Settings) -> str:
    """The whole disk of a partition (or itself)."""
    node = (settings.sys_root / "class" / "block" / sysname).resolve()
    if (node / "partition").exists():
        return node.parent.name
    return sysname


def partitions_of(disk: str, settings: Settings) -> list[str]:
    node = (settings.sys_root / "class" / "block" / disk).resolve()
    return sorted(p.name for p in node.iterdir() if (p / "partition").exists())


def _links(sysname: str, kind: str, settings: Settings) -> list[str]:
    d = settings.sys_root / "class" / "block" / sysname / kind
    return sorted(os.listdir(d)) if d.is_dir() else []


def family(disk: str, settings: Settings) -> frozenset[str]:
    """The disk, its partitions, and everything stacked on them (dm, md...)."""
    seen: set[str] = set()
    todo = [disk, *partitions_of(disk, settings)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_links(name, "holders", settings))
    return frozenset(seen)


def underlying_disks(sysname: str, settings: Settings) -> set[str]:
    """Whole disks below a device (follows dm/md slaves down)."""
    slaves = _links(sysname, "slaves", settings)
    if not slaves:
        return {disk_of(sysname, settings)}
    out: set[str] = set()
    for s in slaves:
        out |= underlying_disks(s, settings)
    return out


def openers_of(rdev: int, settings: Settings, *, exclude_pid: int) -> list[tuple[int, str]]:
    """Processes holding a file descriptor on the device number `rdev`."""
    found = []
    for entry in settings.proc_root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude_pid:
            continue
        if _holds(entry / "fd", rdev):
            found.append((int(entry.name), _comm(entry)))
    return found


def _holds(fd_dir: Path, rdev: int) -> bool:
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            st = fd.stat()
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev:
            return True
    return False


def _comm(proc_dir: Path) -> str:
    try:
        return (proc_dir / "comm").read_text().strip()
    except OSError:
        return "?"


def loop_users_of(file: Path, settings: Settings) -> list[str]:
    """Loop devices whose backing file is `file`."""
    real = str(file.resolve())
    users = []
    for bf in (settings.sys_root / "block").glob("loop*/loop/backing_file"):
        if bf.read_text().strip().removesuffix(" (deleted)") == real:
            users.append(bf.parent.parent.name)
    return users
