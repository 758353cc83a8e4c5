"""The boot service's watch: each laptop's network boot followed stage by stage, and
the stage it stopped at named (a Secure Boot refusal above all), from dnsmasq's
real log (tests/data/dnsmasq, recorded on the bench) and the HTTP answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imager.boot.dnsmasq import LogReader, Offered, Sent
from imager.boot.watch import PROBLEMS, Trails
from imager.host.netif import neighbours
from imager.registry import netboot
from imager.registry.boot import BootDecision
from imager.settings import Settings
from imager.store.db import Registry

DATA = Path(__file__).parent / "data" / "dnsmasq"
MAC = "52:54:00:aa:00:01"
ADDRESS = "10.66.0.185"
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _events(name: str) -> list[Offered | Sent]:
    text = (DATA / name).read_text()
    root = re.search(r"TFTP root is (\S+)", text)
    assert root is not None
    reader = LogReader(Path(root.group(1)))
    return [e for line in text.splitlines() if (e := reader.read(line)) is not None]


def _feed(trails: Trails, events: list[Offered | Sent], at: datetime) -> None:
    for event in events:
        if isinstance(event, Offered):
            trails.offered(event.mac, event.loader, at, event.firmware)
        else:
            assert event.address == ADDRESS           # the neighbour table's answer, here
            trails.sent(MAC, event.name, event.address, at)


def _live(serial: str = "PF1SB") -> BootDecision:
    return BootDecision("live", "tied to a donation", MAC, serial, 7, token="t0k3n")


def test_dnsmasqs_log_gives_the_offer_and_the_files_sent() -> None:
    assert _events("secure-boot-refused-shim.log") == [
        Offered(MAC, "shimx64.efi", "uefi"), Sent("shimx64.efi", ADDRESS),
        Sent("shimx64.efi", ADDRESS)]
    assert _events("secure-boot-refused-grub.log") == [
        Offered(MAC, "shimx64.efi", "uefi"), Sent("shimx64.efi", ADDRESS),
        Sent("shimx64.efi", ADDRESS), Sent("grubx64.efi", ADDRESS)]


@pytest.mark.parametrize(("log", "stage", "problem"), [
    ("secure-boot-refused-shim.log", "shim", "firmware_refused_shim"),
    ("secure-boot-refused-grub.log", "grub", "shim_refused_grub"),
])
def test_a_secure_boot_refusal_is_named_once_the_boot_stays_there(
        log: str, stage: str, problem: str) -> None:
    trails = Trails()
    _feed(trails, _events(log), T0)
    seen = trails.get(MAC)
    assert seen is not None and seen.stage == stage and seen.firmware == "uefi"
    assert seen.loaders == 2 and seen.address == ADDRESS
    assert trails.stalls(T0 + timedelta(seconds=PROBLEMS[problem].seconds - 1)) == []
    found = trails.stalls(T0 + timedelta(seconds=PROBLEMS[problem].seconds))
    assert [(s.mac, s.problem) for s in found] == [(MAC, problem)]
    assert trails.stalls(T0 + timedelta(hours=1)) == []            # said once


def test_a_boot_that_starts_again_after_shim_gave_up_at_once() -> None:
    trails = Trails()
    _feed(trails, _events("secure-boot-refused-shim.log"), T0)
    trails.offered(MAC, "shimx64.efi", T0 + timedelta(seconds=30))
    seen = trails.get(MAC)
    assert seen is not None and (seen.stage, seen.problem) == ("offered", "firmware_refused_shim")


def test_a_boot_that_goes_on_clears_the_problem_and_ends_enrolled() -> None:
    trails = Trails()
    _feed(trails, _events("secure-boot-refused-shim.log"), T0)
    trails.stalls(T0 + timedelta(minutes=2))
    later = T0 + timedelta(minutes=3)     # the technician allowed Microsoft's third-party CA
    trails.offered(MAC, "shimx64.efi", later)
    for name in ("shimx64.efi", "grubx64.efi", "grub/grub.cfg"):
        trails.sent(MAC, name, ADDRESS, later)
    trails.asked(_live(), ADDRESS, later)
    for name in ("vmlinuz", "live.img", "imager.img", "station.img"):
        trails.fetched(MAC, name, ADDRESS, later)
    seen = trails.get(MAC)
    assert seen is not None and seen.stage == "initrd" and seen.problem is None
    assert (seen.serial, seen.decision, seen.machine_id) == ("PF1SB", "live", 7)
    trails.enrolled(MAC, later + timedelta(seconds=30))
    assert trails.stalls(later + timedelta(hours=1)) == []
    seen = trails.get(MAC)
    assert seen is not None and seen.stage == "enrolled" and seen.problem is None


@pytest.mark.parametrize(("steps", "problem"), [
    ((("sent", "shimx64.efi"), ("sent", "grubx64.efi"), ("sent", "grub/grub.cfg")),
     "no_station_http"),
    ((("sent", "shimx64.efi"), ("sent", "grubx64.efi"), ("sent", "grub/grub.cfg"),
      ("asked", "live"), ("fetched", "vmlinuz")), "kernel_refused"),
    ((("sent", "shimx64.efi"), ("sent", "grubx64.efi"), ("sent", "grub/grub.cfg"),
      ("asked", "live"), ("fetched", "vmlinuz"), ("fetched", "live.img")), "live_silent"),
    ((("sent", "undionly.0"),), "ipxe_no_script"),
    ((), "no_loader"),
])
def test_each_stage_has_its_problem(steps: tuple[tuple[str, str], ...], problem: str) -> None:
    trails = Trails()
    bios = ("sent", "undionly.0") in steps
    trails.offered(MAC, "undionly.0" if bios else "shimx64.efi", T0, "bios" if bios else "uefi")
    for kind, name in steps:
        if kind == "sent":
            trails.sent(MAC, name, ADDRESS, T0)
        elif kind == "asked":
            trails.asked(_live(), ADDRESS, T0)
        else:
            trails.fetched(MAC, name, ADDRESS, T0)
    found = trails.stalls(T0 + timedelta(seconds=PROBLEMS[problem].seconds))
    assert [s.problem for s in found] == [problem]


def test_the_menu_the_local_disk_and_a_pairing_code_are_no_problem() -> None:
    trails = Trails()
    for action, token in (("menu", None), ("local", None)):
        mac = "52:54:00:aa:00:0" + ("2" if action == "menu" else "3")
        trails.offered(mac, "shimx64.efi", T0)
        trails.asked(BootDecision(action, "unknown", mac, "X1", None, token), ADDRESS, T0)
    pairing = "52:54:00:aa:00:04"
    trails.offered(pairing, "shimx64.efi", T0)
    trails.asked(BootDecision("live", "inventory chosen", pairing, "", None, None), ADDRESS, T0)
    trails.fetched(pairing, "vmlinuz", ADDRESS, T0)
    trails.fetched(pairing, "live.img", ADDRESS, T0)
    assert trails.stalls(T0 + timedelta(hours=2)) == []


def test_the_menus_inventory_entry_restarts_the_clock() -> None:
    trails = Trails()
    trails.offered(MAC, "shimx64.efi", T0)
    trails.asked(BootDecision("menu", "unknown", MAC, "X1", None, None), ADDRESS, T0)
    chosen = T0 + timedelta(minutes=5)
    trails.asked(_live("X1"), ADDRESS, chosen)
    assert trails.stalls(chosen + timedelta(seconds=10)) == []


def test_what_changed_is_written_for_the_board(tmp_path: Path) -> None:
    trails = Trails()
    _feed(trails, _events("secure-boot-refused-grub.log"), T0)
    trails.stalls(T0 + timedelta(minutes=1))
    registry = Registry.open(Settings(data_dir=tmp_path))
    try:
        with registry.session() as s:
            netboot.record(s, trails.changed())
        assert trails.changed() == []
        with registry.session(readonly=True) as s:
            rows = netboot.recent(s, now=datetime.now(UTC))
            assert [(r.mac, r.stage, r.problem, r.address, r.loaders) for r in rows] == [
                (MAC, "grub", "shim_refused_grub", ADDRESS, 2)]
    finally:
        registry.close()


def test_the_neighbour_table_names_the_mac_of_an_address(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "10.66.0.185      0x1         0x2         52:54:00:AA:00:01     *        bench0\n"
        "10.66.0.186      0x1         0x0         00:00:00:00:00:00     *        bench0\n"
        "192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n")
    assert neighbours("bench0", table) == {"10.66.0.185": MAC}
    assert neighbours("bench0", tmp_path / "none") == {}


def test_a_bios_laptop_whose_network_card_runs_ipxe_goes_straight_to_the_script() -> None:
    """QEMU's (and many cards') boot ROM is iPXE: offered boot.ipxe at once, then the
    same boot's iPXE asks again (no new boot), then the station."""
    trails = Trails()
    trails.offered(MAC, "boot.ipxe", T0, "bios")
    trails.sent(MAC, "boot.ipxe", ADDRESS, T0)
    trails.offered(MAC, "boot.ipxe", T0, "bios")        # a second DHCP, by the same iPXE
    trails.asked(_live(), ADDRESS, T0)
    trails.fetched(MAC, "vmlinuz", ADDRESS, T0)
    trails.fetched(MAC, "live.img", ADDRESS, T0)
    seen = trails.get(MAC)
    assert seen is not None and (seen.stage, seen.firmware, seen.problem) == (
        "initrd", "bios", None)


def test_dnsmasqs_log_of_a_bios_laptop_whose_card_runs_ipxe() -> None:
    events = _events("bios-ipxe-rom.log")
    assert events[0] == Offered(MAC, "boot.ipxe", "bios")
    assert Sent("boot.ipxe", ADDRESS) in events


def test_a_log_line_read_after_the_http_answer_is_the_same_boot() -> None:
    """dnsmasq's log is read twice a second: iPXE's script sent over TFTP may be
    read after iPXE asked the station over HTTP. A new boot comes later."""
    trails = Trails()
    trails.asked(_live(), ADDRESS, T0 + timedelta(seconds=1))
    trails.offered(MAC, "boot.ipxe", T0 + timedelta(seconds=1.2), "bios")
    trails.sent(MAC, "boot.ipxe", ADDRESS, T0 + timedelta(seconds=1.5))
    seen = trails.get(MAC)
    assert seen is not None and (seen.stage, seen.decision, seen.firmware) == (
        "asked", "live", "bios")
    trails.offered(MAC, "boot.ipxe", T0 + timedelta(minutes=2), "bios")     # it restarted
    seen = trails.get(MAC)
    assert seen is not None and (seen.stage, seen.decision) == ("offered", None)
