"""The station decides, the agent executes: a drive is planned from its evidence
by the station, a sampled verification uses the seed the station draws once the
writes are reported, and a report is the station's plan carried out on the
job's drive or it is refused and its job fails."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, need_root, read_recorded
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from station_proc import ROOT, Serve, until

from imager.erase import report_check
from imager.erase.methods import make_plan as method_plan
from imager.errors import Unfit
from imager.host.owner import Owner
from imager.jobs.erase import run_erase
from imager.model import DriveIdentity, ErasePlan, EraseReport, PassResult
from imager.protocol import events as ev
from imager.protocol.proof import public_hex
from imager.settings import Settings
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry
from imager.store.models import Drive

MiB = 1 << 20


# -- planned by the station, from the evidence ----------------------------------------

def _station(settings: Settings, registry: Registry) -> tuple[Station, int]:
    station = Station(settings, registry, ServicePolicy(auto_erase="never",
                                                        auto_certify=False))
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="dock-1",
                                host="bench")
    return station, agent


_ids = itertools.count(1)


def _send(station: Station, agent: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    n = next(_ids)
    (answer,) = station.receive(agent, ev.parse_events([{
        "id": f"t{n}", "seq": n, "at": "2026-12-06T09:00:00Z", "v": 2, "kind": kind,
        "data": data}]))
    return answer


def test_the_station_plans_a_drive_from_the_tools_outputs_it_parses(
        settings: Settings, registry: Registry) -> None:
    """An SSD on SATA whose hdparm -I (a recording of a real drive) shows ATA SANITIZE
    with block erase is planned by the station's policy: Purge by sanitize; with the
    same drive reported without that output, only Clear methods are left."""
    station, agent = _station(settings, registry)
    body = read_recorded(DATA / "lab" / "hdparm-I-sata.txt")
    tools = [{"argv": ["hdparm", "-I", "/dev/sdb"], "returncode": 0, "stdout": body}]
    answer = _send(station, agent, "drive_attached",
                   {"evidence": evidence("/dev/sdb", 1 << 30, serial="S1", model="QEMU SSD",
                                         tools=tools)})
    assert answer["outcome"] == "applied", answer
    with registry.session(readonly=True) as s:
        drive = s.query(Drive).one()
        plan, problems = drive.plan["plan"], drive.plan["problems"]
        assert drive.plan["evidence"]["tools"][0]["argv"] == ["hdparm", "-I", "/dev/sdb"]
    assert plan["medium"] == "sata-ssd" and plan["policy"].startswith("reseau-solidaire")
    assert any("hdparm -N /dev/sdb: not reported by the agent" in p for p in problems)
    assert all(step["sanitization_class"] == "clear" or step["engine"] != "overwrite"
               for step in plan["steps"])


def test_a_sampled_plan_reaches_the_agent_without_its_seed(settings: Settings,
                                                          registry: Registry) -> None:
    policy = settings.data_dir / "sample-policy.yaml"
    policy.write_text((ROOT / "profiles" / "erase-policy.yaml").read_text().replace(
        "verify: full", "verify: sample", 1))
    station, agent = _station(dataclasses.replace(settings, erase_policy=policy), registry)
    _send(station, agent, "drive_attached",
          {"evidence": evidence("/dev/sdb", 1 << 30, serial="S1", model="M")})
    with registry.session(readonly=True) as s:
        plan = s.query(Drive).one().plan["plan"]
    assert plan["verify"] == "sample" and plan["verify_seed"] is None


# -- a genuine report, and what is refused of it ----------------------------------------

@dataclasses.dataclass
class Erased:
    station: Station
    agent: int
    job: int
    report: dict[str, Any]
    ident: DriveIdentity

    def final(self, report: dict[str, Any], target: str = "erased") -> dict[str, Any]:
        """The agent reports `report`: the answer, and the job as it is then."""
        answer = _send(self.station, self.agent, "job_move", {
            "job": self.job, "target": target, "report": report,
            "owner": dataclasses.asdict(Owner.me())})
        return {**answer, "state": self.station.store.get(self.job).state,
                "reason": self.station.store.get(self.job).reason}


@pytest.fixture
def erased(settings: Settings, registry: Registry, tmp_path: Path) -> Erased:
    """A drive (a file) really erased by the runner, for a job of an agent; the report
    kept, the job left running as the agent's report has not arrived yet."""
    station, agent = _station(settings, registry)
    disk = tmp_path / "disk.img"
    with disk.open("wb") as fh:
        fh.truncate(8 * MiB)
    ident = DriveIdentity(path=str(disk), size=8 * MiB, transport="file",
                          backing_file=str(disk.resolve()))
    job = station.store.create_erase(ident, method_plan("nist-clear", "full"), agent_id=agent)
    report = run_erase(station.store, job, settings, stop=threading.Event(), allow_files=True)
    assert report.outcome == "erased"
    with registry.session() as s:          # the job as it was before the report came
        from imager.store.models import Job
        row = s.get(Job, job)
        assert row is not None
        row.state, row.report, row.ended_at = "running", None, None
    return Erased(station, agent, job, report.to_dict(), ident)


