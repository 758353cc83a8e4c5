"""ATA identity, security state, sanitize modes, HPA and DCO from hdparm (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from imager.errors import DeviceError


@dataclass(frozen=True)
class AtaSecurity:
    """The Security section of `hdparm -I` (ATA Security feature set)."""

    supported: bool
    enabled: bool
    locked: bool
    frozen: bool
    count_expired: bool
    enhanced_erase: bool
    erase_minutes: int | None
    enhanced_erase_minutes: int | None


@dataclass(frozen=True)
class AtaIdentify:
    model: str
    serial: str
    firmware: str
    sectors: int | None
    logical_sector: int
    physical_sector: int
    rotational: bool | None
    wwn: str | None
    security: AtaSecurity | None
    sanitize: frozenset[str]  # {"block", "crypto", "overwrite"} the drive supports


SANITIZE_COMMANDS = {"BLOCK_ERASE_EXT": "block", "CRYPTO_SCRAMBLE_EXT": "crypto",
                     "OVERWRITE_EXT": "overwrite"}


def _field(text: str, label: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(label)}:\s*(.*?)\s*$", text, re.M)
    return m.group(1) if m else None


def _int(text: str, pattern: str) -> int | None:
    m = re.search(pattern, text, re.M)
    return int(m.group(1)) if m else None


def _flag(section: str, word: str) -> bool:
    """hdparm prints '\\tnot\\t<word>' or '\\t\\t<word>' on a line of its own."""
    m = re.search(rf"^\s*(not)?\s+{word}(?::.*)?$", section, re.M)
    return m is not None and m.group(1) is None


def parse_security(section: str) -> AtaSecurity:
    times = re.search(r"(\d+)min for SECURITY ERASE UNIT\.\s*(\d+)min for ENHANCED", section)
    plain = _int(section, r"(\d+)min for SECURITY ERASE UNIT")
    return AtaSecurity(
        supported=_flag(section, "supported"),
        enabled=_flag(section, "enabled"), locked=_flag(section, "locked"),
        frozen=_flag(section, "frozen"), count_expired=_flag(section, "expired"),
        enhanced_erase=bool(re.search(r"^\s+supported: enhanced erase", section, re.M)),
        erase_minutes=int(times.group(1)) if times else plain,
        enhanced_erase_minutes=int(times.group(2)) if times else None,
    )


def _security_section(text: str) -> str | None:
    m = re.search(r"^Security:\s*\n(.*?)(?=^\S)", text + "\nEND", re.M | re.S)
    return m.group(1) if m else None


def _sanitize_modes(text: str) -> frozenset[str]:
    if not re.search(r"^\s*\*?\s*SANITIZE feature set", text, re.M):
        return frozenset()
    return frozenset(mode for cmd, mode in SANITIZE_COMMANDS.items()
                     if re.search(rf"^\s*\*?\s*{cmd} command", text, re.M))


def parse_identify(text: str) -> AtaIdentify:
    """`hdparm -I DEV` -> AtaIdentify."""
    model = _field(text, "Model Number")
    if model is None:
        raise DeviceError("hdparm -I: no 'Model Number' line: not an ATA IDENTIFY listing")
    rate = _field(text, "Nominal Media Rotation Rate")
    wwn = _field(text, "Logical Unit WWN Device Identifier")
    section = _security_section(text)
    return AtaIdentify(
        model=model, serial=_field(text, "Serial Number") or "",
        firmware=_field(text, "Firmware Revision") or "",
        sectors=_int(text, r"LBA48\s+user addressable sectors:\s+(\d+)")
        or _int(text, r"LBA\s+user addressable sectors:\s+(\d+)"),
        logical_sector=_int(text, r"Logical\s+Sector size:\s+(\d+)") or 512,
        physical_sector=_int(text, r"Physical Sector size:\s+(\d+)") or 512,
        rotational=None if rate is None else rate != "Solid State Device",
        wwn=wwn.lower() if wwn else None,
        security=parse_security(section) if section is not None else None,
        sanitize=_sanitize_modes(text),
    )


@dataclass(frozen=True)
class HostProtectedArea:
    current_max: int
    native_max: int
    enabled: bool

    @property
    def hidden_sectors(self) -> int:
        return self.native_max - self.current_max


def parse_hpa(text: str) -> HostProtectedArea:
    """`hdparm -N DEV` -> the visible and native maximum sectors."""
    m = re.search(r"max sectors\s*=\s*(\d+)/(\d+), HPA is (enabled|disabled)", text)
    if not m:
        raise DeviceError("hdparm -N: no 'max sectors = A/B, HPA is ...' line")
    return HostProtectedArea(int(m.group(1)), int(m.group(2)), m.group(3) == "enabled")


def parse_dco_real_max(text: str, *, native_max: int) -> int | None:
    """`hdparm --dco-identify` -> the DCO's real maximum sectors, or None when
    the drive has no usable DCO. A maximum below the native one cannot be a
    real DCO: QEMU answers with an all-zero page that "verifies" and reports
    1 sector, which must not be read as a DCO shrinking the drive."""
    real = _int(text, r"Real max sectors:\s+(\d+)")
    if real is None or "DCO Checksum verified" not in text or real < native_max:
        return None
    return real


SanitizeState = Literal["idle", "frozen", "in progress", "completed", "failed", "not supported"]

_SANITIZE_STATES: dict[str, SanitizeState] = {
    "0": "idle", "1": "frozen", "2": "in progress", "3": "failed", "4": "completed"}


@dataclass(frozen=True)
class SanitizeStatus:
    """What `hdparm --sanitize-status` reported (stdout and stderr together).

    `completed` is the drive's "last sanitize operation completed without
    error" flag: it stays set after a sanitize, so on its own it does not
    prove that the *latest* command ran."""

    state: SanitizeState
    percent: int | None = None       # printed only while in progress
    completed: bool = False
    reason: str | None = None        # "SANITIZE device error reason: ..." when refused


def sanitize_error_reason(text: str) -> str | None:
    """The reason hdparm prints when the drive aborts a SANITIZE command."""
    if "SANITIZE feature set is not supported" in text:
        return "SANITIZE feature set is not supported"
    m = re.search(r"SANITIZE device error reason:\s*(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


def parse_sanitize_status(text: str) -> SanitizeStatus:
    """`hdparm --sanitize-status DEV` (stdout + stderr) -> SanitizeStatus.

    hdparm 9.65 prints "State: SD0 Sanitize Idle", "SD1 Sanitize Frozen" or
    "SD2 Sanitize operation In Process" with "Progress: 0x... (N%)"; the
    completion flag as "Last Sanitize Operation Completed Without Error";
    a drive left in the failed state aborts the status command itself
    ("... completed unsuccessfully", "Drive in SD3 Sanitize Operation Failed
    state" on stderr)."""
    reason = sanitize_error_reason(text)
    if reason == "SANITIZE feature set is not supported":
        return SanitizeStatus("not supported", reason=reason)
    if re.search(r"SD3 Sanitize Operation Failed|completed unsuccessfully", text):
        return SanitizeStatus("failed", reason=reason)
    m = re.search(r"^\s*State:\s+SD(\d)", text, re.M)
    if not m or m.group(1) not in _SANITIZE_STATES:
        if reason == "Device in FROZEN state":
            return SanitizeStatus("frozen", reason=reason)
        raise DeviceError("hdparm --sanitize-status: no 'State: SDn' line"
                          + (f" ({reason})" if reason else ""))
    completed = "Last Sanitize Operation Completed Without Error" in text
    state = _SANITIZE_STATES[m.group(1)]
    if state == "idle" and completed:
        state = "completed"
    return SanitizeStatus(state, percent=_int(text, r"Progress:\s+0x[0-9a-fA-F]+\s+\((\d+)%\)"),
                          completed=completed or state == "completed", reason=reason)
