"""Triage: the network's rules (profiles/triage.yaml) applied to inventories built from
recorded outputs of real machines; a bad rules file is refused with every problem's place."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import DATA, read_recorded

from imager.errors import UsageError
from imager.inventory import battery, dmi, triage
from imager.inventory.machine import (
    DriveSummary,
    MachineInventory,
    NetInterface,
    merge_cpu,
    parse_cpuinfo,
)
from imager.inventory.triage import Proposal, load_rules, propose
from imager.model import Note

REAL = DATA / "real"
GIB = 1 << 30
RULES = load_rules()
WIFI = NetInterface("wlp3s0", "60:67:20:ab:cd:ef", "wireless", "pci", True)
WIRED = NetInterface("enp0s25", "3c:97:0e:12:34:56", "wired", "pci", True)
SSD = DriveSummary("/dev/sda", 500107862016, "Samsung SSD 860 EVO 500GB", "S3Z9NB0K123456A",
                   "sata", smart_health="passed")


def _battery(name: str, **edits: str) -> battery.Battery:
    text = read_recorded(REAL / "power_supply" / name)
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    found = battery.parse_battery(battery.parse_uevent(text))
    assert found is not None
    return found


def thinkpad(**changes: object) -> MachineInventory:
    """The ThinkPad P1 Gen 2 recording (64 GiB, i9) with a battery, wifi and a healthy SSD.
    SMBIOS does not say 64-bit (no cpuinfo of that machine is recorded): the kernel's
    `lm` flag is set by hand, as an i9-9880H has it."""
    smbios = dmi.parse_dmidecode(read_recorded(REAL / "dmi"
                                               / "dmidecode-lenovo-thinkpad-p1-gen2.txt"))
    cpu = dataclasses.replace(merge_cpu(parse_cpuinfo(""), smbios), is_64bit=True)
    inv = MachineInventory(
        machine=smbios, cpu=cpu, ram_bytes=smbios.ram_bytes,
        ram_source="dmidecode",
        batteries=(_battery("BAT0-uevent-lenovo-ideapad-y700-energy.txt"),),
        network=(WIRED, WIFI), drives=(SSD,))
    return dataclasses.replace(inv, **changes)  # type: ignore[arg-type]


def fired(p: Proposal) -> list[str]:
    return [r.rule_id for r in p.reasons]


def test_shipped_rules_load() -> None:
    assert RULES.name == "reseau-solidaire-hautes-alpes" and RULES.version == 1
    assert [r.id for r in RULES.rules] == [
        "cpu-64-bit", "ram-minimum", "cpu-threads-minimum", "drive-smart-failed",
        "no-internal-drive", "battery-worn", "battery-missing", "no-wireless"]
    ram = RULES.rules[1]
    assert (ram.measure, ram.op, ram.threshold, ram.outcome) == ("ram_bytes", "<", 4 * GIB,
                                                                 "parts")
    assert RULES.label.startswith("reseau-solidaire-hautes-alpes v1 (sha256:")


def test_good_laptop_is_reused() -> None:
    p = propose(thinkpad(), RULES)
    assert (p.orientation, p.reasons, p.notes, p.complete) == ("reuse", (), (), True)


def test_2_gib_of_ram_sends_to_parts() -> None:
    p = propose(thinkpad(ram_bytes=2 * GIB), RULES)
    assert (p.orientation, fired(p)) == ("parts", ["ram-minimum"])
    reason = p.reasons[0]
    assert reason.value == 2 * GIB
    assert reason.message_fr == "mémoire vive 2 Gio, moins que le minimum de 4 Gio"
    assert reason.message_en == "RAM 2 GiB, below the 4 GiB minimum"


def test_atom_netbook_is_recycled() -> None:
    # The Eee Box's Atom N270 (32-bit only, 1 core + HT) with the 1 GiB it shipped with.
    cpu = parse_cpuinfo(read_recorded(REAL / "cpuinfo" / "cpuinfo-asus-eee-box-b202-atom-n270.txt"))
    p = propose(thinkpad(cpu=cpu, ram_bytes=1 * GIB), RULES)
    assert (p.orientation, fired(p)) == ("recycling", ["cpu-64-bit", "ram-minimum"])
    assert p.reasons[0].message_en == "32-bit-only processor: no current system installs on it"
    assert p.reasons[1].message_fr == "mémoire vive 1 Gio, moins que le minimum de 4 Gio"


def test_single_thread_cpu_goes_to_parts() -> None:
    cpu = dataclasses.replace(thinkpad().cpu, cores=1, threads=1)
    p = propose(thinkpad(cpu=cpu), RULES)
    assert (p.orientation, fired(p)) == ("parts", ["cpu-threads-minimum"])
    assert p.reasons[0].message_fr == "processeur à 1 fil d'exécution, il en faut au moins 2"


def test_worn_battery_is_reused_with_a_note() -> None:
    # The Dell recording with a full charge of 40 % of design: 60 % worn.
    worn = _battery("BAT1-uevent-dell-charge.txt",
                    **{"CHARGE_FULL=2200000": "CHARGE_FULL=880000"})
    p = propose(thinkpad(batteries=(worn,)), RULES)
    assert (p.orientation, fired(p)) == ("reuse", ["battery-worn"])
    assert (p.reasons[0].outcome, p.reasons[0].value) == ("note", pytest.approx(0.6))
    assert p.reasons[0].message_fr == "batterie usée à 60 % : remplacer la batterie"
    assert p.reasons[0].message_en == "battery worn 60%: replace the battery"


def test_failed_smart_drive_is_a_note_and_the_machine_stays_reusable() -> None:
    failed = dataclasses.replace(SSD, smart_health="failed")
    emmc = DriveSummary("/dev/mmcblk0", 31268536320, transport="mmc")   # health unknown
    stick = DriveSummary("/dev/sdb", 16013942784, transport="usb", removable=True)
    p = propose(thinkpad(drives=(failed, emmc, stick)), RULES)
    assert (p.orientation, fired(p)) == ("reuse", ["drive-smart-failed"])
    assert p.reasons[0].message_fr.startswith("1 disque(s) en échec SMART : à détruire")
    assert p.complete     # one failure is certain, whatever the eMMC would say


def test_drives_whose_health_is_unknown_are_a_note_not_a_pass() -> None:
    unknown = dataclasses.replace(SSD, smart_health="unknown")
    p = propose(thinkpad(drives=(unknown,)), RULES)
    assert (p.orientation, p.reasons, p.unknown) == ("reuse", (), ("smart_failed_count",))
    assert p.notes == (Note(
        "disques en échec SMART : inconnu, vérifier à la main (règle drive-smart-failed)",
        "drives failing SMART: unknown, check by hand (rule drive-smart-failed)"),)


def test_unknown_ram_is_a_note_not_a_silent_pass() -> None:
    p = propose(thinkpad(ram_bytes=None, ram_source=None), RULES)
    assert (p.orientation, p.reasons, p.complete) == ("reuse", (), False)
    assert p.unknown == ("ram_bytes",)
    assert p.notes[0].fr == "mémoire vive : inconnu, vérifier à la main (règle ram-minimum)"


def test_only_usb_stick_means_no_system_drive() -> None:
    stick = DriveSummary("/dev/sdb", 16013942784, transport="usb", removable=True)
    p = propose(thinkpad(drives=(stick,)), RULES)
    assert fired(p) == ["no-internal-drive"] and p.orientation == "reuse"
    assert p.reasons[0].message_fr == "aucun disque interne : ajouter un disque"


def test_battery_and_wifi_rules_apply_to_portables_only() -> None:
    bare = thinkpad(batteries=(), network=(WIRED,))
    assert fired(propose(bare, RULES)) == ["battery-missing", "no-wireless"]
    desktop = dataclasses.replace(bare, machine=dataclasses.replace(bare.machine,
                                                                    chassis_type="Desktop"))
    assert (fired(propose(desktop, RULES)), propose(desktop, RULES).complete) == ([], True)
    unknown = dataclasses.replace(bare, machine=dataclasses.replace(bare.machine,
                                                                    chassis_type=None))
    p = propose(unknown, RULES)
    assert (fired(p), p.unknown) == ([], ("portable",))
    assert p.notes[0].en == ("portable computer: unknown, check by hand "
                             "(rules battery-missing, no-wireless)")


def test_battery_with_unknown_wear_is_a_note() -> None:
    gauge = _battery("BAT0-uevent-asus-ux32-energy.txt",
                     **{"POWER_SUPPLY_ENERGY_FULL_DESIGN=45640000\n": ""})
    p = propose(thinkpad(batteries=(gauge,)), RULES)
    assert (p.reasons, p.unknown) == ((), ("battery_wear",))


def test_proposal_to_dict_is_json() -> None:
    p = propose(thinkpad(ram_bytes=2 * GIB, drives=()), RULES)
    data = json.loads(json.dumps(p.to_dict()))
    assert data["orientation"] == "parts" and data["complete"] is True
    assert [r["rule_id"] for r in data["reasons"]] == ["ram-minimum", "no-internal-drive"]
    assert data["reasons"][0] == {
        "rule_id": "ram-minimum", "measure": "ram_bytes", "value": 2 * GIB, "outcome": "parts",
        "message_fr": "mémoire vive 2 Gio, moins que le minimum de 4 Gio",
        "message_en": "RAM 2 GiB, below the 4 GiB minimum"}
    assert data["rules"] == RULES.label


def test_measures_of_an_inventory() -> None:
    m = triage.measures(thinkpad())
    assert m["ram_bytes"] == 64 * GIB and m["cpu_threads"] == 16 and m["cpu_64bit"] is True
    assert (m["portable"], m["battery_present"], m["drive_count"]) == (True, True, 1)
    assert m["battery_wear"] == pytest.approx(0.129)


@pytest.mark.parametrize(("kind", "value", "fr", "en"), [
    ("bytes", 4 * GIB, "4 Gio", "4 GiB"), ("bytes", 3 * GIB // 2, "1,5 Gio", "1.5 GiB"),
    ("fraction", 0.456, "46 %", "46%"), ("bool", False, "non", "no"), ("count", 2, "2", "2")])
def test_values_as_people_read_them(kind: triage.Kind, value: float, fr: str, en: str) -> None:
    assert (triage.format_value(kind, value, "fr"), triage.format_value(kind, value, "en")) == (
        fr, en)


# --- the rules file ------------------------------------------------------------------------

GOOD_RULE = """
  - id: ram-minimum
    measure: ram_bytes
    op: "<"
    threshold: 512 MiB
    outcome: parts
    message: {fr: "mémoire {value}", en: "RAM {value}"}
