"""NVMe firmware erasure: Format NVM with Secure Erase Settings.

`nvme format --ses=1` (user data erase) or `--ses=2` (cryptographic erase)
on the namespace; what erased blocks read as comes from the namespace's
DLFEAT (bits 2:0), recorded in the plan's `reads_as` option at planning time.
"""

from __future__ import annotations

from imager.erase.firmware import FirmwareEngine, tool_message
from imager.erase.progress import Sink
from imager.errors import DeviceError
from imager.host.blockdev import OpenDevice

NVME_FORMAT_TIMEOUT = 4 * 3600.0


def read_after_erase(dlfeat: int) -> bytes | None:
    """What an NVMe namespace returns for erased blocks (DLFEAT bits 2:0):
    001b zeros, 010b 0xFF; anything else is not reported (None)."""
    return {1: b"\x00", 2: b"\xff"}.get(dlfeat & 0x7)


class NvmeFormatEngine(FirmwareEngine):
    """Format NVM with Secure Erase Settings 1 (user data) or 2 (crypto erase)."""

    name = "nvme-format"

    def check_options(self) -> None:
        if self.options.get("ses") not in (1, 2):
            raise ValueError(f"Secure Erase Settings must be 1 or 2, not "
                             f"{self.options.get('ses')!r}")

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        ses = self.options["ses"]
        argv = ["nvme", "format", dev.path, f"--ses={ses}", "--force"]
        result = self.runner(argv, timeout=NVME_FORMAT_TIMEOUT, check=False)
        if not result.ok:
            raise DeviceError(f"nvme format --ses={ses} on {dev.path} failed: "
                              f"{tool_message(result)}")
        return f"nvme format --ses={ses}"
