"""The network boot service on a bench made of network namespaces, with laptops in
QEMU (TCG): SeaBIOS + QEMU's iPXE ROM, and OVMF with Secure Boot and Microsoft's keys.

The real `imager boot serve` runs in the station namespace beside a "router"
dnsmasq that gives the addresses. Each laptop boots three times, as a laptop
on the bench would: unknown (the menu, then its own disk after 10 s), tied to
a donation (the live system's stand-in, with a boot token bound to its MAC
and serial on its command line), deployed (its disk at once). The consoles
are the evidence (kept under the test's folder; their paths are printed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bootnet import (
    LOCAL_MARKER,
    MARKER,
    PROBE_IP_RANGE,
    BenchNet,
    Laptop,
    clean_console,
    deploy,
    marker_disk,
    missing,
    standin_files,
    tie,
)
from conftest import need
from sqlalchemy import select

from imager.boot import menus
from imager.boot.files import BootFiles
from imager.boot.nics import set_ipxe
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import BootSighting, BootToken, ItemEvent

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[1]
# `imager boot serve` until `imager boot` exists in the command table (it then wins).
CLI = ("import sys; from imager.cli import COMMANDS, Command, main; "
       "COMMANDS.setdefault('boot', Command('boot_serve', 'boot')); sys.exit(main())")
HTTP_PORT = 8471
STATION_URL = "https://10.66.0.2:8470"
TIMEOUT = {"bios": 240, "uefi": 300, "secureboot": 300}
SNP_MAC = "52:54:00:5e:e0:01"      # a NIC a technician listed for iPXE under UEFI


@dataclass
class Bench:
    net: BenchNet
    registry: Registry
    files: BootFiles
    data: Path
    run_dir: Path
    work: Path
    figures: dict[str, object] = field(default_factory=dict)

    def station_log(self) -> str:
        return (self.net.workdir / "station.log").read_text(errors="replace")

    def ca_sha256(self) -> str:
        from imager.certify.keys import load_cert, pem
        cert = load_cert(self.data / "keys" / "tls-ca.crt")[0]
        return hashlib.sha256(pem(cert).encode()).hexdigest()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    need(not missing(), f"the boot bench needs: {', '.join(missing())}")
    work = tmp_path_factory.mktemp("netboot")
    files = standin_files(work / "files")
    data = work / "data"
    registry = Registry.open(Settings(data_dir=data))
    set_ipxe(Settings(data_dir=data), SNP_MAC, ipxe=True)     # read by the service at start
    try:
        with BenchNet(work / "net") as net:
            run_dir = Path("/run/imager-boot") / net.tag
            env = {**os.environ, "IMAGER_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
            station = net.start_station([
                sys.executable, "-c", CLI, "boot", "serve", "--interface", net.bench_if,
                "--files", str(work / "files"), "--run-dir", str(run_dir),
                "--station-url", STATION_URL, "--http-port", str(HTTP_PORT)], env=env)
            found = Bench(net, registry, files, data, run_dir, work)
            try:
                yield found
            finally:
                assert net.stop_station(station) == 0, found.station_log()[-2000:]
                shutil.rmtree(run_dir, ignore_errors=True)
                print(f"\nnetwork boot figures: {json.dumps(found.figures)}")
                (work / "figures.json").write_text(json.dumps(found.figures, indent=2))
    finally:
        registry.close()


def _console(vm: Laptop) -> str:
    return clean_console(vm.text())


def _keep(bench: Bench, vm: Laptop, stage: str) -> Path:
    """This boot's console, kept as evidence."""
    kept = bench.work / f"console-{vm.name}-{stage}.log"
    shutil.copyfile(vm.console, kept)
    print(f"\n{vm.name} {stage}: {kept}")
    return kept


def _standin(text: str) -> dict[str, str]:
    """The stand-in's `IMAGER-STANDIN key: value` lines."""
    return {m.group(1): m.group(2).strip() for m in
            re.finditer(rf"{MARKER} ([a-z0-9-]+): ([^\n]*)", text)}


# -- a laptop from unknown to live to its own disk, per firmware --------------------

