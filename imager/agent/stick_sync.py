"""An imager USB stick back at the station: its spool sent as the agent that wrote
it (the laptop's, offline), and the events the station answered for moved to
spool/sent/ on the stick, where they stay.

`sync_stick` is what `imager boot usb-sync` runs. `StickWatch` is the dock
agent's side: a disk holding an IMAGER-DATA partition (imager.host.stick_data)
is never offered as a drive; it is synced once per insertion, in a thread of
its own (a stick never holds up the drives), and what happened is said to the
station in plain French (event `stick_seen`, kept on the dock agent's record
for the board) and in the agent's log and status file. A stick whose laptop
agent still waits for a technician, or whose station does not answer, is tried
again while it stays plugged in; whatever fails, its spool stays on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from imager.agent.client import StationUnreachable
from imager.agent.tls import StationTrust
from imager.errors import ImagerError, UsageError
from imager.host import devices, stick_data
from imager.host.virtual import label_of
from imager.inventory import lsblk
from imager.settings import Settings

if TYPE_CHECKING:
    from imager.agent.agent import SyncResult

log = logging.getLogger(__name__)

RETRY = {"waiting": 5.0, "unreachable": 15.0}   # seconds before trying a stick again
PARTITION_WAIT = 10.0          # seconds for the kernel to show a stick's partitions


@dataclass(frozen=True)
class StickSync:
    """What a sync did: the station's answers, and the events now in spool/sent/."""

    partition: str
    pending_before: int
    result: SyncResult | None          # None: nothing to send
    sent_total: int


def sync_stick(device: str, settings: Settings, *, station: str,
               trust: StationTrust | None) -> StickSync:
    """Mount the stick's data partition, upload its spool as the agent that wrote
    it (`imager agent sync`), the events the station answered for moved to
    spool/sent/ (kept on the stick), unmount."""
    from imager.agent.agent import AgentConfig, sync  # that module imports this one
    part = stick_data.find(device, settings)
    if part is None:
        raise UsageError(f"{device} : pas de partition {stick_data.LABEL} / has no "
                         f"{stick_data.LABEL} partition: is it a stick written by `imager boot "
                         "usb`?")
    with stick_data.opened(part, settings) as root:
        spool = root / stick_data.SPOOL
        if not spool.is_dir():
            raise UsageError(f"{part}: no spool/ folder: write the stick with `imager boot usb`")
        (spool / stick_data.SENT).mkdir(mode=0o700, exist_ok=True)
        before = len(stick_data.pending(spool))
        result = None
        if before:
            result = sync(settings, AgentConfig(name="usb-stick", spool=spool, station=station,
                                                trust=trust, kind="machine", boot="usb"))
        return StickSync(part, before, result, len(stick_data.sent(spool)))


# -- what the board is told ------------------------------------------------------------

@dataclass(frozen=True)
class StickReport:
    """One sync attempt, as the station and the board are told it (`stick_seen`)."""

    outcome: str          # sent, partial, nothing, waiting, unreachable, failed, written,
    #                       read_only, off
    text: str             # plain French, for the board
    text_en: str
    pending: int = 0      # reports on the stick before
    sent: int = 0         # answered by the station now (applied or already there)
    left: int = 0         # still waiting on the stick (refused, set aside, not sent)
    agent: str | None = None   # the laptop's agent that wrote the spool, when known

    @property
    def retry(self) -> bool:
        return self.outcome in RETRY

    def data(self, path: str, stick: str) -> dict[str, Any]:
        return {"path": path, "stick": stick, **asdict(self)}


def _reports(n: int) -> str:
    return f"{n} rapport{'s' if n > 1 else ''}"


def _sent(n: int) -> str:
    return f"{_reports(n)} envoyé{'s' if n > 1 else ''}"


