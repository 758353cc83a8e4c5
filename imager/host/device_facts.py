"""Read from the host everything the safety guard (imager.erase.guard) decides on.

Facts of one target path: what it is (block device, file), its disk and that
disk's family (partitions, holders), mounts and the running system's roles
(root, boot, swap), the programs holding it open, the loop devices it backs,
a loop's backing device, whether the station's configuration excludes it, and
whether its disk is an imager USB stick (an IMAGER-DATA partition: imager.host.stick_data).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from imager.host import devices as hd
from imager.host import stick_data
from imager.host.devices import DeviceFacts, Mount
from imager.settings import Settings

ROLE_OF_MOUNTPOINT = {"/": "root", "/boot": "boot", "/boot/efi": "boot", "/efi": "boot",
                      "/usr": "system", "/var": "system"}


def gather(path: str, settings: Settings) -> DeviceFacts:
    """Read from the host everything `refusals()` needs about `path`."""
    return _gather(path, settings, _mounted(hd.read_mounts(settings), settings))


def _gather(path: str, settings: Settings, mounted: list[tuple[str, str]]) -> DeviceFacts:
    """`gather()` with the mounts already read: (sysname, mountpoint) pairs."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return DeviceFacts(path=path, exists=False)
    if stat.S_ISREG(st.st_mode):
        return _file_facts(path, settings)
    if not stat.S_ISBLK(st.st_mode):
        return DeviceFacts(path=path, exists=True)
    return _block_facts(path, st.st_rdev, settings, mounted)


