"""The job runner removes the hidden areas its plan found before erasing,
once per job, and the report carries the state before and after.

hdparm's side (remove_hidden) is tested on real drives' outputs in
test_hidden_areas.py; here it is replaced so a loop device can stand for
the drive, and the runner's rules are checked on a real erase."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from conftest import erase_job

from imager.erase.methods import make_plan
from imager.errors import DeviceError
from imager.jobs import uncover
from imager.model import HiddenAreaChange, HiddenAreas

MiB = 1 << 20
BEFORE = HiddenAreas(visible_max=14000, native_max=16384, dco_real_max=None)
AFTER = HiddenAreas(visible_max=16384, native_max=16384, dco_real_max=None)


@pytest.mark.root
def test_hidden_areas_are_removed_once_and_reported(loopdev: Callable[..., str], settings,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[HiddenAreas] = []

    def remove(path: str, before: HiddenAreas, **kw: object) -> HiddenAreaChange:
        calls.append(before)
        return HiddenAreaChange(before, AFTER, (f"hdparm -N p16384 {path}",))

    monkeypatch.setattr(uncover, "remove_hidden", remove)
    dev = loopdev(8 * MiB)
    plan = dataclasses.replace(make_plan("nist-clear", "full"), hidden=BEFORE)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "erased", report.reason
        assert report.hidden_areas == HiddenAreaChange(BEFORE, AFTER, (f"hdparm -N p16384 {dev}",))
        assert report.to_dict()["hidden_areas"]["before"]["visible_max"] == 14000
        job = store.get(job_id, with_events=True)
        kinds = [e.kind for e in job.events]
        assert kinds.index("hidden_areas") < kinds.index("pass_completed")
        # Run again (as a resume would): the removal is not repeated, the record stays.
        again, change = uncover.uncover(store, job, dev, report.device, settings)
        assert change == report.hidden_areas and calls == [BEFORE]


@pytest.mark.root
def test_hidden_areas_that_stay_hidden_fail_the_job_before_any_write(
        loopdev: Callable[..., str], settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(path: str, before: HiddenAreas, **kw: object) -> HiddenAreaChange:
        raise DeviceError(f"{path} still hides 2384 HPA sectors: replug the drive")

    monkeypatch.setattr(uncover, "remove_hidden", refuse)
    dev = loopdev(8 * MiB)
    with open(dev, "r+b") as fh:
        fh.write(b"donor data")
    plan = dataclasses.replace(make_plan("nist-clear", "full"), hidden=BEFORE)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "failed" and "still hides 2384 HPA sectors" in report.reason
        assert report.passes == () and report.achieved_class is None
        with open(dev, "rb") as fh:
            assert fh.read(10) == b"donor data"


@pytest.mark.root
def test_nothing_hidden_runs_nothing_and_says_so(loopdev: Callable[..., str], settings) -> None:  # type: ignore[no-untyped-def]
    dev = loopdev(8 * MiB)
    plan = dataclasses.replace(make_plan("nist-clear", "full"), hidden=AFTER)
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "erased"
        assert report.hidden_areas == HiddenAreaChange(AFTER, AFTER)