def attempt(device: str, settings: Settings, *, station: str,
            trust: StationTrust | None) -> StickReport:
    """Sync the stick `device` once; what happened, whatever happened."""
    from imager.agent.agent import AgentPending
    try:
        done = sync_stick(device, settings, station=station, trust=trust)
    except AgentPending as exc:
        return StickReport(
            "waiting", f"Clé imager branchée : ses rapports attendent. Le portable « "
            f"{exc.name} » doit d'abord être accepté (page Agents, bouton Approuver). "
            "Ensuite, l'envoi se fait tout seul.",
            f"Imager stick plugged in: its reports wait until the laptop's agent {exc.name} "
            f"is approved (Agents page, or `imager agents approve {exc.agent}`); they are "
            "then sent by themselves while the stick stays plugged in.", agent=exc.name)
    except StationUnreachable as exc:
        return StickReport(
            "unreachable", "Clé imager branchée : la station ne répond pas. Les rapports "
            "restent sur la clé. Nouvel essai dans un moment ; si cela dure, appelez un "
            "responsable.", f"Imager stick plugged in, not synced: {exc}. The reports stay "
            f"on the stick; tried again while it stays plugged in, or later with `imager boot "
            f"usb-sync {device} --station URL`.")
    except (ImagerError, OSError) as exc:
        return StickReport(
            "failed", "Clé imager branchée : ses rapports n'ont pas pu être envoyés. Ils "
            "restent sur la clé. Appelez un responsable.",
            f"Imager stick plugged in, not synced: {exc}. The reports stay on the stick; "
            f"once fixed, unplug and plug it in again, or run `imager boot usb-sync {device} "
            "--station URL`.")
    r = done.result
    if r is None:
        return StickReport(
            "nothing", f"Clé imager branchée : rien à envoyer ({_sent(done.sent_total)} "
            "avant).", f"Imager stick plugged in: nothing to send ({done.sent_total} sent "
            "before).")
    sent, left = r.applied + r.duplicate, r.left + r.refused + r.set_aside
    agent = r.agent.split(" (", 1)[0]
    if left:
        return StickReport(
            "partial", f"Clé imager branchée : {_sent(sent)}, mais {_reports(left)} pas "
            f"accepté{'s' if left > 1 else ''} par la station. Ils restent sur la clé. "
            "Appelez un responsable.",
            f"Imager stick plugged in: {sent} report(s) sent, {left} not accepted "
            f"(refused {r.refused}, set aside {r.set_aside}, left {r.left}): they stay on the "
            f"stick; see the station's log, then `imager boot usb-sync {device} --station "
            "URL`.", done.pending_before, sent, left, agent)
    return StickReport("sent", f"Clé imager branchée : {_sent(sent)}. Vous pouvez la "
                       "débrancher.", f"Imager stick plugged in: {sent} report(s) sent to the "
                       "station. It may be unplugged.", done.pending_before, sent, 0, agent)


# -- the dock agent's side ---------------------------------------------------------------

@dataclass(frozen=True)
class StickWatchConfig:
    station: str | None
    trust: StationTrust | None
    sync: bool               # sync sticks (a dock agent with a station)
    tell: bool               # tell the station about sticks (a dock agent)
    only_lab: bool           # only the lab's labelled devices of this data dir


