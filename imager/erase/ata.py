"""ATA firmware erasure through hdparm: SANITIZE and SECURITY ERASE UNIT.

Both engines only talk to the drive through `self.runner` and wait through
`self.sleep`; the base class (firmware.py) plants and checks the canary
markers and writes the zero fill when `reads_as` is absent.

What erased blocks read as (the plan's `reads_as` option):

- sanitize overwrite: "00" (one pass of the pattern 0x00000000, not inverted);
- sanitize block erase, crypto scramble: absent (ACS leaves it to the vendor);
- security erase, normal mode: "00" (ATA: "write binary zeroes to all user
  data areas"); enhanced mode: absent (vendor-defined pattern).

Sanitize completion rule. SANITIZE STATUS keeps its "completed without
error" flag after a sanitize, so a drive that ignored our command (or
aborted it: hdparm still prints "Operation started in background") can show
a stale "completed" left by an earlier sanitize. The engine therefore reads
the status before starting and accepts completion only when

1. it saw this sanitize in progress, or
2. the flag was clear before the command and is set after it (a sanitize
   finished between two reads: a crypto scramble may take less than the
   first poll), or
3. the mode is crypto and the flag was already set: a crypto scramble can
   end before any status read, and nothing tells it from a stale flag, so
   the step record says so and the proof is the canary check (a drive that
   did not scramble returns the markers intact and the job fails) plus the
   zero fill and read-back that follow.

For block erase and overwrite (minutes to hours on any real drive) case 3 is
a DeviceError. A drive that stays idle without the flag never started: the
method is refused and the plan falls back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from functools import cached_property

from imager.erase.firmware import FirmwareEngine, tool_message
from imager.erase.progress import Sink
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import OpenDevice
from imager.host.run import Runner, RunResult
from imager.inventory.hdparm import (
    AtaIdentify,
    AtaSecurity,
    SanitizeStatus,
    parse_identify,
    parse_sanitize_status,
    sanitize_error_reason,
)

YES = "--yes-i-know-what-i-am-doing"
SANITIZE_FLAGS = {
    "block": ("--sanitize-block-erase",),
    "crypto": ("--sanitize-crypto-scramble",),
    # hdparm 9.65: the pass count must come before --sanitize-overwrite (which
    # ends the flags); without it the drive does 16 passes (OVERWRITE COUNT 0).
    "overwrite": ("--sanitize-overwrite-passes", "1", "--sanitize-overwrite", "hex:00000000"),
}
POLL_SECONDS = 5.0
STARTUP_POLLS = 3              # idle reads after the start before "never started"
SUSPEND_SECONDS = 10           # rtcwake -m mem -s N
RESUME_SETTLE_SECONDS = 5.0    # let the links come back after resume
ATA_PASSWORD_MAX = 32
SHORT_TIMEOUT = 60.0


def capacity_seconds(size: int) -> float:
    """hdparm's own estimate for a whole-drive erase: 1 s per 30 MiB + 30 min."""
    return size / (30 << 20) + 1800.0


def security_erase_timeout(minutes: int | None, size: int) -> float:
    """A runner timeout above hdparm's own SECURITY ERASE timeout (drive
    estimate x2 + 60 min, or the capacity estimate), plus 30 min."""
    drive = (2 * minutes + 60) * 60.0 if minutes else 0.0
    return max(drive, capacity_seconds(size)) + 1800.0


def sanitize_timeout(ident: AtaIdentify, size: int) -> float:
    """How long to poll a sanitize: the drive's security erase estimate (the
    only duration IDENTIFY gives) doubled plus an hour, or the capacity
    estimate, whichever is longer."""
    sec = ident.security
    minutes = max((m for m in (sec.erase_minutes, sec.enhanced_erase_minutes) if m),
                  default=None) if sec else None
    return security_erase_timeout(minutes, size) + 1800.0


def _identify(runner: Runner, path: str) -> AtaIdentify:
    """`hdparm -I`, parsed; MethodRefused when the drive does not answer it."""
    result = runner(["hdparm", "-I", path], timeout=SHORT_TIMEOUT, check=False)
    text = result.stdout
    if not result.ok or "Model Number" not in text:
        raise MethodRefused(
            f"hdparm -I {path} did not return ATA IDENTIFY data ({tool_message(result)}): "
            "the drive or its USB adapter does not pass ATA commands; dock it on SATA or use "
            "another method")
    return parse_identify(text)


