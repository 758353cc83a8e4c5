"""Machine inventory as a whole: /proc/cpuinfo (recorded outputs in tests/data/real/cpuinfo),
network interfaces from a sysfs tree laid out like the kernel's, drives from lsblk and
smartctl, collect() with a scripted runner and on this very machine, and the JSON
round trip the agent and the station rely on."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import DATA, read_recorded, replay

from imager.errors import ImagerError, UsageError
from imager.host.run import RunResult
from imager.inventory import battery, dmi, machine, smartctl
from imager.inventory.machine import (
    CpuInfo,
    DriveSummary,
    MachineInventory,
    NetInterface,
    collect,
    machine_key,
    parse_cpuinfo,
)
from imager.settings import Settings

CPUINFO = DATA / "real" / "cpuinfo"
GIB = 1 << 30


def cpuinfo(name: str) -> CpuInfo:
    return parse_cpuinfo(read_recorded(CPUINFO / name))


def test_every_cpuinfo_recording_says_where_it_comes_from() -> None:
    for path in CPUINFO.iterdir():
        head = path.read_text(encoding="utf-8").splitlines()[:10]
        assert head[0].startswith("# Source: "), path.name
        assert any(line.startswith("# Machine: ") for line in head), path.name


# --- /proc/cpuinfo ---------------------------------------------------------------------

def test_cpuinfo_of_this_vm_recording() -> None:
    cpu = cpuinfo("cpuinfo-vm-amd-epyc-2-vcpu.txt")
    assert cpu == CpuInfo(model="AMD EPYC", vendor="AuthenticAMD", sockets=1, cores=2,
                          threads=2, is_64bit=True)


def test_cpuinfo_atom_n270_is_32_bit_with_hyper_threading() -> None:
    cpu = cpuinfo("cpuinfo-asus-eee-box-b202-atom-n270.txt")
    # The runs of spaces Intel pads the name with are collapsed.
    assert cpu.model == "Intel(R) Atom(TM) CPU N270 @ 1.60GHz"
    assert (cpu.sockets, cpu.cores, cpu.threads) == (1, 1, 2)
    assert cpu.is_64bit is False     # no `lm` in the flags


@pytest.mark.parametrize(("name", "model", "cores", "threads"), [
    ("cpuinfo-excerpt-intel-core-i3-4030u.txt", "Intel(R) Core(TM) i3-4030U CPU @ 1.90GHz", 2, 4),
    ("cpuinfo-excerpt-amd-a6-4400m.txt", "AMD A6-4400M APU with Radeon(tm) HD Graphics", 1, 2),
])
def test_cpuinfo_excerpt_still_counts_every_thread(name: str, model: str, cores: int,
                                                  threads: int) -> None:
    # Only processor 0 was posted: siblings / cpu cores give the package's counts.
    cpu = cpuinfo(name)
    assert (cpu.model, cpu.cores, cpu.threads, cpu.is_64bit) == (model, cores, threads, True)


def test_cpuinfo_without_topology_fields_counts_processor_blocks() -> None:
    # The VM recording without its physical id / siblings / cpu cores lines, as some
    # hypervisors and non-x86 kernels print it.
    text = "\n".join(ln for ln in read_recorded(CPUINFO / "cpuinfo-vm-amd-epyc-2-vcpu.txt")
                     .splitlines() if not ln.startswith(("physical id", "siblings", "cpu cores")))
    cpu = parse_cpuinfo(text)
    assert (cpu.sockets, cpu.cores, cpu.threads, cpu.is_64bit) == (None, None, 2, True)


def test_cpuinfo_empty_or_arm() -> None:
    assert parse_cpuinfo("") == CpuInfo()
    arm = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU architecture: 8\n\nprocessor\t: 1\n"
    assert parse_cpuinfo(arm).is_64bit is True and parse_cpuinfo(arm).threads == 2


def test_smbios_completes_cpuinfo() -> None:
    smbios = dmi.parse_dmidecode(read_recorded(DATA / "real" / "dmi"
                                               / "dmidecode-hp-compaq-6710b.txt"))
    merged = machine.merge_cpu(CpuInfo(), smbios)
    assert (merged.model, merged.sockets, merged.max_mhz) == (
        "Intel(R) Core(TM)2 Duo CPU T7100 @ 1.80GHz", 1, 1800)
    kernel = cpuinfo("cpuinfo-excerpt-intel-core-i3-4030u.txt")
    assert machine.merge_cpu(kernel, smbios).model == kernel.model   # the kernel's view wins


def test_meminfo_total_and_fitted_estimate() -> None:
    assert machine.parse_meminfo("MemTotal:        3902340 kB\nMemFree: 1 kB\n") == 3902340 * 1024
    assert machine.parse_meminfo("nothing") is None
    assert machine.fitted_estimate(3902340 * 1024) == 4 * GIB    # a "4 GB" laptop
    assert machine.fitted_estimate(4 * GIB) == 4 * GIB


# --- /sys/class/net ---------------------------------------------------------------------

def _netdev(sys: Path, name: str, device: str | None, mac: str, *, bus: str | None = None,
            assign: str = "0", wireless: bool = False) -> None:
    """An interface as the kernel lays it out: the real directory under devices/, a
    class/net symlink to it, `device` -> the parent device, whose `subsystem` -> bus."""
    parent = sys / "devices" / (device or "virtual")
    real = parent / "net" / name
    real.mkdir(parents=True)
    (real / "address").write_text(mac + "\n")
    (real / "addr_assign_type").write_text(assign + "\n")
    if device is not None:
        (real / "device").symlink_to(os.path.relpath(parent, real))
        if bus and not (parent / "subsystem").exists():
            (sys / "bus" / bus).mkdir(parents=True, exist_ok=True)
            (parent / "subsystem").symlink_to(os.path.relpath(sys / "bus" / bus, parent))
    if wireless:
        (real / "wireless").mkdir()
        (real / "phy80211").symlink_to(os.path.relpath(parent / "ieee80211" / "phy0", real))
        (parent / "ieee80211" / "phy0").mkdir(parents=True)
    (sys / "class" / "net").mkdir(parents=True, exist_ok=True)
    (sys / "class" / "net" / name).symlink_to(os.path.relpath(real, sys / "class" / "net"))


@pytest.fixture
def laptop_sys(tmp_path: Path) -> Path:
    sys = tmp_path / "sys"
    _netdev(sys, "enp0s25", "pci0000:00/0000:00:19.0", "3C:97:0E:12:34:56", bus="pci")
    _netdev(sys, "wlp3s0", "pci0000:00/0000:03:00.0", "60:67:20:ab:cd:ef", bus="pci",
            wireless=True)
    _netdev(sys, "enx00e04c680001", "pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0",
            "00:e0:4c:68:00:01", bus="usb")
    _netdev(sys, "wwan0", "pci0000:00/0000:00:14.0/usb1/1-4/1-4:1.8", "00:00:00:00:00:00",
            bus="usb")
    _netdev(sys, "lo", None, "00:00:00:00:00:00")
    _netdev(sys, "docker0", None, "02:42:ac:11:00:01")
    return sys


def test_network_lists_physical_interfaces_only(laptop_sys: Path) -> None:
    assert machine.read_network(laptop_sys) == (
        NetInterface("enp0s25", "3c:97:0e:12:34:56", "wired", "pci", True),
        NetInterface("enx00e04c680001", "00:e0:4c:68:00:01", "wired", "usb", True),
        NetInterface("wlp3s0", "60:67:20:ab:cd:ef", "wireless", "pci", True))
    assert machine.read_network(laptop_sys / "nowhere") == ()


def test_network_random_address_is_not_permanent(tmp_path: Path) -> None:
    _netdev(tmp_path, "wlan0", "platform/wifi", "da:a1:19:00:11:22", bus="platform",
            assign="1", wireless=True)
    (nic,) = machine.read_network(tmp_path)
    assert (nic.kind, nic.permanent, machine.universal_mac(nic.mac)) == ("wireless", False,
                                                                         False)


# --- machine key --------------------------------------------------------------------------

def _inv(**kw: object) -> MachineInventory:
    return MachineInventory(machine=dmi.MachineInfo(**kw))  # type: ignore[arg-type]


def test_machine_key_prefers_uuid_then_serial_then_factory_wired_mac(laptop_sys: Path) -> None:
    uuid = "069a9e4c-2eec-11b2-a85c-e9c6a8e86998"
    assert machine_key(_inv(uuid=uuid, vendor="LENOVO", serial="PF1ABCDE")) == f"uuid:{uuid}"
    ami = "03000200-0400-0500-0006-000700080009"   # shared by many boards: skipped
    assert machine_key(_inv(uuid=ami, vendor="LENOVO", serial="PF1ABCDE")) == \
        "serial:lenovo:PF1ABCDE"
    nets = machine.read_network(laptop_sys)
    bare = MachineInventory(machine=dmi.MachineInfo(), network=nets)
    assert machine_key(bare) == "mac:3c:97:0e:12:34:56"     # the PCI port, not the USB one
    usb_only = MachineInventory(machine=dmi.MachineInfo(),
                                network=tuple(n for n in nets if n.bus == "usb"))
    assert machine_key(usb_only) is None
    local = NetInterface("eth0", "02:fc:00:00:00:01", "wired", "virtio", True)
    assert machine_key(MachineInventory(machine=dmi.MachineInfo(), network=(local,))) is None


# --- drives -----------------------------------------------------------------------------

def _disk(name: str, size: int, *, kind: str = "disk", tran: str | None = "sata",
          rm: bool = False, rota: bool = False, model: str | None = None) -> dict[str, object]:
    return {"name": name, "path": f"/dev/{name}", "kname": name, "type": kind, "model": model,
            "vendor": None, "serial": f"SN-{name}" if model else None, "wwn": None,
            "size": size, "tran": tran, "rota": rota, "rm": rm, "ro": False, "log-sec": 512,
            "phy-sec": 512, "pkname": None, "mountpoints": [None]}


LSBLK = {"blockdevices": [
    _disk("loop0", 67108864, kind="loop", tran=None),
    _disk("sda", 500107862016, model="Samsung SSD 860 EVO 500GB"),
    _disk("sdb", 16013942784, tran="usb", rm=True, model="Cruzer Blade"),
    _disk("sr0", 1073741312, kind="rom", tran="sata"),
    _disk("zram0", 4294967296, tran=None),
    _disk("mmcblk0", 0, tran=None),
    _disk("nvme0n1", 256060514304, tran="nvme", model="PM981 NVMe Samsung 256GB"),
]}


def test_drives_keep_whole_disks_of_the_machine() -> None:
    drives = machine.drives_from_lsblk(LSBLK["blockdevices"])
    assert [(d.path, d.transport, d.internal) for d in drives] == [
        ("/dev/sda", "sata", True), ("/dev/sdb", "usb", False), ("/dev/nvme0n1", "nvme", True)]
    assert drives[0] == DriveSummary("/dev/sda", 500107862016, "Samsung SSD 860 EVO 500GB",
                                     "SN-sda", "sata", False, False)


def _failing(text: str) -> str:
    data = json.loads(text)
    data["smart_status"]["passed"] = False
    data["smartctl"]["exit_status"] = 8      # bit 3: disk failing
    return json.dumps(data)


def test_smart_health_from_smartctl() -> None:
    sata = read_recorded(DATA / "lab" / "smartctl-j-x-sata.txt")
    usb = read_recorded(DATA / "lab" / "smartctl-j-x-usb.txt")   # bridge not guessed
    assert machine.health_of(smartctl.parse(sata)) == "passed"
    assert machine.health_of(smartctl.parse(_failing(sata))) == "failed"
    assert machine.health_of(smartctl.parse(usb)) == "unknown"


# --- collect() with a scripted runner ------------------------------------------------------

def _tree(tmp_path: Path, laptop_sys: Path) -> Settings:
    proc = tmp_path / "proc"
    proc.mkdir()
    i3 = read_recorded(CPUINFO / "cpuinfo-excerpt-intel-core-i3-4030u.txt")
    (proc / "cpuinfo").write_text(i3)
    (proc / "meminfo").write_text("MemTotal:        7992032 kB\n")
    bat = laptop_sys / "class" / "power_supply" / "BAT0"
    bat.mkdir(parents=True)
    (bat / "uevent").write_text(read_recorded(DATA / "real" / "power_supply"
                                              / "BAT0-uevent-lenovo-ideapad-y700-energy.txt"))
    return Settings(data_dir=tmp_path / "data", sys_root=laptop_sys, proc_root=proc)


def _runner(answers: dict[str, RunResult | Exception]) -> Callable[[list[str]], RunResult]:
    def run(argv: list[str]) -> RunResult:
        key = argv[0] if argv[0] != "smartctl" else f"smartctl {argv[-1]}"
        answer = answers.get(key) or ImagerError(f"the tool {argv[0]!r} is missing")
        if isinstance(answer, Exception):
            raise answer
        return answer
    return run


def _ok(argv: str, stdout: str, code: int = 0) -> RunResult:
    return RunResult(tuple(argv.split()), code, stdout, "", 0.0)


def test_collect_with_every_tool_answering(tmp_path: Path, laptop_sys: Path) -> None:
    sata = read_recorded(DATA / "lab" / "smartctl-j-x-sata.txt")
    runner = _runner({
        "dmidecode": _ok("dmidecode", read_recorded(DATA / "real" / "dmi"
                                                    / "dmidecode-lenovo-thinkpad-p1-gen2.txt")),
        "lsblk": _ok("lsblk", json.dumps(LSBLK)),
        "smartctl /dev/sda": replay(DATA / "lab" / "smartctl-j-x-sata.txt"),   # exit 4
        "smartctl /dev/nvme0n1": _ok("smartctl", _failing(sata), 8),
    })
    inv = collect(_tree(tmp_path, laptop_sys), runner=runner)
    assert (inv.machine.product, inv.machine.source) == ("20QTS00Y00", "dmidecode")
    assert (inv.ram_bytes, inv.ram_source) == (64 * GIB, "dmidecode")
    assert (inv.cpu.model, inv.cpu.threads, inv.cpu.max_mhz) == (
        "Intel(R) Core(TM) i3-4030U CPU @ 1.90GHz", 4, 2300)   # the kernel's CPU; SMBIOS speed
    assert [b.name for b in inv.batteries] == ["BAT0"]
    assert [n.name for n in inv.network] == ["enp0s25", "enx00e04c680001", "wlp3s0"]
    assert [(d.path, d.smart_health) for d in inv.drives] == [
        ("/dev/sda", "passed"), ("/dev/sdb", "unknown"), ("/dev/nvme0n1", "failed")]
    assert any("smartctl /dev/sdb" in n for n in inv.notes)   # the tool "is missing" there
    assert machine_key(inv) == "uuid:069a9e4c-2eec-11b2-a85c-e9c6a8e86998"
    assert inv.collected_at is not None and inv.collected_at.tzinfo is not None


def test_collect_without_dmidecode_falls_back_to_sysfs(tmp_path: Path, laptop_sys: Path) -> None:
    dmi_id = laptop_sys / "class" / "dmi" / "id"
    dmi_id.mkdir(parents=True)
    for name, value in {"sys_vendor": "LENOVO", "product_name": "20L9CTO1WW",
                        "chassis_type": "10", "product_serial": "PF1ABCDE"}.items():
        (dmi_id / name).write_text(value + "\n")
    inv = collect(_tree(tmp_path, laptop_sys), runner=_runner({}), smart=False)
    assert (inv.machine.source, inv.machine.vendor, inv.machine.portable) == ("sysfs", "LENOVO",
                                                                              True)
    assert (inv.ram_bytes, inv.ram_source) == (8 * GIB, "meminfo")   # 7.6 GiB seen
    assert inv.drives == () and inv.cpu.threads == 4
    assert any(n.startswith("dmidecode: ") for n in inv.notes)
    assert any("/sys/class/dmi/id" in n for n in inv.notes)
    assert any("lsblk" in n for n in inv.notes)
    assert machine_key(inv) == "serial:lenovo:PF1ABCDE"


def test_collect_when_dmidecode_finds_no_table(tmp_path: Path, laptop_sys: Path) -> None:
    # What dmidecode 3.4 does in a VM without SMBIOS (this one): exit 1, a message.
    runner = _runner({"dmidecode": RunResult(("dmidecode",), 1, "# dmidecode 3.4\n"
                                             "Scanning /dev/mem for entry point.\n",
                                             "/dev/mem: No such file or directory\n", 0.0)})
    inv = collect(_tree(tmp_path, laptop_sys), runner=runner, smart=False)
    assert inv.machine == dmi.MachineInfo(source="sysfs")
    assert inv.notes[0] == ("dmidecode -t system -t baseboard -t chassis -t processor -t memory:"
                            " exit 1 (/dev/mem: No such file or directory)")
    assert "identity unknown" in inv.notes[1]


# --- collect() here, for real -------------------------------------------------------------

def test_collect_on_this_machine() -> None:
    settings = Settings()
    inv = collect(settings)
    assert inv.cpu.threads == os.cpu_count()
    if platform.machine() == "x86_64":
        assert inv.cpu.is_64bit is True
    meminfo = machine.parse_meminfo(Path("/proc/meminfo").read_text())
    assert inv.ram_bytes is not None and meminfo is not None and inv.ram_bytes >= meminfo
    assert inv.batteries == battery.read_batteries(settings.sys_root)
    assert all(n.name != "lo" and not machine.null_mac(n.mac) for n in inv.network)
    assert all(not Path(d.path).name.startswith(machine.SKIPPED_DRIVES) for d in inv.drives)
    assert {d.smart_health for d in inv.drives} <= {"passed", "failed", "unknown"}
    assert MachineInventory.from_dict(json.loads(json.dumps(inv.to_dict()))) == inv


# --- JSON ---------------------------------------------------------------------------------

def _rich(laptop_sys: Path) -> MachineInventory:
    smbios = dmi.parse_dmidecode(read_recorded(DATA / "real" / "dmi"
                                               / "dmidecode-lenovo-thinkpad-p1-gen2.txt"))
    bat = battery.parse_battery(battery.parse_uevent(read_recorded(
        DATA / "real" / "power_supply" / "BAT0-uevent-asus-ux32-energy.txt")))
    assert bat is not None
    return MachineInventory(
        machine=smbios, cpu=machine.merge_cpu(CpuInfo(), smbios), ram_bytes=smbios.ram_bytes,
        ram_source="dmidecode", batteries=(bat,), network=machine.read_network(laptop_sys),
        drives=machine.drives_from_lsblk(LSBLK["blockdevices"]),
        collected_at=datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
        notes=("a note",))


def test_json_round_trip(laptop_sys: Path) -> None:
    inv = _rich(laptop_sys)
    data = json.loads(json.dumps(inv.to_dict()))
    assert data["schema"] == 1 and data["collected_at"] == "2026-11-23T09:30:00+00:00"
    assert data["machine"]["memory"][0]["part_number"] == "16ATF4G64HZ-2G6B2"
    assert MachineInventory.from_dict(data) == inv
    assert MachineInventory.from_dict({"machine": {}}) == MachineInventory(dmi.MachineInfo())
    newer = dict(data, gpu="from a newer agent")          # unknown keys are ignored
    assert MachineInventory.from_dict(newer) == inv


def test_json_refused_with_every_place(laptop_sys: Path) -> None:
    data = json.loads(json.dumps(_rich(laptop_sys).to_dict()))
    data["drives"][0]["size"] = "500 GB"
    data["drives"][1]["smart_health"] = "fine"
    data["network"][0]["kind"] = "fibre"
    data["batteries"][0]["wear"] = True
    data["collected_at"] = "yesterday"
    del data["drives"][2]["path"]
    with pytest.raises(UsageError) as err:
        MachineInventory.from_dict(data)
    text = str(err.value)
    for expected in ("drives[0].size: expected a whole number, not '500 GB'",
                     "drives[1].smart_health: expected one of passed, failed, unknown",
                     "network[0].kind: expected one of wired, wireless, not 'fibre'",
                     "batteries[0].wear: expected a number, not True",
                     "collected_at: expected an ISO 8601 date and time",
                     "drives[2].path: missing"):
        assert expected in text
    with pytest.raises(UsageError, match="machine: missing"):
        MachineInventory.from_dict({"cpu": {}})
    with pytest.raises(UsageError, match="schema 2 is not the one"):
        MachineInventory.from_dict({"schema": 2, "machine": {}})
    with pytest.raises(UsageError, match="expected a JSON object"):
        MachineInventory.from_dict([])  # type: ignore[arg-type]