# SeaBIOS + iPXE here; the same three boots under OVMF Secure Boot (GRUB's menu, the
# live system, the local disk) are in tests/test_laptop_e2e.py with the real live
# system, and the boot watch under Secure Boot in tests/test_boot_refusal.py.
@pytest.mark.parametrize("firmware", ["bios"])
def test_a_laptop_unknown_then_tied_to_a_donation_then_deployed(bench: Bench,
                                                                firmware: str) -> None:
    serial = f"PF1{firmware[:4].upper()}0042"
    mac = "52:54:00:b0:07:0" + ("1" if firmware == "bios" else "2")
    vm = bench.net.laptop(f"t480-{firmware}", firmware=firmware, serial=serial, mac=mac,
                          disk=marker_disk(bench.work / f"{firmware}-disk.img"))
    _unknown_gets_the_menu_then_its_disk(bench, vm)
    machine = tie(bench.registry, serial, reference=f"DON-{firmware}")
    _tied_boots_the_live_system(bench, vm, machine)
    deploy(bench.registry, machine)
    _deployed_boots_its_disk_at_once(bench, vm)
    with bench.registry.session() as s:
        events = [e.data["action"] for e in s.scalars(select(ItemEvent).where(
            ItemEvent.machine_id == machine, ItemEvent.kind == "boot")) if e.data]
    assert events == ["live", "local"]
    asked = re.findall(rf"boot (grub|ipxe)/machine from \S+ mac={mac} serial='{serial}': "
                       r"(\w+)", bench.station_log())
    assert [a for _, a in asked] == ["menu", "live", "local"]
    assert {loader for loader, _ in asked} == {"ipxe" if firmware == "bios" else "grub"}


def _unknown_gets_the_menu_then_its_disk(bench: Bench, vm: Laptop) -> None:
    vm.start()
    vm.wait_for(re.escape(menus.ENTRY_INVENTORY), timeout=TIMEOUT[vm.firmware])
    shown = vm.seconds()
    vm.wait_for(f"{LOCAL_MARKER} {'bios' if vm.firmware == 'bios' else 'uefi'}", timeout=90)
    waited = vm.seconds() - shown
    vm.wait_exit(timeout=30)
    text = _console(vm)
    _keep(bench, vm, "1-unknown-menu")
    assert menus.TITLE in text and menus.ENTRY_LOCAL in text
    assert MARKER not in text
    assert 9 <= waited <= 60, f"the menu waited {waited} s before the disk"
    bench.figures[f"{vm.firmware}: menu shown to disk booted, s"] = round(waited, 1)


def _tied_boots_the_live_system(bench: Bench, vm: Laptop, machine: int) -> None:
    vm.start()
    vm.wait_for(f"{MARKER} done", timeout=TIMEOUT[vm.firmware])
    reached = vm.marks[f"{MARKER} done"]
    assert vm.wait_exit(timeout=60) == 0          # the stand-in powered off
    text = _console(vm)
    _keep(bench, vm, "2-tied-live")
    got = _standin(text)
    words = got["cmdline"].split()
    token = next(w.split("=", 1)[1] for w in words if w.startswith("imager.token="))
    assert [w for w in words if not w.startswith(("imager.token=", "initrd=", "BOOT_IMAGE="))
            ] == [f"imager.station={STATION_URL}", f"imager.mac={vm.mac}",
                  "imager.boot=network", "console=tty0", "console=ttyS0,115200"]
    assert got["files"].split() == ["etc/imager/standin-imager.txt", "etc/imager/station-ca.pem"]
    assert got["ca-sha256"] == bench.ca_sha256()
    with bench.registry.session() as s:
        row = s.scalars(select(BootToken).where(
            BootToken.token_sha256 == hashlib.sha256(token.encode()).hexdigest())).one()
        assert (row.mac, row.serial, row.created_by, row.used_at) == (
            vm.mac, vm.serial, "boot service", None)
        assert row.expires_at > row.created_at
    if vm.firmware == "secureboot":
        assert "Secure boot enabled" in text           # the kernel says it, under shim
        assert "Verification failed" not in text
    assert _sighting(bench, vm) == ("initrd", "live", vm.serial, None)
    bench.figures[f"{vm.firmware}: firmware to initrd, s"] = reached


def _sighting(bench: Bench, vm: Laptop) -> tuple[str, str | None, str | None, str | None]:
    """How far the boot service's watch saw this laptop's last boot go (the stand-in
    does not enrol: the live system's boot ends at `initrd` here)."""
    time.sleep(1)                                      # the watch writes twice a second
    with bench.registry.session(readonly=True) as s:
        seen = s.scalars(select(BootSighting).where(BootSighting.mac == vm.mac)).one()
        assert seen.firmware == ("bios" if vm.firmware == "bios" else "uefi")
        return seen.stage, seen.decision, seen.serial, seen.problem