def _output(result: RunResult) -> str:
    return result.stdout + "\n" + result.stderr


class AtaSanitizeEngine(FirmwareEngine):
    """ATA SANITIZE (block erase, crypto scramble or one zero overwrite pass)."""

    name = "ata-sanitize"
    tool_package = "hdparm"
    choice, choices = "mode", tuple(SANITIZE_FLAGS)

    def check_options(self) -> None:
        super().check_options()
        reads = self.reads_as()
        if self.options["mode"] == "overwrite" and reads not in (None, b"\0"):
            raise ValueError("ata-sanitize overwrite writes zeros: reads_as must be '00' or absent")

    @property
    def mode(self) -> str:
        return str(self.options["mode"])

    def command(self) -> tuple[str, ...]:
        """The hdparm flags of this mode (without the device)."""
        return SANITIZE_FLAGS[self.mode]

    checked: AtaIdentify | None = None   # what precheck() read

    def precheck(self, dev: OpenDevice) -> None:
        ident = self.checked = _identify(self.runner, dev.path)
        if self.mode not in ident.sanitize:
            raise MethodRefused(
                f"{dev.path} ({ident.model}) does not support SANITIZE {self.mode} (it offers: "
                f"{', '.join(sorted(ident.sanitize)) or 'no SANITIZE at all'}): use another method")
        self._status_before(dev.path)

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        ident = self.checked or _identify(self.runner, dev.path)
        before = self._status_before(dev.path)   # again: the flag just before the start
        self._start(dev.path)
        note = self._wait(dev, sink, before, sanitize_timeout(ident, dev.size))
        return " ".join(("hdparm", *self.command())) + note

    def _status(self, path: str) -> SanitizeStatus:
        result = self.runner(["hdparm", "--sanitize-status", path], timeout=SHORT_TIMEOUT,
                             check=False)
        return parse_sanitize_status(_output(result))

    def _status_before(self, path: str) -> SanitizeStatus:
        try:
            status = self._status(path)
        except DeviceError as exc:
            raise MethodRefused(f"cannot read the sanitize status of {path} ({exc}): use "
                                "another method") from exc
        if status.state == "not supported":
            raise MethodRefused(f"{path} does not support SANITIZE: use another method")
        if status.state == "frozen":
            raise MethodRefused(
                f"SANITIZE is frozen on {path} (SANITIZE FREEZE LOCK, usually sent by the "
                "BIOS): replug the drive to power-cycle it, then start again, or use another "
                "method")
        if status.state == "in progress":
            raise DeviceError(
                f"a sanitize started earlier is still running on {path} "
                f"({status.percent}%): leave the drive powered, wait until `hdparm "
                f"--sanitize-status {path}` no longer shows it in progress, then start again")
        return status

    def _start(self, path: str) -> None:
        argv = ["hdparm", YES, *self.command(), path]
        result = self.runner(argv, timeout=SHORT_TIMEOUT, check=False)
        if result.ok:
            return
        status = self._status(path)          # did it start anyway?
        if status.state == "in progress":
            return
        if status.state == "failed":
            raise self._failed(path, status)
        reason = sanitize_error_reason(_output(result)) or tool_message(result)
        raise MethodRefused(f"{path} refused SANITIZE {self.mode} before starting ({reason}): "
                            "use another method")

    def _failed(self, path: str, status: SanitizeStatus) -> DeviceError:
        return DeviceError(
            f"SANITIZE {self.mode} failed on {path} (the drive is in the Sanitize Operation "
            f"Failed state{': ' + status.reason if status.reason else ''}); its data may be "
            "partly erased and it refuses reads and writes: start the sanitize again, and "
            "destroy the drive if it fails again")

    def _wait(self, dev: OpenDevice, sink: Sink, before: SanitizeStatus,
              timeout: float) -> str:
        seen, idle, waited = False, 0, 0.0
        while True:
            status = self._poll(dev.path)
            if status.state == "in progress":
                seen = True
                done = (status.percent or 0) * dev.size // 100
                sink.update("pass", 0, done, dev.size)
            elif status.state == "failed":
                raise self._failed(dev.path, status)
            elif status.state == "completed":
                return self._accept(dev.path, seen=seen, flag_before=before.completed)
            elif seen:
                raise DeviceError(
                    f"the sanitize of {dev.path} left the in-progress state without reporting "
                    f"success (now {status.state}): treat the drive as not erased; start again "
                    "or use another method")
            else:
                idle += 1
                if idle >= STARTUP_POLLS:
                    raise MethodRefused(
                        f"{dev.path} accepted SANITIZE {self.mode} but never started it (status "
                        f"stays {status.state}, no sanitize completed): use another method")
            if waited >= timeout:
                raise DeviceError(
                    f"the sanitize of {dev.path} is still running after {waited / 60:.0f} min: "
                    "leave the drive powered (it continues on its own), check `hdparm "
                    f"--sanitize-status {dev.path}` later and start the erase again once done")
            self.sleep(POLL_SECONDS)
            waited += POLL_SECONDS

    def _poll(self, path: str) -> SanitizeStatus:
        try:
            return self._status(path)
        except DeviceError as exc:
            raise DeviceError(
                f"lost the sanitize status of {path} ({exc}): leave the drive powered, check "
                f"`hdparm --sanitize-status {path}`, then start the erase again") from exc

    def _accept(self, path: str, *, seen: bool, flag_before: bool) -> str:
        if seen:
            return ""
        if not flag_before:
            return " (finished before the first status read; completion flag raised by it)"
        if self.mode == "crypto":
            return (" (finished before the first status read; the completion flag was already "
                    "set by an earlier sanitize, so only the canary check proves it)")
        raise DeviceError(
            f"{path} reports a completed sanitize but never showed this SANITIZE {self.mode} in "
            "progress: the flag may be left from an earlier sanitize, so nothing proves this "
            "one ran; start again or use another method")


