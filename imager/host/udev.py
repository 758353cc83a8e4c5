"""Whole disks coming and going, from pyudev (the only code that listens to udev).

The monitor listens to udev's events when udevd runs (its properties are then
complete), else to the kernel's own netlink events (a live system without
udevd, a container). It is started BEFORE the disks present are listed, so
no disk plugged in between is missed; a disk listed and then announced is
reported twice, which the caller's "present" set absorbs.

Presence is read from sysfs, not inferred from the action name: a loop device
attached or detached, or a card reader whose card is pulled, only sends
"change"; a disk is present when /sys/block/NAME exists with a size > 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyudev

from imager.settings import Settings

# Devices that are never drives in a dock (RAM disks, optical drives, stacked).
NOT_DRIVES = ("zram", "ram", "sr", "dm-", "md", "nbd", "fd")


@dataclass(frozen=True)
class BlockEvent:
    """A whole disk appeared (`present`) or went away (not `present`)."""

    name: str          # kernel name: sdb, nvme0n1, loop3
    path: str          # /dev/sdb
    present: bool
    action: str        # the kernel/udev action: add, change, remove, or "listed"
    seqnum: int | None = None


def udevd_running() -> bool:
    return Path("/run/udev/control").exists()


def is_disk_name(name: str) -> bool:
    return not name.startswith(NOT_DRIVES)


def present(name: str, settings: Settings) -> bool:
    """True when /sys/block/NAME exists and has a medium (size > 0)."""
    try:
        return int((settings.sys_root / "block" / name / "size").read_text()) > 0
    except (OSError, ValueError):
        return False


class BlockWatcher:
    """Kernel/udev block events, reduced to disks appearing and disappearing."""

    def __init__(self, settings: Settings, *, source: str | None = None) -> None:
        self.settings = settings
        self.source = source or ("udev" if udevd_running() else "kernel")
        self._context = pyudev.Context()
        self._monitor = pyudev.Monitor.from_netlink(self._context, source=self.source)
        self._monitor.filter_by("block")
        self._monitor.start()

    def listed(self) -> list[BlockEvent]:
        """The disks present now (call after construction: the monitor already runs)."""
        out = []
        for name in sorted(os.listdir(self.settings.sys_root / "block")):
            if is_disk_name(name) and present(name, self.settings):
                out.append(BlockEvent(name, f"/dev/{name}", True, "listed"))
        return out

    def poll(self, timeout: float) -> BlockEvent | None:
        """The next disk event, or None after `timeout` seconds without one."""
        device = self._monitor.poll(timeout=timeout)
        if device is None:
            return None
        props = device.properties
        if props.get("DEVTYPE") != "disk" or not is_disk_name(device.sys_name):
            return BlockEvent(device.sys_name, "", False, "ignored")
        gone = device.action == "remove"
        seq = props.get("SEQNUM")
        return BlockEvent(device.sys_name, device.device_node or f"/dev/{device.sys_name}",
                          not gone and present(device.sys_name, self.settings),
                          device.action or "", int(seq) if seq and seq.isdigit() else None)

    def fileno(self) -> int:
        fd: int = self._monitor.fileno()       # pyudev ships no types
        return fd

    def close(self) -> None:
        """Release the netlink socket (pyudev frees the monitor when it is collected)."""
        del self._monitor
