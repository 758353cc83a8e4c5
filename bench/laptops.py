#!/usr/bin/env python3
"""Laptops from power-on to their installed system, per firmware and several at once.

    sudo .venv/bin/python bench/laptops.py [--firmware secureboot,uefi,bios] [--together 3]
                                           [--disk-gib 4] [--out figures.json] [--keep DIR]

The bench of tests/test_laptop_e2e.py (network namespaces, the "router" dnsmasq,
a real station: `imager serve` with the lab image as the laptops' image and
`imager boot serve` on the bench interface; the live system and the lab image
from their caches, built when missing) and QEMU laptops (TCG, 1 vCPU, 2 GiB)
with an NVMe drive of --disk-gib holding marked donor data, each tied to a
donation at intake. A technician's orientation (reuse) is given once each
inventory arrives, as on the bench.

1. One laptop per firmware of --firmware, one after the other: seconds from
   power-on to enrolled, inventoried, erased, certified, imaged, done, the boot
   service's `local`, the installed system's boot report.
2. --together N laptops powered on at the same time (firmwares in turn): each
   one's stages, and the wall time until the last one's installed system reported.

After each laptop stops, its whole disk file is scanned from the host for the
donor's markers (none may be left). Everything made is removed on exit, failed
or not (the work folder too, unless --keep)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bootnet import BenchNet, Laptop  # noqa: E402
from bootnet import missing as bench_missing  # noqa: E402
from laptop_e2e import (  # noqa: E402
    BenchStation,
    DonorDisk,
    GiB,
    donor_disk,
    scan,
    to_installed_system,
)
from os_image import lab_image  # noqa: E402

from imager.boot import live  # noqa: E402
from imager.certify.keys import station_keys  # noqa: E402
from imager.imaging.catalogue import images_dir  # noqa: E402
from imager.settings import Settings  # noqa: E402

DONATION = "DON-BENCH"
TECHNICIAN = "Lina Technicienne"
WHY = "écran, clavier et batterie vérifiés à l'établi"
FIRMWARES = ("secureboot", "uefi", "bios")


class Bench:
    """The station on a BenchNet; laptops made with `laptop()` get numbered names."""

    def __init__(self, net: BenchNet, station: BenchStation, disk_bytes: int) -> None:
        self.net, self.station, self.disk_bytes = net, station, disk_bytes
        self.count = 0
        self._lock = threading.Lock()           # laptops are made from several threads

    def laptop(self, firmware: str) -> tuple[Laptop, DonorDisk]:
        with self._lock:
            self.count += 1
            n = self.count
            return self._laptop(firmware, n)

    def _laptop(self, firmware: str, n: int) -> tuple[Laptop, DonorDisk]:
        serial = f"PF3{firmware[:4].upper()}{n:04d}"
        self.station.cli("intake", "--machine", "--technician", TECHNICIAN, DONATION, serial)
        disk = donor_disk(self.net.workdir / f"disk-{n}.img", size=self.disk_bytes)
        vm = self.net.laptop(f"{firmware}-{n}", firmware=firmware, serial=serial,
                             mac=f"52:54:00:be:0{n // 256:x}:{n % 256:02x}", disk=disk.path,
                             memory_mib=2048)
        return vm, disk

    def run(self, firmware: str, results: dict[str, Any], key: str) -> None:
        """One laptop's whole flow; its stages (and error) into results[key]."""
        vm, disk = self.laptop(firmware)
        stages: dict[str, float] = {}
        results[key] = {"firmware": firmware, "stages": stages}
        try:
            run = to_installed_system(self.station, vm, technician=TECHNICIAN, why=WHY,
                                      stages=stages)
            results[key]["report"] = run.report
        except Exception as exc:                     # reported, the others go on
            results[key]["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        finally:
            vm.stop()
        left = scan(disk.path, disk.prefix)
        results[key]["markers_left"] = len(left)
        disk.path.unlink()


def _print(key: str, result: dict[str, Any]) -> None:
    steps, before = [], 0.0
    for stage, at in result["stages"].items():
        steps.append(f"{stage} {at:.0f} s (+{at - before:.0f})")
        before = at
    print(f"{key} ({result['firmware']}): " + ", ".join(steps), flush=True)
    if "error" in result:
        print(f"  ERROR: {result['error'][:600]}", flush=True)
    print(f"  donor markers left on the disk: {result['markers_left']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--firmware", default=",".join(FIRMWARES),
                        help="one laptop after the other, per firmware (comma-separated)")
    parser.add_argument("--together", type=int, default=3, metavar="N",
                        help="then N laptops at once (0: none)")
    parser.add_argument("--disk-gib", type=float, default=4.0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON there")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (consoles, logs, registry)")
    args = parser.parse_args()
    firmwares = [f for f in args.firmware.split(",") if f]
    if wrong := set(firmwares) - set(FIRMWARES):
        parser.error(f"--firmware: {', '.join(sorted(wrong))}; use {', '.join(FIRMWARES)}")
    lacking = bench_missing()
    if lacking:
        print(f"the laptops' bench needs: {', '.join(lacking)}", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="imager-laptops-"))
    figures: dict[str, Any] = {}
    try:
        started = time.monotonic()
        system = live.build()
        settings = Settings(data_dir=work / "data")
        lab_image(catalogue=images_dir(settings), keys=station_keys(settings))
        figures["live system and lab image ready, s"] = round(time.monotonic() - started, 1)
        figures["live system (vmlinuz + live.img + imager.img), MB"] = round(
            system.boot_bytes / 1e6, 1)
        with BenchNet(work / "net") as net:
            station = BenchStation(net, work / "data", system.folder)
            try:
                station.start("--laptop-image", "lab")
                station.cli("donors", "add", "--kind", "mairie", "Mairie de Briançon")
                station.cli("donations", "add", "--donor", "Mairie de Briançon", DONATION)
                station.cli("technicians", "add", TECHNICIAN)
                _measure(Bench(net, station, int(args.disk_gib * GiB)), firmwares,
                         args.together, figures)
            finally:
                station.stop()
    finally:
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=1, ensure_ascii=False))
    failed = [k for k, v in figures.items() if isinstance(v, dict)
              and ("error" in v or v.get("markers_left"))]
    return 1 if failed else 0


def _measure(bench: Bench, firmwares: list[str], together: int,
             figures: dict[str, Any]) -> None:
    for firmware in firmwares:
        key = f"one laptop, {firmware}"
        bench.run(firmware, figures, key)
        _print(key, figures[key])
    if together <= 0:
        return
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=bench.run, args=(FIRMWARES[i % len(FIRMWARES)],
                                                        results, f"together {i + 1}/{together}"))
               for i in range(together)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
        time.sleep(1)
    for thread in threads:
        thread.join()
    figures[f"{together} laptops at once: wall time to the last boot report, s"] = round(
        time.monotonic() - started, 1)
    for key in sorted(results):
        figures[key] = results[key]
        _print(key, results[key])


if __name__ == "__main__":
    sys.exit(main())
