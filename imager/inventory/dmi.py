"""What machine this is, from SMBIOS: `dmidecode` text or /sys/class/dmi/id (pure).

Firmware fills SMBIOS strings carelessly: "To Be Filled By O.E.M.", "Default
string", "System Serial Number", "0123456789", all-zero UUIDs... Such values
are unknown (None) here, never an identity: two donated laptops must not look
like the same machine because both say "Default string". Serials a poster
redacted ("XXXXXXXX", "-------") are unknown too.

Sizes are bytes; dmidecode's "kB"/"KB", "MB", "GB" are binary units (SMBIOS
Memory Device sizes are in KiB/MiB/GiB).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDERS = frozenset(s.casefold() for s in (
    "To Be Filled By O.E.M.", "To be filled by O.E.M.", "Default string", "Default String",
    "System Serial Number", "System Product Name", "System manufacturer", "System Version",
    "System SKUNumber", "Base Board Serial Number", "Base Board Product Name",
    "Chassis Serial Number", "Chassis Manufacture", "Chassis Version",
    "Not Specified", "Not Provided", "Not Available", "Not Applicable", "Not Present",
    "Not Installed", "Not Settable", "None", "Unknown", "Undefined", "Empty", "N/A", "NA",
    "INVALID", "OEM", "O.E.M.", "No Asset Tag", "No Asset Information", "Asset Tag",
    "Asset-1234567890", "No Module Installed", "NO DIMM", "0123456789", "123456789",
    "1234567890", "Type1ProductConfigId", "Type2 - Board Serial Number", "SKU",
))
_REDACTED = re.compile(r"^[\sXx*#.\-_0]*$")  # "XXXXXXXX", "-----", "00000000", "***"
_BAD_UUIDS = re.compile(r"^(?:[0\-]+|[Ff\-]+)$")

# SMBIOS 3.x, 7.4.1 System Enclosure or Chassis Types (what dmidecode prints).
CHASSIS_TYPES = {
    1: "Other", 2: "Unknown", 3: "Desktop", 4: "Low Profile Desktop", 5: "Pizza Box",
    6: "Mini Tower", 7: "Tower", 8: "Portable", 9: "Laptop", 10: "Notebook",
    11: "Hand Held", 12: "Docking Station", 13: "All In One", 14: "Sub Notebook",
    15: "Space-saving", 16: "Lunch Box", 17: "Main Server Chassis", 18: "Expansion Chassis",
    19: "Sub Chassis", 20: "Bus Expansion Chassis", 21: "Peripheral Chassis",
    22: "RAID Chassis", 23: "Rack Mount Chassis", 24: "Sealed-case PC", 25: "Multi-system",
    26: "CompactPCI", 27: "AdvancedTCA", 28: "Blade", 29: "Blade Enclosing", 30: "Tablet",
    31: "Convertible", 32: "Detachable", 33: "IoT Gateway", 34: "Embedded PC",
    35: "Mini PC", 36: "Stick PC",
}
PORTABLE_CHASSIS = frozenset({"Portable", "Laptop", "Notebook", "Hand Held", "Sub Notebook",
                              "Tablet", "Convertible", "Detachable"})
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def clean(value: str | None) -> str | None:
    """A firmware string, or None when it is empty, a placeholder or redacted."""
    if value is None:
        return None
    text = " ".join(value.split())
    if not text or text.casefold() in PLACEHOLDERS or _REDACTED.match(text):
        return None
    return text


def clean_uuid(value: str | None) -> str | None:
    """A system UUID in lower case; None for all-zero, all-F or redacted ones."""
    text = clean(value)
    if text is None or _BAD_UUIDS.match(text) or "x" in text.casefold():
        return None
    return text.lower() if re.fullmatch(r"[0-9A-Fa-f\-]{32,36}", text) else None


@dataclass(frozen=True)
class MemoryModule:
    """One populated SMBIOS Memory Device (type 17)."""

    size: int                    # bytes
    locator: str | None = None   # "ChannelA-DIMM0", "DIMM #1"
    type: str | None = None      # "DDR4", "LPDDR3"...
    speed_mts: int | None = None  # MT/s (older dmidecode says "MHz" for the same number)
    manufacturer: str | None = None
    part_number: str | None = None
    serial: str | None = None


@dataclass(frozen=True)
class MachineInfo:
    """The identity and main parts of a machine; None where firmware did not say."""

    vendor: str | None = None
    product: str | None = None
    version: str | None = None
    serial: str | None = None
    uuid: str | None = None
    sku: str | None = None
    family: str | None = None
    board_vendor: str | None = None
    board_product: str | None = None
    board_serial: str | None = None
    chassis_type: str | None = None
    chassis_serial: str | None = None
    asset_tag: str | None = None
    cpus: tuple[str, ...] = ()
    cores: int | None = None
    threads: int | None = None
    max_speed_mhz: int | None = None
    memory: tuple[MemoryModule, ...] = ()
    source: str = "dmidecode"    # or "sysfs"

    @property
    def ram_bytes(self) -> int | None:
        """Total of the populated memory devices; None when none was listed."""
        return sum(m.size for m in self.memory) if self.memory else None

    @property
    def portable(self) -> bool | None:
        """True for laptops, notebooks, tablets...; None when the chassis is unknown."""
        return None if self.chassis_type is None else self.chassis_type in PORTABLE_CHASSIS


# --- dmidecode text -------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """One dmidecode record: its title ("System Information") and first-level fields."""

    title: str
    fields: dict[str, str]


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def records(text: str) -> Iterator[Record]:
    """dmidecode's records; sub-lists (Flags, Characteristics...) are left out."""
    title: str | None = None
    fields: dict[str, str] = {}
    level: int | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if _indent(line) == 0:
            if title is not None:
                yield Record(title, fields)
            title, fields, level = line.strip(), {}, None
            continue
        level = _indent(line) if level is None else level
        key, sep, value = line.strip().partition(":")
        if sep and _indent(line) == level and key not in fields:
            fields[key] = value.strip()
    if title is not None:
        yield Record(title, fields)


