"""An agent's events applied to the registry, one typed event at a time.

`apply` runs inside the transaction that also records the event's id; it
changes the registry only, and returns what the station must do once that
transaction is committed (`Effects`: wake the agents' long polls, certify a
job, forget a resume request, note a job's progress). Nothing here starts a
thread or touches the station's memory: an event that is refused leaves no
trace but its refusal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.erase import report_check
from imager.erase.plan import plan_for
from imager.erase.policy import Policy
from imager.errors import NotFound, Unfit, UsageError
from imager.host.owner import Owner
from imager.inventory import evidence
from imager.model import DriveIdentity, ErasePlan, EraseReport, ImagePlan
from imager.protocol import events as ev
from imager.registry import items, machines
from imager.registry.intake import on_duty
from imager.registry.jobs import REASSIGNED, RegistryJobStore, erase_job_for, upsert_drive
from imager.settings import Settings
from imager.station.liveness import same_run
from imager.station.policy import ServicePolicy
from imager.store.db import utcnow
from imager.store.models import Agent, Drive, Job, Machine


@dataclass
class Effects:
    """What the station does once an event's transaction is committed."""

    wake: bool = False                                   # jobs to hand out changed
    certify: list[int] = field(default_factory=list)     # jobs erased: issue their certificate
    running: list[int] = field(default_factory=list)     # jobs running again: no resume pending
    restarted: list[int] = field(default_factory=list)   # jobs whose progress starts over
    progress: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Applier:
    """Applies events with the station's job store and policies: `plans` is the
    erase policy the station plans drives with, `alive(agent_id)` whether an
    agent was heard lately, `progress` the jobs' last progress (the station's)."""

    store: RegistryJobStore
    policy: ServicePolicy
    plans: Policy
    settings: Settings
    alive: Callable[[int], bool]
    progress: dict[int, dict[str, Any]]

    def apply(self, s: Session, agent: Agent, event: ev.Event) -> Effects:
        """Apply `event` of `agent` in `s` (ImagerError, KeyError... refuse it)."""
        effects = Effects()
        actor = f"agent {agent.name}"
        if isinstance(event, ev.DriveAttached):
            self._attached(s, agent, event.data, effects)
        elif isinstance(event, ev.DriveDetached):
            _detached(s, agent, event.data, actor=actor)
        elif isinstance(event, ev.MachineInventory):
            self._inventory(s, agent, event.data, effects)
        elif isinstance(event, ev.OfflineErasure):
            self._offline(s, agent, event.data, effects)
        elif isinstance(event, ev.OfflineDeployment):
            _offline_deployment(s, agent, event.data, self.settings)
        elif isinstance(event, ev.StickSeen):
            _stick_seen(agent, event)
        elif not isinstance(event, ev.Heartbeat):
            self._job_event(s, agent, event, effects)
        return effects

    def _attached(self, s: Session, agent: Agent, data: ev.DriveAttachedData,
                  effects: Effects) -> None:
        """A drive reported by its evidence: parsed and planned here, by the station."""
        drive, ident, plan = self._register(s, agent, evidence.DriveEvidence.from_dict(
            data.evidence.model_dump()), self.plans)
        if plan is not None:
            drive.plan = {**(drive.plan or {}), "plan": for_an_agent(plan).to_dict()}
        items.note(s, drive, "plugged_in", actor=f"agent {agent.name}",
                   reason=f"{ident.path} on {agent.name}", data={"path": ident.path})
        effects.wake |= self._follow_drive(s, drive, agent)
        effects.wake |= auto_erase(s, drive, self.policy, self.store) is not None

    def _register(self, s: Session, agent: Agent, proof: evidence.DriveEvidence,
                  policy: Policy) -> tuple[Drive, DriveIdentity, ErasePlan | None]:
        """The drive the evidence shows, parsed and planned by the station with `policy`,
        recorded as plugged in on `agent` (its plan is None when no method can run)."""
        caps = evidence.read(proof, self.settings)
        ident = caps.identity
        self._not_held_elsewhere(s, agent, ident)
        problems = list(caps.problems)
        try:
            plan: ErasePlan | None = plan_for(caps, policy)
        except UsageError as exc:           # no method of the policy can run on it
            plan = None
            problems.append(str(exc))
        actor = f"agent {agent.name}"
        drive = upsert_drive(s, ident, actor=actor)
        drive.present, drive.agent_id, drive.last_seen_at = True, agent.id, utcnow()
        drive.plan = {"identity": asdict(ident), "plan": plan.to_dict() if plan else None,
                      "problems": problems, "evidence": proof.to_dict()}
        if agent.kind == "machine":            # a laptop's agent: the drive is the laptop's
            machine = s.scalar(select(Machine).where(Machine.agent_id == agent.id)
                               .order_by(Machine.id.desc()))
            if machine is not None:
                machines.belongs(s, drive, machine, actor=actor)
        return drive, ident, plan

    def _offline(self, s: Session, agent: Agent, data: ev.OfflineErasureData,
                 effects: Effects) -> None:
        """A drive erased with no network: the policy must be one this station signed,
        the station's own plan for the evidence the one the report ran, and the report
        that plan carried out on that drive (the job it names was the agent's own, on
        its stick: the station files it as a job of its own); then it is certified."""
        from imager.certify.keys import station_keys
        from imager.certify.signing import Trust
        from imager.erase import offline_policy
        keys = station_keys(self.settings)
        signed = offline_policy.read(data.policy.encode(), Trust([keys.station_cert,
                                                                  *keys.chain]),
                                     where=f"offline erasure of agent {agent.name}")
        report = EraseReport.from_dict(data.report)
        drive, ident, plan = self._register(s, agent, evidence.DriveEvidence.from_dict(
            data.evidence.model_dump()), signed.policy)
        if plan is None:
            raise UsageError(f"drive {drive.identity}: the signed policy has no method for it")
        expected = offline_policy.refused_as(offline_policy.for_offline(plan),
                                             report.plan.refused)
        if offline_policy.shape(expected) != offline_policy.shape(report.plan):
            raise UsageError(
                f"offline erasure of drive {drive.identity} refused: it ran {report.plan.method} "
                f"({report.plan.sanitization_class}, verify {report.plan.verify}); the "
                f"station plans {expected.method} ({expected.sanitization_class}, verify "
                f"{expected.verify}) from the same evidence and policy {signed.policy.label}")
        store = self.store.bound(s)
        job_id = store.create_erase(ident, report.plan, donation_id=drive.donation_id,
                                    agent_id=agent.id)
        report = dataclasses.replace(report, job_id=job_id)
        report_check.check(report, report_check.Expected(
            job_id=job_id, plan=report.plan, identity=drive.identity, size=drive.size_bytes,
            transport=drive.transport, logical_sector=ident.logical_sector,
            seconds=(report.ended_at - report.started_at).total_seconds()))
        how = f"erased offline by agent {agent.name} ({signed.policy.label}), reported at sync"
        store.move(job_id, "running", reason=how)
        store.move(job_id, report.outcome, reason=report.reason or how, report=report.to_dict())
        drive.present = False                  # it was on the laptop, not on a dock now
        if report.outcome == "erased":
            effects.certify.append(job_id)

    def _not_held_elsewhere(self, s: Session, agent: Agent, ident: DriveIdentity) -> None:
        """A drive another agent holds (plugged in there, that agent active and heard
        lately) is not taken over by a second report of it."""
        drive = s.scalar(select(Drive).where(Drive.identity == ident.key))
        holder = self._live_holder(s, agent, drive.agent_id) \
            if drive is not None and drive.present else None
        if holder is not None:
            raise UsageError(f"drive {ident.key} is plugged in on agent {holder.name}, which "
                             "still answers: it stays that agent's; if it was moved, it is "
                             f"taken here once {holder.name} reports it unplugged (unplug "
                             "and plug it in again)")

    def _live_holder(self, s: Session, agent: Agent, holder_id: int | None) -> Agent | None:
        """The other agent `holder_id`, when it is active and was heard lately."""
        holder = s.get(Agent, holder_id) if holder_id not in (None, agent.id) else None
        return holder if holder is not None and holder.state == "active" and \
            self.alive(holder.id) else None

    def _inventory(self, s: Session, agent: Agent, data: ev.MachineInventoryData,
                   effects: Effects) -> None:
        """File the machine a laptop's agent inventoried: by its key, else by the serial
        intake recorded, else a new machine. The key and the triage proposal are the
        station's, from the reported facts (what the agent proposed is not read); a
        machine another live agent reports stays that agent's."""
        from imager.inventory.machine import MachineInventory, machine_key
        from imager.inventory.triage import load_rules, propose
        inventory = MachineInventory.from_dict(data.inventory.model_dump(mode="json"))
        key = machine_key(inventory)
        machine = s.scalar(select(Machine).where(Machine.identity == key)) if key else None
        facts = data.inventory.machine
        if machine is None and facts.serial:
            machine = s.scalar(select(Machine).where(Machine.serial == facts.serial,
                                                     Machine.state == "received"))
        holder = self._live_holder(s, agent, machine.agent_id) if machine else None
        if holder is not None:
            raise UsageError(f"machine {key} is reported by agent {holder.name}, which still "
                             "answers: it stays that agent's (a laptop booted again gets a "
                             "new agent: the old one falls silent first)")
        _file_machine(s, agent, machine, key, data.inventory.model_dump(mode="json"),
                      propose(inventory, load_rules()).to_dict())
        for drive in s.scalars(select(Drive).where(Drive.agent_id == agent.id,
                                                   Drive.present.is_(True))):
            effects.wake |= auto_erase(s, drive, self.policy, self.store) is not None

    def _follow_drive(self, s: Session, drive: Drive, agent: Agent) -> bool:
        """A queued or interrupted job goes to the agent that now holds its drive
        (another dock, or the same laptop booted again): that agent runs it."""
        moved = False
        for job in s.scalars(select(Job).where(Job.drive_id == drive.id,
                                               Job.state.in_(("queued", "interrupted")),
                                               Job.agent_id != agent.id)):
            self.store.bound(s).event(job.id, REASSIGNED,
                                      f"drive now on agent {agent.name}: it resumes there",
                                      {"from_agent": job.agent_id, "to_agent": agent.id})
            job.agent_id, moved = agent.id, True
        return moved

    def _job_event(self, s: Session, agent: Agent, event: ev.JobEnvelope,
                   effects: Effects) -> None:
        data = event.data
        job = s.get(Job, data.job)
        if job is None or job.agent_id != agent.id:
            raise NotFound(f"job {data.job} is not a job of agent {agent.name}")
        store = self.store.bound(s)
        owner = _owner(data.owner)
        if job.state == "interrupted" and not (
                isinstance(event, ev.JobMove) and event.data.target == "running") and same_run(
                job, owner):
            store.move(job.id, "running", owner=owner,
                       reason=f"agent {agent.name} is back: its run of the job went on")
        if isinstance(event, ev.Progress):
            self._forward(job, event.data)
            effects.progress[job.id] = event.data.model_dump(
                include={"phase", "index", "done", "total"})
        elif isinstance(event, ev.JobMove):
            move = event.data
            _check_report(s, job, move)
            store.move(job.id, move.target, reason=move.reason, report=move.report,
                       data=move.data, owner=owner)
            if move.target == "running":
                effects.running.append(job.id)
                effects.restarted.append(job.id)
            if move.target == "erased":
                effects.certify.append(job.id)
        elif isinstance(event, ev.JobEvent):
            store.event(job.id, event.data.kind, event.data.message, event.data.data)
            if event.data.kind == "deployment" and job.kind == "image":
                _deployment(s, agent, job, event.data.data or {})
        elif isinstance(event, ev.JobPlan):
            new = ErasePlan.from_dict(event.data.plan)
            report_check.check_replan(_erase_plan(job), new, job.id)
            store.replace_plan(job.id, new, kind=event.data.kind, message=event.data.message)
            effects.restarted.append(job.id)
        elif isinstance(event, ev.JobCheckpoint):
            store.save_checkpoint(job.id, event.data.checkpoint)
        else:
            now = DriveIdentity(**event.data.identity.model_dump())
            drive = s.get(Drive, job.drive_id)
            assert drive is not None
            report_check.check_uncovered(_erase_plan(job), drive.identity, drive.size_bytes,
                                         now, job.id)
            store.record_drive(now)

    def _forward(self, job: Job, data: ev.ProgressData) -> None:
        """An erasure's progress only goes forward (within one run of one plan)."""
        last = self.progress.get(job.id)
        if job.kind == "erase" and last is not None and (data.index, data.done) < (
                last["index"], last["done"]):
            raise Unfit(job.id, f"job {job.id}: progress refused: it went back from pass "
                                f"{last['index'] + 1} at {last['done']} bytes to pass "
                                f"{data.index + 1} at {data.done} bytes")


