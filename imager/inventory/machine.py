"""The whole machine, for triage and the registry (agent mode, on a laptop booted
on the live system): identity, CPU, RAM, batteries, network interfaces, drives.

The parsers here are pure (`parse_cpuinfo`, `parse_meminfo`, `drives_from_lsblk`...);
`collect()` does the reading: /proc and /sys under the Settings roots, and
dmidecode, lsblk and smartctl through imager.host.run. A missing tool or file is a
line in `notes`, never a crash: what could not be learnt stays None, and triage
then asks the technician to check it by hand.

The inventory travels from the agent to the station as JSON: `to_dict()` and
`MachineInventory.from_dict()` round-trip, and from_dict refuses a malformed
payload naming the field (`drives[0].size: expected a whole number`).
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from imager.errors import DeviceError, ImagerError, UsageError
from imager.host.run import RunResult, run
from imager.inventory import dmi, lsblk, smartctl
from imager.inventory.battery import Battery, read_batteries
from imager.inventory.dmi import MachineInfo
from imager.settings import Settings

Runner = Callable[[list[str]], RunResult]
NetKind = Literal["wired", "wireless"]
SmartHealth = Literal["passed", "failed", "unknown"]
GIB = 1 << 30

DMIDECODE = ["dmidecode", "-t", "system", "-t", "baseboard", "-t", "chassis",
             "-t", "processor", "-t", "memory"]
# Not drives of the machine: loop devices, compressed RAM swap, RAM disks, optical drives.
SKIPPED_DRIVES = ("loop", "zram", "ram", "sr")
# An SMBIOS UUID that many boards share (AMI firmware left at its default): not an identity.
SHARED_UUIDS = frozenset({"03000200-0400-0500-0006-000700080009"})


# --- parts ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuInfo:
    """The processor(s) as the kernel sees them, completed by SMBIOS when it says more."""

    model: str | None = None
    vendor: str | None = None       # "GenuineIntel", "AuthenticAMD"
    sockets: int | None = None
    cores: int | None = None        # physical cores, all sockets
    threads: int | None = None      # logical CPUs, all sockets
    is_64bit: bool | None = None    # x86: the `lm` (long mode) flag
    max_mhz: int | None = None      # SMBIOS "Max Speed" (cpuinfo only has the current one)


@dataclass(frozen=True)
class NetInterface:
    """One physical network interface (virtual ones and `lo` are not listed)."""

    name: str
    mac: str                         # lower case, aa:bb:cc:dd:ee:ff
    kind: NetKind
    bus: str | None = None           # "pci", "usb", "virtio", "sdio"...
    permanent: bool | None = None    # False: random or set by software (addr_assign_type)


@dataclass(frozen=True)
class DriveSummary:
    """A whole disk of the machine, enough for triage (the erase probe knows more)."""

    path: str
    size: int
    model: str | None = None
    serial: str | None = None
    transport: str | None = None     # "sata", "nvme", "usb", "mmc", "virtio"...
    rotational: bool = False
    removable: bool = False
    smart_health: SmartHealth = "unknown"

    @property
    def internal(self) -> bool:
        """False for USB drives and removable media (such as the live system's own stick)."""
        return self.transport != "usb" and not self.removable


# --- /proc/cpuinfo, /proc/meminfo -----------------------------------------------------

def _blocks(text: str) -> list[dict[str, str]]:
    """cpuinfo's blank-line separated blocks of `key : value` lines."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not line.strip():
            blocks.append({})
        elif sep:
            blocks[-1].setdefault(key.strip(), value.strip())
    return [b for b in blocks if b]


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _per_package(cpus: list[dict[str, str]], key: str) -> int | None:
    """Sum of `key` over physical packages (one block per `physical id`)."""
    packages: dict[str, dict[str, str]] = {}
    for block in cpus:
        packages.setdefault(block.get("physical id", ""), block)
    counts = [_int(b.get(key)) for k, b in packages.items() if k]
    return sum(c for c in counts if c) if counts and all(counts) else None


def _is_64bit(cpu: dict[str, str]) -> bool | None:
    if "flags" in cpu:
        return "lm" in cpu["flags"].split()
    arch = _int(cpu.get("CPU architecture"))   # ARM: 8 = ARMv8 (AArch64)
    return None if arch is None else arch >= 8


def parse_cpuinfo(text: str) -> CpuInfo:
    """/proc/cpuinfo (whole, or an excerpt with only the first processor) -> CpuInfo.

    Threads and cores come from `siblings` and `cpu cores` per physical package,
    so an excerpt showing one processor still counts them all; without those
    fields, each `processor` block is one thread and cores stay unknown."""
    cpus = [b for b in _blocks(text) if "processor" in b]
    if not cpus:
        return CpuInfo()
    first = cpus[0]
    packages = {b["physical id"] for b in cpus if "physical id" in b}
    return CpuInfo(
        model=dmi.clean(first.get("model name")), vendor=dmi.clean(first.get("vendor_id")),
        sockets=len(packages) or None, cores=_per_package(cpus, "cpu cores"),
        threads=_per_package(cpus, "siblings") or len(cpus), is_64bit=_is_64bit(first))


def merge_cpu(cpu: CpuInfo, machine: MachineInfo) -> CpuInfo:
    """cpuinfo's view, with what only SMBIOS knows (or what cpuinfo lacked) filled in."""
    return CpuInfo(
        model=cpu.model or (machine.cpus[0] if machine.cpus else None) or None,
        vendor=cpu.vendor, sockets=cpu.sockets or (len(machine.cpus) or None),
        cores=cpu.cores or machine.cores, threads=cpu.threads or machine.threads,
        is_64bit=cpu.is_64bit, max_mhz=cpu.max_mhz or machine.max_speed_mhz)


def parse_meminfo(text: str) -> int | None:
    """MemTotal of /proc/meminfo in bytes (what the kernel manages, below what is fitted)."""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def fitted_estimate(memtotal: int) -> int:
    """The RAM fitted, from MemTotal: rounded up to a whole GiB, since firmware, the
    kernel and an integrated GPU keep a few hundred MiB (a 4 GiB laptop shows ~3.7)."""
    return -(-memtotal // GIB) * GIB


# --- /sys/class/net -------------------------------------------------------------------

def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def null_mac(mac: str) -> bool:
    """True for an empty or all-zero hardware address."""
    return not mac.replace(":", "").strip("0")


def universal_mac(mac: str) -> bool:
    """True for a maker-assigned (universally administered) address; False for a locally
    administered one (bit 1 of the first octet: set by a hypervisor, a driver or
    MAC randomisation)."""
    first = mac.split(":")[0]
    return bool(re.fullmatch(r"[0-9a-f]{2}", first)) and not int(first, 16) & 0x02


def _interface(entry: Path) -> NetInterface | None:
    mac = (_text(entry / "address") or "").lower()
    if entry.name == "lo" or not (entry / "device").exists() or null_mac(mac):
        return None
    wireless = (entry / "wireless").is_dir() or (entry / "phy80211").exists()
    subsystem = entry / "device" / "subsystem"
    assign = _text(entry / "addr_assign_type")
    return NetInterface(name=entry.name, mac=mac, kind="wireless" if wireless else "wired",
                        bus=subsystem.resolve().name if subsystem.exists() else None,
                        permanent=None if assign is None else assign == "0")


def read_network(sys_root: Path = Path("/sys")) -> tuple[NetInterface, ...]:
    """Physical interfaces under sys_root/class/net, by name: those with a `device` link
    (bridges, tunnels, ifb, veth... have none), a non-zero MAC, and not `lo`."""
    base = sys_root / "class" / "net"
    entries = sorted(base.iterdir()) if base.is_dir() else []
    return tuple(i for e in entries if (i := _interface(e)) is not None)


# --- drives ---------------------------------------------------------------------------

def drives_from_lsblk(entries: Iterable[Mapping[str, Any]]) -> tuple[DriveSummary, ...]:
    """lsblk's whole disks, without loop/zram/ram/optical devices and empty readers."""
    found = []
    for entry in entries:
        kname = str(entry.get("kname") or entry.get("name") or "")
        if entry.get("type") != "disk" or kname.startswith(SKIPPED_DRIVES):
            continue
        if not int(entry.get("size") or 0):
            continue   # a card reader without a card
        ident = lsblk.identity(dict(entry))
        found.append(DriveSummary(path=ident.path, size=ident.size, model=ident.model,
                                  serial=ident.serial, transport=ident.transport,
                                  rotational=ident.rotational, removable=ident.removable))
    return tuple(found)


def health_of(report: smartctl.SmartReport) -> SmartHealth:
    """passed / failed from smartctl's overall assessment; unknown if it got no answer."""
    if not report.answered or report.healthy is None:
        return "unknown"
    return "passed" if report.healthy else "failed"


# --- the inventory --------------------------------------------------------------------

@dataclass(frozen=True)
class MachineInventory:
    """Everything triage and the registry need to know about one machine."""

    machine: MachineInfo
    cpu: CpuInfo = CpuInfo()
    ram_bytes: int | None = None
    ram_source: str | None = None    # "dmidecode" (modules) or "meminfo" (estimate)
    batteries: tuple[Battery, ...] = ()
    network: tuple[NetInterface, ...] = ()
    drives: tuple[DriveSummary, ...] = ()
    collected_at: datetime | None = None
    notes: tuple[str, ...] = ()

    SCHEMA: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, strings, numbers, ISO 8601 time)."""
        return {"schema": self.SCHEMA, **_plain(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineInventory:
        """The inventory from `to_dict()`'s JSON; UsageError naming every bad field.
        Keys this version does not know are ignored (a newer agent may send more)."""
        if not isinstance(data, Mapping):
            raise UsageError("machine inventory: expected a JSON object")
        schema = data.get("schema", cls.SCHEMA)
        if schema != cls.SCHEMA:
            raise UsageError(f"machine inventory: schema {schema!r} is not the one this "
                             f"station reads ({cls.SCHEMA}): update the agent or the station")
        errors: list[str] = []
        inv: MachineInventory = _decode(cls, data, "", errors)   # a dynamic decoder
        if errors:
            raise UsageError(f"machine inventory has {len(errors)} problem(s):\n  - "
                             + "\n  - ".join(errors))
        return inv

    @property
    def internal_drives(self) -> tuple[DriveSummary, ...]:
        """The drives that belong to the machine (not USB sticks or removable media)."""
        return tuple(d for d in self.drives if d.internal)


def machine_key(inv: MachineInventory) -> str | None:
    """The machine's stable identity in the registry, or None when nothing identifies it.

    1. `uuid:<SMBIOS UUID>`: set by the maker for each unit, the most unique value
       (placeholders, all-zero/all-F and the AMI default many boards share are not used);
    2. `serial:<vendor>:<serial>`: the maker's serial is unique within that maker only
       (placeholders such as "System Serial Number" are already None in MachineInfo);
    3. `mac:<address>`: the first wired interface on the machine's own bus with its
       factory address (a USB adapter may be the bench's; a locally administered or
       software-set address is not the hardware's).
    The prefix keeps values of different kinds from ever matching each other."""
    m = inv.machine
    if m.uuid and m.uuid not in SHARED_UUIDS:
        return f"uuid:{m.uuid}"
    if m.serial:
        return f"serial:{(m.vendor or '').casefold()}:{m.serial}"
    wired = [n for n in inv.network if n.kind == "wired" and n.bus != "usb"
             and n.permanent is not False and universal_mac(n.mac)]
    return f"mac:{wired[0].mac}" if wired else None


# --- collecting on this machine ---------------------------------------------------------

def _default_runner(argv: list[str]) -> RunResult:
    return run(argv, check=False, timeout=60)


def _tool(runner: Runner, argv: list[str], notes: list[str]) -> str | None:
    """A tool's stdout, or None with a note saying why."""
    try:
        result = runner(argv)
    except ImagerError as exc:
        notes.append(f"{argv[0]}: {exc}")
        return None
    if not result.ok:
        err = result.stderr.strip().splitlines()
        notes.append(f"{' '.join(argv)}: exit {result.returncode}"
                     + (f" ({err[-1]})" if err else ""))
        return None
    return result.stdout


def _machine_info(settings: Settings, runner: Runner, notes: list[str]) -> MachineInfo:
    text = _tool(runner, DMIDECODE, notes)
    if text is not None and "System Information" in text:
        return dmi.parse_dmidecode(text)
    if text is not None:
        notes.append("dmidecode: no SMBIOS table found")
    info = dmi.read_sysfs(settings.sys_root)
    if info == MachineInfo(source="sysfs"):
        notes.append("identité inconnue / identity unknown: no SMBIOS table, "
                     "/sys/class/dmi/id empty or absent")
    else:
        notes.append("identité lue dans /sys/class/dmi/id, sans détail mémoire / identity "
                     "from /sys/class/dmi/id, no memory details")
    return info


def _ram(machine: MachineInfo, settings: Settings,
         notes: list[str]) -> tuple[int | None, str | None]:
    if machine.ram_bytes is not None:
        return machine.ram_bytes, "dmidecode"
    total = parse_meminfo(_text(settings.proc_root / "meminfo") or "")
    if total is None:
        notes.append("mémoire vive inconnue / RAM unknown: no module listed, no MemTotal")
        return None, None
    notes.append(f"mémoire vive estimée depuis /proc/meminfo / RAM estimated from "
                 f"/proc/meminfo (MemTotal {total} bytes)")
    return fitted_estimate(total), "meminfo"


def _smart(drive: DriveSummary, runner: Runner, notes: list[str]) -> DriveSummary:
    try:
        report = smartctl.parse(runner(["smartctl", "-H", "-j", drive.path]).stdout)
    except ImagerError as exc:   # missing tool, timeout, no JSON
        notes.append(f"smartctl {drive.path}: {exc}")
        return drive
    health = health_of(report)
    if health == "unknown":
        why = "; ".join(report.problems) or "no overall assessment"
        notes.append(f"smartctl {drive.path}: santé inconnue / health unknown ({why})")
    return dataclasses.replace(drive, smart_health=health)


def _drives(runner: Runner, notes: list[str], *, smart: bool) -> tuple[DriveSummary, ...]:
    text = _tool(runner, ["lsblk", "-J", "-b", "-d", "-o", lsblk.COLUMNS], notes)
    try:
        drives = drives_from_lsblk(lsblk.parse(text)) if text is not None else ()
    except DeviceError as exc:
        notes.append(str(exc))
        return ()
    return tuple(_smart(d, runner, notes) for d in drives) if smart else drives


def collect(settings: Settings, *, runner: Runner | None = None,
            smart: bool = True) -> MachineInventory:
    """Inventory the machine this runs on. Never fails for a missing tool or file:
    the gap is in `notes` and the value stays None. `smart=False` skips smartctl."""
    runner = runner or _default_runner
    notes: list[str] = []
    machine = _machine_info(settings, runner, notes)
    cpu = merge_cpu(parse_cpuinfo(_text(settings.proc_root / "cpuinfo") or ""), machine)
    ram, ram_source = _ram(machine, settings, notes)
    return MachineInventory(
        machine=machine, cpu=cpu, ram_bytes=ram, ram_source=ram_source,
        batteries=read_batteries(settings.sys_root), network=read_network(settings.sys_root),
        drives=_drives(runner, notes, smart=smart), collected_at=datetime.now(UTC),
        notes=tuple(notes))


# --- JSON -----------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _decode(tp: Any, value: Any, where: str, errors: list[str]) -> Any:
    """`value` (parsed JSON) as type `tp`; a problem is appended to `errors`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), value, where, errors)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            errors.append(f"{where or 'value'}: expected a list")
            return ()
        return tuple(_decode(args[0], v, f"{where}[{i}]", errors) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _record(tp, value, where, errors)
    return _scalar(tp, value, where, errors)


def _record(cls: Any, value: Any, where: str, errors: list[str]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(f"{where or 'value'}: expected an object")
        return None
    hints, kwargs = get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        place = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _decode(hints[f.name], value[f.name], place, errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{place}: missing")
    try:
        return cls(**kwargs)
    except TypeError as exc:   # only when a field above was missing or refused
        errors.append(f"{where or 'value'}: {exc}")
        return None


_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"), int: ((int,), "a whole number"),
    float: ((int, float), "a number"), bool: ((bool,), "true or false"),
}


def _scalar(tp: Any, value: Any, where: str, errors: list[str]) -> Any:
    if get_origin(tp) is Literal:
        if value not in get_args(tp):
            errors.append(f"{where}: expected one of {', '.join(map(str, get_args(tp)))}, "
                          f"not {value!r}")
        return value
    if tp is datetime:
        try:
            return datetime.fromisoformat(value)
        except (TypeError, ValueError):
            errors.append(f"{where}: expected an ISO 8601 date and time, not {value!r}")
            return None
    accepted, expected = _SCALARS[tp]
    if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):
        errors.append(f"{where}: expected {expected}, not {value!r}")
        return None
    if tp is float and isinstance(value, int):
        return float(value)                    # JSON's 3 is the number 3.0
    return value
