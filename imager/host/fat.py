"""A FAT32 filesystem made and filled with mtools, never mounted (this works where
the kernel has no vfat, and needs no mount point): an EFI system partition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from imager.host.stream import run_streaming

ENV = {"MTOOLS_SKIP_CHECK": "1"}


def make_fat(target: Path | str, files: Mapping[str, Path], *, volume_id: str, label: str,
             env: Mapping[str, str] | None = None) -> None:
    """FAT32 on `target` (a partition or an image file) holding `files`: path in the
    filesystem ("EFI/BOOT/BOOTX64.EFI") -> source file. `env`: e.g. SOURCE_DATE_EPOCH."""
    full = {**ENV, **(env or {})}
    image = str(target)
    run_streaming(["mkfs.vfat", "-F", "32", "-i", volume_id, "-n", label, image], env=full,
                  timeout=120)
    folders = sorted({str(p) for name in files for p in PurePosixPath(name).parents
                      if str(p) != "."}, key=lambda p: (p.count("/"), p))
    if folders:
        run_streaming(["mmd", "-i", image, *[f"::/{f}" for f in folders]], env=full, timeout=60)
    same_name: dict[str, list[str]] = defaultdict(list)    # one mcopy per folder
    for name, source in files.items():
        where = PurePosixPath(name)
        if where.name == source.name:
            same_name[str(where.parent)].append(str(source))
        else:
            run_streaming(["mcopy", "-i", image, "-m", str(source), f"::/{name}"], env=full,
                          timeout=600)
    for folder, sources in same_name.items():
        run_streaming(["mcopy", "-i", image, "-m", *sources, f"::/{folder}/"], env=full,
                      timeout=600)
