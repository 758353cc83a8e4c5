"""eMMC firmware erasure with mmc-utils.

The engine reads EXT_CSD first (`mmc extcsd read DEV`): no EXT_CSD (an SD
card), an unsupported action, or a user area that is not the whole device
refuses the method before anything is erased. Then, over the whole user area
(addresses 0 to SEC_COUNT-1, in sectors on block-addressed devices):

- erase:        `mmc erase legacy 0 END DEV` (CMD38 erase);
- secure-erase: `mmc erase secure-erase 0 END DEV` (needs SECURE_ER_EN);
- secure-trim:  `mmc erase secure-trim1 ...` then `mmc erase secure-trim2 ...`
                (needs SECURE_ER_EN and SEC_GB_CL_EN);
- sanitize:     `mmc erase trim ...` (legacy erase without SEC_GB_CL_EN), then
                `mmc sanitize DEV`: sanitize only purges UNMAPPED blocks, so the
                whole user area is trimmed first (needs SEC_SANITIZE, eMMC 4.5+).

Erased blocks read as ERASED_MEM_CONT (0x00 or 0xFF): the planner records it
in `reads_as`. Discard is never used (its content is not defined).
"""

from __future__ import annotations

from imager.erase.firmware import FirmwareEngine, tool_message
from imager.erase.progress import Sink
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import OpenDevice
from imager.host.run import RunResult
from imager.inventory.mmc import MmcExtCsd, parse_extcsd

ACTIONS = ("sanitize", "secure-erase", "secure-trim", "erase")
ERASE_TIMEOUT = 4 * 3600.0
# What each action needs in SEC_FEATURE_SUPPORT, in words for the technician.
NEEDS = {"secure-erase": ("secure_erase", "SECURE_ER_EN"),
         "secure-trim": ("secure_trim", "SECURE_ER_EN and SEC_GB_CL_EN"),
         "sanitize": ("sanitize", "SEC_SANITIZE (eMMC 4.5 or later)")}


class MmcEraseEngine(FirmwareEngine):
    """eMMC erase, secure erase, secure trim or sanitize of the whole user area."""

    name = "mmc-erase"
    tool_package = "mmc-utils"
    choice, choices = "action", ACTIONS

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        ext = self._extcsd(dev)
        self._check(dev, ext)
        commands = self.commands(dev.path, ext)
        for index, argv in enumerate(commands):
            self._run(argv, dev, first=index == 0)
        return "; ".join(" ".join(argv[:-1]) for argv in commands)

    def commands(self, path: str, ext: MmcExtCsd) -> list[list[str]]:
        """The mmc-utils argvs this action runs, in order."""
        end = str(ext.sectors - 1 if ext.block_addressed else (ext.sectors - 1) * 512)

        def erase(kind: str) -> list[str]:
            return ["mmc", "erase", kind, "0", end, path]

        action = self.options["action"]
        if action == "secure-trim":
            return [erase("secure-trim1"), erase("secure-trim2")]
        if action == "sanitize":
            return [erase("trim" if ext.trim else "legacy"), ["mmc", "sanitize", path]]
        return [erase("legacy" if action == "erase" else "secure-erase")]

    def _extcsd(self, dev: OpenDevice) -> MmcExtCsd:
        result = self.runner(["mmc", "extcsd", "read", dev.path], timeout=60, check=False)
        if not result.ok or "Extended CSD rev" not in result.stdout:
            raise MethodRefused(f"{dev.path} has no readable EXT_CSD ({tool_message(result)}): "
                                "it is not an eMMC (an SD card?), eMMC erase cannot be used")
        return parse_extcsd(result.stdout)

    def _check(self, dev: OpenDevice, ext: MmcExtCsd) -> None:
        action = self.options["action"]
        if action in NEEDS and not getattr(ext, NEEDS[action][0]):
            raise MethodRefused(
                f"{dev.path} (eMMC {ext.version}, SEC_FEATURE_SUPPORT 0x{ext.sec_features:02x})"
                f" does not support {action}: it needs {NEEDS[action][1]}")
        if ext.size != dev.size:
            raise MethodRefused(
                f"{dev.path} is {dev.size} bytes but the eMMC user area is {ext.size} bytes "
                "(SEC_COUNT): give the whole user area device (/dev/mmcblkN, not a "
                "partition nor a boot area)")

    def _run(self, argv: list[str], dev: OpenDevice, *, first: bool) -> None:
        result = self.runner(argv, timeout=ERASE_TIMEOUT, check=False)
        if result.ok and "Failed!" not in result.stdout:
            return
        raise _refused_or_failed(result, argv, dev, first=first)


def _refused_or_failed(result: RunResult, argv: list[str], dev: OpenDevice, *,
                       first: bool) -> DeviceError:
    """MethodRefused when the first command was rejected before it ran."""
    text = result.stdout + "\n" + result.stderr
    what = " ".join(argv)
    if first and ("is not supported in" in text or "unknown command" in text):
        return MethodRefused(f"{what} was refused ({tool_message(result)}): nothing was "
                             "erased")
    return DeviceError(f"{what} failed ({tool_message(result)}): {dev.path} may be partly "
                       "erased; erase it again or use another method")