def parse_size(text: str | None) -> int | None:
    """'16 GB', '2048 MB', '512 kB' -> bytes; None for 'No Module Installed', '0 MB'."""
    m = re.match(r"^\s*(\d+)\s*([kKMGT]?B)\b", text or "")
    if not m or int(m.group(1)) == 0:
        return None
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _number(text: str | None) -> int | None:
    m = re.match(r"^\s*(\d+)", text or "")
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _module(f: dict[str, str]) -> MemoryModule | None:
    size = parse_size(f.get("Size"))
    if size is None:
        return None
    return MemoryModule(size=size, locator=clean(f.get("Locator")), type=clean(f.get("Type")),
                        speed_mts=_number(f.get("Speed")),
                        manufacturer=clean(f.get("Manufacturer")),
                        part_number=clean(f.get("Part Number")),
                        serial=clean(f.get("Serial Number")))


def _first(recs: list[Record], title: str) -> dict[str, str]:
    return next((r.fields for r in recs if r.title == title), {})


def _total(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def parse_dmidecode(text: str) -> MachineInfo:
    """`dmidecode` (full, or -t system,baseboard,chassis,processor,memory) -> MachineInfo."""
    recs = list(records(text))
    system, board = _first(recs, "System Information"), _first(recs, "Base Board Information")
    chassis = _first(recs, "Chassis Information")
    cpus = [r.fields for r in recs if r.title == "Processor Information"
            and clean(r.fields.get("Version")) is not None]
    modules = [m for r in recs if r.title == "Memory Device" if (m := _module(r.fields))]
    speeds = [s for c in cpus if (s := _number(c.get("Max Speed")))]
    return MachineInfo(
        vendor=clean(system.get("Manufacturer")), product=clean(system.get("Product Name")),
        version=clean(system.get("Version")), serial=clean(system.get("Serial Number")),
        uuid=clean_uuid(system.get("UUID")), sku=clean(system.get("SKU Number")),
        family=clean(system.get("Family")),
        board_vendor=clean(board.get("Manufacturer")),
        board_product=clean(board.get("Product Name")),
        board_serial=clean(board.get("Serial Number")),
        chassis_type=clean(chassis.get("Type")),
        chassis_serial=clean(chassis.get("Serial Number")),
        asset_tag=clean(chassis.get("Asset Tag")),
        cpus=tuple(clean(c.get("Version")) or "" for c in cpus),
        cores=_total([_number(c.get("Core Count")) for c in cpus]),
        threads=_total([_number(c.get("Thread Count")) for c in cpus]),
        max_speed_mhz=max(speeds) if speeds else None,
        memory=tuple(modules))


# --- /sys/class/dmi/id ----------------------------------------------------------------

def _read(directory: Path, name: str) -> str | None:
    try:
        return (directory / name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:  # absent, or root-only (product_serial, product_uuid, board_serial)
        return None


def chassis_name(code: str | None) -> str | None:
    """/sys/class/dmi/id/chassis_type ("10") -> "Notebook"; None for 2 (Unknown) or junk."""
    number = _number(code)
    name = CHASSIS_TYPES.get(number & 0x7F) if number is not None else None
    return clean(name)


def read_sysfs(sys_root: Path = Path("/sys")) -> MachineInfo:
    """The kernel's DMI view (sys_root/class/dmi/id), for when dmidecode is absent.
    It has no CPU nor memory details; files only root can read stay unknown."""
    d = sys_root / "class" / "dmi" / "id"
    return MachineInfo(
        vendor=clean(_read(d, "sys_vendor")), product=clean(_read(d, "product_name")),
        version=clean(_read(d, "product_version")), serial=clean(_read(d, "product_serial")),
        uuid=clean_uuid(_read(d, "product_uuid")), sku=clean(_read(d, "product_sku")),
        family=clean(_read(d, "product_family")),
        board_vendor=clean(_read(d, "board_vendor")),
        board_product=clean(_read(d, "board_name")),
        board_serial=clean(_read(d, "board_serial")),
        chassis_type=chassis_name(_read(d, "chassis_type")),
        chassis_serial=clean(_read(d, "chassis_serial")),
        asset_tag=clean(_read(d, "chassis_asset_tag")), source="sysfs")