class StickWatch:
    """The imager sticks plugged in here: never drives; each synced once per insertion."""

    def __init__(self, settings: Settings, config: StickWatchConfig,
                 put: Callable[[str, dict[str, Any]], object],
                 status: Callable[..., None]) -> None:
        self.settings, self.config = settings, config
        self._put, self._status = put, status
        self._lock = threading.Lock()
        self.present: dict[str, str] = {}       # kernel name -> the stick's identity
        self.syncing: set[str] = set()          # kernel names whose sync thread runs

    def seen(self, name: str, path: str, stop: threading.Event, *,
             written: bool = False) -> bool:
        """True when the disk `name` is an imager stick (never to be offered as a
        drive). A stick new here is synced in a thread of its own, unless it was
        `written` while plugged in (a drive here a moment ago: just written by
        `imager boot usb`), which is only said."""
        with self._lock:
            if name in self.present:
                return True                     # the same insertion: done already
        part = stick_data.recognise(path, self.settings)
        if part is None:
            return False
        if self.config.only_lab and not label_of(devices.backing_file_of(name, self.settings),
                                                 self.settings):
            log.debug("%s: an imager stick, not one of this lab's devices: ignored", path)
            return True
        stick = _identity(path, self.settings)
        with self._lock:
            self.present[name] = stick
        log.info("%s: imager stick (data partition %s), never offered as a drive", path, part)
        if self.config.tell:                    # not a laptop's agent (its own boot stick)
            self._start(name, path, stick, stop, written=written, whole=part == name)
        return True

    def _start(self, name: str, path: str, stick: str, stop: threading.Event, *,
               written: bool, whole: bool) -> None:
        """Sync the stick in a thread of its own, or say why not."""
        if written:
            self._tell(path, stick, StickReport(
                "written", "Clé imager écrite : elle est prête, vous pouvez la débrancher.",
                "Imager stick written here: it is ready; its reports, if any, are sent when "
                "it is plugged in again."))
        elif stick_data.read_only(name, self.settings):
            self._tell(path, stick, StickReport(
                "read_only", "Clé imager branchée, mais protégée en écriture : ses rapports "
                "ne sont pas envoyés. Poussez le petit bouton de la clé, puis rebranchez-la.",
                "Imager stick plugged in read-only (its write-protect switch?): its reports "
                "are not sent, since they could not be moved to spool/sent/ after; unlock it "
                "and plug it in again."))
        elif not (self.config.sync and self.config.station):
            self._tell(path, stick, StickReport(
                "off", "Clé imager branchée : ce poste n'envoie pas ses rapports tout seul. "
                f"Un responsable les envoie avec « imager boot usb-sync {path} ».",
                "Imager stick plugged in: this agent does not sync sticks (--no-sync-sticks, "
                f"or no station): send its reports with `imager boot usb-sync {path} "
                "--station URL`."))
        else:
            with self._lock:
                self.syncing.add(name)
            threading.Thread(target=self._sync, args=(name, path, stick, stop, whole),
                             daemon=True, name=f"stick-{name}").start()

    def join(self, timeout: float) -> None:
        """After `stop` was set: wait for the syncs under way to end (a stick is not
        left mounted by a stopped agent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.syncing:
                    return
            time.sleep(0.05)

    def gone(self, name: str) -> bool:
        """Forget the stick `name` was (True if it was one): its next insertion syncs."""
        with self._lock:
            stick = self.present.pop(name, None)
        if stick is not None:
            log.info("imager stick %s unplugged from /dev/%s", stick, name)
        return stick is not None

    def _here(self, name: str, stick: str) -> bool:
        with self._lock:
            return self.present.get(name) == stick

    def _sync(self, name: str, path: str, stick: str, stop: threading.Event,
              whole: bool = False) -> None:
        """Sync until done, retrying while the laptop's agent waits or the station
        does not answer, as long as the stick stays; `whole`: no partition table."""
        last = None
        try:
            while not stop.is_set() and self._here(name, stick):
                if whole or self._partition_shown(name, stick, stop):
                    report = attempt(path, self.settings, station=self.config.station or "",
                                     trust=self.config.trust)
                elif stop.is_set() or not self._here(name, stick):
                    return
                else:
                    report = _no_partitions(path)
                if report.outcome != last:
                    self._tell(path, stick, report)
                    last = report.outcome
                if not report.retry or stop.wait(RETRY[report.outcome]):
                    return
        except Exception:                       # a bug: said, and the stick left as it is
            log.exception("imager stick %s at %s: sync stopped", stick, path)
        finally:
            with self._lock:
                self.syncing.discard(name)

    def _partition_shown(self, name: str, stick: str, stop: threading.Event) -> bool:
        """Wait until the kernel shows the stick's partitions (its partition scan
        comes just after the disk appears), at most PARTITION_WAIT seconds."""
        deadline = time.monotonic() + PARTITION_WAIT
        while self._here(name, stick) and not stop.is_set():
            if devices.partitions_of(name, self.settings):
                return True
            if time.monotonic() > deadline:
                return False
            stop.wait(0.2)
        return False

    def _tell(self, path: str, stick: str, report: StickReport) -> None:
        (log.info if report.outcome in ("sent", "nothing", "written") else log.warning)(
            "%s: %s", path, report.text_en)
        self._status("stick", path=path, outcome=report.outcome, text=report.text)
        if self.config.tell:
            self._put("stick_seen", report.data(path, stick))


def _no_partitions(path: str) -> StickReport:
    return StickReport(
        "failed", "Clé imager branchée : ses rapports n'ont pas pu être lus. Ils restent sur "
        "la clé. Appelez un responsable.", f"Imager stick plugged in, not synced: the kernel "
        f"shows no partition of {path} after {PARTITION_WAIT:.0f} s (a loop device attached "
        f"without --partscan?): `partx --add {path}`, then `imager boot usb-sync {path} "
        "--station URL`. The reports stay on the stick.")


def _identity(path: str, settings: Settings) -> str:
    """The stick's identity (its serial, or a loop's backing file), else its path."""
    try:
        return lsblk.probe(path, settings).key
    except ImagerError:
        return path

