"""A Secure Boot refusal on a real firmware is diagnosed and shown on the board, not a
silent hang: a QEMU laptop under OVMF Secure Boot with Microsoft's keys on the
namespaced bench (tests/bootnet.py), served by the real `imager boot serve`
(1) an unsigned shim: the firmware fetches it and refuses it ("Access Denied"),
(2) Debian's signed shim and an unsigned GRUB: shim refuses GRUB ("Verification
failed: (0x1A) Security Violation"). The unsigned loader is iPXE's snponly.efi,
put in the signed one's place: what a revoked shim or a GRUB below the laptop's
SBAT level looks like to the firmware. The boot service's watch names each."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootnet import BenchNet, missing, standin_files
from conftest import need

from imager.registry import netboot
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import BootSighting

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from imager.cli import main; sys.exit(main())"
UNSIGNED = Path("/usr/lib/ipxe/snponly.efi")
STALL = 15          # seconds a boot may stay at one stage here (`--stall`)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BenchNet, Path]]:
    need(not missing(), f"the boot bench needs: {', '.join(missing())}")
    need(UNSIGNED.is_file(), f"{UNSIGNED} (Debian package ipxe) is missing")
    work = tmp_path_factory.mktemp("refusal")
    standin_files(work / "files")
    with BenchNet(work / "net") as net:
        yield net, work


def _refused(bench: tuple[BenchNet, Path], name: str, loader: str,
             mac: str) -> tuple[BootSighting, float]:
    """Serve the stand-in files with `loader` unsigned, boot a Secure Boot laptop;
    what the boot service saw of it once it named a problem, and when (seconds
    after power-on)."""
    net, work = bench
    files = work / name
    shutil.copytree(work / "files", files)
    shutil.copyfile(UNSIGNED, files / loader)
    data = work / f"data-{name}"
    registry = Registry.open(Settings(data_dir=data))
    run_dir = Path("/run/imager-boot") / f"{net.tag}-{name}"
    env = {**os.environ, "IMAGER_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    station = net.start_station([
        sys.executable, "-c", CLI, "boot", "serve", "--interface", net.bench_if,
        "--files", str(files), "--run-dir", str(run_dir), "--stall", str(STALL),
        "--station-url", "https://10.66.0.2:8470"], env=env)
    vm = net.laptop(name, firmware="secureboot", serial=f"PF1{name.upper()}", mac=mac)
    try:
        vm.start()
        deadline = time.monotonic() + 240
        while True:
            with registry.session(readonly=True) as s:
                rows = [r for r in netboot.recent(s) if r.mac == mac and r.problem]
                if rows:
                    s.expunge_all()
                    found = rows[0]
                    break
            assert time.monotonic() < deadline, (work / "net" / "station.log").read_text()
            time.sleep(1)
        vm.screendump(work / f"screen-{name}.png")
        return found, vm.seconds()
    finally:
        vm.stop()
        net.stop_station(station)
        shutil.copyfile(run_dir / "dnsmasq.log", work / f"dnsmasq-{name}.log")
        shutil.rmtree(run_dir, ignore_errors=True)
        registry.close()
        print(f"\n{name}: station log {work / 'net' / 'station.log'}, "
              f"dnsmasq log {work / f'dnsmasq-{name}.log'}, screen {work}/screen-{name}.png")


def test_the_firmware_refusing_shim_is_named(bench: tuple[BenchNet, Path]) -> None:
    seen, seconds = _refused(bench, "shim", "shimx64.efi", "52:54:00:5b:00:01")
    assert (seen.stage, seen.problem, seen.firmware) == ("shim", "firmware_refused_shim", "uefi")
    assert seen.address and seen.address.startswith("10.66.0.") and seen.loaders >= 1
    log = (bench[1] / "net" / "station.log").read_text()
    assert "Secure Boot refused it" in log and "[firmware_refused_shim]" in log
    print(f"shim refused, named {seconds:.0f} s after power-on")


def test_shim_refusing_grub_is_named(bench: tuple[BenchNet, Path]) -> None:
    seen, seconds = _refused(bench, "grub", "grubx64.efi", "52:54:00:5b:00:02")
    assert (seen.stage, seen.problem) == ("grub", "shim_refused_grub")
    assert "[shim_refused_grub]" in (bench[1] / "net" / "station.log").read_text()
    print(f"GRUB refused, named {seconds:.0f} s after power-on")
