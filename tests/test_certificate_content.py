"""What a certificate says beyond "erased": the plan's advice, whether the
drive's hidden areas were checked (and, when not, the person who accepted
it), and what the result rests on (proven by the station, or reported by the
drive). Real erasures of loop devices, a real registry and the station's own
keys; the firmware's side is played by an engine that erases the loop device
itself, as in test_firmware_engine.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clirun import imager
from conftest import DATA, erase_job, read_recorded
from test_firmware_engine import ZeroingFirmware

from imager.certify.evidence import evidence
from imager.certify.record import hidden_areas_status
from imager.erase import policy
from imager.erase.methods import make_plan
from imager.erase.plan import plan_for
from imager.erase.progress import NullSink
from imager.errors import NotFound, UsageError
from imager.host.blockdev import open_device
from imager.inventory import lsblk, scsi, smartctl
from imager.inventory.capabilities import DriveCapabilities
from imager.model import (
    DriveIdentity,
    ErasePlan,
    EraseReport,
    MethodStep,
    Note,
    PassResult,
    VerifyResult,
)
from imager.registry.decisions import (
    HIDDEN_AREAS_ACCEPTED,
    accept_hidden_areas,
    hidden_areas_acceptance,
)
from imager.registry.issue import Issuer
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import ItemEvent, LedgerEntry

MiB = 1 << 20
WHO = "Hélène Dupré"
WHY = "Disque relié par un contrôleur SAS qui ne transmet pas hdparm -N ; pas de dock SATA libre."


def sata_ssd_plan(dev: str, settings: Settings) -> ErasePlan:
    """The plan of a SATA SSD that answered neither hdparm -I nor hdparm -N
    (as behind some SAS controllers): the policy's overwrite, and the advice."""
    caps = DriveCapabilities(lsblk.probe(dev, settings), "ssd", "sata")
    return plan_for(caps, policy.load())


def document(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["document"]
    return record


def pdf_text(path: Path) -> str:
    raw = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                         check=True).stdout
    return " ".join(raw.replace("\u00a0", " ").replace("\u202f", " ").split())


def _refused_unchecked(settings: Settings, dev: str, plan: ErasePlan
                       ) -> tuple[Note, int, EraseReport, subprocess.CompletedProcess[str]]:
    """Erase `dev` with `plan` (hidden areas not checked), then ask for its
    certificate: the plan's note, the job, its report, and the refusal."""
    note = next(n for n in plan.advice if "hdparm -N" in n.en)
    with erase_job(settings, dev, plan) as (_, job_id, report):
        assert report.outcome == "erased" and report.hidden_areas is None
    assert hidden_areas_status(report) == "not-checked"
    out = imager(settings.data_dir, "cert", "issue", str(job_id), check=False)
    assert out.returncode == 2, out.stderr
    return note, job_id, report, out


