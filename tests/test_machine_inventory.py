"""Machine inventory: SMBIOS (dmidecode, /sys/class/dmi/id) and batteries (power_supply),
on outputs published for real laptops (tests/data/real/dmi, tests/data/real/power_supply)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, read_recorded

from imager.inventory import battery, dmi

DMI = DATA / "real" / "dmi"
POWER = DATA / "real" / "power_supply"
GIB = 1 << 30


def dmidecode(name: str) -> dmi.MachineInfo:
    return dmi.parse_dmidecode(read_recorded(DMI / name))


def uevent(name: str) -> str:
    return read_recorded(POWER / name)


def test_every_recording_has_a_provenance_header() -> None:
    for path in [*DMI.iterdir(), *POWER.iterdir()]:
        head = path.read_text(encoding="utf-8").splitlines()[:12]
        assert head[0].startswith("# Source: "), path.name
        assert any(line.startswith("# Machine: ") for line in head), path.name
        assert any(line.startswith("# Transcribed on 2026-11-23") for line in head), path.name


def test_hp_compaq_6710b_full_dump() -> None:
    m = dmidecode("dmidecode-hp-compaq-6710b.txt")
    assert (m.vendor, m.product, m.version) == ("Hewlett-Packard",
                                                "HP Compaq 6710b (GF938AT#ABA)", "F.0B")
    assert (m.serial, m.sku, m.family) == ("CNU73520RX", "GF938AT#ABA", "103C_5336AN")
    assert m.uuid == "490a94fc-c315-e011-4094-6d990e3c7529"
    assert (m.board_vendor, m.board_product, m.board_serial) == ("Hewlett-Packard", "30C0",
                                                                 None)  # "Not Specified"
    assert (m.chassis_type, m.chassis_serial, m.asset_tag) == ("Notebook", "CNU73520RX",
                                                               "CNU73520RX")
    assert m.portable is True
    # The runs of spaces firmware pads the model name with are collapsed.
    assert m.cpus == ("Intel(R) Core(TM)2 Duo CPU T7100 @ 1.80GHz",)
    assert (m.cores, m.threads, m.max_speed_mhz) == (None, None, 1800)  # SMBIOS 2.4: no counts
    assert m.ram_bytes == 4 * GIB
    first = m.memory[0]
    assert (first.size, first.type, first.speed_mts, first.locator) == (2 * GIB, "DDR2", 667,
                                                                         "DIMM #1")
    assert first.part_number == "VS2GSDS667D2"        # trailing spaces gone
    assert first.manufacturer == "7F7F9E0000000000"   # a raw JEDEC code is still data
    assert first.serial is None                       # "00000000"


def test_lenovo_thinkpad_p1_gen2_with_redacted_serials() -> None:
    m = dmidecode("dmidecode-lenovo-thinkpad-p1-gen2.txt")
    assert (m.vendor, m.product, m.version, m.family) == (
        "LENOVO", "20QTS00Y00", "ThinkPad P1 Gen 2", "ThinkPad P1 Gen 2")
    assert m.sku == "LENOVO_MT_20QT_BU_Think_FM_ThinkPad P1 Gen 2"
    assert m.uuid == "069a9e4c-2eec-11b2-a85c-e9c6a8e86998"
    assert m.serial is None and m.chassis_serial is None   # "XXXXXXXX": redacted by the poster
    assert m.board_serial == "XXXXXXXX02W"   # partly redacted: not recognisable, kept as text
    assert (m.chassis_type, m.asset_tag) == ("Notebook", None)  # "No Asset Information"
    assert m.cpus == ("Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",)
    assert (m.cores, m.threads, m.max_speed_mhz) == (8, 16, 2300)
    assert m.ram_bytes == 64 * GIB
    assert [(x.locator, x.type, x.speed_mts, x.manufacturer, x.part_number, x.serial)
            for x in m.memory] == [
        ("ChannelA-DIMM0", "DDR4", 2667, "Micron", "16ATF4G64HZ-2G6B2", "25CD9D0D"),
        ("ChannelB-DIMM0", "DDR4", 2667, "Micron", "16ATF4G64HZ-2G6B2", None)]


def test_hp_elitebook_840_g1_system_and_board_records_only() -> None:
    m = dmidecode("dmidecode-hp-elitebook-840-g1-system-baseboard.txt")
    assert (m.vendor, m.product, m.serial, m.sku) == ("Hewlett-Packard", "HP EliteBook 840 G1",
                                                      "5CG51115YS", "F9W96UP#ABA")
    assert (m.board_product, m.board_serial) == ("198F", "PDXVC00WB8G0Y2")
    assert m.uuid is None and m.chassis_type is None and m.portable is None
    assert m.cpus == () and m.memory == () and m.ram_bytes is None


def test_space_indented_copy_of_hp_elitebook_8470p() -> None:
    m = dmidecode("dmidecode-t0-1-hp-elitebook-8470p-spaces.txt")
    assert (m.vendor, m.product, m.version) == ("Hewlett-Packard", "HP EliteBook 8470p",
                                                "A1029D1102")
    assert (m.serial, m.uuid, m.sku) == ("CNU336CXFW", "274d9d1f-7382-11e3-bbcd-d9e6c803c06a",
                                         "A1G60AV")
    assert m.family == "103C_5336AN G=N L=BUS B=HP S=ELI"


def test_thinkpad_t580_memory_only() -> None:
    m = dmidecode("dmidecode-t-memory-lenovo-thinkpad-t580.txt")
    assert m.vendor is None and m.cpus == ()
    assert m.ram_bytes == 32 * GIB
    assert [(x.size, x.type, x.speed_mts, x.manufacturer, x.part_number, x.serial)
            for x in m.memory] == [
        (16 * GIB, "DDR4", 2400, "Samsung", "M471A2K43CB1-CRC", "23EDB9C6"),
        (16 * GIB, "DDR4", 2400, "Samsung", "M471A2K43CB1-CRC", "23EDBAE4")]


def test_empty_slots_and_placeholder_strings() -> None:
    # The T580 recording, edited: the second slot empty (as dmidecode prints an empty
    # slot), the first module in kB, and a board that kept the BIOS vendor's defaults.
    text = read_recorded(DMI / "dmidecode-t-memory-lenovo-thinkpad-t580.txt")
    first, second = text.split("Handle 0x0005")
    second = (second.replace("Size: 16 GB", "Size: No Module Installed")
              .replace("Type: DDR4", "Type: Unknown").replace("Samsung", "Not Specified"))
    first = first.replace("Size: 16 GB", "Size: 8388608 kB")
    system = ("Handle 0x0001, DMI type 1, 27 bytes\nSystem Information\n"
              "\tManufacturer: To Be Filled By O.E.M.\n\tProduct Name: Default string\n"
              "\tSerial Number: System Serial Number\n"
              "\tUUID: 03000200-0400-0500-0006-000700080009\n"
              "\tSKU Number: 0123456789\n\tFamily: \n\n"
              "Handle 0x0003, DMI type 3, 22 bytes\nChassis Information\n"
              "\tType: Unknown\n\tSerial Number: Chassis Serial Number\n"
              "\tAsset Tag: Default string\n\n")
    m = dmi.parse_dmidecode(system + first + "Handle 0x0005" + second)
    assert (m.vendor, m.product, m.serial, m.sku, m.family) == (None,) * 5
    assert m.uuid == "03000200-0400-0500-0006-000700080009"   # a real, if lazy, UUID
    assert (m.chassis_type, m.chassis_serial, m.asset_tag) == (None, None, None)
    assert m.ram_bytes == 8 * GIB and len(m.memory) == 1


@pytest.mark.parametrize("uuid", ["00000000-0000-0000-0000-000000000000",
                                  "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
                                  "E379BE4C-2D34-11B2-A85C-************", "Not Settable",
                                  "Not Present", ""])
def test_uuids_that_identify_nothing(uuid: str) -> None:
    assert dmi.clean_uuid(uuid) is None


def test_sizes_in_every_unit() -> None:
    assert [dmi.parse_size(s) for s in ("512 kB", "512 KB", "2048 MB", "16 GB", "1 TB",
                                        "0 MB", "No Module Installed", "Unknown", None)] == [
        512 << 10, 512 << 10, 2 * GIB, 16 * GIB, 1 << 40, None, None, None, None]


def _tree(root: Path, files: dict[str, str]) -> Path:
    d = root / "class" / "dmi" / "id"
    d.mkdir(parents=True)
    for name, value in files.items():
        (d / name).write_text(value + "\n")
    return root


def test_sysfs_fallback_thinkpad_t580(tmp_path: Path) -> None:
    # Values of /sys/class/dmi/id as listed in github.com/cwage/thinkpad HARDWARE.md
    # (same machine as dmidecode-t-memory-lenovo-thinkpad-t580.txt); that listing was made
    # without root, so product_serial, product_uuid and board_serial are absent, as here.
    root = _tree(tmp_path, {
        "bios_vendor": "LENOVO", "bios_version": "N27ET29W (1.15 )", "board_name": "20L9CTO1WW",
        "board_vendor": "LENOVO", "board_version": "SDK0R32862 WIN", "chassis_type": "10",
        "chassis_vendor": "LENOVO", "chassis_version": "None", "product_family": "ThinkPad T580",
        "product_name": "20L9CTO1WW", "product_sku": "LENOVO_MT_20L9_BU_Think_FM_ThinkPad T580",
        "product_version": "ThinkPad T580", "sys_vendor": "LENOVO"})
    m = dmi.read_sysfs(root)
    assert (m.vendor, m.product, m.version, m.family) == ("LENOVO", "20L9CTO1WW",
                                                          "ThinkPad T580", "ThinkPad T580")
    assert m.sku == "LENOVO_MT_20L9_BU_Think_FM_ThinkPad T580"
    assert (m.board_vendor, m.board_product) == ("LENOVO", "20L9CTO1WW")
    assert (m.chassis_type, m.portable, m.source) == ("Notebook", True, "sysfs")
    assert m.serial is None and m.uuid is None and m.ram_bytes is None


def test_sysfs_fallback_as_root_with_placeholders(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "sys_vendor": "To Be Filled By O.E.M.", "product_name": "Default string",
        "product_serial": "PF112JKK", "product_uuid": "bca177cc-2bce-11b2-a85c-e98996f19d2f",
        "chassis_type": "3", "chassis_asset_tag": "No Asset Tag", "board_serial": "0123456789"})
    m = dmi.read_sysfs(root)
    assert (m.vendor, m.product, m.board_serial, m.asset_tag) == (None, None, None, None)
    assert (m.serial, m.uuid) == ("PF112JKK", "bca177cc-2bce-11b2-a85c-e98996f19d2f")
    assert (m.chassis_type, m.portable) == ("Desktop", False)


def test_sysfs_absent_gives_an_empty_machine(tmp_path: Path) -> None:
    m = dmi.read_sysfs(tmp_path)
    assert m == dmi.MachineInfo(source="sysfs")


@pytest.mark.parametrize(("code", "name"), [("9", "Laptop"), ("10", "Notebook"),
                                            ("31", "Convertible"), ("2", None), ("x", None),
                                            ("138", "Notebook")])  # bit 7 = chassis lock
def test_chassis_codes(code: str, name: str | None) -> None:
    assert dmi.chassis_name(code) == name


# --- batteries ---------------------------------------------------------------------------

def test_energy_battery_asus_ux32() -> None:
    b = battery.parse_battery(battery.parse_uevent(uevent("BAT0-uevent-asus-ux32-energy.txt")))
    assert b is not None
    assert (b.name, b.manufacturer, b.model, b.serial) == ("BAT0", "ASUSTeK", "UX32-65", None)
    assert (b.technology, b.status, b.cycle_count) == ("Li-ion", "Discharging", None)
    assert (b.design_capacity, b.full_capacity, b.unit) == (45640000, 44611000, "µWh")
    assert b.wear == pytest.approx(1 - 44611000 / 45640000)
    assert b.notes == ()


def test_energy_battery_lenovo_ideapad_y700() -> None:
    b = battery.parse_battery(battery.parse_uevent(
        uevent("BAT0-uevent-lenovo-ideapad-y700-energy.txt")))
    assert b is not None
    assert (b.manufacturer, b.model, b.serial, b.status) == ("SMP", "L14M4P23", "756",
                                                             "Charging")
    assert b.wear == pytest.approx(0.129)   # upower said "capacity: 87.1%"
    assert b.health == pytest.approx(0.871)


def test_charge_battery_dell() -> None:
    b = battery.parse_battery(battery.parse_uevent(uevent("BAT1-uevent-dell-charge.txt")))
    assert b is not None
    assert (b.name, b.manufacturer, b.model, b.serial) == ("BAT1", "DELL", None, "11")
    assert (b.design_capacity, b.full_capacity, b.unit, b.wear) == (2200000, 2200000, "µAh",
                                                                    0.0)


def _edited(name: str, old: str, new: str) -> dict[str, str]:
    text = uevent(name)
    assert old in text
    return battery.parse_uevent(text.replace(old, new))


def test_missing_design_capacity_means_unknown_wear() -> None:
    # The ASUS recording without its ENERGY_FULL_DESIGN line.
    b = battery.parse_battery(_edited("BAT0-uevent-asus-ux32-energy.txt",
                                      "POWER_SUPPLY_ENERGY_FULL_DESIGN=45640000\n", ""))
    assert b is not None and b.wear is None and b.design_capacity is None
    assert b.notes == ("design capacity not reported: wear unknown",)


def test_nonsense_capacities_are_clamped_and_noted() -> None:
    # The Dell recording with a full charge above design, then with a zero full charge.
    above = battery.parse_battery(_edited("BAT1-uevent-dell-charge.txt",
                                          "CHARGE_FULL=2200000", "CHARGE_FULL=2420000"))
    assert above is not None and above.wear == 0.0 and "above design" in above.notes[0]
    dead = battery.parse_battery(_edited("BAT1-uevent-dell-charge.txt",
                                         "CHARGE_FULL=2200000", "CHARGE_FULL=0"))
    assert dead is not None and dead.wear is None and dead.full_capacity is None
    assert dead.notes == ("full-charge capacity not reported: wear unknown",)
    negative = battery.wear_of(2200000, -5)
    assert negative[0] == 1.0 and "not positive" in negative[1][0]


def test_adapters_peripherals_and_absent_batteries_are_skipped() -> None:
    mains = {"NAME": "AC", "TYPE": "Mains", "ONLINE": "1"}
    old_mains = {"NAME": "AC", "ONLINE": "1"}   # a kernel that prints no TYPE line
    usb = {"NAME": "ucsi-source-psy-USBC000:001", "TYPE": "USB", "ONLINE": "0"}
    mouse = battery.parse_uevent(uevent("BAT0-uevent-asus-ux32-energy.txt")
                                 + "POWER_SUPPLY_SCOPE=Device\n")
    gone = _edited("BAT1-uevent-dell-charge.txt", "PRESENT=1", "PRESENT=0")
    assert [battery.parse_battery(p) for p in (mains, old_mains, usb, mouse, gone)] == [None] * 5


def test_read_batteries_from_a_sysfs_tree(tmp_path: Path) -> None:
    base = tmp_path / "class" / "power_supply"
    for name, text, kind in (
            ("AC", "POWER_SUPPLY_NAME=AC\nPOWER_SUPPLY_ONLINE=1\n", "Mains"),
            ("BAT0", uevent("BAT0-uevent-lenovo-ideapad-y700-energy.txt"), "Battery"),
            ("BAT1", uevent("BAT1-uevent-dell-charge.txt"), "Battery"),
            ("hidpp_battery_0", "POWER_SUPPLY_NAME=hidpp_battery_0\nPOWER_SUPPLY_TYPE=Battery\n"
             "POWER_SUPPLY_SCOPE=Device\nPOWER_SUPPLY_CAPACITY=70\n", "Battery")):
        (base / name).mkdir(parents=True)
        (base / name / "uevent").write_text(text)
        (base / name / "type").write_text(kind + "\n")
    (base / "empty").mkdir()   # no uevent: skipped
    found = battery.read_batteries(tmp_path)
    assert [(b.name, b.unit) for b in found] == [("BAT0", "µWh"), ("BAT1", "µAh")]
    assert battery.read_batteries(tmp_path / "nowhere") == ()
