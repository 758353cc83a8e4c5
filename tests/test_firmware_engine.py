"""Canaries around firmware erasure, on real loop devices: a drive that
claims success without erasing is caught."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from conftest import erase_job

from imager.erase import canary
from imager.erase.nvme import NvmeFormatEngine, read_after_erase
from imager.erase.progress import NullSink, Sink
from imager.host.blockdev import OpenDevice, open_device
from imager.model import ErasePlan, MethodStep

MiB = 1 << 20
OPTIONS = {"ses": 1, "reads_as": "00"}
PLAN = ErasePlan(steps=(MethodStep("nvme-format-user-data", engine="nvme-format",
                                   options=OPTIONS),), verify="full", verify_seed="ab" * 16)


class LyingFirmware(NvmeFormatEngine):
    """Reports success like a drive whose firmware ignores the command."""

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        return "nvme format --ses=1"


class ZeroingFirmware(NvmeFormatEngine):
    """Does what a working SES=1 does on a drive that reads erased blocks as zeros."""

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        with open(dev.path, "r+b") as fh:
            for off in range(0, dev.size, MiB):
                fh.seek(off)
                fh.write(bytes(MiB))
            os.fsync(fh.fileno())
        return "nvme format --ses=1"


@pytest.mark.root
def test_a_firmware_that_lies_is_caught_by_its_canaries(loopdev: Callable[..., str]) -> None:
    dev = loopdev(16 * MiB)
    with open_device(dev, write=True) as d:
        ex = LyingFirmware(OPTIONS).execute(d, PLAN, sink=NullSink())
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason
    where = canary.offsets(16 * MiB, 512, bytes.fromhex(PLAN.verify_seed or ""))
    assert ex.canary and ex.canary.survivors == where and ex.canary.planted == len(where)
    assert where[0] == 0 and where[-1] == 16 * MiB - 512


@pytest.mark.root
def test_a_firmware_that_erases_passes_canaries_and_verification(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(16 * MiB)
    with open_device(dev, write=True) as d:
        ex = ZeroingFirmware(OPTIONS).execute(d, PLAN, sink=NullSink())
    assert ex.outcome == "erased", ex.reason
    assert ex.canary and ex.canary.ok and ex.canary.planted >= 1000
    assert ex.verification and ex.verification.coverage == 1.0


def test_canary_places_are_reproducible_and_markers_distinct() -> None:
    a = canary.offsets(1 << 30, 4096, b"seed")
    assert a == canary.offsets(1 << 30, 4096, b"seed") != canary.offsets(1 << 30, 4096, b"x")
    assert a[0] == 0 and a[-1] == (1 << 30) - 4096 and len(set(a)) == len(a)
    assert canary.marker(b"s", 0, 4096) != canary.marker(b"s", 4096, 4096)
    assert canary.marker(b"s", 0, 512).startswith(canary.MAGIC)


def test_dlfeat_read_after_erase() -> None:
    assert read_after_erase(1) == b"\0" and read_after_erase(0x9) == b"\0"
    assert read_after_erase(2) == b"\xff" and read_after_erase(0) is None


@pytest.mark.root
def test_a_firmware_plan_runs_through_the_job_runner(loopdev: Callable[..., str],
                                                     settings) -> None:  # type: ignore[no-untyped-def]
    dev = loopdev(8 * MiB)
    plan = ErasePlan(steps=(MethodStep("nvme-format-user-data", engine="nvme-format",
                                       options=OPTIONS, sanitization_class="clear",
                                       technique="user-data-erase"),),
                     verify="full", verify_seed="cd" * 16)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "failed"  # a loop device is no NVMe namespace
        assert f"nvme format --ses=1 on {dev} failed" in report.reason
        assert store.get(job_id).state == "failed"
        assert report.plan.sanitization_class == "clear" and report.plan.engine == "nvme-format"