def auto_erase(s: Session, drive: Drive, policy: ServicePolicy,
               store: RegistryJobStore) -> int | None:
    """The erase job the policy starts for `drive` (plugged in, probed, inventoried), if any:
    never for a laptop's drive while the laptop is tied to no donation, nor for a USB
    key or SD card left in a laptop (imager.registry.machines.held_back)."""
    if not policy.wants_erase(drive) or not drive.present or drive.state != "inventoried":
        return None
    if machines.held_back(s, drive) is not None:
        return None
    if (drive.plan or {}).get("plan") is None:
        return None
    return erase_job_for(store.bound(s), s, drive, technician_id=on_duty(s, drive),
                         donation_id=drive.donation_id)


def for_an_agent(plan: ErasePlan) -> ErasePlan:
    """The station's plan as an agent gets it: a sampled verification's seed is drawn
    only once the write passes are reported (imager.registry.jobs.verify_seed)."""
    return dataclasses.replace(plan, verify_seed=None) if plan.verify == "sample" else plan


def _erase_plan(job: Job) -> ErasePlan:
    if job.kind != "erase":
        raise Unfit(job.id, f"job {job.id} is a {job.kind} job: it has no erase plan")
    return ErasePlan.from_dict(job.plan)


def _check_report(s: Session, job: Job, move: ev.JobMoveData) -> None:
    """An erase job's report is the station's plan carried out on the job's drive
    (imager.erase.report_check), and an erasure comes with its report."""
    if job.kind != "erase":
        return
    if move.report is None:
        if move.target == "erased":
            raise Unfit(job.id, f"job {job.id}: an erasure is reported with its report")
        return
    report = EraseReport.from_dict(move.report)     # KeyError, TypeError...: refused
    if move.target in ("erased", "failed", "unverified") and report.outcome != move.target:
        raise Unfit(job.id, f"job {job.id}: the move to {move.target} carries a report whose "
                            f"outcome is {report.outcome}")
    drive = s.get(Drive, job.drive_id)
    assert drive is not None
    seen = (drive.plan or {}).get("identity") or {}
    report_check.check(report, report_check.Expected(
        job_id=job.id, plan=_erase_plan(job), identity=drive.identity, size=drive.size_bytes,
        transport=drive.transport, logical_sector=int(seen.get("logical_sector") or 512),
        seconds=(utcnow() - job.created_at).total_seconds()))


