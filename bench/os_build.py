#!/usr/bin/env python3
"""The lab OS image's figures: build cold and warm, sizes, boots, reproducibility.

    sudo .venv/bin/python bench/os_build.py [--cold] [--no-boot] [--json]

--cold builds in a fresh cache (a temporary folder, removed after): every .deb is
downloaded from deb.debian.org again. Otherwise the build uses the tests' cache
(IMAGER_OS_CACHE, /var/cache/imager-os) and says whether it was a hit. Then:
the image into a temporary catalogue (raw, mapped and zstd sizes, compression
time), one boot under each of SeaBIOS, OVMF and OVMF Secure Boot (time from QEMU's
start to the boot report line), the root rebuilt from the kept .deb files alone
(same sha256?) and the disk made twice from that root (same sha256?).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import os_image  # noqa: E402

from imager.profile import disk  # noqa: E402
from imager.profile.build import BuiltImage, rebuild_root  # noqa: E402


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _timed(label: str, figures: dict[str, Any], fn: Any, *args: Any, **kw: Any) -> Any:
    started = time.monotonic()
    result = fn(*args, **kw)
    figures[label] = round(time.monotonic() - started, 1)
    print(f"{label}: {figures[label]} s", flush=True)
    return result


def measure(work: Path, *, cold: bool, boots: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if cold:
        os.environ["IMAGER_OS_CACHE"] = str(work / "cache")
    first: BuiltImage = _timed("build_first_s", figures, os_image.lab_image)
    figures["first_was_cached"] = first.cached
    figures["build_steps_s"] = {k: round(v, 1) for k, v in first.seconds.items()}
    built: BuiltImage = _timed("build_warm_s", figures, os_image.lab_image)
    figures["warm_was_cached"] = built.cached
    catalogued = _timed("catalogue_s", figures, os_image.lab_image,
                        catalogue=work / "images")
    manifest = catalogued.entry.manifest
    figures.update(raw_bytes=manifest["image_size"], mapped_bytes=manifest["mapped_bytes"],
                   zstd_bytes=manifest["image"]["size"], packages=len(built.packages),
                   repo_bytes=sum(p.stat().st_size for p in built.repo.rglob("*.deb")))
    if boots:
        for firmware in os_image.FIRMWARES:
            result = os_image.boot(built.raw, firmware, work)
            figures[f"boot_{firmware}_s"] = result.seconds if result.report else None
            print(f"boot {firmware}: {result.seconds} s, report {result.report}", flush=True)
    again = _timed("rebuild_root_s", figures, rebuild_root, built, work / "rebuild")
    figures["root_tar_same"] = again.sha256 == built.root_tar_sha256
    disks = [_timed(f"disk_{n}_s", figures, disk.make_disk, built.spec, again.tar,
                    work / f"disk{n}.raw", work / f"disk{n}") for n in (1, 2)]
    shas = {_sha256(d.raw) for d in disks} | {_sha256(built.raw)}
    figures["disk_same"] = len(shas) == 1
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="build in a fresh cache")
    parser.add_argument("--no-boot", action="store_true", help="skip the three boots")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/os_build.py needs root (mmdebstrap, loop devices)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="os-bench-", dir="/var/tmp"))
    try:
        figures = measure(work, cold=args.cold, boots=not args.no_boot)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=1) if args.json else
          "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0 if figures["root_tar_same"] else 1


if __name__ == "__main__":
    sys.exit(main())
