"""Health and identity from `smartctl -j -x` (pure).

smartctl's exit status is a bit mask (smartctl(8)): bit 0 command line,
bit 1 device open failed, bit 2 a command to the disk failed, bit 3 SMART
status "failing", bits 4-7 prefail/usage attributes and logs. Bits 0-1 mean
the JSON holds no answer from the drive.

`rotation_rate` is 0 both for a solid-state drive and for a SCSI disk that
reports no rate (seen in the QEMU lab), so smartctl only ever says "rotational"
(a positive rpm); non-rotating comes from hdparm or lsblk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from imager.errors import DeviceError

EXIT_BITS = {
    0: "command line did not parse", 1: "device could not be opened",
    2: "a command to the disk failed", 3: "SMART status: disk failing",
    4: "prefail attributes at or below threshold",
    5: "usage or prefail attributes were below threshold in the past",
    6: "the error log has errors", 7: "the self-test log has errors",
}


@dataclass(frozen=True)
class SmartReport:
    protocol: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    capacity: int | None
    rotational: bool | None
    healthy: bool | None
    power_on_hours: int | None
    exit_status: int
    problems: tuple[str, ...]

    @property
    def answered(self) -> bool:
        """False when smartctl got nothing from the drive (bits 0-1)."""
        return not self.exit_status & 0b11


def parse(text: str) -> SmartReport:
    """Parse smartctl's JSON output (any device type)."""
    try:
        d: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise DeviceError(f"smartctl: not the JSON printed by smartctl -j ({exc})") from exc
    meta = d.get("smartctl", {})
    status = int(meta.get("exit_status", 0))
    problems = [m["string"] for m in meta.get("messages", []) if m.get("severity") == "error"]
    problems += [text for bit, text in EXIT_BITS.items() if status >> bit & 1]
    rate = d.get("rotation_rate")
    smart = d.get("smart_status") or {}
    return SmartReport(
        protocol=(d.get("device") or {}).get("protocol"), model=d.get("model_name"),
        serial=d.get("serial_number"), firmware=d.get("firmware_version"),
        capacity=(d.get("user_capacity") or {}).get("bytes"),
        rotational=True if rate else None,
        healthy=smart.get("passed"), power_on_hours=(d.get("power_on_time") or {}).get("hours"),
        exit_status=status, problems=tuple(problems),
    )
