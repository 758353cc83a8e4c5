"""The base of every erase engine.

An engine implements only its primitive operations (`run_steps`). The base
class runs them, then the read-back verification, and applies the fail-loud
rules: a drive is `erased` only when every step completed without a failed
extent, no canary marker survived a firmware erase, and the verification
read back exactly what must be there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from imager.erase.overwrite import write_pass
from imager.erase.patterns import Source, source_for
from imager.erase.progress import Sink
from imager.erase.verify import verify
from imager.errors import DeviceError
from imager.host.blockdev import OpenDevice, drop_cache
from imager.model import (
    CanaryCheck,
    ErasePlan,
    Extent,
    HiddenAreaChange,
    Outcome,
    PassResult,
    VerifyResult,
)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed job starts: pass `index` at `offset`, earlier passes done."""

    index: int = 0
    offset: int = 0
    done: tuple[PassResult, ...] = ()
    errors: tuple[Extent, ...] = ()  # failed extents of pass `index` before `offset`
    seconds: float = 0.0             # time pass `index` had spent before `offset`


@dataclass(frozen=True)
class Execution:
    passes: tuple[PassResult, ...]
    verification: VerifyResult | None
    outcome: Outcome
    reason: str
    canary: CanaryCheck | None = None
    hidden: HiddenAreaChange | None = None   # set by the job runner, not the engine


class CanarySurvived(DeviceError):
    """The drive reported a successful firmware erase but markers survived."""

    def __init__(self, step: PassResult) -> None:
        found = step.canary
        assert found is not None and not found.ok
        self.step = step
        super().__init__(
            f"the drive reported success ({step.pattern}) but {len(found.survivors)} of "
            f"{found.planted} canary markers survived, first at offset "
            f"{found.survivors[0]}: the firmware did not erase; use another method or "
            "destroy the drive")


class EraseEngine(ABC):
    name: ClassVar[str]
    firmware: ClassVar[bool] = False  # drive-internal erase: canaries go around it
    tool_package: ClassVar[str | None] = None  # Debian package of the tool it drives

    def steps(self, plan: ErasePlan) -> int:
        """How many step results `run_steps` returns for `plan`."""
        return len(plan.passes)

    def describe_step(self, plan: ErasePlan, index: int) -> str:
        """A short name for step `index` (for a pass cut short)."""
        return plan.passes[index].describe()

    @classmethod
    def for_plan(cls, plan: ErasePlan) -> EraseEngine:
        """The engine configured by the plan's options."""
        return cls()

    @abstractmethod
    def run_steps(self, dev: OpenDevice, plan: ErasePlan, *, resume: ResumePoint, sink: Sink,
                  checkpoint_seconds: float) -> tuple[PassResult, ...]:
        """Do the erasure itself; return one result per step, in order."""

    @abstractmethod
    def expected_content(self, plan: ErasePlan) -> tuple[Source, str]:
        """What the medium must hold afterwards, and its description."""

    def execute(self, dev: OpenDevice, plan: ErasePlan, *, sink: Sink,
                resume: ResumePoint = ResumePoint(),
                checkpoint_seconds: float = 5.0) -> Execution:
        try:
            passes = self.run_steps(dev, plan, resume=resume, sink=sink,
                                    checkpoint_seconds=checkpoint_seconds)
        except CanarySurvived as exc:
            return Execution((*resume.done, exc.step), None, "failed", str(exc), exc.step.canary)
        if [p.index for p in passes] != list(range(self.steps(plan))):
            return Execution(passes, None, "failed",
                             f"internal error: steps {[p.index for p in passes]} do not match "
                             f"the plan's {self.steps(plan)} steps; please report it")
        found = next((p.canary for p in passes if p.canary is not None), None)
        failed = [e for p in passes for e in p.failed_extents]
        if failed:
            total = sum(e.length for e in failed)
            return Execution(passes, None, "failed",
                             f"{len(failed)} extent(s), {total} bytes, could not be written; "
                             f"first at offset {failed[0].offset} ({failed[0].error})", found)
        if plan.verify == "none":
            return Execution(passes, None, "unverified",
                             "verification skipped (--verify none): not certified as erased",
                             found)
        if not dev.direct:
            drop_cache(dev)
        source, pattern = self.expected_content(plan)
        seed = plan.verify_seed
        if plan.verify == "sample" and not seed:
            seed = sink.verify_seed()
        result = verify(dev, source, mode=plan.verify, pattern=pattern, sink=sink,
                        index=self.steps(plan), seed=seed)
        return Execution(passes, result, *_verdict(result), found)


def _verdict(v: VerifyResult) -> tuple[Outcome, str]:
    if v.failed_extents:
        e = v.failed_extents[0]
        return "failed", (f"verification could not read {len(v.failed_extents)} extent(s); "
                          f"first at offset {e.offset} ({e.error})")
    if not v.ok:
        return "failed", (f"verification found {v.mismatched_sectors} sector(s) not holding "
                          f"{v.pattern}; first bad byte at offset {v.first_bad_offset}")
    return "erased", ""


class OverwriteEngine(EraseEngine):
    """Overwrite passes (zero, ones, pattern, random) written by the host."""

    name = "overwrite"

    def run_steps(self, dev: OpenDevice, plan: ErasePlan, *, resume: ResumePoint, sink: Sink,
                  checkpoint_seconds: float) -> tuple[PassResult, ...]:
        results = list(resume.done)
        for index in range(resume.index, len(plan.passes)):
            spec = plan.passes[index]
            here = index == resume.index
            result = write_pass(dev, source_for(spec), index=index,
                                start=resume.offset if here else 0,
                                prior_errors=resume.errors if here else (),
                                prior_seconds=resume.seconds if here else 0.0,
                                pattern=spec.describe(), sink=sink,
                                checkpoint_seconds=checkpoint_seconds)
            sink.step_done(result)
            results.append(result)
        return tuple(results)

    def expected_content(self, plan: ErasePlan) -> tuple[Source, str]:
        last = plan.passes[-1]
        return source_for(last), last.describe()

