"""The safety guard: decide whether a device may be written.

imager.host.device_facts reads the facts from the host; `refusals()` is a pure
decision on them, and `check()` puts the two together. Root, boot, swap,
mounted and opened devices are refused and no flag changes that; so are
virtual and stacked devices (dm, md, nbd, zram, ram, optical), and imager USB
sticks (their spool may hold the only proof of an erasure). A loop device
backed by a block device is judged with the facts of its backing device too.
The exclusive open (O_EXCL) in host.blockdev is the second, kernel-side line
of defence: it stops mounts and exclusive holders, not a plain reader such as
`dd`, which is why the guard scans /proc itself.
"""

from __future__ import annotations

import dataclasses
import re

from imager.errors import RefusedDevice
from imager.host.device_facts import gather
from imager.host.devices import DeviceFacts
from imager.host.stick_data import LABEL
from imager.settings import Settings

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


def refusals(f: DeviceFacts, *, allow_files: bool = False,
             stick_writer: bool = False) -> list[str]:
    """Every reason not to write the device described by `f` (empty: go).
    `stick_writer`: the writer of imager sticks (imager.boot.usb), which carries
    a stick's spool over, may write an imager stick; nothing else may."""
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
        out.append(f"excluded by the station configuration (IMAGER_EXCLUDE={f.excluded}): "
                   "remove it from that list to erase it")
    if f.imager_stick and not stick_writer:
        out.append(stick_refusal(f.disk or f.sysname or f.path, f.imager_stick))
    return out


def stick_refusal(disk: str, part: str) -> str:
    """Why an imager stick is never erased nor imaged, and what to do instead."""
    dev = f"/dev/{disk}"
    return (f"{dev} est une clé imager (partition {LABEL} {part}) : les rapports qu'elle "
            "garde sont la preuve d'effacement des dons, elle n'est jamais effacée. Envoyez "
            f"d'abord ses rapports (`imager boot usb-sync {dev} --station URL`), puis "
            f"réécrivez-la avec `imager boot usb {dev}` / {dev} is an imager USB stick (its "
            f"{LABEL} partition {part}): the reports it keeps are the proof that donated "
            "drives were erased, so it is never erased. Send its reports first (`imager boot "
            f"usb-sync {dev} --station URL`), then rewrite it with `imager boot usb {dev}`; "
            f"only once they are sent, to make it a plain drive, clear it (`wipefs --all "
            f"{dev}`)")


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
    """Gather facts (imager.host.device_facts) and raise RefusedDevice with every
    reason, if any."""
    facts = gather(path, settings)
    reasons = refusals(facts, allow_files=allow_files)
    if reasons:
        raise RefusedDevice(path, reasons)
    return facts