"""


def test_rules_from_another_file(tmp_path: Path) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text("name: test\nversion: 2\nrules:" + GOOD_RULE)
    rules = load_rules(path)
    assert rules.rules[0].threshold == 512 << 20 and rules.source == str(path)
    assert propose(thinkpad(ram_bytes=256 << 20), rules).reasons[0].message_en == (
        "RAM 0.2 GiB")


def test_bad_rules_file_is_refused_with_every_place() -> None:
    text = """
name: ""
version: 0
colour: blue
rules:
  - id: a
    measure: cpu_threads
    op: "<"
    threshold: two
    outcome: parts
    message: {fr: "x", en: "y"}
  - id: b
    measure: ram_gigabytes
    op: "=<"
    threshold: 4
    outcome: maybe
    message: {fr: "x {valeur}"}
  - id: c
    measure: portable
    op: ">"
    threshold: yes
    outcome: note
    only_if: {laptop: true, battery_present: 1}
    message: {fr: "x", en: "y"}
  - id: a
    measure: battery_wear
    op: ">"
    threshold: 50
    outcome: note
    message: {fr: "x", en: "y"}
  - just a string
"""
    with pytest.raises(UsageError) as err:
        triage.parse_rules(text, source="bad.yaml")
    problems = str(err.value)
    for expected in (
            "name: missing",
            "version: expected a whole number >= 1, not 0",
            "colour: unknown key",
            "rules[0].threshold: expected a whole number, not 'two'",
            "rules[1].measure: unknown measure 'ram_gigabytes' (known: ram_bytes,",
            "rules[1].op: expected one of < <= > >= == !=",
            "rules[1].outcome: expected one of reuse, parts, recycling, note, not 'maybe'",
            "rules[1].message.fr: unknown placeholder {valeur} (use {value} or {threshold})",
            "rules[1].message.en: missing",
            "rules[2].op: > compares numbers: a yes/no measure takes == or !=",
            "rules[2].only_if.laptop: unknown measure 'laptop'",
            "rules[2].only_if.battery_present: expected true or false, not 1",
            "rules[3].threshold: expected a number between 0 and 1 (0.5 = 50 %), not 50",
            "rules[4]: expected a rule"):
        assert expected in problems, expected
    assert problems.startswith("triage rules bad.yaml have ")


def test_a_rules_problem_names_its_file_and_line() -> None:
    text = "name: t\nversion: 1\nrules:" + GOOD_RULE.replace("op: \"<\"", "op: \"=<\"")
    with pytest.raises(UsageError) as err:
        triage.parse_rules(text, source="bad.yaml")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "=<" in row)
    assert f"bad.yaml:{line}: rules[0].op: expected one of < <= > >= == !=" in str(err.value)


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(UsageError, match=r"rules\[1\]\.id: 'ram-minimum' is used twice"):
        triage.parse_rules("name: t\nversion: 1\nrules:" + GOOD_RULE + GOOD_RULE)


def test_unreadable_rules(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="do not exist"):
        load_rules(tmp_path / "none.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        triage.parse_rules("rules: [unclosed")
    with pytest.raises(UsageError, match="expected a mapping at the top"):
        triage.parse_rules("- a list")
    with pytest.raises(UsageError, match="rules: expected a non-empty list"):
        triage.parse_rules("name: t\nversion: 1\nrules: []")


def test_sizes_in_thresholds() -> None:
    assert [triage.parse_size(s) for s in ("4 GiB", "4GiB", "512 MiB", "1,5 Gio", "4 GB",
                                           "four")] == [
        4 * GIB, 4 * GIB, 512 << 20, 3 * GIB // 2, None, None]
