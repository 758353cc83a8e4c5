"""The explicit registry of erase engines, by name."""

from __future__ import annotations

from imager.erase.ata import AtaSanitizeEngine, AtaSecurityEraseEngine
from imager.erase.engine import EraseEngine, OverwriteEngine
from imager.erase.mmc import MmcEraseEngine
from imager.erase.nvme import NvmeFormatEngine, NvmeSanitizeEngine
from imager.erase.scsi import ScsiSanitizeEngine

ENGINES: dict[str, type[EraseEngine]] = {
    e.name: e for e in (OverwriteEngine, NvmeFormatEngine, AtaSanitizeEngine,
                        AtaSecurityEraseEngine, NvmeSanitizeEngine, ScsiSanitizeEngine,
                        MmcEraseEngine)
}
