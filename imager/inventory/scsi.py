"""SCSI identity from `sg_inq` and SANITIZE support from `sg_opcodes` (pure).

sg_opcodes lists supported commands as "opcode  service-action  name" lines;
SANITIZE is opcode 0x48 with service actions 1 overwrite, 2 block erase,
3 cryptographic erase (SBC-3). A device that refuses REPORT SUPPORTED
OPERATION CODES (QEMU's virtio-scsi disk) lists nothing: no sanitize claimed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imager.errors import DeviceError

SERVICE_ACTIONS = {1: "overwrite", 2: "block", 3: "crypto"}
_LINE = re.compile(r"^\s*48\s+([0-9a-fA-F]+)\s+\S", re.M)


def sanitize_modes(text: str) -> frozenset[str]:
    """The SANITIZE service actions the device reports supporting."""
    return frozenset(SERVICE_ACTIONS[int(sa, 16)] for sa in _LINE.findall(text)
                     if int(sa, 16) in SERVICE_ACTIONS)


@dataclass(frozen=True)
class ScsiInquiry:
    """The standard INQUIRY data and unit serial number `sg_inq` prints."""

    vendor: str
    product: str
    revision: str
    serial: str | None
    device_type: str | None


def _inq_field(text: str, label: str) -> str | None:
    m = re.search(rf"{label}:[ \t]*(.*?)\s*$", text, re.M)
    return m.group(1) if m and m.group(1) else None


def parse_inquiry(text: str) -> ScsiInquiry:
    """`sg_inq DEV` -> ScsiInquiry."""
    vendor = _inq_field(text, "Vendor identification")
    if vendor is None:
        raise DeviceError("sg_inq: no 'Vendor identification' line: not a standard INQUIRY")
    return ScsiInquiry(vendor=vendor, product=_inq_field(text, "Product identification") or "",
                       revision=_inq_field(text, "Product revision level") or "",
                       serial=_inq_field(text, "Unit serial number"),
                       device_type=_inq_field(text, "Peripheral device type"))
