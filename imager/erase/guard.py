"""The safety guard: decide whether a device may be written.

`gather()` reads the facts from the host; `refusals()` is a pure decision on
them. Root, boot, swap and mounted devices are refused and no flag changes
that. The exclusive open (O_EXCL) in host.blockdev is the second, kernel-side
line of defence.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from imager.errors import RefusedDevice
from imager.host import devices as hd
from imager.host.devices import DeviceFacts
from imager.settings import Settings

ROLE_OF_MOUNTPOINT = {"/": "root", "/boot": "boot", "/boot/efi": "boot", "/efi": "boot",
                      "/usr": "system", "/var": "system"}
ROLE_TEXT = {
    "root": "holds the running system's root filesystem",
    "boot": "holds the running system's boot partition",
    "swap": "holds an active swap area of the running system",
    "system": "holds a filesystem of the running system",
}


def refusals(f: DeviceFacts, *, allow_files: bool = False) -> list[str]:
    """Every reason not to write the device described by `f` (empty: go)."""
    if not f.exists:
        return [f"{f.path} does not exist: is the drive plugged in?"]
    if not (f.is_block or f.is_file):
        return [f"{f.path} is not a block device"]
    if f.is_file and not allow_files:
        return [f"{f.path} is a regular file, not a drive: pass --allow-file to erase "
                "a disk image file"]
    out = [f"{ROLE_TEXT[role]} ({name})" for name, role in f.system_roles]
    out += [f"{name} is mounted on {mp}: unmount it first" for name, mp in f.mounts]
    if f.sysname and f.disk and f.sysname != f.disk:
        out.append(f"{f.sysname} is a partition: erase the whole disk /dev/{f.disk}")
    if f.read_only:
        out.append("device is read-only: check the write-protect switch or the dock")
    out += [f"open by another program: {cmd} (pid {pid})" for pid, cmd in f.openers]
    out += [f"backing file of /dev/{lo}: detach it first (losetup -d)" for lo in f.loop_users]
    if f.excluded:
        out.append("excluded by the station configuration (IMAGER_EXCLUDE)")
    return out


def check(path: str, settings: Settings, *, allow_files: bool = False) -> DeviceFacts:
    """Gather facts and raise RefusedDevice with every reason, if any."""
    facts = gather(path, settings)
    reasons = refusals(facts, allow_files=allow_files)
    if reasons:
        raise RefusedDevice(path, reasons)
    return facts


def gather(path: str, settings: Settings) -> DeviceFacts:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return DeviceFacts(path=path, exists=False)
    if stat.S_ISREG(st.st_mode):
        users = hd.loop_users_of(Path(path), settings)
        return DeviceFacts(path=path, exists=True, is_file=True, loop_users=tuple(users))
    if not stat.S_ISBLK(st.st_mode):
        return DeviceFacts(path=path, exists=True)
    return _block_facts(path, st.st_rdev, settings)


def _devno(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _block_facts(path: str, rdev: int, settings: Settings) -> DeviceFacts:
    sysname = hd.sysname_of_devno(_devno(rdev), settings) or os.path.basename(path)
    disk = hd.disk_of(sysname, settings)
    related = hd.family(disk, settings)
    ro = (settings.sys_root / "class" / "block" / sysname / "ro").read_text().strip() == "1"
    return DeviceFacts(
        path=path, exists=True, is_block=True, sysname=sysname, disk=disk, read_only=ro,
        related=related,
        mounts=tuple(_mounts_on(related, settings)),
        system_roles=tuple(_system_roles(disk, settings)),
        openers=tuple(hd.openers_of(rdev, settings, exclude_pid=os.getpid())),
        excluded=_excluded(path, sysname, disk, settings),
    )


def _mount_sysname(m: hd.Mount, settings: Settings) -> str | None:
    name = hd.sysname_of_devno(m.devno, settings)
    if name is None and m.source.startswith("/dev/"):
        try:
            name = hd.sysname_of_devno(_devno(os.stat(m.source).st_rdev), settings)
        except OSError:
            return None
    return name


def _mounts_on(related: frozenset[str], settings: Settings) -> list[tuple[str, str]]:
    out = []
    for m in hd.read_mounts(settings):
        name = _mount_sysname(m, settings)
        if name in related:
            out.append((name, m.mountpoint))
    return sorted(set(out))


def _system_roles(disk: str, settings: Settings) -> list[tuple[str, str]]:
    """Roles (root/boot/swap...) the running system gives to devices on `disk`."""
    roles = []
    for m in hd.read_mounts(settings):
        role = ROLE_OF_MOUNTPOINT.get(m.mountpoint)
        name = _mount_sysname(m, settings) if role else None
        if name and disk in hd.underlying_disks(name, settings):
            roles.append((name, role))
    for swap in hd.read_swaps(settings):
        try:
            name = hd.sysname_of_devno(_devno(os.stat(swap).st_rdev), settings)
        except OSError:
            continue
        if name and disk in hd.underlying_disks(name, settings):
            roles.append((name, "swap"))
    return sorted(set(roles))


def _excluded(path: str, sysname: str, disk: str, settings: Settings) -> bool:
    names = {path, sysname, disk, f"/dev/{sysname}", f"/dev/{disk}"}
    return any(x in names for x in settings.excluded_devices)
