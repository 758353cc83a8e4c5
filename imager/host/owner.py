"""Who runs a job: host, boot, process. Lets a restart tell a dead owner."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil


def machine_id() -> str:
    """This machine's stable id (/etc/machine-id); hostnames repeat on live systems."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return f"host:{socket.gethostname()}"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot@{psutil.boot_time():.0f}"


@dataclass(frozen=True)
class Owner:
    host: str
    boot_id: str
    pid: int
    started: float

    @classmethod
    def me(cls) -> Owner:
        return cls(machine_id(), boot_id(), os.getpid(),
                   psutil.Process().create_time())

    def alive(self) -> bool:
        """True when this owner is the current boot and its process still runs."""
        me = Owner.me()
        if self.host != me.host:
            return True  # another machine's job (shared registry): not ours to judge
        if self.boot_id != me.boot_id:
            return False
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except psutil.Error:
            return False


def mac_addresses(settings_sys: Path = Path("/sys")) -> tuple[str, ...]:
    """This machine's network MAC addresses (not loopback nor all-zero)."""
    found = []
    for address in sorted((settings_sys / "class" / "net").glob("*/address")):
        try:
            mac = address.read_text().strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            found.append(mac)
    return tuple(found)


# EFI global variable GUID: SecureBoot-<guid> holds 4 attribute bytes, then 1 = on.
SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def secure_boot(settings_sys: Path = Path("/sys")) -> bool | None:
    """Whether the firmware booted this system with Secure Boot on; None when it
    was not booted by UEFI (BIOS) or the variable cannot be read."""
    efi = settings_sys / "firmware" / "efi"
    try:
        data = (efi / "efivars" / SECURE_BOOT_VAR).read_bytes()
    except OSError:
        return False if efi.is_dir() and (efi / "efivars").is_dir() else None
    return len(data) >= 5 and data[4] == 1


def smbios_serial(settings_sys: Path = Path("/sys")) -> str | None:
    """The machine's serial number as its firmware (SMBIOS) gives it, if readable."""
    try:
        text = (settings_sys / "class" / "dmi" / "id" / "product_serial").read_text().strip()
    except OSError:
        return None
    return text or None