def _pass0(report: dict[str, Any], **change: Any) -> dict[str, Any]:
    passes = [{**report["passes"][0], **change}, *report["passes"][1:]]
    return {**report, "passes": passes}


FORGERIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "copied-from-another-job": lambda r: {**r, "job_id": r["job_id"] + 1},
    "another-drive": lambda r: {**r, "device": {**r["device"], "serial": "OTHER",
                                                "backing_file": "/other"}},
    "class-above-the-plan": lambda r: {**r, "plan": {**r["plan"], "steps": [
        {**r["plan"]["steps"][0], "sanitization_class": "purge"}]}},
    "another-method": lambda r: {**r, "plan": ErasePlan.to_dict(method_plan("dod-3pass",
                                                                            "full"))},
    "a-pass-short": lambda r: _pass0(r, bytes_written=r["passes"][0]["bytes_written"] // 2),
    "another-pattern": lambda r: _pass0(r, pattern="ones"),
    "faster-than-memory": lambda r: _pass0(r, seconds=1e-6),
    "more-time-than-passed": lambda r: _pass0(r, seconds=3600.0),
    "no-verification": lambda r: {**r, "verification": None},
    "verification-short": lambda r: {**r, "verification": {
        **r["verification"], "bytes_read": r["verification"]["bytes_read"] - 4096}},
    "a-failed-verification": lambda r: {**r, "verification": {**r["verification"],
                                                              "ok": False}},
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_report_that_is_not_the_plan_carried_out_is_refused_and_the_job_fails(
        erased: Erased, forge: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    answer = erased.final(forge(erased.report))
    assert answer["outcome"] == "refused" and answer["detail"].startswith("Unfit: job")
    assert answer["state"] == "failed" and "report refused" in answer["reason"]


def test_the_genuine_report_is_accepted(erased: Erased) -> None:
    answer = erased.final(erased.report)
    assert (answer["outcome"], answer["state"]) == ("applied", "erased")


def test_a_move_whose_report_says_otherwise_is_refused(erased: Erased) -> None:
    answer = erased.final({**erased.report, "outcome": "failed"}, target="erased")
    assert answer["state"] == "failed" and "whose outcome is failed" in answer["detail"]


def test_progress_only_goes_forward(erased: Erased) -> None:
    def progress(index: int, done: int) -> dict[str, Any]:
        return _send(erased.station, erased.agent, "progress",
                     {"job": erased.job, "phase": "pass", "index": index, "done": done,
                      "total": 8 * MiB})
    assert progress(0, 4 * MiB)["outcome"] == "applied"
    assert progress(0, 6 * MiB)["outcome"] == "applied"
    back = progress(0, 1 * MiB)
    assert back["outcome"] == "refused" and "went back from pass 1" in back["detail"]
    assert erased.station.store.get(erased.job).state == "failed"


# -- the pure checks -----------------------------------------------------------------

def _expected(report: EraseReport, **change: Any) -> report_check.Expected:
    exp = report_check.Expected(job_id=report.job_id or 0, plan=report.plan,
                                identity=report.device.key, size=report.device.size,
                                transport="sata", seconds=3600.0)
    return dataclasses.replace(exp, **change)


def test_a_host_pass_faster_than_the_interface_is_refused(erased: Erased) -> None:
    """8 MiB in 10 ms is 0.8 GB/s: possible in memory, not through SATA III."""
    report = EraseReport.from_dict(_pass0(erased.report, seconds=0.01))
    report = dataclasses.replace(report, verification=dataclasses.replace(
        report.verification, seconds=1.0)) if report.verification else report
    with pytest.raises(Unfit, match="faster than a sata drive can write"):
        report_check.check(report, _expected(report))
    report_check.check(report, _expected(report, transport="loop"))


def test_a_firmware_erase_needs_its_canaries(erased: Erased) -> None:
    """A firmware step with no markers, or with markers left, is refused."""
    report = EraseReport.from_dict(erased.report)
    firmware = report_check.Expected(
        job_id=report.job_id or 0, plan=_nvme_plan(report.plan), identity=report.device.key,
        size=report.device.size, transport="nvme", seconds=3600.0)
    step = PassResult(index=0, pattern="nvme sanitize --sanact=4", bytes_written=8 * MiB,
                      seconds=2.0)
    forged = dataclasses.replace(report, plan=firmware.plan, passes=(step,))
    with pytest.raises(Unfit, match="without its canary markers"):
        report_check.check(forged, firmware)


def _nvme_plan(plan: ErasePlan) -> ErasePlan:
    from imager.model import MethodStep
    step = MethodStep(method="nvme-sanitize-crypto", engine="nvme-sanitize",
                      options={"action": "crypto", "reads_as": "00"}, sanitization_class="purge",
                      technique="crypto-erase")
    return dataclasses.replace(plan, steps=(step,))


def test_a_new_plan_is_only_the_fallback_of_the_current_one() -> None:
    two = method_plan("nist-clear", "full")
    current = dataclasses.replace(two, steps=(*_nvme_plan(two).steps, *two.steps))
    refused = current.refuse("invalid field in command")
    fallback = refused.fallback()
    assert fallback is not None
    report_check.check_replan(current, fallback, 1)
    report_check.check_replan(current, refused, 1)     # no method left: the job fails
    with pytest.raises(Unfit, match="only go on with the plan's next method"):
        report_check.check_replan(current, dataclasses.replace(
            fallback, steps=_nvme_plan(two).steps), 1)
    with pytest.raises(Unfit, match="must record nvme-sanitize-crypto as refused"):
        report_check.check_replan(current, current, 1)


def test_a_drive_grows_during_its_job_only_by_its_hidden_areas() -> None:
    from imager.model import HiddenAreas
    plan = dataclasses.replace(method_plan("nist-clear", "full"),
                               hidden=HiddenAreas(visible_max=1000, native_max=1200))
    ident = DriveIdentity(path="/dev/sdb", size=1200 * 512, serial="S1", model="M")
    report_check.check_uncovered(plan, ident.key, 1000 * 512, ident, 1)
    with pytest.raises(Unfit, match="hidden areas uncovered"):
        report_check.check_uncovered(plan, ident.key, 1000 * 512,
                                     dataclasses.replace(ident, size=2000 * 512), 1)
    with pytest.raises(Unfit, match="hidden areas uncovered"):
        report_check.check_uncovered(plan, "serial:M:OTHER", 1000 * 512, ident, 1)


# -- over the wire: the seed drawn after the writes ------------------------------------

@pytest.mark.root
def test_a_sampled_verification_uses_the_seed_drawn_after_the_writes(tmp_path: Path) -> None:
    """`serve --lab` with a sampling policy: the lab agent's job gets its seed from the
    station once its pass is reported; the report carries that seed; it is certified."""
    need_root()
    policy = tmp_path / "sample-policy.yaml"
    policy.write_text((ROOT / "profiles" / "erase-policy.yaml").read_text().replace(
        "verify: full", "verify: sample", 1))
    serve = Serve(tmp_path / "station", "--lab", "1", "--lab-size-mib", "64",
                  IMAGER_ERASE_POLICY=str(policy))
    try:
        serve.start()
        drive = until(lambda: [d for d in serve.get("/api/v1/drives") if d["present"]], 60,
                      "the lab drive is reported")[0]
        serve.post(f"/api/v1/drives/{drive['id']}/erase", {})
        job = until(lambda: next((j for j in serve.get("/api/v1/jobs")
                                  if j["state"] in ("erased", "failed")), None), 180,
                    "the lab drive's erasure ends")
        assert job["state"] == "erased", job
        shown = serve.get(f"/api/v1/jobs/{job['id']}")
        kinds = [e["kind"] for e in shown["events"]]
        assert kinds.index("verify_seed") > kinds.index("pass_completed")
        seed = next(e["data"]["seed"] for e in shown["events"] if e["kind"] == "verify_seed")
        assert shown["report"]["verification"]["seed"] == seed == shown["plan"]["verify_seed"]
        until(lambda: [d for d in serve.get("/api/v1/drives") if d["state"] == "certified"],
              120, "the drive is certified")
        (record,) = [json.loads(p.read_text())["document"] for p in
                     (serve.data / "documents").glob("EFF-*.json")]
        agent = serve.get("/api/v1/agents")[0]
        assert record["agent"] == {"name": agent["name"], "key": agent["fingerprint"],
                                   "boot": "station", "secure_boot": None}
        assert record["verification"]["seed"] == seed
    finally:
        serve.close()


# -- how the agent's machine was booted -------------------------------------------------

def test_how_an_agent_booted_is_known_from_its_token_or_else_as_it_declared(
        registry: Registry) -> None:
    """A boot token says "network"; an agent approved by a person may only declare a
    USB stick or an installed system (a declared "network" counts for nothing)."""
    from imager.registry import agents
    from imager.store.models import Agent

    def enrolled(info: dict[str, Any] | None, token: str | None = None) -> str | None:
        key = public_hex(Ed25519PrivateKey.generate())
        with registry.session() as s:
            done = agents.enrol(s, key, name="live", kind="machine", host="pc", info=info,
                                boot_token=token, macs=("52:54:00:12:34:56",),
                                serial="PF1ABCDE")
            agent = s.get(Agent, done.agent)
            assert agent is not None
            return agent.boot

    with registry.session() as s:
        token = agents.issue_boot_token(s, mac="52:54:00:12:34:56", serial="PF1ABCDE",
                                        by="Lina")
    assert enrolled(None, token) == "network"
    assert enrolled({"boot": "usb"}) == "usb"
    assert enrolled({"boot": "installed"}) == "installed"
    assert enrolled({"boot": "network"}) is None