def _devno(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _file_facts(path: str, settings: Settings) -> DeviceFacts:
    users = hd.loop_users_of(Path(path), settings)
    openers = hd.file_openers(Path(path), settings, exclude_pid=os.getpid())
    return DeviceFacts(path=path, exists=True, is_file=True, loop_users=tuple(users),
                       openers=tuple(openers))


def _block_facts(path: str, rdev: int, settings: Settings,
                 mounted: list[tuple[str, str]]) -> DeviceFacts:
    sysname = hd.sysname_of_devno(_devno(rdev), settings) or os.path.basename(path)
    disk = hd.disk_of(sysname, settings)
    related = hd.family(disk, settings)
    devnos = {rdev: sysname, **_devnos(related | {disk}, settings)}
    ro = (settings.sys_root / "class" / "block" / sysname / "ro").read_text().strip() == "1"
    return DeviceFacts(
        path=path, exists=True, is_block=True, rdev=rdev, sysname=sysname, disk=disk,
        read_only=ro, related=related, built_on=_built_on(disk, settings),
        mounts=tuple(sorted({(n, mp) for n, mp in mounted if n in related})),
        system_roles=tuple(_system_roles(disk, mounted, settings)),
        openers=tuple(hd.block_openers(devnos, settings, exclude_pid=os.getpid())),
        loop_users=tuple(hd.loops_backed_by(devnos, settings)),
        backing=_loop_backing(sysname, settings, mounted),
        excluded=_excluded(path, sysname, disk, devnos, settings),
        imager_stick=stick_data.recognise(str(settings.dev_root / disk), settings),
    )


def _devnos(names: frozenset[str], settings: Settings) -> dict[int, str]:
    """{st_rdev: sysname} for every device in `names`."""
    out = {}
    for name in names:
        rdev = hd.devno_of(name, settings)
        if rdev is not None:
            out[rdev] = name
    return out


def _built_on(disk: str, settings: Settings) -> tuple[str, ...]:
    """The whole disks a stacked device is built on (empty for a plain disk)."""
    if not hd.slaves_of(disk, settings):
        return ()
    return tuple(sorted(hd.underlying_disks(disk, settings)))


def _loop_backing(sysname: str, settings: Settings,
                  mounted: list[tuple[str, str]]) -> DeviceFacts | None:
    """The facts of a loop device's backing file when that file is a block device."""
    backing = hd.backing_file_of(sysname, settings)
    try:
        is_block = backing is not None and stat.S_ISBLK(os.stat(backing).st_mode)
    except OSError:
        return None
    return _gather(backing, settings, mounted) if backing and is_block else None


def _mount_sysname(m: Mount, settings: Settings) -> str | None:
    name = hd.sysname_of_devno(m.devno, settings)
    if name is None and m.source.startswith("/dev/"):
        try:
            name = hd.sysname_of_devno(_devno(os.stat(m.source).st_rdev), settings)
        except OSError:
            return None
    return name


def _mounted(mounts: list[Mount], settings: Settings) -> list[tuple[str, str]]:
    """(sysname, mountpoint) of every mount backed by a block device."""
    out = []
    for m in mounts:
        name = _mount_sysname(m, settings)
        if name:
            out.append((name, m.mountpoint))
    return out


def _system_roles(disk: str, mounted: list[tuple[str, str]],
                  settings: Settings) -> list[tuple[str, str]]:
    """Roles (root/boot/swap...) the running system gives to devices on `disk`."""
    def on_disk(name: str) -> bool:
        return name == disk or disk in hd.underlying_disks(name, settings)

    roles = {(n, ROLE_OF_MOUNTPOINT[mp]) for n, mp in mounted if mp in ROLE_OF_MOUNTPOINT}
    for swap in hd.read_swaps(settings):
        try:
            name = hd.sysname_of_devno(_devno(os.stat(swap).st_rdev), settings)
        except OSError:
            continue
        if name:
            roles.add((name, "swap"))
    return sorted((n, role) for n, role in roles if on_disk(n))


def exclusion_entries(settings: Settings) -> list[str]:
    """The exclusion list's entries (Settings.from_env splits IMAGER_EXCLUDE on
    commas, spaces and newlines), without the spaces around them."""
    return [e.strip() for e in settings.excluded_devices if e.strip()]


def _entry_path(entry: str, settings: Settings) -> Path:
    """Where an entry points: a path as given, else a name under /dev
    (`sdb`, `disk/by-id/ata-...`, `mapper/vg-root`)."""
    return Path(entry) if entry.startswith("/") else settings.dev_root / entry


def _entry_devnos(entry: str, settings: Settings) -> set[int] | None:
    """The block devices an entry names now (links resolved): the device itself,
    or every namespace of an NVMe controller node (/dev/nvme0); None when it
    names no device present now."""
    try:
        st = os.stat(_entry_path(entry, settings))
    except OSError:
        return None
    if stat.S_ISBLK(st.st_mode):
        return {st.st_rdev}
    name = os.path.basename(os.path.realpath(_entry_path(entry, settings)))
    if stat.S_ISCHR(st.st_mode) and re.fullmatch(r"nvme\d+", name):
        found = {hd.devno_of(ns, settings) for ns in hd.namespaces_of(name, settings)}
        return {d for d in found if d is not None}
    return None


def unknown_exclusions(settings: Settings) -> list[str]:
    """The entries of the exclusion list that name no device present now (a typo,
    or a drive not plugged in): they protect a device only by its name."""
    return [e for e in exclusion_entries(settings) if _entry_devnos(e, settings) is None]


def _excluded(path: str, sysname: str, disk: str, devnos: dict[int, str],
              settings: Settings) -> str | None:
    """The entry of the exclusion list that covers this device, if any.

    Entries are compared by device number with the disk, its partitions and
    holders (excluding one partition protects the whole disk); an entry that
    names no device present now is compared by name."""
    names = {path, sysname, disk, f"/dev/{sysname}", f"/dev/{disk}"}
    for entry in exclusion_entries(settings):
        numbers = _entry_devnos(entry, settings)
        if numbers is not None:
            if numbers & devnos.keys():
                return entry
        elif entry in names or os.path.realpath(_entry_path(entry, settings)) in names:
            return entry
    return None