@pytest.mark.root
def test_hidden_areas_not_checked_need_a_persons_decision_printed_on_the_certificate(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    settings = Settings(data_dir=tmp_path / "station")
    dev = loopdev(8 * MiB)
    with open(dev, "r+b") as fh:
        fh.write(os.urandom(MiB))
    plan = sata_ssd_plan(dev, settings)
    assert plan.medium == "sata-ssd" and plan.hidden is None
    # refused, with the drive and the fix named, before anything is written
    note, job_id, report, out = _refused_unchecked(settings, dev, plan)
    for words in (report.device.key, "zones cachées (HPA/DCO) non vérifiées",
                  "were not checked", "Dock the drive on SATA",
                  f"imager cert accept-hidden {job_id} --by NAME --reason TEXT"):
        assert words in out.stderr, words
    with Registry.open(settings) as reg:
        with reg.session(readonly=True) as s:
            assert s.query(LedgerEntry).count() == 0
        assert not list(settings.documents_dir.glob("*"))
    said = imager(settings.data_dir, "cert", "accept-hidden", str(job_id), "--by", f"  {WHO} ",
                  "--reason", WHY).stdout
    assert WHY in said and f"imager cert issue {job_id}" in said
    with Registry.open(settings) as reg:
        with reg.session(readonly=True) as s:
            (ev,) = s.query(ItemEvent).filter_by(kind=HIDDEN_AREAS_ACCEPTED).all()
            assert (ev.actor, ev.job_id, ev.reason) == (WHO, job_id, WHY)
            decided = hidden_areas_acceptance(s, ev.drive_id, job_id)
        issued = Issuer(settings, reg).for_job(job_id)
    record = document(issued.json_path)
    assert record["kind"] == "erasure"
    assert record["hidden_areas_check"] == {"status": "not-checked", "accepted": decided}
    assert {"fr": note.fr, "en": note.en} in record["advice"]
    assert record["evidence"] == {"proven": ["overwrite", "read-back"], "reported": []}
    text = pdf_text(issued.pdf_path)
    for words in ("Non vérifiées (hdparm -N sans réponse)", f"{WHO}, le ", WHY,
                  "RÉSERVES ET CONSEILS", note.fr.split(" :")[0], "Prouvé par la station"):
        assert words in text, words


LAB = DATA / "lab"
# The drive's answers behind an adapter, from the QEMU lab's recordings: a USB bridge
# passing no ATA command (its USB stick), a SATA SSD on a SAS HBA whose SATL answers
# SMART in ATA (its SATA disk's smartctl answer), a SAS disk answering in SCSI (its
# virtio-scsi disk).
ADAPTERS: dict[str, dict[str, Any]] = {
    "sata-ssd-in-usb-dock": {
        "transport": "usb", "medium": "usb-flash",
        "smart": smartctl.parse(read_recorded(LAB / "smartctl-j-x-d-scsi-usb.txt")),
        "scsi_inquiry": scsi.parse_inquiry(read_recorded(LAB / "sg_inq-usb.txt"))},
    "sata-ssd-on-sas-hba": {
        "transport": "sas", "medium": "ssd",
        "smart": smartctl.parse(read_recorded(LAB / "smartctl-j-x-sata.txt"))},
    "sas-disk": {
        "transport": "sas", "medium": "hdd",
        "smart": smartctl.parse(read_recorded(LAB / "smartctl-j-x-scsi.txt")),
        "scsi_inquiry": scsi.parse_inquiry(read_recorded(LAB / "sg_inq-scsi.txt"))},
}


def adapter_plan(dev: str, settings: Settings, adapter: str) -> ErasePlan:
    """The plan of the drive at `dev` seen as ADAPTERS[adapter] shows it."""
    caps = DriveCapabilities(identity=lsblk.probe(dev, settings), **ADAPTERS[adapter])
    return plan_for(caps, policy.load())


@pytest.mark.root
@pytest.mark.parametrize(("adapter", "medium"), [("sata-ssd-in-usb-dock", "usb-flash"),
                                                 ("sata-ssd-on-sas-hba", "sas-ssd")])
def test_a_drive_behind_an_adapter_that_may_be_ata_needs_a_persons_decision(
        adapter: str, medium: str, tmp_path: Path, loopdev: Callable[..., str]) -> None:
    settings = Settings(data_dir=tmp_path / "station")
    dev = loopdev(4 * MiB)
    plan = adapter_plan(dev, settings, adapter)
    assert plan.medium == medium and plan.hidden is None
    note, job_id, _, out = _refused_unchecked(settings, dev, plan)
    for words in ("were not checked", "through the drive's USB or SAS adapter",
                  f"imager cert accept-hidden {job_id} --by NAME --reason TEXT"):
        assert words in out.stderr, words
    imager(settings.data_dir, "cert", "accept-hidden", str(job_id), "--by", WHO,
           "--reason", WHY)
    with Registry.open(settings) as reg:
        record = document(Issuer(settings, reg).for_job(job_id).json_path)
    assert record["hidden_areas_check"]["status"] == "not-checked"
    assert record["hidden_areas_check"]["accepted"]["by"] == WHO
    assert {"fr": note.fr, "en": note.en} in record["advice"]


@pytest.mark.root
def test_a_sas_disk_that_answered_as_one_needs_no_decision(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    settings = Settings(data_dir=tmp_path / "station")
    dev = loopdev(4 * MiB)
    plan = adapter_plan(dev, settings, "sas-disk")
    assert plan.medium == "sas-hdd" and not [n for n in plan.advice if "hdparm -N" in n.en]
    with erase_job(settings, dev, plan) as (store, job_id, report):
        assert report.outcome == "erased"
        with pytest.raises(UsageError, match="nothing to accept, its drive is no ATA drive"):
            accept_hidden_areas(store.registry, job_id, by=WHO, reason=WHY)
        record = document(Issuer(settings, store.registry).for_job(job_id).json_path)
    assert record["hidden_areas_check"] == {"status": "not-applicable", "accepted": None}


@pytest.mark.root
def test_a_decision_needs_a_person_a_reason_and_unchecked_hidden_areas(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    settings = Settings(data_dir=tmp_path / "station")
    dev = loopdev(4 * MiB)
    with erase_job(settings, dev, make_plan("nist-clear", "full")) as (store, job_id, report):
        assert report.outcome == "erased"
        registry = store.registry
        with pytest.raises(UsageError, match="nothing to accept, its drive is no ATA drive"):
            accept_hidden_areas(registry, job_id, by=WHO, reason=WHY)
        with pytest.raises(UsageError, match="who accepts it\\?"):
            accept_hidden_areas(registry, job_id, by=" ", reason=WHY)
        for short_or_long in ("ok", "x" * 501):
            with pytest.raises(UsageError, match="reason of 10 to 500 characters"):
                accept_hidden_areas(registry, job_id, by=WHO, reason=short_or_long)
        with pytest.raises(NotFound, match="no job 999"):
            accept_hidden_areas(registry, 999, by=WHO, reason=WHY)


def firmware_report(dev: str, step: MethodStep, settings: Settings) -> EraseReport:
    """A firmware erase of `dev` by ZeroingFirmware, as its job would report it."""
    plan = ErasePlan(steps=(step,), verify="full", verify_seed="ab" * 16, medium="nvme")
    start = datetime.now(UTC)
    with open_device(dev, write=True) as d:
        ex = ZeroingFirmware(step.options).execute(d, plan, sink=NullSink())
    return EraseReport(job_id=1, device=lsblk.probe(dev, settings), plan=plan,
                       started_at=start, ended_at=datetime.now(UTC), passes=ex.passes,
                       verification=ex.verification, outcome=ex.outcome, reason=ex.reason,
                       canary=ex.canary)


@pytest.mark.root
def test_a_firmware_erasure_lists_what_was_proven_and_what_the_drive_reported(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    settings = Settings(data_dir=tmp_path / "station")
    crypto = MethodStep("nvme-format-crypto", engine="nvme-format", options={"ses": 2},
                        sanitization_class="purge", technique="crypto-erase")
    report = firmware_report(loopdev(4 * MiB), crypto, settings)
    assert report.outcome == "erased", report.reason
    # no read-after-erase value: the station zero-fills, then reads back
    assert evidence(report) == {
        "proven": ["command", "canaries", "zero-fill", "read-back"],
        "reported": ["command-status", "key-replaced", "whole-media"]}
    user_data = dataclasses.replace(crypto, method="nvme-format-user-data",
                                    options={"ses": 1, "reads_as": "00"},
                                    sanitization_class="clear", technique="user-data-erase")
    report = firmware_report(loopdev(4 * MiB), user_data, settings)
    assert evidence(report) == {"proven": ["command", "canaries", "read-back"],
                                "reported": ["command-status", "user-area"]}


def _report(engine: str, technique: str, outcome: str = "erased") -> EraseReport:
    step = MethodStep("m", engine=engine, sanitization_class="purge", technique=technique)
    now = datetime.now(UTC)
    ver = VerifyResult(mode="sample", pattern="zero", bytes_read=1, coverage=0.1, seconds=1,
                       ok=True)
    return EraseReport(job_id=1, device=DriveIdentity(path="/dev/x", size=MiB),
                       plan=ErasePlan(steps=(step,), verify="sample"),
                       started_at=now - timedelta(minutes=1), ended_at=now,
                       passes=(PassResult(0, "cmd", MiB, 1.0),), verification=ver,
                       outcome=outcome)  # type: ignore[arg-type]


def test_what_the_drive_reports_depends_on_how_it_reports_completion() -> None:
    assert evidence(_report("nvme-sanitize", "block-erase"))["reported"] == [  # type: ignore[index]
        "sanitize-log", "whole-media"]
    assert evidence(_report("ata-sanitize", "crypto-erase"))["reported"] == [  # type: ignore[index]
        "sanitize-status", "key-replaced", "whole-media"]
    assert evidence(_report("scsi-sanitize", "overwrite"))["reported"] == [  # type: ignore[index]
        "sense-data", "whole-media"]
    assert evidence(_report("mmc-erase", "block-erase"))["reported"] == [  # type: ignore[index]
        "command-status", "whole-media"]
    assert evidence(_report("ata-sanitize", "block-erase", outcome="failed")) is None


@pytest.mark.parametrize(("medium", "transport", "status"), [
    ("sata-ssd", "sata", "not-checked"), ("usb-flash", "usb", "not-checked"),
    ("usb-disk", "usb", "not-checked"), ("sas-hdd", "sas", "not-checked"),
    ("unknown", None, "not-checked"), ("nvme", "nvme", "not-applicable"),
    ("emmc", "mmc", "not-applicable"), ("virtual", "loop", "not-applicable"),
    (None, "usb", "not-checked"), (None, "loop", "not-applicable")])
def test_a_plan_that_does_not_say_whether_its_drive_is_ata_is_judged_by_its_medium(
        medium: str | None, transport: str | None, status: str) -> None:
    """Plans stored before they said it (or made without probing the drive): only
    the media that are never ATA drives need no decision."""
    report = _report("overwrite", "overwrite")
    plan = ErasePlan.from_dict({k: v for k, v in {**report.plan.to_dict(),
                                                  "medium": medium}.items()
                                if k != "ata_drive"})
    assert plan.ata_drive is None
    report = dataclasses.replace(report, plan=plan, device=dataclasses.replace(
        report.device, transport=transport))
    assert hidden_areas_status(report) == status
