"""NVMe firmware erasure: Format NVM with Secure Erase Settings, and Sanitize.

`nvme format NS --ses=1|2` (user data / cryptographic erase) runs on the
namespace; `nvme sanitize CTRL --sanact=2|3|4` (block erase, overwrite, crypto
erase) runs on the controller and acts on the whole NVM subsystem, as Format
NVM does when FNA bit 0 or 1 says so: before such a command every other
namespace of the subsystem must pass the safety guard, or the method is
refused.

Sanitize runs in the background: the engine polls the Sanitize Status log
(`nvme sanitize-log CTRL -o json`) and accepts success only when that log
proves THIS sanitize ran (see `proves_new_sanitize`). Without No-Deallocate
every block is deallocated afterwards, so what erased blocks read as is the
namespace's DLFEAT bits 2:0 (`read_after_erase`), recorded in the plan's
`reads_as` option at planning time, for Format and Sanitize alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from imager.erase import guard
from imager.erase.firmware import FirmwareEngine, default_wait, tool_message
from imager.erase.progress import Sink
from imager.errors import DeviceError, MethodRefused, RefusedDevice
from imager.host.blockdev import OpenDevice
from imager.host.nvme import NvmeTopology, nvme_topology
from imager.host.run import Runner, RunResult
from imager.inventory.nvme import SanitizeLog, parse_id_ctrl, parse_sanitize_log
from imager.settings import Settings

NVME_FORMAT_TIMEOUT = 4 * 3600.0
COMMAND_TIMEOUT = 120.0
SANACT = {"block": 2, "overwrite": 3, "crypto": 4}
OVERWRITE_PASSES = 1          # --owpass (0 would mean 16 passes)
POLL_SECONDS = 10.0
STALE_GRACE_SECONDS = 120.0   # how long a log may keep showing the previous sanitize
MIN_WAIT_SECONDS = 600.0

# nvme-cli status lines that mean the controller refused before doing anything:
# 2.x names ("NVMe status: Invalid Command Opcode: ...(0x4001)"), 1.x names
# ("INVALID_OPCODE(1)") and 2.x's own checks of SANICAP ("crypto erase action
# unsupported"). Codes are (status code type, status code).
REFUSAL_NAMES = ("invalid command opcode", "invalid field in command", "invalid format",
                 "invalid namespace or format", "sanitize prohibited", "invalid_opcode",
                 "invalid_field", "invalid_format", "invalid_ns", "action unsupported")
REFUSAL_CODES = {(0, 0x01), (0, 0x02), (0, 0x0B), (0, 0x23), (1, 0x0A)}
_STATUS_CODE = re.compile(r"NVMe status:.*\(0x([0-9a-fA-F]+)\)")


def read_after_erase(dlfeat: int) -> bytes | None:
    """What an NVMe namespace returns for erased blocks (DLFEAT bits 2:0):
    001b zeros, 010b 0xFF; anything else is not reported (None)."""
    return {1: b"\x00", 2: b"\xff"}.get(dlfeat & 0x7)


def refusal(result: RunResult) -> str | None:
    """The nvme-cli line saying the controller refused the command, or None."""
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines()]
    for line in lines:
        low = line.lower()
        if any(name in low for name in REFUSAL_NAMES):
            return line
        m = _STATUS_CODE.search(line)
        if m and _sct_sc(int(m.group(1), 16)) in REFUSAL_CODES:
            return line
    return None


def _sct_sc(code: int) -> tuple[int, int]:
    return (code >> 8) & 0x7, code & 0xFF


def proves_new_sanitize(before: SanitizeLog, now: SanitizeLog, sanact: int) -> bool:
    """True when `now` (a completed log) can only come from the sanitize just started.

    The log keeps the status of the MOST RECENT sanitize: a drive that ignored
    the command still shows the previous one as completed. Read before the
    command (after the canary markers were written), the log proves a new
    completion when, with the action in SCDW10 matching (when reported) and, for
    an overwrite, the completed pass count equal to the one requested:
    - it was not "completed" before (never sanitized, or failed); or
    - Global Data Erased went from 0 to 1: the subsystem was written since the
      previous sanitize (the canaries at least) and no longer is; or
    - SCDW10 names this action now and named another one before.
    Seeing the operation in progress after the command is proof too (the
    caller tracks that)."""
    if not now.completed or (now.action is not None and now.action != sanact):
        return False
    if sanact == SANACT["overwrite"] and now.passes != OVERWRITE_PASSES:
        return False
    if not before.completed:
        return True
    if before.global_data_erased is False and now.global_data_erased:
        return True
    return before.action is not None and before.action != sanact and now.action == sanact


def check_other_namespaces(topology: NvmeTopology, settings: Settings, *, command: str) -> None:
    """Raise MethodRefused unless every other namespace of the subsystem may be erased."""
    refused = []
    for ns in topology.others():
        try:
            guard.check(ns, settings)
        except RefusedDevice as exc:
            refused.append(f"{ns} ({'; '.join(exc.reasons)})")
    if refused:
        raise MethodRefused(
            f"{command} acts on every namespace behind {topology.controller}, and "
            f"{', '.join(refused)} may not be erased: free it (unmount it, stop the programs "
            f"using it) or erase {topology.namespace} with a method limited to it")


class NvmeEngine(FirmwareEngine):
    """What both NVMe engines share: the controller topology and the guard."""

    tool_package = "nvme-cli"

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 runner: Runner | None = None, sleep: Callable[[float], None] = time.sleep,
                 settings: Settings | None = None,
                 topology: Callable[[str], NvmeTopology | None] | None = None) -> None:
        super().__init__(options, runner=runner, sleep=sleep)
        self._settings = settings
        self._topology = topology

    @property
    def settings(self) -> Settings:
        """The station settings the guard reads the host with (from the environment)."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def topology(self, dev: OpenDevice) -> NvmeTopology | None:
        """The controller and sibling namespaces of `dev` (None: not NVMe)."""
        if self._topology is not None:
            return self._topology(dev.path)
        return nvme_topology(dev.path, self.settings)

    def _refused_or_failed(self, result: RunResult, what: str) -> DeviceError:
        reason = refusal(result)
        if reason:
            return MethodRefused(f"{what} was refused by the controller ({reason}): the "
                                 "drive does not support it; nothing was erased")
        return DeviceError(f"{what} failed: {tool_message(result)}")


