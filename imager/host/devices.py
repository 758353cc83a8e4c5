"""Facts about block devices from /sys and /proc, for the safety guard.

Everything is read at call time; nothing here writes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from imager.settings import Settings


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
    rdev: int | None = None                  # st_rdev of a block device, else None
    sysname: str | None = None
    disk: str | None = None                  # whole-disk sysname
    read_only: bool = False
    related: frozenset[str] = frozenset()     # disk, partitions, holders (sysnames)
    built_on: tuple[str, ...] = ()           # whole disks below a dm/md/stacked disk
    mounts: tuple[tuple[str, str], ...] = ()  # (sysname, mountpoint) on related devices
    system_roles: tuple[tuple[str, str], ...] = ()  # (sysname, root|boot|swap|...)
    openers: tuple[tuple[int, str, str], ...] = ()  # (pid, command, what it holds open)
    loop_users: tuple[str, ...] = ()         # loop devices backed by this file or disk
    backing: DeviceFacts | None = None       # facts of a loop's backing block device
    excluded: str | None = None              # the IMAGER_EXCLUDE entry that covers it
    imager_stick: str | None = None          # its disk's IMAGER-DATA partition (an imager stick)


def read_mounts(settings: Settings) -> list[Mount]:
    """Parse /proc/self/mountinfo."""
    path = settings.proc_root / "self" / "mountinfo"
    return parse_mountinfo(path.read_text(encoding="utf-8", errors="surrogateescape"))


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 2:
            continue
        mounts.append(Mount(fields[2], _unescape(fields[4]), _unescape(rfields[1]), rfields[0]))
    return mounts


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(s: str) -> str:
    """Undo the kernel's \\ooo escapes (space, tab, newline, backslash); keep the rest."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), s)


def read_swaps(settings: Settings) -> list[str]:
    """Device paths of active swap areas (from /proc/swaps)."""
    text = (settings.proc_root / "swaps").read_text(encoding="utf-8", errors="surrogateescape")
    return [_unescape(ln.split()[0]) for ln in text.splitlines()[1:] if ln.strip()]


def sysname_of_devno(devno: str, settings: Settings) -> str | None:
    link = settings.sys_root / "dev" / "block" / devno
    return link.resolve().name if link.exists() else None


def devno_of(sysname: str, settings: Settings) -> int | None:
    """The device number (st_rdev) of a block device, from sysfs."""
    try:
        text = (settings.sys_root / "class" / "block" / sysname / "dev").read_text()
    except OSError:
        return None
    major, _, minor = text.strip().partition(":")
    return os.makedev(int(major), int(minor))


def namespaces_of(controller: str, settings: Settings) -> list[str]:
    """The namespace block devices of an NVMe controller (nvme0 -> nvme0n1...;
    a multipath path nvme0c0n1 counts as its namespace nvme0n1)."""
    node = settings.sys_root / "class" / "nvme" / controller
    names = os.listdir(node) if node.is_dir() else []
    found = {re.sub(r"^nvme(\d+)c\d+n(\d+)$", r"nvme\1n\2", n) for n in names
             if re.fullmatch(r"nvme\d+(c\d+)?n\d+", n)}
    return sorted(found)


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


def slaves_of(sysname: str, settings: Settings) -> list[str]:
    """Devices a dm/md/stacked device is built on (empty for a plain disk)."""
    return _links(sysname, "slaves", settings)


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
    slaves = slaves_of(sysname, settings)
    if not slaves:
        return {disk_of(sysname, settings)}
    out: set[str] = set()
    for s in slaves:
        out |= underlying_disks(s, settings)
    return out


def block_openers(devnos: Mapping[int, str], settings: Settings, *,
                  exclude_pid: int) -> list[tuple[int, str, str]]:
    """Processes holding a block device in `devnos` ({st_rdev: name}) open."""
    def match(st: os.stat_result) -> str | None:
        return devnos.get(st.st_rdev) if stat.S_ISBLK(st.st_mode) else None
    return _openers(match, settings, exclude_pid)


def file_openers(file: Path, settings: Settings, *,
                 exclude_pid: int) -> list[tuple[int, str, str]]:
    """Processes holding the regular file `file` open (same st_dev and st_ino)."""
    target = file.stat()

    def match(st: os.stat_result) -> str | None:
        same = (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino)
        return str(file) if same and stat.S_ISREG(st.st_mode) else None
    return _openers(match, settings, exclude_pid)


def _openers(match: Callable[[os.stat_result], str | None], settings: Settings,
             exclude_pid: int) -> list[tuple[int, str, str]]:
    """(pid, command, name) for every process fd that `match` names."""
    found: set[tuple[int, str, str]] = set()
    for entry in settings.proc_root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude_pid:
            continue
        names = {n for st in _fd_stats(entry / "fd") if (n := match(st))}
        found |= {(int(entry.name), _comm(entry), n) for n in names}
    return sorted(found)


def _fd_stats(fd_dir: Path) -> Iterator[os.stat_result]:
    """What the open file descriptors in `fd_dir` point to (vanished ones skipped)."""
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return
    for fd in fds:
        try:
            yield fd.stat()
        except OSError:
            continue


def _comm(proc_dir: Path) -> str:
    try:
        return (proc_dir / "comm").read_text().strip()
    except OSError:
        return "?"


def backing_file_of(loop: str, settings: Settings) -> str | None:
    """The backing file of an attached loop device (None: not a loop or detached)."""
    try:
        text = (settings.sys_root / "class" / "block" / loop / "loop" / "backing_file").read_text()
    except OSError:
        return None
    return text.strip().removesuffix(" (deleted)") or None


def _attached_loops(settings: Settings) -> Iterator[tuple[str, str]]:
    """(loop sysname, backing file path) for every attached loop device."""
    for bf in sorted((settings.sys_root / "block").glob("loop*/loop/backing_file")):
        name = bf.parent.parent.name
        backing = backing_file_of(name, settings)
        if backing:
            yield name, backing


def loop_users_of(file: Path, settings: Settings) -> list[str]:
    """Loop devices whose backing file is `file`."""
    real = str(file.resolve())
    return [lo for lo, backing in _attached_loops(settings) if backing == real]


def loops_backed_by(devnos: Mapping[int, str], settings: Settings) -> list[str]:
    """Loop devices whose backing file is one of the block devices in `devnos`."""
    users = []
    for lo, backing in _attached_loops(settings):
        try:
            st = os.stat(backing)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev in devnos:
            users.append(lo)
    return users