def _owner(owner: ev.Owner | None) -> Owner | None:
    return Owner(**owner.model_dump()) if owner is not None else None


def _stick_seen(agent: Agent, event: ev.StickSeen) -> None:
    """The last imager stick an agent saw, kept on its record for the board (the
    stick's reports themselves come as the events of the laptop's agent)."""
    if agent.kind != "dock":
        raise UsageError(f"agent {agent.name} is a laptop's ({agent.kind}): only a dock agent "
                    "reports imager sticks plugged into the station")
    agent.info = {**(agent.info or {}), "stick": {
        **event.data.model_dump(mode="json"), "at": event.at.isoformat()}}


def _detached(s: Session, agent: Agent, data: ev.DriveDetachedData, *, actor: str) -> None:
    """The drive left its dock: only the agent holding it says so (another agent's
    word, or a late one from the dock it left, changes nothing)."""
    drive = s.scalar(select(Drive).where(Drive.identity == data.identity))
    if drive is not None and drive.present and drive.agent_id != agent.id:
        raise UsageError(f"drive {drive.id} is held by agent {drive.agent_id}, not by agent "
                         f"{agent.id}: only its holder reports it unplugged")
    if drive is not None and drive.present:
        drive.present = False
        items.note(s, drive, "unplugged", actor=actor, reason=data.reason,
                   data={"path": data.path})