class NvmeFormatEngine(NvmeEngine):
    """Format NVM with Secure Erase Settings 1 (user data) or 2 (crypto erase)."""

    name = "nvme-format"
    choice, choices = "ses", (1, 2)

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        ses = self.options["ses"]
        topo = self.topology(dev)
        if topo is not None and topo.others():
            self._check_scope(topo, ses)
        argv = ["nvme", "format", dev.path, f"--ses={ses}", "--force"]
        result = self.runner(argv, timeout=NVME_FORMAT_TIMEOUT, check=False)
        if not result.ok:
            raise self._refused_or_failed(result, f"nvme format --ses={ses} on {dev.path}")
        return f"nvme format --ses={ses}"

    def _check_scope(self, topo: NvmeTopology, ses: int) -> None:
        """Guard the other namespaces when FNA says this format reaches them."""
        argv = ["nvme", "id-ctrl", topo.controller, "-o", "json"]
        result = self.runner(argv, timeout=COMMAND_TIMEOUT, check=False)
        if not result.ok:
            raise MethodRefused(
                f"cannot read Identify Controller of {topo.controller} "
                f"({tool_message(result)}), so the station cannot tell whether formatting "
                f"{topo.namespace} also formats {', '.join(topo.others())}")
        ctrl = parse_id_ctrl(result.stdout)
        if ctrl.format_all_namespaces or ctrl.erase_all_namespaces:
            check_other_namespaces(topo, self.settings, command=f"nvme format --ses={ses}")