def temporary_password() -> str:
    """A fresh ATA user password for one erase (printable, no spaces)."""
    return "imager-" + secrets.token_hex(8)


class AtaSecurityEraseEngine(FirmwareEngine):
    """ATA SECURITY ERASE UNIT (normal or enhanced) with a temporary password."""

    name = "ata-security-erase"
    tool_package = "hdparm"

    def check_options(self) -> None:
        super().check_options()
        if self.options.get("unfreeze", "never") not in ("suspend", "never"):
            raise ValueError(f"unfreeze must be 'suspend' or 'never', not "
                             f"{self.options.get('unfreeze')!r}")
        password = self.options.get("password")
        if password is not None and not _valid_password(password):
            raise ValueError(f"an ATA password must be 1 to {ATA_PASSWORD_MAX} printable ASCII "
                             "characters without spaces, and not NULL")

    @cached_property
    def password(self) -> str:
        """The temporary user password: the fixed option, else a fresh one."""
        return str(self.options.get("password") or temporary_password())

    @property
    def enhanced(self) -> bool:
        return bool(self.options.get("enhanced", False))

    @property
    def erase_flag(self) -> str:
        return "--security-erase-enhanced" if self.enhanced else "--security-erase"

    checked: AtaSecurity | None = None   # the state precheck() found usable

    def precheck(self, dev: OpenDevice) -> None:
        self.checked = self._usable_security(dev.path)

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        sec = self.checked or self._usable_security(dev.path)
        try:
            self._set_password(dev.path, sec)
            self._erase_unit(dev, sec)
            self._require_disabled(dev.path)
        except MethodRefused:
            raise
        except Exception as exc:  # a tool timing out too: the password must be reported
            raise self._failed_with_password(dev.path, exc) from exc
        return f"hdparm {self.erase_flag}"

    def _security(self, path: str) -> AtaSecurity:
        ident = _identify(self.runner, path)
        if ident.security is None or not ident.security.supported:
            raise MethodRefused(f"{path} ({ident.model}) does not support the ATA Security "
                                "feature set: use another method")
        return ident.security

    def _usable_security(self, path: str) -> AtaSecurity:
        sec = self._security(path)
        if self.enhanced and not sec.enhanced_erase:
            raise MethodRefused(f"{path} does not support ENHANCED SECURITY ERASE: use the "
                                "normal security erase or another method")
        if sec.enabled and self._clear_own_password(path):
            sec = self._security(path)   # our plan's password, left by an interrupted run
        if sec.locked:
            raise MethodRefused(
                f"{path} is locked by an ATA password set before it reached us: unlock it "
                f"with the known password (hdparm --user-master u --security-unlock PASSWORD "
                f"{path}) or use another method")
        if sec.count_expired:
            raise MethodRefused(f"{path} counted too many wrong ATA passwords: replug the drive "
                                "to power-cycle it (that resets the count), then start again")
        return self._unfrozen(path, sec) if sec.frozen else sec

    def _unfrozen(self, path: str, sec: AtaSecurity) -> AtaSecurity:
        tried = ""
        if self.options.get("unfreeze", "never") == "suspend":
            tried = self._suspend_resume()
            sec = self._security(path)
            if not sec.frozen:
                return sec
        raise MethodRefused(f"security frozen on {path}{tried} — replug the drive (hot-plug "
                            "unfreezes it) or use another method")

    def _suspend_resume(self) -> str:
        argv = ["rtcwake", "-m", "mem", "-s", str(SUSPEND_SECONDS)]
        result = self.runner(argv, timeout=SUSPEND_SECONDS + 300.0, check=False)
        self.sleep(RESUME_SETTLE_SECONDS)
        if not result.ok:
            return f" (suspend to RAM failed: {tool_message(result)})"
        return " (still frozen after a suspend/resume cycle)"

    def _hdparm_security(self, flag: str, path: str, *, timeout: float) -> RunResult:
        argv: Sequence[str] = ["hdparm", "--user-master", "u", flag, self.password, path]
        return self.runner(argv, timeout=timeout, check=False)

    def _clear_own_password(self, path: str) -> bool:
        """Remove this plan's password if a killed run left it set (the plan is
        in the registry, so the password survives the process). True if done."""
        if "password" not in self.options:
            return False
        unlock = self._hdparm_security("--security-unlock", path, timeout=SHORT_TIMEOUT)
        disable = self._hdparm_security("--security-disable", path, timeout=SHORT_TIMEOUT)
        return unlock.ok and disable.ok

    def _set_password(self, path: str, before: AtaSecurity) -> None:
        result = self._hdparm_security("--security-set-pass", path, timeout=SHORT_TIMEOUT)
        try:
            now = self._security(path)
        except MethodRefused as exc:     # the password may be set: not a clean refusal
            raise DeviceError(str(exc)) from exc
        if result.ok and now.enabled:
            return
        if not now.enabled or before.enabled:
            what = (f"refused SECURITY SET PASSWORD ({tool_message(result)})" if not result.ok
                    else "accepted SECURITY SET PASSWORD but security is still disabled (a USB "
                    "adapter may drop ATA security commands: dock the drive on SATA)")
            raise MethodRefused(f"{path} {what}: use another method")
        raise DeviceError(f"SECURITY SET PASSWORD reported {tool_message(result)}")

    def _erase_unit(self, dev: OpenDevice, sec: AtaSecurity) -> None:
        minutes = sec.enhanced_erase_minutes if self.enhanced else sec.erase_minutes
        timeout = security_erase_timeout(minutes, dev.size)
        result = self._hdparm_security(self.erase_flag, dev.path, timeout=timeout)
        if not result.ok:
            raise DeviceError(f"SECURITY ERASE UNIT failed ({tool_message(result)})")

    def _require_disabled(self, path: str) -> None:
        if self._security(path).enabled:
            raise DeviceError("the drive reported the erase finished but security is still "
                              "enabled (a completed erase disables it)")

    def _failed_with_password(self, path: str, cause: Exception) -> DeviceError:
        """The error to raise once the password may be set: it tries to remove
        the password and always names it and the command that unlocks the drive;
        it never raises itself (a drive still erasing does not answer)."""
        try:
            result = self._hdparm_security("--security-disable", path, timeout=SHORT_TIMEOUT)
        except Exception as exc:
            result = RunResult(("hdparm",), -1, "", str(exc), 0.0)
        if result.ok:
            state = (f"the temporary user password {self.password!r} was then removed "
                     f"(security disable succeeded); if the drive still asks for it, unlock it "
                     f"with `hdparm --user-master u --security-disable {self.password} {path}`")
        else:
            state = (f"removing the temporary user password {self.password!r} failed "
                     f"({tool_message(result)}): the drive may lock at the next power-on; "
                     f"unlock it with `hdparm --user-master u --security-disable "
                     f"{self.password} {path}`")
        return DeviceError(f"ATA security erase of {path} failed: {cause}. {state}; then erase "
                           "it with another method")


def _valid_password(password: object) -> bool:
    return (isinstance(password, str) and 0 < len(password) <= ATA_PASSWORD_MAX
            and password != "NULL" and re.fullmatch(r"[!-~]+", password) is not None)
