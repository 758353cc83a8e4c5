"""An agent's erase report checked against what the station decided.

The station made the plan; the agent carries it out and reports. Before a
report can become a certificate, the station checks that it is that plan
carried out on that drive, with figures the medium can give: the job and the
drive it names, the plan's methods and passes and no others, every pass
writing the drive's whole size without a failed extent, no host pass faster
than the drive's interface can write, no more time claimed than has passed
on the station's own clock since it created the job, the verification of the
plan (mode, what it read back, the seed the station drew), and canary markers
around a firmware erase with none left. Each refusal names what does not fit.

An agent can still lie consistently (a tampered agent writing nothing and
reporting plausible figures); these checks make every claim one the station
decided and can recompute, and a lie one that must be made on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imager.erase import canary
from imager.erase.engines import ENGINES
from imager.erase.verify import sample_ranges
from imager.errors import Unfit
from imager.model import DriveIdentity, ErasePlan, EraseReport, PassResult, VerifyResult

# The most bytes per second a drive behind each interface can take: SATA III
# (6 Gbit/s, 8b/10b), SAS-4 (22.5 Gbit/s), USB4 (40 Gbit/s), PCIe 5.0 x4 NVMe,
# SD UHS-III / eMMC HS400. Virtual drives (loop, virtio, files) are bounded by
# the memory bus of the machine that runs them.
CEILING: dict[str, float] = {"sata": 0.6e9, "ata": 0.6e9, "sas": 2.4e9, "scsi": 2.4e9,
                             "usb": 5e9, "nvme": 16e9, "mmc": 0.7e9}
VIRTUAL_CEILING = 100e9
SLACK_SECONDS = 5.0     # the agent's clock and the station's, and rounding


@dataclass(frozen=True)
class Expected:
    """What the station knows of a job when its report arrives."""

    job_id: int
    plan: ErasePlan              # the station's plan, as it stands (refusals included)
    identity: str                # the drive's identity key
    size: int                    # the drive's size now (after its hidden areas were removed)
    transport: str | None
    seconds: float               # since the station created the job, on its clock
    logical_sector: int = 512


def ceiling(transport: str | None) -> float:
    return CEILING.get(transport or "", VIRTUAL_CEILING)


def same_plan(a: ErasePlan, b: ErasePlan) -> bool:
    """Equal plans, the verification seed aside (the station draws it late)."""
    return _plan_key(a) == _plan_key(b)


def _plan_key(plan: ErasePlan) -> dict[str, Any]:
    return {k: v for k, v in plan.to_dict().items() if k != "verify_seed"}


def check(report: EraseReport, exp: Expected) -> None:
    """Unfit when `report` is not the station's plan carried out on the job's drive."""
    def unfit(what: str) -> Unfit:
        return Unfit(exp.job_id, f"job {exp.job_id}: report refused: {what}")

    if report.job_id != exp.job_id:
        raise unfit(f"it is the report of job {report.job_id} (copied from another job?)")
    if report.device.key != exp.identity or report.device.size != exp.size:
        raise unfit(f"it describes drive {report.device.key} of {report.device.size} bytes, "
                    f"not the job's drive {exp.identity} of {exp.size} bytes")
    if not same_plan(report.plan, exp.plan):
        raise unfit(f"its plan ({report.plan.method}, {report.plan.sanitization_class}) is "
                    f"not the station's ({exp.plan.method}, {exp.plan.sanitization_class})")
    if report.outcome != "erased":
        return
    engine = ENGINES[exp.plan.engine].for_plan(exp.plan)
    steps = engine.steps(exp.plan)
    if [p.index for p in report.passes] != list(range(steps)):
        raise unfit(f"it reports passes {[p.index + 1 for p in report.passes]}, the plan has "
                    f"{steps}")
    limit = ceiling(exp.transport)
    for p in report.passes:
        _check_pass(p, exp, limit, host=not (engine.firmware and p.index == 0),
                    pattern=engine.describe_step(exp.plan, p.index), unfit=unfit)
    _check_verification(report.verification, exp, engine.expected_content(exp.plan)[1],
                        limit, unfit=unfit)
    claimed = sum(p.seconds for p in report.passes) + (
        report.verification.seconds if report.verification else 0.0)
    if claimed > exp.seconds + SLACK_SECONDS:
        raise unfit(f"it claims {claimed:.0f} s of work, but the station created the job "
                    f"{exp.seconds:.0f} s ago")


def _check_pass(p: PassResult, exp: Expected, limit: float, *, host: bool, pattern: str,
                unfit: Callable[[str], Unfit]) -> None:
    n = p.index + 1
    if p.failed_extents:
        raise unfit(f"pass {n} has {len(p.failed_extents)} failed extent(s): not erased")
    if p.bytes_written != exp.size:
        raise unfit(f"pass {n} wrote {p.bytes_written} bytes, the drive has {exp.size}")
    if host:
        if p.pattern != pattern:
            raise unfit(f"pass {n} wrote {p.pattern!r}, the plan says {pattern!r}")
        if p.seconds <= 0 or p.bytes_written / p.seconds > limit:
            raise unfit(f"pass {n}: {p.bytes_written} bytes in {p.seconds:.3f} s is faster "
                        f"than a {exp.transport or 'virtual'} drive can write "
                        f"({limit / 1e9:.1f} GB/s)")
        return
    found = p.canary
    least = min(canary.COUNT // 2, exp.size // (found.block if found else 512) // 2)
    if found is None or found.planted < max(2, least):
        raise unfit(f"the firmware erase of pass {n} comes without its canary markers "
                    f"(at least {max(2, least)} planted before it)")
    if found.survivors:
        raise unfit(f"{len(found.survivors)} canary marker(s) survived the firmware erase")


def _check_verification(v: VerifyResult | None, exp: Expected, pattern: str, limit: float,
                        *, unfit: Callable[[str], Unfit]) -> None:
    plan = exp.plan
    if v is None or v.mode != plan.verify:
        raise unfit(f"it has {'no' if v is None else v.mode} verification, the plan says "
                    f"{plan.verify}")
    if not v.ok or v.failed_extents or v.mismatched_sectors:
        raise unfit("its verification did not pass")
    if v.pattern != pattern:
        raise unfit(f"it verified {v.pattern!r}, the drive must read {pattern!r}")
    if plan.verify == "full":
        wanted = exp.size
    else:
        if not plan.verify_seed or v.seed != plan.verify_seed:
            raise unfit("its sampled verification did not use the seed the station drew "
                        "after the write passes")
        sector = exp.logical_sector
        align = max(sector, 4096) if exp.size % 4096 == 0 else sector
        wanted = sum(n for _, n in sample_ranges(exp.size, align, bytes.fromhex(v.seed)))
    if v.bytes_read != wanted:
        raise unfit(f"its verification read {v.bytes_read} bytes, the plan's reads "
                    f"{wanted}")
    if v.seconds <= 0 or v.bytes_read / v.seconds > limit:
        raise unfit(f"its verification read {v.bytes_read} bytes in {v.seconds:.3f} s, faster "
                    f"than a {exp.transport or 'virtual'} drive can ({limit / 1e9:.1f} GB/s)")


def check_replan(current: ErasePlan, new: ErasePlan, job_id: int) -> None:
    """A job's new plan must be its current one with its first method refused
    (and, when one is left, the next method up): nothing else may change."""
    if len(new.refused) != len(current.refused) + 1 or \
            new.refused[:-1] != current.refused or new.refused[-1].method != current.method:
        raise Unfit(job_id, f"job {job_id}: new plan refused: it must record {current.method} "
                            "as refused by the drive, and only that")
    refused = current.refuse(new.refused[-1].reason)
    allowed = [refused] + ([fb] if (fb := refused.fallback()) is not None else [])
    if not any(same_plan(new, a) for a in allowed):
        raise Unfit(job_id, f"job {job_id}: new plan refused: after {current.method} it may "
                            "only go on with the plan's next method")


def check_uncovered(plan: ErasePlan, identity: str, size: int, now: DriveIdentity,
                    job_id: int) -> None:
    """A drive's new identity during a job: the same drive, grown by the hidden areas
    the plan found (HPA, DCO), never another drive or another size."""
    hidden = plan.hidden
    most = max(hidden.native_max or 0, hidden.dco_real_max or 0) * now.logical_sector \
        if hidden else 0
    if now.key != identity or not (size <= now.size <= max(size, most)):
        raise Unfit(job_id, f"job {job_id}: drive update refused: {now.key} of {now.size} "
                            f"bytes is not the job's drive {identity} ({size} bytes) with "
                            "its hidden areas uncovered")
