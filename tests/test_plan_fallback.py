"""A drive that refuses a firmware method falls back to the plan's next one,
with the refusal on the record; one that refuses them all is never erased."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import erase_job

from imager.erase.engines import ENGINES
from imager.erase.firmware import FirmwareEngine
from imager.erase.methods import overwrite_step
from imager.erase.progress import Sink
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import OpenDevice
from imager.model import ErasePlan, MethodStep

MiB = 1 << 20


class RefusingFirmware(FirmwareEngine):
    """Answers like a controller without the command (Invalid Command Opcode)."""

    name = "test-refuses"

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        raise MethodRefused(f"{dev.path}: NVMe status: Invalid Command Opcode")


def firmware_step(name: str) -> MethodStep:
    return MethodStep(name, engine="test-refuses", options={"reads_as": "00"},
                      sanitization_class="purge", technique="block-erase")


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "test-refuses", RefusingFirmware)


@pytest.mark.root
@pytest.mark.usefixtures("refusing")
def test_refused_firmware_method_falls_back_to_overwrite(loopdev: Callable[..., str],
                                                         settings) -> None:  # type: ignore[no-untyped-def]
    dev = loopdev(8 * MiB)
    plan = ErasePlan(steps=(firmware_step("sanitize-a"), firmware_step("sanitize-b"),
                            overwrite_step("nist-clear")), verify="full", verify_seed="ef" * 16)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "erased", report.reason
        assert report.plan.method == "nist-clear" and report.achieved_class == "clear"
        assert [r.method for r in report.plan.refused] == ["sanitize-a", "sanitize-b"]
        assert "Invalid Command Opcode" in report.plan.refused[0].reason
        assert report.to_dict()["achieved_class"] == "clear"
        job = store.get(job_id, with_events=True)
        assert job.plan.method == "nist-clear"
        refusals = [e.message for e in job.events if e.kind == "method_refused"]
        assert refusals[0].startswith("sanitize-a refused") and "falling back to sanitize-b" \
            in refusals[0]
        assert refusals[1].endswith("falling back to nist-clear")


@pytest.mark.root
@pytest.mark.usefixtures("refusing")
def test_a_drive_refusing_every_method_fails_and_is_not_erased(loopdev: Callable[..., str],
                                                               settings) -> None:  # type: ignore[no-untyped-def]
    dev = loopdev(8 * MiB)
    plan = ErasePlan(steps=(firmware_step("sanitize-a"),), verify="full", verify_seed="ef" * 16)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "failed" and report.achieved_class is None
        assert "refused every method of its plan (sanitize-a:" in report.reason
        assert store.get(job_id).state == "failed"


class FailingFirmware(FirmwareEngine):
    """Starts the erase, then the drive reports failure."""

    name = "test-fails"

    def erase(self, dev: OpenDevice, sink: Sink) -> str:
        raise DeviceError(f"{dev.path}: sanitize failed (SSTAT 3)")


@pytest.mark.root
@pytest.mark.usefixtures("refusing")
def test_a_failure_after_a_fallback_reports_the_method_that_failed(
        loopdev: Callable[..., str], settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(ENGINES, "test-fails", FailingFirmware)
    dev = loopdev(8 * MiB)
    failing = MethodStep("sanitize-b", engine="test-fails", sanitization_class="purge")
    plan = ErasePlan(steps=(firmware_step("sanitize-a"), failing, overwrite_step("nist-clear")),
                     verify="full", verify_seed="ef" * 16)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "failed" and "SSTAT 3" in report.reason
        assert report.plan.method == "sanitize-b"       # not the refused sanitize-a
        assert [r.method for r in report.plan.refused] == ["sanitize-a"]
        assert store.get(job_id).plan.method == "sanitize-b"


@pytest.mark.root
def test_a_plan_its_engine_cannot_run_fails_the_job_cleanly(loopdev: Callable[..., str],
                                                           settings) -> None:  # type: ignore[no-untyped-def]
    dev = loopdev(8 * MiB)
    bad = MethodStep("nvme-format-user-data", engine="nvme-format", options={"ses": 3})
    plan = ErasePlan(steps=(bad,), verify="full", verify_seed="ef" * 16)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "failed" and "ses must be one of 1, 2" in report.reason
        assert store.get(job_id).state == "failed"
