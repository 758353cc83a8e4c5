"""SCSI (SAS, USB-attached) firmware erasure: SANITIZE with sg3-utils.

`sg_sanitize --quick --early --block|--crypto|--overwrite [--zero] DEV` starts
the sanitize with the IMMED bit set (--quick skips the 15 s "reconsider"
pause, --early returns once the drive accepted the command; an overwrite uses
one pass of a 4-byte zero pattern). The engine then polls REQUEST SENSE with
`sg_requests --progress DEV` ("Progress indication: 12.34% done" while the
drive is busy, nothing once it is not) and finally reads the sense data once
(`sg_requests DEV`): MEDIUM ERROR / SANITIZE COMMAND FAILED means it failed.

A drive that rejects the CDB answers ILLEGAL REQUEST (invalid opcode, invalid
field): sg_sanitize exits 9 or 5 before anything is erased -> MethodRefused.
What erased blocks read as: after `--overwrite --zero`, zeros; after block
or crypto erase it is up to the drive: the planner leaves `reads_as` out and
the base zero-fills (the probe does not read READ CAPACITY(16)'s LBPRZ yet,
which would let a drive that reports zeros skip that pass).
"""

from __future__ import annotations

import re

from imager.erase.firmware import FirmwareEngine, default_wait, tool_message
from imager.erase.progress import Sink
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import OpenDevice
from imager.host.run import RunResult

ACTIONS = ("block", "crypto", "overwrite")
START_TIMEOUT = 300.0
POLL_SECONDS = 30.0
REFUSED_EXIT = {5, 9}          # sg3_utils: SG_LIB_CAT_ILLEGAL_REQ, SG_LIB_CAT_INVALID_OP
_PROGRESS = re.compile(r"Progress indication:\s*([\d.]+)%")
_FAILED = re.compile(r"sanitize command failed|sense key:\s*medium error", re.I)


def scsi_refusal(result: RunResult) -> str | None:
    """The sg3-utils line saying the device rejected the command, or None."""
    text = result.stderr + "\n" + result.stdout
    line = next((ln.strip() for ln in text.splitlines()
                 if "illegal request" in ln.lower() or "invalid opcode" in ln.lower()), None)
    if line or result.returncode in REFUSED_EXIT:
        return line or f"exit status {result.returncode}"
    return None


def progress_of(text: str) -> float | None:
    """`sg_requests --progress` output -> fraction done, None when not busy."""
    m = _PROGRESS.search(text)
    return float(m.group(1)) / 100 if m else None


class ScsiSanitizeEngine(FirmwareEngine):
    """SCSI SANITIZE: block erase, cryptographic erase or one zero overwrite pass."""

    name = "scsi-sanitize"
    tool_package = "sg3-utils"
    choice, choices = "action", tuple(ACTIONS)

    def command(self, path: str) -> list[str]:
        """The sg_sanitize argv that starts this sanitize."""
        action = self.options["action"]
        extra = ["--zero"] if action == "overwrite" else []
        return ["sg_sanitize", "--quick", "--early", f"--{action}", *extra, path]

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        argv = self.command(dev.path)
        result = self.runner(argv, timeout=START_TIMEOUT, check=False)
        if not result.ok:
            reason = scsi_refusal(result)
            if reason:
                raise MethodRefused(f"{dev.path} refused SANITIZE ({reason}): the drive does "
                                    "not support this sanitize; nothing was erased")
            raise DeviceError(f"{' '.join(argv)} failed: {tool_message(result)}")
        self._wait(dev, sink)
        self._check_sense(dev)
        return " ".join(argv[:-1])

    def wait_limit(self, size: int) -> float:
        """How long the drive may stay busy before the engine gives up."""
        return default_wait(self.options["action"], size)

    def _wait(self, dev: OpenDevice, sink: Sink) -> None:
        limit, waited = self.wait_limit(dev.size), 0.0
        while True:
            result = self.runner(["sg_requests", "--progress", dev.path], timeout=60,
                                 check=False)
            done = progress_of(result.stdout)
            if done is None:
                if not result.ok:
                    raise DeviceError(f"sg_requests --progress {dev.path} failed "
                                      f"({tool_message(result)}) while the sanitize ran")
                return
            sink.update("pass", 0, int(dev.size * done), dev.size)
            if waited >= limit:
                raise DeviceError(
                    f"the sanitize of {dev.path} did not finish within {limit / 3600:.1f} h "
                    f"({done:.0%} done): the drive goes on sanitizing, even across a power "
                    f"cycle; wait until `sg_requests --progress {dev.path}` prints nothing, "
                    "then erase again")
            self.sleep(POLL_SECONDS)
            waited += POLL_SECONDS

    def _check_sense(self, dev: OpenDevice) -> None:
        """The sense data left by the sanitize: a failure is reported there."""
        result = self.runner(["sg_requests", dev.path], timeout=60, check=False)
        text = result.stdout + "\n" + result.stderr
        if _FAILED.search(text):
            raise DeviceError(
                f"the sanitize of {dev.path} failed (sense data: medium error, sanitize "
                f"command failed). The drive is now in sanitize failure mode, refusing reads "
                f"and writes: leave it with `sg_sanitize --fail {dev.path}` (accepted only "
                "when the failed sanitize allowed it, AUSE) or start a new sanitize, then "
                "retry the erase or use another method; a drive whose sanitize keeps failing "
                "must be destroyed")
