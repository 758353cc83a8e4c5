"""The explicit registry of erase engines, by name."""

from __future__ import annotations

import subprocess
from functools import cache

from imager import __version__
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


@cache
def tool_version(engine: str) -> str:
    """The tool that ran an engine and its version, as the certificate names it:
    `imager 0.1.0` for host overwrite, the Debian package otherwise."""
    package = ENGINES[engine].tool_package if engine in ENGINES else None
    if package is None:
        return f"imager {__version__}"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return f"{package} (version inconnue / unknown version)"
    version = out.stdout.strip() if out.returncode == 0 else ""
    return f"{package} {version}" if version else f"{package} (version inconnue / unknown version)"
