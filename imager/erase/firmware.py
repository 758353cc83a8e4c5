"""Firmware erase engines: the drive erases itself; the host proves it.

Each engine runs one drive command through host.run, then the base class
checks the canaries it planted before and reads the medium back against what
the drive must return afterwards (e.g. zeros when NVMe DLFEAT says
deallocated blocks read as zeros).
"""

from __future__ import annotations

import time

from imager.erase.engine import EraseEngine, ResumePoint
from imager.erase.patterns import Repeating, Source
from imager.erase.progress import Sink
from imager.errors import DeviceError
from imager.host.blockdev import OpenDevice
from imager.host.run import run
from imager.model import ErasePlan, PassResult

NVME_FORMAT_TIMEOUT = 4 * 3600.0


def read_after_erase(dlfeat: int) -> bytes | None:
    """What an NVMe namespace returns for erased blocks (DLFEAT bits 2:0):
    001b zeros, 010b 0xFF; anything else is not reported (None)."""
    return {1: b"\x00", 2: b"\xff"}.get(dlfeat & 0x7)


class NvmeFormatEngine(EraseEngine):
    """Format NVM with Secure Erase Settings 1 (user data) or 2 (crypto erase)."""

    name = "nvme-format"
    firmware = True

    def __init__(self, *, ses: int, reads_as: bytes) -> None:
        if ses not in (1, 2):
            raise ValueError(f"Secure Erase Settings must be 1 or 2, not {ses}")
        self.ses, self.reads_as = ses, reads_as

    def steps(self, plan: ErasePlan) -> int:
        return 1

    @classmethod
    def for_plan(cls, plan: ErasePlan) -> NvmeFormatEngine:
        return cls(ses=int(plan.options["ses"]),
                   reads_as=bytes.fromhex(plan.options["reads_as"]))

    def run_steps(self, dev: OpenDevice, plan: ErasePlan, *, resume: ResumePoint, sink: Sink,
                  checkpoint_seconds: float) -> tuple[PassResult, ...]:
        t0 = time.monotonic()
        sink.update("pass", 0, 0, dev.size)
        result = run(["nvme", "format", dev.path, f"--ses={self.ses}", "--force"],
                     timeout=NVME_FORMAT_TIMEOUT, check=False)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise DeviceError(f"nvme format --ses={self.ses} on {dev.path} failed: "
                              f"{detail[-1] if detail else f'exit {result.returncode}'}")
        sink.update("pass", 0, dev.size, dev.size)
        step = PassResult(index=0, pattern=f"nvme format --ses={self.ses}",
                          bytes_written=dev.size, seconds=time.monotonic() - t0)
        sink.step_done(step)
        return (step,)

    def expected_content(self, plan: ErasePlan) -> tuple[Source, str]:
        return Repeating(self.reads_as), f"read-after-erase 0x{self.reads_as.hex()}"
