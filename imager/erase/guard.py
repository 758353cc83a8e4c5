"""The safety guard: decide whether a device may be written.

`gather()` reads the facts from the host; `refusals()` is a pure decision on
them. Root, boot, swap, mounted and opened devices are refused and no flag
changes that; so are virtual and stacked devices (dm, md, nbd, zram, ram,
optical). A loop device backed by a block device is judged with the facts of
its backing device too. The exclusive open (O_EXCL) in host.blockdev is the
second, kernel-side line of defence: it stops mounts and exclusive holders,
not a plain reader such as `dd`, which is why the guard scans /proc itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

from imager.errors import RefusedDevice
from imager.host import devices as hd
from imager.host.devices import DeviceFacts, Mount
from imager.settings import Settings

ROLE_OF_MOUNTPOINT = {"/": "root", "/boot": "boot", "/boot/efi": "boot", "/efi": "boot",
                      "/usr": "system", "/var": "system"}
ROLE_TEXT = {
    "root": "holds the running system's root filesystem",
    "boot": "holds the running system's boot partition",
    "swap": "holds an active swap area of the running system",
    "system": "holds a filesystem of the running system",
}
PHYSICAL_FIX = "erase the physical disk(s) instead"
# Device types that are not physical disks: (what it is, what to do instead).
VIRTUAL_KINDS = {
    "dm": ("a device-mapper device (LVM, LUKS, multipath)", PHYSICAL_FIX),
    "md": ("a software RAID (md) device", PHYSICAL_FIX),
    "nbd": ("a network block device", "erase the disk on the server that exports it"),
    "zram": ("a compressed RAM disk", "it is not a drive and keeps nothing when reset"),
    "ram": ("a RAM disk", "it is not a drive and keeps nothing after a reboot"),
    "sr": ("an optical drive", "discs cannot be overwritten here: destroy the disc"),
}
_KIND_RE = re.compile(r"(dm-|md|nbd|zram|ram|sr)\d+")


def refusals(f: DeviceFacts, *, allow_files: bool = False) -> list[str]:
    """Every reason not to write the device described by `f` (empty: go)."""
    if not f.exists:
        return [f"{f.path} does not exist: is the drive plugged in?"]
    if not (f.is_block or f.is_file):
        return [f"{f.path} is not a block device"]
    if f.is_file and not allow_files:
        return [f"{f.path} is a regular file, not a drive: pass --allow-file to erase "
                "a disk image file"]
    out = _kind_refusals(f)
    out += [f"{ROLE_TEXT[role]} ({name})" for name, role in f.system_roles]
    out += [f"{name} is mounted on {mp}: unmount it first" for name, mp in f.mounts]
    if f.sysname and f.disk and f.sysname != f.disk:
        out.append(f"{f.sysname} is a partition: erase the whole disk /dev/{f.disk}")
    if f.read_only:
        out.append("device is read-only: check the write-protect switch or the dock")
    out += [f"open by another program: {cmd} (pid {pid}) on {name}: stop it first"
            for pid, cmd, name in f.openers]
    what = "file" if f.is_file else "device"
    out += [f"backing {what} of /dev/{lo}: detach it first (losetup -d /dev/{lo})"
            for lo in f.loop_users]
    out += _backing_refusals(f)
    if f.excluded:
        out.append("excluded by the station configuration (IMAGER_EXCLUDE)")
    return out


def virtual_kind(sysname: str) -> str | None:
    """The VIRTUAL_KINDS key of a device name (dm-0 -> "dm"), or None for a disk."""
    m = _KIND_RE.fullmatch(sysname)
    return m.group(1).rstrip("-") if m else None


def _kind_refusals(f: DeviceFacts) -> list[str]:
    """Refuse stacked devices (built on other disks) and non-physical device types."""
    name = f.disk or f.sysname or f.path
    kind = virtual_kind(name)
    if f.built_on:
        noun = VIRTUAL_KINDS[kind][0] if kind else "a stacked device"
        disks = ", ".join(f"/dev/{d}" for d in f.built_on)
        return [f"{name} is {noun} built on {disks}: {PHYSICAL_FIX}"]
    if kind:
        noun, fix = VIRTUAL_KINDS[kind]
        return [f"{name} is {noun}, not a physical disk: {fix}"]
    return []


def _backing_refusals(f: DeviceFacts) -> list[str]:
    """A loop over a block device inherits every refusal of that device."""
    if f.backing is None:
        return []
    others = tuple(lo for lo in f.backing.loop_users if lo != f.sysname)
    backing = dataclasses.replace(f.backing, loop_users=others)
    return [f"{f.sysname} is backed by {backing.path}, which is refused: {r}"
            for r in refusals(backing)]


def check(path: str, settings: Settings, *, allow_files: bool = False) -> DeviceFacts:
    """Gather facts and raise RefusedDevice with every reason, if any."""
    facts = gather(path, settings)
    reasons = refusals(facts, allow_files=allow_files)
    if reasons:
        raise RefusedDevice(path, reasons)
    return facts


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
    devnos = {rdev: sysname, **_devnos(related, settings)}
    ro = (settings.sys_root / "class" / "block" / sysname / "ro").read_text().strip() == "1"
    return DeviceFacts(
        path=path, exists=True, is_block=True, rdev=rdev, sysname=sysname, disk=disk,
        read_only=ro, related=related, built_on=_built_on(disk, settings),
        mounts=tuple(sorted({(n, mp) for n, mp in mounted if n in related})),
        system_roles=tuple(_system_roles(disk, mounted, settings)),
        openers=tuple(hd.block_openers(devnos, settings, exclude_pid=os.getpid())),
        loop_users=tuple(hd.loops_backed_by(devnos, settings)),
        backing=_loop_backing(sysname, settings, mounted),
        excluded=_excluded(path, sysname, disk, settings),
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


def _excluded(path: str, sysname: str, disk: str, settings: Settings) -> bool:
    names = {path, sysname, disk, f"/dev/{sysname}", f"/dev/{disk}"}
    return any(x in names for x in settings.excluded_devices)