class NvmeSanitizeEngine(NvmeEngine):
    """NVMe Sanitize (block erase, overwrite or crypto erase) of the whole subsystem."""

    name = "nvme-sanitize"
    choice, choices = "action", tuple(SANACT)

    @property
    def sanact(self) -> int:
        return SANACT[self.options["action"]]

    def command(self, controller: str) -> list[str]:
        """The nvme-cli argv that starts this sanitize."""
        extra = (["--owpass=1", "--ovrpat=0"]
                 if self.sanact == SANACT["overwrite"] else [])
        return ["nvme", "sanitize", controller, f"--sanact={self.sanact}", *extra]

    def precheck(self, dev: OpenDevice) -> None:
        self._ready(dev)

    def _ready(self, dev: OpenDevice) -> tuple[NvmeTopology, SanitizeLog]:
        """The controller, and its sanitize log when no sanitize is running."""
        topo = self.topology(dev)
        if topo is None:
            raise MethodRefused(f"{dev.path} is not an NVMe namespace (sysfs shows no NVMe "
                                "controller for it): nvme sanitize cannot be sent")
        check_other_namespaces(topo, self.settings, command="nvme sanitize")
        before = self._log(topo.controller, first=True)
        if before.in_progress:
            raise DeviceError(f"a sanitize is already running on {topo.controller} "
                              f"({(before.progress or 0):.0%} done): wait until "
                              f"`nvme sanitize-log {topo.controller}` shows it completed, "
                              "then erase again")
        return topo, before

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        topo, before = self._ready(dev)   # read again: the canaries' writes change the log
        argv = self.command(topo.controller)
        result = self.runner(argv, timeout=COMMAND_TIMEOUT, check=False)
        if not result.ok:
            raise self._refused_or_failed(result, f"{' '.join(argv)} ({dev.path})")
        self._wait(topo.controller, before, dev, sink)
        return " ".join(argv[:2] + argv[3:])

    def _log(self, controller: str, *, first: bool = False) -> SanitizeLog:
        argv = ["nvme", "sanitize-log", controller, "-o", "json"]
        result = self.runner(argv, timeout=COMMAND_TIMEOUT, check=False)
        if result.ok:
            return parse_sanitize_log(result.stdout)
        if first and refusal(result):
            raise MethodRefused(f"{controller} refuses the sanitize status log "
                                f"({refusal(result)}): it does not support sanitize")
        if first:
            raise DeviceError(f"cannot read the sanitize log of {controller}: "
                              f"{tool_message(result)}")
        raise DeviceError(f"cannot read the sanitize log of {controller} "
                          f"({tool_message(result)}): the sanitize may still be running in "
                          f"the drive; check `nvme sanitize-log {controller}` and erase again "
                          "once it shows completed")

    def _wait(self, controller: str, before: SanitizeLog, dev: OpenDevice, sink: Sink) -> None:
        """Poll the log until it proves this sanitize completed; raise otherwise."""
        limit, waited, seen_running = self.wait_limit(before, dev.size), 0.0, False
        unproven_since: float | None = None
        while True:
            now = self._log(controller)
            if now.failed:
                raise DeviceError(self._failed_message(controller))
            if now.in_progress:
                seen_running = True
                sink.update("pass", 0, int(dev.size * (now.progress or 0)), dev.size)
            elif now.completed and (seen_running or proves_new_sanitize(before, now,
                                                                        self.sanact)):
                return
            else:  # still the previous operation's log (or none): not proven yet
                unproven_since = waited if unproven_since is None else unproven_since
                if waited - unproven_since >= STALE_GRACE_SECONDS:
                    raise DeviceError(self._stale_message(controller, now))
            if waited >= limit:
                raise DeviceError(self._timeout_message(controller, limit, now))
            self.sleep(POLL_SECONDS)
            waited += POLL_SECONDS

    def wait_limit(self, before: SanitizeLog, size: int) -> float:
        """How long to wait: 3x the drive's estimate, else a default for the action."""
        action = self.options["action"]
        estimate = {"block": before.block_erase_seconds, "crypto": before.crypto_erase_seconds,
                    "overwrite": before.overwrite_seconds}[action]
        if estimate is not None:
            return max(MIN_WAIT_SECONDS, 3.0 * estimate + 300.0)
        return default_wait(action, size)

    def _failed_message(self, controller: str) -> str:
        return (f"the sanitize ({self.options['action']}) of {controller} failed (sanitize log "
                "status: failed). The drive may now be in sanitize failure mode, refusing "
                f"reads and writes: leave it with `nvme sanitize {controller} --sanact=1` (if "
                "the drive refuses that, it only accepts a new sanitize), then retry the "
                "erase or use another method; a drive whose sanitize keeps failing must be "
                "destroyed")

    def _stale_message(self, controller: str, now: SanitizeLog) -> str:
        return (f"{controller} accepted the sanitize but its sanitize log still shows the "
                f"previous operation (status {now.status}, SCDW10 {now.cdw10}, global data "
                f"erased {now.global_data_erased}, {now.passes} pass(es)) and never this one "
                "in progress: the station cannot prove this sanitize ran, so the drive is not "
                f"certified; check `nvme sanitize-log {controller}`, then erase again or use "
                "another method")

    def _timeout_message(self, controller: str, limit: float, now: SanitizeLog) -> str:
        done = f"{now.progress:.0%} done" if now.progress is not None else f"status {now.status}"
        return (f"the sanitize of {controller} did not finish within {limit / 3600:.1f} h "
                f"({done}): the drive goes on sanitizing in the background, even across a "
                f"power cycle; wait until `nvme sanitize-log {controller}` shows it completed, "
                "then erase again")
