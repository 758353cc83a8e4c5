"""Laptop batteries from /sys/class/power_supply/*/uevent (pure parsing + a directory walk).

The kernel reports energy in µWh (ENERGY_*) or charge in µAh (CHARGE_*),
depending on the battery's firmware; wear is 1 - full / design within one
family, never across them. Only the machine's own batteries are listed: mains
and USB adapters (TYPE=Mains/USB...) and batteries of peripherals such as a
wireless mouse (SCOPE=Device) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imager.inventory.dmi import clean


@dataclass(frozen=True)
class Battery:
    name: str
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    technology: str | None = None
    status: str | None = None
    cycle_count: int | None = None   # None when the firmware reports 0 (= not counted)
    design_capacity: int | None = None  # µWh, or µAh when unit == "µAh"
    full_capacity: int | None = None
    unit: str | None = None          # "µWh" or "µAh"
    wear: float | None = None        # 0.0 = as new, 1.0 = holds nothing; None = unknown
    notes: tuple[str, ...] = ()

    @property
    def health(self) -> float | None:
        """Fraction of the design capacity still available (1 - wear)."""
        return None if self.wear is None else 1.0 - self.wear


def parse_uevent(text: str) -> dict[str, str]:
    """KEY=value lines -> {"NAME": ..., "TYPE": ...} without the POWER_SUPPLY_ prefix."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("POWER_SUPPLY_"):
            out[key.removeprefix("POWER_SUPPLY_")] = value.strip()
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _capacities(props: dict[str, str]) -> tuple[int | None, int | None, str | None]:
    for family, unit in (("ENERGY", "µWh"), ("CHARGE", "µAh")):
        design, full = _int(props.get(f"{family}_FULL_DESIGN")), _int(props.get(f"{family}_FULL"))
        if design or full:
            return (design or None), (full or None), unit
    return None, None, None


def wear_of(design: int | None, full: int | None) -> tuple[float | None, tuple[str, ...]]:
    """1 - full/design clamped to [0, 1], with a note whenever the raw figures are odd."""
    if design is None or full is None:
        missing = "design capacity" if design is None else "full-charge capacity"
        return None, (f"{missing} not reported: wear unknown",)
    wear = 1.0 - full / design
    if wear < 0:
        return 0.0, (f"full-charge capacity {full} above design {design}: wear shown as 0 "
                     f"(recalibrated gauge or replacement cell)",)
    if wear >= 1:
        return 1.0, (f"full-charge capacity {full} is not positive: battery dead or gauge "
                     f"lost",)
    return wear, ()


# Keys only a battery has: older kernels print no TYPE line in uevent.
_BATTERY_KEYS = frozenset({"TECHNOLOGY", "CAPACITY", "ENERGY_FULL", "CHARGE_FULL",
                           "ENERGY_FULL_DESIGN", "CHARGE_FULL_DESIGN", "CYCLE_COUNT"})


def parse_battery(props: dict[str, str], name: str | None = None) -> Battery | None:
    """One power supply's properties -> Battery; None for adapters and peripherals."""
    kind = props.get("TYPE") or ("Battery" if _BATTERY_KEYS & props.keys() else None)
    if kind != "Battery" or props.get("SCOPE") == "Device":
        return None
    if props.get("PRESENT") == "0":
        return None
    design, full, unit = _capacities(props)
    wear, notes = wear_of(design, full)
    return Battery(
        name=props.get("NAME") or name or "?",
        manufacturer=clean(props.get("MANUFACTURER")), model=clean(props.get("MODEL_NAME")),
        serial=clean(props.get("SERIAL_NUMBER")), technology=clean(props.get("TECHNOLOGY")),
        status=clean(props.get("STATUS")), cycle_count=_int(props.get("CYCLE_COUNT")) or None,
        design_capacity=design, full_capacity=full, unit=unit, wear=wear, notes=notes)


def read_batteries(sys_root: Path = Path("/sys")) -> tuple[Battery, ...]:
    """The machine's batteries under sys_root/class/power_supply, by name."""
    base = sys_root / "class" / "power_supply"
    found: list[Battery] = []
    for entry in sorted(base.iterdir()) if base.is_dir() else ():
        try:
            text = (entry / "uevent").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        props = parse_uevent(text)
        if "TYPE" not in props and (entry / "type").is_file():
            props["TYPE"] = (entry / "type").read_text().strip()
        battery = parse_battery(props, entry.name)
        if battery is not None:
            found.append(battery)
    return tuple(found)