def _file_machine(s: Session, agent: Agent, machine: Machine | None, key: str | None,
                  inventory: dict[str, Any], proposal: dict[str, Any]) -> None:
    if machine is None:
        machine = Machine(state="received", created_at=utcnow())
        s.add(machine)
    actor = f"agent {agent.name}"
    facts = inventory.get("machine") or {}
    machine.identity = key or machine.identity
    # an agent's inventory names the model `product` (SMBIOS); older reports said `model`
    machine.vendor = facts.get("vendor")
    machine.model = facts.get("product") or facts.get("model")
    machine.serial, machine.uuid = facts.get("serial") or machine.serial, facts.get("uuid")
    machine.inventory, machine.proposal = inventory, proposal
    machine.agent_id, machine.last_seen_at = agent.id, utcnow()
    s.flush()
    items.note(s, machine, "inventory", actor=actor, reason="inventory reported",
               data={"proposal": proposal})
    if machine.state == "received":
        items.move(s, machine, "inventoried", actor=actor, reason="inventory reported")
    if agent.kind == "machine":            # the drives its agent already reported
        for drive in s.scalars(select(Drive).where(Drive.agent_id == agent.id,
                                                   Drive.present.is_(True))):
            machines.belongs(s, drive, machine, actor=actor)


def _result(deployment: ev.Deployment) -> Any:
    """The deployment's result as imager.imaging.deploy has it."""
    from imager.imaging.deploy import TargetResult
    return TargetResult(**{**deployment.result.model_dump(), "mismatches": [
        tuple(m) for m in deployment.result.mismatches]})