def _deployed_boots_its_disk_at_once(bench: Bench, vm: Laptop) -> None:
    vm.start()
    vm.wait_for(LOCAL_MARKER, timeout=TIMEOUT[vm.firmware])
    vm.wait_exit(timeout=30)
    text = _console(vm)
    _keep(bench, vm, "3-deployed-local")
    assert menus.TITLE not in text and menus.ENTRY_INVENTORY not in text
    assert MARKER not in text
    assert _sighting(bench, vm) == ("asked", "local", vm.serial, None)
    bench.figures[f"{vm.firmware}: firmware to local disk (deployed), s"] = vm.seconds()


def test_the_menus_inventory_entry_boots_the_live_system_with_a_token_issued_then(
        bench: Bench) -> None:
    """An unknown laptop whose technician picks "Inventorier cet ordinateur"."""
    serial, mac = "PF1INVENT01", "52:54:00:1a:7e:01"
    vm = bench.net.laptop("inventory-sb", firmware="secureboot", serial=serial, mac=mac,
                          disk=marker_disk(bench.work / "inventory-disk.img"))
    vm.start()
    vm.wait_for(re.escape(menus.ENTRY_INVENTORY), timeout=TIMEOUT["secureboot"])
    with bench.registry.session() as s:
        before = len(list(s.scalars(select(BootToken).where(BootToken.serial == serial))))
    vm.send_keys("down", "ret")
    vm.wait_for(f"{MARKER} done", timeout=120)
    vm.wait_exit(timeout=60)
    _keep(bench, vm, "inventory-chosen")
    words = _standin(_console(vm))["cmdline"].split()
    token = next(w.split("=", 1)[1] for w in words if w.startswith("imager.token="))
    with bench.registry.session() as s:
        rows = list(s.scalars(select(BootToken).where(BootToken.serial == serial)))
    assert before == 0 and len(rows) == 1             # issued when the entry was chosen
    assert rows[0].token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0].mac == mac
    assert re.search(rf"boot grub/inventory from \S+ mac={mac} serial='{serial}': live "
                     r"\(inventory chosen at the menu", bench.station_log())


def test_a_listed_nic_gets_ipxe_under_uefi(bench: Bench) -> None:
    """UEFI without Secure Boot, a NIC listed with `imager boot nic`: snponly.efi,
    then the station's iPXE script, then the live system (the EFI stub finds the
    three initrds by their `initrd=` names)."""
    serial = "PF1SNP0001"
    tie(bench.registry, serial, reference="DON-snp")
    vm = bench.net.laptop("snp-uefi", firmware="uefi", serial=serial, mac=SNP_MAC)
    vm.start()
    vm.wait_for(f"{MARKER} done", timeout=TIMEOUT["uefi"])
    reached = vm.marks[f"{MARKER} done"]
    vm.wait_exit(timeout=60)
    text = _console(vm)
    _keep(bench, vm, "snponly-live")
    assert "NBP filename is snponly.efi" in text and "iPXE" in text
    got = _standin(text)
    assert f"imager.mac={SNP_MAC}" in got["cmdline"].split()
    assert got["files"].split() == ["etc/imager/standin-imager.txt", "etc/imager/station-ca.pem"]
    assert re.search(rf"boot ipxe/machine from \S+ mac={SNP_MAC} serial=.{serial}.: live",
                     bench.station_log())
    bench.figures["uefi + snponly (iPXE): firmware to initrd, s"] = reached


# -- the network -------------------------------------------------------------------

def test_the_proxy_never_gives_addresses_and_the_router_still_does(bench: Bench) -> None:
    bench.net.stop_router()
    try:
        assert bench.net.dhcp_probe(timeout=8) is None     # the proxy alone: nothing
    finally:
        bench.net.start_router()
    lease = bench.net.dhcp_probe(timeout=12)
    assert lease is not None
    first, last = (int(a.rsplit(".", 1)[1]) for a in PROBE_IP_RANGE)
    assert first <= int(lease.rsplit(".", 1)[1]) <= last
    dnsmasq_log = (bench.run_dir / "dnsmasq.log").read_text(errors="replace")
    assert "DHCP, proxy on subnet 10.66.0.0" in dnsmasq_log
    assert not re.search(r"DHCP(OFFER|ACK)\(", dnsmasq_log)


