"""The agent loop: watch the docks, report, run the jobs the station assigns.

Three threads: the watcher (udev: drives plugged in and pulled out), the
sender (the outbox to the station, oldest first, retried with a back-off
until answered) and the job poller (long-polls the station, runs each job in
its own thread with the erase runner and a store that reports by events).

A drive pulled out while its job runs stops that job at once: the job fails
with "drive removed" (never interrupted-and-forgotten, never erased).
Without a station (offline) the agent reports into the spool, which
`imager agent sync` uploads later; with the station's offline kit and
`--erase` it also erases the drives it is offered, from the kit's signed
policy (imager.agent.offline), and spools each erasure's report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imager.agent import offline, offline_image
from imager.agent.client import (
    Enrolment,
    StationClient,
    StationNotTrusted,
    StationRefused,
    StationUnreachable,
)
from imager.agent.image_job import run_image, run_images
from imager.agent.key import agent_key
from imager.agent.outbox import Outbox
from imager.agent.remote import JobOnDrive, JobStop, RemoteJobStore
from imager.agent.stick_sync import StickWatch, StickWatchConfig
from imager.agent.tls import StationTrust
from imager.erase import guard
from imager.erase.offline_policy import read_kit
from imager.erase.progress import Interrupted
from imager.errors import ImagerError, UsageError
from imager.host.device_facts import gather, unknown_exclusions
from imager.host.files import write_atomic
from imager.host.owner import mac_addresses, machine_id, smbios_serial
from imager.host.udev import BlockEvent, BlockWatcher
from imager.host.virtual import label_of
from imager.inventory import lsblk
from imager.inventory.evidence import DriveEvidence, collect
from imager.jobs.erase import run_erase
from imager.model import DriveIdentity, ImagePlan
from imager.protocol.events import BadEvent
from imager.protocol.jobs import JobView, view_from_dict
from imager.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_PERIOD = 0.5      # seconds between two progress events of a job (2 Hz)
PENDING_POLL = 1.0         # seconds between two questions of a pending agent
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class AgentConfig:
    name: str
    spool: Path
    station: str | None = None          # None: offline, spool only
    key: Path | None = None             # the agent's own key; default <spool>/agent.key
    boot_token: str | None = None       # single-use, from the kernel command line
    kind: str = "dock"
    host: str = field(default_factory=machine_id)
    watch: bool = True
    only_lab: bool = False              # watch only the lab bench's labelled drives
    machine: bool = False               # report this machine's inventory (laptop mode)
    trust: StationTrust | None = None   # the pinned CA of an https station
    boot: str | None = None             # how this machine was booted: usb, installed
    secure_boot: bool | None = None     # whether its firmware ran Secure Boot (as read there)
    offline_kit: Path | None = None     # the station's signed policy, for erasing offline
    erase_offline: bool = False         # with the kit and no station: erase what is offered
    status: Path | None = None          # a JSON file saying where the agent is (live screen)
    sync_sticks: bool = True            # a dock agent syncs the imager sticks plugged in


@dataclass
class Agent:
    settings: Settings
    config: AgentConfig
    outbox: Outbox = field(init=False)
    client: StationClient | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.config.spool)
        self.key = agent_key(self.config.key or self.config.spool / "agent.key")
        self.outbox.sign({"name": self.config.name, "kind": self.config.kind,
                          "host": self.config.host, "boot": self.config.boot,
                          "secure_boot": self.config.secure_boot})
        self.present: dict[str, DriveIdentity] = {}     # kernel name -> drive
        self.running: dict[str, JobStop] = {}           # identity key -> its job's stop
        # Jobs this process has run: never again. Until the station has applied the
        # events of a job that just ended, it still offers that job; running it again
        # would write the drive a second time after its report.
        self.started: set[int] = set()
        self.kit = read_kit(self.config.offline_kit) if self.config.offline_kit else None
        self.kit_image = offline_image.kit_image(self.config.offline_kit) \
            if self.config.offline_kit else None
        if self.config.erase_offline and (self.kit is None or self.config.station):
            raise UsageError("--erase is for an agent with no station: give --offline-kit DIR "
                             "(the station's signed policy) and no --station")
        self.registered = threading.Event()
        self.pending: Enrolment | None = None    # what a technician needs, while pending
        self.flushed = threading.Event()
        self.laptop_done = threading.Event()     # the station says: restart this laptop
        self.watching = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        dock = self.config.kind == "dock"
        self.sticks = StickWatch(self.settings, StickWatchConfig(
            station=self.config.station, trust=self.config.trust,
            sync=dock and self.config.sync_sticks, tell=dock, only_lab=self.config.only_lab),
            put=self.outbox.put, status=self._status)

    # -- running -------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Start the threads; they end soon after `stop` is set."""
        targets: list[Callable[[threading.Event], None]] = []
        if self.config.station:
            targets += [self._sender, self._jobs]
        if self.config.watch:
            targets.append(self._watch)
            for entry in unknown_exclusions(self.settings):
                log.warning("IMAGER_EXCLUDE: %r names no device present now (a typo, or a "
                            "drive not plugged in?): it protects a device only by that "
                            "name; give a path such as /dev/disk/by-id/...", entry)
        if self.config.machine:
            self._report_machine()
        for target in targets:
            t = threading.Thread(target=target, args=(stop,), daemon=True,
                                 name=f"agent-{target.__name__.strip('_')}")
            t.start()
            self._threads.append(t)

    def join(self, timeout: float = 60.0) -> None:
        """After `stop` was set: wait for the jobs to stop and report, then the threads."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.sticks.join(max(0.0, deadline - time.monotonic()))

    # -- the station -----------------------------------------------------------

    def register(self, stop: threading.Event, *, attempts: int | None = None,
                 wait_pending: bool = True) -> bool:
        """Enrol this agent's key with the station (retrying while it is unreachable,
        `attempts` times or until `stop`), then, while it is pending, wait for a
        technician to type its pairing code or approve it (unless not
        `wait_pending`: `self.pending` then says what to tell). False if the
        station never answered, refused it (revoked), or `stop` came first."""
        assert self.config.station
        self.client = self.client or StationClient(self.config.station, self.key,
                                                   trust=self.config.trust)
        client = self.client
        enrolled = self._retrying(stop, attempts, lambda: client.enrol(
            name=self.config.name, kind=self.config.kind, host=self.config.host,
            info={"boot": self.config.boot, "secure_boot": self.config.secure_boot},
            boot_token=self.config.boot_token, macs=mac_addresses(self.settings.sys_root),
            serial=smbios_serial(self.settings.sys_root)))
        if enrolled is not None and enrolled.state == "pending":
            _say_pending(enrolled)
            self._status("pending", agent=enrolled.agent, code=enrolled.pairing_code,
                         fingerprint=enrolled.fingerprint)
            self.pending = enrolled
            if not wait_pending:
                return False
        while enrolled is not None and enrolled.state == "pending":
            if stop.wait(PENDING_POLL):
                return False
            enrolled = self._retrying(stop, attempts, client.me)
        if enrolled is None:
            return False
        if enrolled.state != "active":
            log.error("the station does not accept this agent (%s): stopping", enrolled.state)
            self._status("refused", reason=enrolled.state)
            return False
        self.registered.set()
        self._status("registered", agent=enrolled.agent, fingerprint=enrolled.fingerprint)
        log.info("enrolled with %s as agent %s (key %s)", self.config.station,
                 enrolled.agent, enrolled.fingerprint)
        return True

    def _retrying(self, stop: threading.Event, attempts: int | None,
                  call: Callable[[], Enrolment]) -> Enrolment | None:
        """`call()` while the station is unreachable or does not recognise the request's
        proof (401: a clock set wrong here or there, fixed by NTP later); None when it
        never answered, or when it refused for good (logged: e.g. a revoked agent)."""
        for attempt, delay in enumerate(_backoff(), start=1):
            if stop.is_set():
                return None
            try:
                return call()
            except StationRefused as exc:
                if exc.status != 401 or (attempts is not None and attempt >= attempts):
                    log.error("%s", exc)
                    self._status("refused", reason=str(exc))
                    return None
                log.warning("%s; retrying", exc)
                stop.wait(delay)
            except StationUnreachable as exc:
                self._status("unreachable", attempt=attempt, error=str(exc),
                             trusted=not isinstance(exc, StationNotTrusted))
                if attempts is not None and attempt >= attempts:
                    return None
                log.warning("%s; retrying", exc)
                stop.wait(delay)
        return None

    def _status(self, state: str, **fields: Any) -> None:
        """Say where this agent is in `config.status`, for the live system's screen:
        unreachable (attempt, error, trusted), pending (agent, code), registered
        (agent), refused (reason), job (job, kind, phase, done, total)."""
        if self.config.status is None:
            return
        data = {"state": state, "time": round(time.time(), 3), **fields}
        try:
            write_atomic(self.config.status, json.dumps(data).encode(), mode=0o644)
        except OSError as exc:
            log.warning("cannot write the agent's status to %s: %s", self.config.status, exc)

    def _sender(self, stop: threading.Event) -> None:
        if not self.register(stop):
            return
        backoff = _backoff()
        while not (stop.is_set() and self.outbox.empty()):
            events = self.outbox.pending()
            if not events:
                self.flushed.set()
                self.outbox.wait(0.5)
                continue
            try:
                assert self.client is not None
                answers = self.client.send(events)
                self.outbox.ack([a["id"] for a in answers])
                backoff = _backoff()
            except StationRefused as exc:
                log.error("%s", exc)
                if exc.bad_events:               # malformed events: set aside, go on
                    self.outbox.refused([events[i]["id"] for i in exc.bad_events
                                         if i < len(events)], str(exc))
                    continue
                # anything else, e.g. the token revoked: register again
                stop.wait(next(backoff))
                if not self.register(stop):
                    return
            except StationUnreachable as exc:
                if stop.is_set():
                    return                     # the spool keeps them for next time
                log.warning("%s; events kept in %s", exc, self.config.spool)
                stop.wait(next(backoff))

    def _jobs(self, stop: threading.Event) -> None:
        # Old events first: a resumed job must not be overtaken by its old checkpoints.
        while not stop.is_set() and not self.flushed.wait(0.2):
            pass
        while not stop.is_set():
            try:
                assert self.client is not None
                work = self.client.next_work(wait=2.0)
            except ImagerError as exc:
                log.warning("%s", exc)
                stop.wait(1.0)
                continue
            for group in _batches([view_from_dict(job) for job in work.jobs]):
                self._maybe_run(group, stop)
            if work.laptop == "restart" and self.config.machine and not work.jobs:
                with self._lock:
                    idle = not self.running
                if idle and not self.outbox.pending(limit=1):
                    log.info("the station says this laptop is done: it may restart")
                    self.laptop_done.set()

    # -- jobs -------------------------------------------------------------------

    def _maybe_run(self, views: list[JobView], stop: threading.Event) -> None:
        """Start the jobs `views` (one, or a batch of image jobs) whose drives are
        plugged in here and that do not run yet, in one thread."""
        claimed: list[JobOnDrive] = []
        with self._lock:
            for view in views:
                if view.drive_identity in self.running or view.id in self.started:
                    continue
                path = next((i.path for i in self.present.values()
                             if i.key == view.drive_identity), None)
                if path is None:
                    continue   # not plugged in here (any more): it runs when it comes back
                job_stop = JobStop()
                self.running[view.drive_identity] = job_stop
                self.started.add(view.id)
                store = RemoteJobStore(self.outbox, view, self._seeds(job_stop))
                claimed.append(JobOnDrive(store, path, job_stop))
        if len(claimed) > 1:
            threading.Thread(target=self._run_batch, args=(claimed, stop), daemon=True,
                             name=f"jobs-{claimed[0].store.job.id}-batch").start()
        elif claimed:
            threading.Thread(target=self._run, args=(claimed[0], stop), daemon=True,
                             name=f"job-{claimed[0].store.job.id}").start()

    def _run_batch(self, targets: list[JobOnDrive], stop: threading.Event) -> None:
        """Image jobs of one batch, written from one stream; `stop` (the agent's)
        ends them all, a drive pulled out fails alone."""
        def report(phase: str, done: int, total: int) -> None:
            for t in targets:
                t.store.progress(t.store.job.id, phase, 0, done, total)

        try:
            assert self.client is not None
            run_images(targets, self.settings, self.client, stop=stop,
                       on_progress=_throttled(report))
        except ImagerError as exc:
            log.warning("jobs %s: %s", [t.store.job.id for t in targets], exc)
        finally:
            self._ended(targets)

    def _run(self, job: JobOnDrive, stop: threading.Event) -> None:
        view, store = job.store.job, job.store

        def report(job_id: int, phase: str, step: int, done: int, total: int) -> None:
            store.progress(job_id, phase, step, done, total)
            self._status("job", job=job_id, kind=view.kind, phase=phase, done=done,
                         total=total)
        progress = _throttled(report)
        def relay() -> None:        # the agent stops: so does this job
            stop.wait()
            job.stop.set()

        watcher = threading.Thread(target=relay, daemon=True)
        watcher.start()
        try:
            if view.kind == "image":
                assert self.client is not None
                run_image(store, job.path, self.settings, self.client, stop=job.stop,
                          on_progress=lambda phase, done, total: progress(
                              view.id, phase, 0, done, total))
            else:
                run_erase(store, view.id, self.settings, stop=job.stop, on_progress=progress,
                          device_path=job.path)
        except ImagerError as exc:
            log.warning("job %s: %s", view.id, exc)
        finally:        # said before the job leaves `running`: a stopping agent waits
            self._status("job-ended", job=view.id, kind=view.kind)    # for it to empty
            self._ended([job])

    def _seeds(self, stop: threading.Event) -> Callable[[int], str]:
        """How a job asks the station for its verification seed: until it is drawn
        (the station waits for the write passes' events) or the job stops."""
        def ask(job_id: int) -> str:
            backoff = _backoff()
            while not stop.is_set():
                try:
                    assert self.client is not None
                    return self.client.verify_seed(job_id)
                except StationRefused as exc:
                    if exc.status != 409:
                        raise
                except StationUnreachable as exc:
                    log.warning("job %s waits for its verification seed: %s", job_id, exc)
                stop.wait(next(backoff))
            raise Interrupted(f"job {job_id} stopped while waiting for its verification seed")
        return ask

    def _ended(self, jobs: list[JobOnDrive]) -> None:
        with self._lock:
            for job in jobs:
                self.running.pop(job.store.job.drive_identity, None)

    # -- the docks --------------------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        watcher = BlockWatcher(self.settings)
        try:
            for event in watcher.listed():
                self._seen_safely(event, stop)
            self.watching.set()
            while not stop.is_set():
                change = watcher.poll(0.5)
                if change is not None and change.action != "ignored":
                    self._seen_safely(change, stop)
        finally:
            watcher.close()

    def _seen_safely(self, event: BlockEvent, stop: threading.Event) -> None:
        """`_seen`, but one drive that cannot be reported never stops the watching."""
        try:
            self._seen(event, stop)
        except BadEvent as exc:
            log.error("%s not reported to the station: %s", event.path, exc)

    def _seen(self, event: BlockEvent, stop: threading.Event) -> None:
        known = self.present.get(event.name)
        if not event.present:
            self.sticks.gone(event.name)
            if known is not None:
                self._gone(event.name, known)
            return
        # An imager stick (IMAGER-DATA) is never a drive: synced, not offered; one that
        # was a drive here a moment ago was just written by `imager boot usb`.
        if self.sticks.seen(event.name, event.path, stop, written=known is not None):
            if known is not None:
                self._gone(event.name, known)
            return
        try:
            ident = self._identify(event.path)
        except ImagerError as exc:
            log.info("%s not offered: %s", event.path, exc)
            return
        if ident is None:
            if known is not None:
                self._gone(event.name, known)
            return
        if known is not None and known.key == ident.key:
            return
        if known is not None:
            self._gone(event.name, known)
        self._attached(event.name, ident)

    def _identify(self, path: str) -> DriveIdentity | None:
        """The drive at `path`, or None when it is not to be offered."""
        facts = gather(path, self.settings)
        if facts.system_roles or facts.mounts or facts.excluded or facts.built_on or (
                guard.virtual_kind(facts.sysname or "")):
            return None
        ident = lsblk.probe(path, self.settings)
        if self.config.only_lab and not label_of(ident.backing_file, self.settings):
            return None
        return ident

    def _attached(self, name: str, ident: DriveIdentity) -> None:
        """Report the drive by its evidence (the tools' outputs): the station plans.
        Offline with --erase, erase it from the kit's policy instead (a USB stick or
        an SD card is only reported: a person decides about those)."""
        try:
            evidence = collect(ident.path, self.settings)
        except ImagerError as exc:
            log.error("%s not reported: %s", ident.path, exc)
            return
        with self._lock:
            self.present[name] = ident
        if self.config.erase_offline and not ident.removable_medium:
            self._erase_offline(ident, evidence)
            return
        self.outbox.put("drive_attached", {"evidence": evidence.to_dict()})
        log.info("drive %s at %s", ident.key, ident.path)

    def _erase_offline(self, ident: DriveIdentity, proof: DriveEvidence) -> None:
        """Erase one drive with no station, in a thread of its own; spool the report."""
        job_stop = JobStop()
        with self._lock:
            if ident.key in self.running:
                return
            self.running[ident.key] = job_stop

        drive = ident.path.rsplit("/", 1)[-1]

        def status(kind: str) -> Callable[..., None]:      # the live system's screen
            return _throttled(lambda phase, done, total: self._status(
                "job", job=drive, kind=kind, phase=phase, done=done, total=total))

        def run() -> None:
            assert self.kit is not None
            try:
                erasing = status("erase")
                data = offline.erase(self.settings, self.kit, proof,
                                     self.config.spool / "offline", job_stop,
                                     on_progress=lambda _job, phase, _step, done, total:
                                     erasing(phase, done, total))
                self.outbox.put("offline_erasure", data)
                log.info("drive %s erased offline: %s", ident.key, data["report"]["outcome"])
                if self.kit_image is not None and data["report"]["outcome"] == "erased":
                    done = offline_image.install(self.settings, self.kit_image, ident.path,
                                                 ident.key, job_stop, progress=status("image"))
                    self.outbox.put("offline_deployment", done)
                    log.info("drive %s: system %s %s written offline: %s", ident.key,
                             self.kit_image.name, self.kit_image.version,
                             "ok" if done["result"]["ok"] else done["result"]["error"])
            except ImagerError as exc:
                log.error("%s not erased: %s", ident.path, exc)
            finally:
                self._status("job-ended", job=drive)      # before, as in _run
                with self._lock:
                    self.running.pop(ident.key, None)
        threading.Thread(target=run, daemon=True, name=f"offline-{ident.path}").start()
        log.info("drive %s at %s: erasing offline (%s)", ident.key, ident.path,
                 self.kit.policy.label if self.kit else "")

    def _gone(self, name: str, ident: DriveIdentity) -> None:
        with self._lock:
            self.present.pop(name, None)
            job_stop = self.running.get(ident.key)
        reason = f"{ident.path} unplugged"
        if job_stop is not None:
            job_stop.drive_removed(reason)
        self.outbox.put("drive_detached", {"identity": ident.key, "path": ident.path,
                                           "reason": reason})
        log.info("drive %s gone from %s", ident.key, ident.path)

    # -- this machine -----------------------------------------------------------

    def _report_machine(self) -> None:
        from imager.inventory.machine import collect
        self.outbox.put("machine_inventory", {"inventory": collect(self.settings).to_dict()})


def _throttled(report: Callable[..., None]) -> Callable[..., None]:
    """`report(*args)` at most once every PROGRESS_PERIOD seconds, and always at
    the end (its last two arguments: done == total)."""
    last = [0.0]

    def call(*args: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_PERIOD or args[-2] == args[-1]:
            last[0] = now
            report(*args)
    return call


def _batches(views: list[JobView]) -> list[list[JobView]]:
    """The jobs in the groups they run in, in order: the image jobs of one batch
    together (one stream), every other job alone."""
    groups: dict[tuple[str, object], list[JobView]] = {}
    for view in views:
        batch = view.plan.batch if isinstance(view.plan, ImagePlan) else None
        groups.setdefault(("batch", batch) if batch else ("job", view.id), []).append(view)
    return list(groups.values())


def _backoff() -> Any:
    yield from BACKOFF
    while True:
        yield BACKOFF[-1]


class AgentPending(UsageError):
    """The agent of a spool being synced waits for a technician: nothing was sent."""

    def __init__(self, agent: int, name: str, message: str) -> None:
        super().__init__(message)
        self.agent, self.name = agent, name


@dataclass
class SyncResult:
    """What `sync` did: answers per outcome, and what stays in the spool."""

    agent: str
    applied: int = 0
    duplicate: int = 0
    refused: int = 0
    left: int = 0
    set_aside: int = 0      # malformed: kept in the spool as .damaged for a person


def sync(settings: Settings, config: AgentConfig, *, attempts: int = 3) -> SyncResult:
    """Upload a spool (e.g. from a USB stick) to the station, as the agent that
    wrote it. An event the station already has is answered "duplicate"."""
    who = Outbox(config.spool).identity() or {}
    config = dataclasses.replace(config, watch=False, name=who.get("name") or config.name,
                                 kind=who.get("kind") or config.kind,
                                 host=who.get("host") or config.host,
                                 boot=who.get("boot") or config.boot,
                                 secure_boot=who.get("secure_boot") if isinstance(
                                     who.get("secure_boot"), bool) else None)
    agent = Agent(settings, config)
    if not agent.register(threading.Event(), attempts=attempts, wait_pending=False):
        if agent.pending is not None:
            code = agent.pending.pairing_code
            raise AgentPending(agent.pending.agent, config.name,
                f"l'agent {agent.pending.agent} de ce spool attend un technicien / this "
                f"spool's agent {agent.pending.agent} ({config.name}, key "
                f"{agent.pending.fingerprint}) waits for a technician: `imager agents pair "
                f"{code}` or `imager agents approve {agent.pending.agent}` on the station, then "
                "sync again; nothing was sent")
        raise _unreachable(agent, f"after {attempts} attempts: nothing was sent")
    result = SyncResult(agent=f"{config.name} ({config.kind})")
    assert agent.client is not None
    try:
        while events := agent.outbox.pending():
            try:
                answers = agent.client.send(events)
            except StationRefused as exc:
                if not exc.bad_events:
                    raise
                agent.outbox.refused([events[i]["id"] for i in exc.bad_events
                                      if i < len(events)], str(exc))
                continue
            agent.outbox.ack([a["id"] for a in answers])
            for a in answers:
                outcome = a["outcome"]
                setattr(result, outcome, getattr(result, outcome) + 1)
    except StationUnreachable as exc:
        raise _unreachable(agent, f"mid-way ({exc}): {result.applied} applied") from exc
    finally:
        agent.client.close()
    result.left = len(agent.outbox.pending(limit=1_000_000))
    result.set_aside = agent.outbox.set_aside
    return result


def _unreachable(agent: Agent, what: str) -> StationUnreachable:
    waiting = len(agent.outbox.pending(limit=1_000_000))
    return StationUnreachable(
        f"station {agent.config.station} injoignable / unreachable {what}; the {waiting} "
        f"event(s) left stay in {agent.config.spool}: check the URL and the network, then "
        "run `imager agent sync` again")


def _say_pending(enrolled: Enrolment) -> None:
    """What a technician needs, on the agent's screen (the live system shows it)."""
    log.warning("EN ATTENTE D'UN TECHNICIEN / WAITING FOR A TECHNICIAN: agent %s, empreinte / "
                "fingerprint %s%s (imager agents pair CODE, or imager agents approve %s)",
                enrolled.agent, enrolled.fingerprint,
                f", code d'appairage / pairing code {enrolled.pairing_code}"
                if enrolled.pairing_code else "", enrolled.agent)