def _offline_deployment(s: Session, agent: Agent, data: ev.OfflineDeploymentData,
                        settings: Settings) -> None:
    """A system written with no network by the agent that erased that drive offline:
    recorded only after that erasure was accepted (it comes before in the spool), and
    only for an image this station's catalogue holds with the same sha256."""
    from imager.jobs.image import image_info
    from imager.registry import deployments
    from imager.station import image_store
    drive = s.scalar(select(Drive).where(Drive.identity == data.identity))
    erasure = deployments.erasure_on_record(s, drive) if drive is not None else None
    if drive is None or erasure is None or erasure.agent_id != agent.id:
        raise UsageError(f"offline deployment on drive {data.identity} refused: no offline "
                         f"erasure of it by agent {agent.name} is on record (it must come "
                         "first in the same spool)")
    entry = image_store.catalogue(settings).get(data.image.name, data.image.version)
    info = image_info(entry)
    if info.sha256 != data.image.sha256:
        raise UsageError(f"offline deployment of {data.image.name} {data.image.version} "
                         "refused: the kit's image is not the one in this station's catalogue "
                         f"(sha256 {data.image.sha256[:12]}…, catalogue "
                         f"{(info.sha256 or '')[:12]}…): make the offline kit again")
    actor = f"agent {agent.name} (hors ligne / offline)"
    deployments.begin(s, DriveIdentity(**(drive.plan or {})["identity"]), info, actor=actor)
    deployments.finish(s, drive.id, info, _result(data), actor=actor, started_at=utcnow(),
                       erasure_job_id=erasure.id, after=data.after, hostname=None)


def _deployment(s: Session, agent: Agent, job: Job, data: dict[str, Any]) -> None:
    """An agent's image job reported its deployment: record it, move the drive."""
    from imager.registry import deployments
    plan = ImagePlan.from_dict(job.plan)
    deployment = ev.Deployment.model_validate(data)        # checked by the protocol too
    result = _result(deployment)
    info = deployments.ImageInfo(plan.name, plan.version, plan.sha256, plan.image_size,
                                 plan.mapped_bytes)
    deployments.finish(s, job.drive_id, info, result, actor=f"agent {agent.name}",
                       started_at=job.started_at or utcnow(),
                       erasure_job_id=plan.erasure_job, after=deployment.after,
                       hostname=plan.hostname, job_id=job.id)