def test_the_service_listens_on_the_bench_interface_only(bench: Bench) -> None:
    sockets = bench.net.run(bench.net.station, ["ss", "-Hlnptu"]).stdout.splitlines()
    mine = [line.split() for line in sockets if "dnsmasq" in line or "python" in line]
    assert mine, sockets
    for cols in mine:
        local = cols[4]
        assert local.startswith("10.66.0.2:") or "%bench0:" in local, cols
    ports = {cols[4].rsplit(":", 1)[1] for cols in mine}
    assert {"67", "69", str(HTTP_PORT)} <= ports and "53" not in ports


def _curl(bench: Bench, url: str, *extra: str) -> tuple[str, str]:
    out = bench.net.run(bench.net.router, ["curl", "-s", "-g", "-w", "\n%{http_code}", *extra,
                                           url], check=False).stdout
    body, _, code = out.rpartition("\n")
    return code, body


def test_hostile_requests_from_the_lan_get_the_local_disk(bench: Bench) -> None:
    base = f"http://10.66.0.2:{HTTP_PORT}"
    for query in ("mac=52:54:00:12:34:56&serial=PF1%0Aset%20root=x",
                  "mac=52:54:00:12:34&serial=PF1", "mac=52:54:00:12:34:56",
                  "mac=52:54:00:12:34:56&serial=" + "A" * 700):
        code, body = _curl(bench, f"{base}/boot/grub/machine?{query}")
        assert code == "200" and "chainloader $loader" in body and "linux " not in body
    code, body = _curl(bench, f"{base}/boot/ipxe/machine?mac=x&serial=y")
    assert code == "200" and "sanboot --no-describe --drive 0x80" in body
    for path in ("/", "/api/agents", "/boot/files/../../etc/passwd", "/boot/grub/grub.cfg"):
        assert _curl(bench, f"{base}{path}", "--path-as-is")[0] == "404"
    assert "request refused" in bench.station_log()


def test_tftp_serves_the_loaders_and_the_entry_scripts(bench: Bench) -> None:
    for name in ("undionly.0", "shimx64.efi", "grubx64.efi", "snponly.efi"):
        target = bench.work / f"tftp-{name}"
        bench.net.run(bench.net.router, ["curl", "-s", "-o", str(target),
                                         f"tftp://10.66.0.2/{name}"])
        source = {"undionly.0": bench.files.undionly, "shimx64.efi": bench.files.shim,
                  "grubx64.efi": bench.files.grub, "snponly.efi": bench.files.snponly}[name]
        assert target.read_bytes() == source.read_bytes()
    code, cfg = _curl(bench, "tftp://10.66.0.2/grub/grub.cfg")
    assert "(http,10.66.0.2:8471)/boot/grub/machine?mac=${net_default_mac}" in cfg
    code, script = _curl(bench, "tftp://10.66.0.2/boot.ipxe")
    assert script.startswith("#!ipxe") and "/boot/ipxe/machine?mac=${netX/mac}" in script


def test_the_kernel_comes_faster_over_http_than_over_tftp(bench: Bench) -> None:
    """Figures: the same kernel over HTTP (the boot service) and over TFTP (dnsmasq,
    1468-byte blocks as firmware asks), fetched from the lan."""
    shutil.copyfile(bench.files.vmlinuz, bench.run_dir / "tftp" / "vmlinuz-speed")
    os.chmod(bench.run_dir / "tftp" / "vmlinuz-speed", 0o644)
    size = bench.files.vmlinuz.stat().st_size
    seconds = {}
    for how, url, extra in (
            ("http", f"http://10.66.0.2:{HTTP_PORT}/boot/files/vmlinuz", ()),
            ("tftp", "tftp://10.66.0.2/vmlinuz-speed", ("--tftp-blksize", "1468"))):
        start = time.monotonic()
        bench.net.run(bench.net.router, ["curl", "-s", "-o", "/dev/null", *extra, url],
                      timeout=300)
        seconds[how] = time.monotonic() - start
    (bench.run_dir / "tftp" / "vmlinuz-speed").unlink()
    for how, secs in seconds.items():
        bench.figures[f"kernel {size // 1024} KiB over {how}, MB/s"] = round(
            size / secs / 1e6, 1)
    assert seconds["http"] < seconds["tftp"]
