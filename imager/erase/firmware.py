"""The base of firmware erase engines: the drive erases itself; the host proves it.

A firmware engine implements `erase()`: run the drive's own command through
the runner (host.run, or a test's fake) and wait until the drive says it is
done. The base class plants canary markers before, looks for them after (a
drive that claims success but still returns one fails the job), and then,
when the drive does not define what erased blocks read as (crypto erase,
enhanced security erase...), writes one host zero pass so that the standard
read-back verification has a known pattern to check.

Steps: 0 = the firmware command (with its canary check); 1 = the zero pass,
only when the content after the erase is indeterminate.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

from imager.erase import canary
from imager.erase.engine import CanarySurvived, EraseEngine, ResumePoint
from imager.erase.overwrite import write_pass
from imager.erase.patterns import Repeating, Source
from imager.erase.progress import Sink
from imager.host.blockdev import OpenDevice, drop_cache
from imager.host.run import Runner, RunResult, run
from imager.model import ErasePlan, PassResult

ZERO_FILL = "zero (after firmware)"
# How long a sanitize may run when the drive gives no estimate: a floor in
# seconds, and a rate in bytes per second that lengthens it for big drives.
DEFAULT_WAIT = {"crypto": (2 * 3600.0, None), "block": (6 * 3600.0, 50e6),
                "overwrite": (12 * 3600.0, 20e6)}


def default_wait(action: str, size: int) -> float:
    """The wait for a sanitize `action` of a `size`-byte drive with no estimate."""
    floor, rate = DEFAULT_WAIT[action]
    return max(floor, 3.0 * size / rate) if rate else floor


def tool_message(result: RunResult) -> str:
    """The most telling line a failed tool printed (stderr first)."""
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines()
             if ln.strip()]
    return lines[0] if lines else f"exit status {result.returncode}"


def _is_hex_bytes(value: object) -> bool:
    try:
        return isinstance(value, str) and bool(bytes.fromhex(value))
    except ValueError:
        return False


class FirmwareEngine(EraseEngine):
    """A drive-internal erase (sanitize, secure erase, format) around canaries."""

    firmware = True
    choice: ClassVar[str] = ""                   # the option naming the variant (mode, action)
    choices: ClassVar[Collection[Any]] = ()      # its allowed values

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 runner: Runner | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.options = dict(options or {})
        self.runner: Runner = runner or run
        self.sleep = sleep
        self.check_options()

    @classmethod
    def for_plan(cls, plan: ErasePlan, *, runner: Runner | None = None) -> FirmwareEngine:
        return cls(plan.options, runner=runner)

    def check_options(self) -> None:
        """Raise ValueError for options this engine cannot run with (subclasses
        add their own checks after calling this one)."""
        if self.choice and self.options.get(self.choice) not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise ValueError(f"{self.name}: {self.choice} must be one of {allowed}, not "
                             f"{self.options.get(self.choice)!r}")
        value = self.options.get("reads_as")
        if value is not None and not _is_hex_bytes(value):
            raise ValueError(f"{self.name}: reads_as must be a hex byte string such as '00', "
                             f"not {value!r}")

    def precheck(self, dev: OpenDevice) -> None:
        """Before any canary is written: raise MethodRefused if the drive cannot
        do this method, DeviceError if it is busy (a sanitize still running
        after a power cut refuses the canaries' writes)."""

    @abstractmethod
    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        """Run the drive's erase to completion; return the command as run.

        Raise MethodRefused when the drive refused before erasing anything
        (the plan then falls back to its next method) and DeviceError when the
        erase started and failed."""

    def reads_as(self) -> bytes | None:
        """What every block reads as after the erase, or None if indeterminate."""
        value = self.options.get("reads_as")
        return bytes.fromhex(value) if value else None

    def steps(self, plan: ErasePlan) -> int:
        return 1 if self.reads_as() is not None else 2

    def describe_step(self, plan: ErasePlan, index: int) -> str:
        return plan.method if index == 0 else ZERO_FILL

    def run_steps(self, dev: OpenDevice, plan: ErasePlan, *, resume: ResumePoint, sink: Sink,
                  checkpoint_seconds: float) -> tuple[PassResult, ...]:
        results = list(resume.done)
        if resume.index == 0:
            step = self._firmware_step(dev, plan, sink)
            sink.step_done(step)
            results.append(step)
        if self.reads_as() is None:
            here = resume.index == 1
            fill = write_pass(dev, Repeating(b"\0"), index=1, pattern=ZERO_FILL,
                              sink=sink, start=resume.offset if here else 0,
                              prior_errors=resume.errors if here else (),
                              prior_seconds=resume.seconds if here else 0.0,
                              checkpoint_seconds=checkpoint_seconds)
            sink.step_done(fill)
            results.append(fill)
        return tuple(results)

    def _firmware_step(self, dev: OpenDevice, plan: ErasePlan, sink: Sink) -> PassResult:
        seed = bytes.fromhex(plan.verify_seed or "") or os.urandom(16)
        self.precheck(dev)
        planted = canary.plant(dev, seed)
        t0 = time.monotonic()
        sink.update("pass", 0, 0, dev.size)
        command = self.erase(dev, sink)
        if not dev.direct:
            drop_cache(dev)
        found = canary.survivors(dev, seed, planted)
        step = PassResult(index=0, pattern=command, bytes_written=dev.size,
                          seconds=time.monotonic() - t0, canary=found)
        if not found.ok:
            raise CanarySurvived(step)
        sink.update("pass", 0, dev.size, dev.size)
        return step

    def expected_content(self, plan: ErasePlan) -> tuple[Source, str]:
        reads = self.reads_as()
        if reads is None:
            return Repeating(b"\0"), "zero"
        return Repeating(reads), f"read-after-erase 0x{reads.hex()}"
