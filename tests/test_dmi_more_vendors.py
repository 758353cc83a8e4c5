"""dmidecode of more laptop makers (tests/data/real/dmi): an ASUS ZenBook from the linuxhw
hardware-probe collection, where serials and the UUID are published as "--"."""

from __future__ import annotations

from conftest import DATA, read_recorded

from imager.inventory import dmi
from imager.inventory.machine import CpuInfo, MachineInventory, machine_key, merge_cpu
from imager.inventory.triage import load_rules, propose

GIB = 1 << 30


def test_asus_zenbook_ux325ea_soldered_lpddr4() -> None:
    m = dmi.parse_dmidecode(read_recorded(DATA / "real" / "dmi"
                                          / "dmidecode-asus-zenbook-ux325ea.txt"))
    assert (m.vendor, m.product, m.version, m.family) == (
        "ASUSTeK COMPUTER INC.", "ZenBook UX325EA_UX325EA", "1.0", "ZenBook")
    # "--" (hidden by the collection) and a blank SKU are unknown, not identities.
    assert (m.serial, m.uuid, m.sku, m.board_serial, m.chassis_serial, m.asset_tag) == (
        None,) * 6
    assert (m.board_vendor, m.board_product) == ("ASUSTeK COMPUTER INC.", "UX325EA")
    assert (m.chassis_type, m.portable) == ("Notebook", True)
    assert m.cpus == ("11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz",)
    assert (m.cores, m.threads, m.max_speed_mhz) == (4, 8, 4200)
    assert m.ram_bytes == 8 * GIB and len(m.memory) == 8
    assert {(x.size, x.type, x.speed_mts, x.manufacturer, x.part_number, x.serial)
            for x in m.memory} == {(GIB, "LPDDR4", 4267, "Samsung", "U6E3S4AA-MGCR", None)}
    assert [x.locator for x in m.memory][::4] == ["Controller0-ChannelA",
                                                  "Controller1-ChannelA"]


def test_zenbook_without_published_identity_has_no_machine_key() -> None:
    # Nothing in SMBIOS identifies this unit once serials are hidden: the station must
    # then fall back on a wired MAC (this ultrabook has none) or the technician's label.
    m = dmi.parse_dmidecode(read_recorded(DATA / "real" / "dmi"
                                          / "dmidecode-asus-zenbook-ux325ea.txt"))
    inv = MachineInventory(machine=m, cpu=merge_cpu(CpuInfo(), m), ram_bytes=m.ram_bytes,
                           ram_source="dmidecode")
    assert machine_key(inv) is None
    # SMBIOS alone (no cpuinfo, no sysfs): 8 GiB and 8 threads pass; an inventory without
    # drives, battery or wifi gets the notes; 64-bit stays to be checked by hand.
    p = propose(inv, load_rules())
    assert p.orientation == "reuse"
    assert [r.rule_id for r in p.reasons] == ["no-internal-drive", "battery-missing",
                                              "no-wireless"]
    assert p.unknown == ("cpu_64bit",)
