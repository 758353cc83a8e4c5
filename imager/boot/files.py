"""The files the boot service serves, as the live system build leaves them in a folder."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from imager.errors import UsageError

# field -> file name in the build folder (`imager boot build`)
NAMES = {"vmlinuz": "vmlinuz", "live": "live.img", "imager": "imager.img",
         "shim": "shimx64.efi", "grub": "grubx64.efi", "undionly": "undionly.kpxe",
         "snponly": "snponly.efi"}


@dataclass(frozen=True)
class BootFiles:
    """Paths of the live system's kernel (Debian-signed) and initrds (`live.img`
    then `imager.img`, loaded in that order), and of the network boot loaders:
    shim and Debian's signed network GRUB (UEFI), iPXE's undionly (BIOS) and
    snponly (UEFI NICs GRUB cannot drive)."""

    vmlinuz: Path
    live: Path
    imager: Path
    shim: Path
    grub: Path
    undionly: Path
    snponly: Path

    @classmethod
    def in_folder(cls, folder: Path) -> BootFiles:
        return cls(**{name: folder / file for name, file in NAMES.items()})

    def missing(self) -> list[Path]:
        return [getattr(self, f.name) for f in fields(self)
                if not getattr(self, f.name).is_file()]

    def check(self) -> BootFiles:
        """Self, or UsageError naming the missing files and the fix."""
        missing = self.missing()
        if missing:
            raise UsageError("fichiers de démarrage absents / boot files missing: "
                             f"{', '.join(str(p) for p in missing)}; build the live system "
                             "with `imager boot build`, or give its folder with --files")
        return self
