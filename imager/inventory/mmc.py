"""eMMC erase capabilities from `mmc extcsd read DEV` (mmc-utils), pure.

Bits and bytes (JEDEC JESD84-B51 EXT_CSD, the names mmc-utils prints and the
kernel's include/linux/mmc/mmc.h uses):
- EXT_CSD_REV [192]: printed as "Extended CSD rev 1.N (MMC x.y)", N = the byte
  (5 = eMMC 4.41, 6 = 4.5, 7 = 5.0, 8 = 5.1);
- SEC_FEATURE_SUPPORT [231]: bit 0 SECURE_ER_EN (secure erase / secure trim),
  bit 2 SEC_BD_BLK_EN (secure purge of bad blocks), bit 4 SEC_GB_CL_EN (trim),
  bit 6 SEC_SANITIZE (sanitize, eMMC 4.5+);
- ERASED_MEM_CONT [181]: 0 -> erased memory reads 0x00, 1 -> 0xFF;
- SEC_COUNT [215:212]: user area size in 512-byte sectors ("Device is
  block-addressed" follows when addresses are sector numbers, not bytes).
An SD card has no EXT_CSD: mmc-utils then fails ("Could not read EXT_CSD").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imager.errors import DeviceError

SECURE_ER_EN = 1 << 0
SEC_BD_BLK_EN = 1 << 2
SEC_GB_CL_EN = 1 << 4
SEC_SANITIZE = 1 << 6


@dataclass(frozen=True)
class MmcExtCsd:
    """What the erase engine and the planner need from an eMMC's EXT_CSD."""

    revision: int                # EXT_CSD_REV (8 = eMMC 5.1)
    version: str                 # "5.1", as mmc-utils names it
    sec_features: int            # SEC_FEATURE_SUPPORT
    erased_byte: int             # what erased memory reads as: 0x00 or 0xFF
    sectors: int                 # SEC_COUNT, 512-byte sectors of the user area
    block_addressed: bool

    @property
    def secure_erase(self) -> bool:
        return bool(self.sec_features & SECURE_ER_EN)

    @property
    def trim(self) -> bool:
        return bool(self.sec_features & SEC_GB_CL_EN)

    @property
    def secure_trim(self) -> bool:
        return self.secure_erase and self.trim

    @property
    def sanitize(self) -> bool:
        return bool(self.sec_features & SEC_SANITIZE) and self.revision >= 6

    @property
    def size(self) -> int:
        return self.sectors * 512


def _register(text: str, name: str) -> int:
    m = re.search(rf"\[{name}:?\s*\]?:?\s*(0x[0-9a-fA-F]+)", text)
    if m is None:
        raise DeviceError(f"mmc extcsd read: no {name} in the output")
    return int(m.group(1), 16)


def parse_extcsd(text: str) -> MmcExtCsd:
    """`mmc extcsd read DEV` -> MmcExtCsd."""
    m = re.search(r"Extended CSD rev 1\.(\d+)\s*\(MMC ([\d.]+)\)", text)
    if m is None:
        raise DeviceError("mmc extcsd read: no 'Extended CSD rev' header (not an eMMC?)")
    erased = _register(text, "ERASED_MEM_CONT")
    return MmcExtCsd(revision=int(m.group(1)), version=m.group(2),
                     sec_features=_register(text, "SEC_FEATURE_SUPPORT"),
                     erased_byte=0xFF if erased & 1 else 0x00,
                     sectors=_register(text, "SEC_COUNT"),
                     block_addressed="Device is block-addressed" in text)
