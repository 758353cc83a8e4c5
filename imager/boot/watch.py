"""How far each laptop's network boot went, and why it stopped: the boot service's
watch, so a Secure Boot refusal shows on the board instead of a silent hang.

A laptop's firmware may refuse shim (its Secure Boot database lacks Microsoft's
third-party UEFI CA, or revokes that shim: an ex-Windows laptop after the SBAT
and dbx updates); shim may refuse GRUB (the laptop holds a newer SBAT level than
the station's GRUB); GRUB may refuse the kernel. The laptop then shows an error
or moves on to its next boot option, and nothing reaches the station. What the
station does see is each file fetched: dnsmasq's log (proxy-DHCP answers, TFTP
transfers) and the boot HTTP server's requests. `Trails` follows each MAC
address through the stages of imager.registry.netboot and names the problem
when a boot stays too long between two stages, or starts again from the
beginning after one (the firmware gave up that path); `BootWatch` feeds it from
the log and the HTTP server, learns which MAC address an IPv4 address is from
the kernel's neighbour table, sees enrolments in the registry, and writes what
changed there for the board.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from imager.boot import dnsmasq
from imager.host.netif import neighbours
from imager.registry import netboot
from imager.registry.boot import BootDecision, clean_mac
from imager.registry.netboot import Seen
from imager.store.db import Registry, utcnow

log = logging.getLogger("imager.boot")

# stage -> its rank in a boot (a lower rank seen later is a new boot)
RANK = {"offered": 0, "shim": 1, "undionly": 1, "snponly": 1, "grub": 2, "config": 3,
        "asked": 4, "kernel": 5, "initrd": 6, "enrolled": 7}
FIRST_LOADERS = {dnsmasq.SHIM: "shim", dnsmasq.UNDIONLY: "undionly",
                 dnsmasq.SNPONLY: "snponly"}
LIVE_FILES = frozenset({"live.img", "imager.img", "station.img"})
LATE = timedelta(seconds=10)     # see _late()
FORGET = timedelta(hours=12)     # a boot quiet that long is no longer followed in memory


@dataclass(frozen=True)
class Problem:
    """Where a boot stopped, how long it may take to go on from there, and what it
    means (English, for the log; the board says it in French, imager.station.web)."""

    stage: str
    seconds: float
    meaning: str


PROBLEMS = {
    "no_loader": Problem("offered", 60, "the firmware was told which loader to fetch and "
                         "never fetched it (TFTP blocked between the laptop and the station?)"),
    "firmware_refused_shim": Problem("shim", 45, "the firmware fetched shim and did not run "
                                     "it: Secure Boot refused it (no Microsoft third-party "
                                     "UEFI CA in its database, or shim revoked by dbx)"),
    "ipxe_no_script": Problem("undionly", 60, "iPXE was fetched but never asked for its "
                              "script (it could not drive the network card?)"),
    "shim_refused_grub": Problem("grub", 45, "shim fetched GRUB and did not run it: Secure "
                                 "Boot (SBAT) refused this GRUB"),
    "no_station_http": Problem("config", 60, "the loader started but never asked the "
                               "station over HTTP (port blocked, or its network driver "
                               "failed)"),
    "kernel_not_fetched": Problem("asked", 60, "the station said to boot the live system "
                                  "and the loader never fetched its kernel"),
    "kernel_refused": Problem("kernel", 120, "the loader fetched the kernel and never asked "
                              "for the live system: the kernel was refused (Secure Boot) or "
                              "did not fit in memory"),
    "live_silent": Problem("initrd", 300, "the live system was fetched and its agent never "
                           "enrolled with the boot token (see the laptop's screen)"),
}
STALLS = {p.stage: code for code, p in PROBLEMS.items()}
STALLS["snponly"] = "ipxe_no_script"
# Stopped at these stages, a boot that starts again from the beginning gave up that
# path at once: the same problem, without waiting.
GAVE_UP = {"shim": "firmware_refused_shim", "grub": "shim_refused_grub"}


class Trails:
    """Each MAC address's boot, fed with what the station saw (thread-safe)."""

    def __init__(self, *, stalls: dict[str, float] | None = None) -> None:
        self.seconds = {code: p.seconds for code, p in PROBLEMS.items()} | (stalls or {})
        self._by_mac: dict[str, Seen] = {}
        self._changed: set[str] = set()
        self._lock = threading.Lock()

    def get(self, mac: str) -> Seen | None:
        with self._lock:
            return self._by_mac.get(mac)

    def offered(self, mac: str, loader: str, now: datetime,
                firmware: str | None = None) -> None:
        """The proxy-DHCP answered `mac` (`firmware`: bios or uefi) with `loader`: a
        new boot, unless it is iPXE, loaded by that boot, asking for its script."""
        with self._lock:
            seen = self._by_mac.get(mac)
            if seen is not None and (_late(seen, "offered", now) or (
                    loader == dnsmasq.IPXE_SCRIPT and RANK[seen.stage] <= RANK["undionly"])):
                if seen.firmware is None and firmware:      # what the late line tells
                    self._put(replace(seen, firmware=firmware))
                return
            firmware = firmware or (seen.firmware if seen is not None else None)
            problem = GAVE_UP.get(seen.stage) if seen is not None else None
            if seen is None:
                self._put(Seen(mac, "offered", now, now, firmware=firmware))
            elif problem:
                self._put(replace(seen, stage="offered", stage_at=now, firmware=firmware,
                                  problem=problem, problem_at=now))
                _say(seen, problem)
            else:
                self._put(replace(seen, stage="offered", stage_at=now, first_at=now,
                                  firmware=firmware, decision=None,
                                  problem=seen.problem if seen.stage == "offered" else None,
                                  problem_at=seen.problem_at if seen.stage == "offered"
                                  else None))

    def sent(self, mac: str, name: str, address: str, now: datetime) -> None:
        """TFTP sent `name` to `mac` (at `address`)."""
        if name in FIRST_LOADERS:
            stage = FIRST_LOADERS[name]
        elif name == dnsmasq.GRUB:
            stage = "grub"
        elif name in (dnsmasq.GRUB_CFG, dnsmasq.IPXE_SCRIPT):
            stage = "config"
        else:
            return
        self._reach(mac, stage, now, address=address, loader=stage in FIRST_LOADERS.values())

    def asked(self, decision: BootDecision, address: str, now: datetime) -> None:
        """The loader asked the station what to boot, and got `decision`."""
        what = "pairing" if decision.action == "live" and not decision.token \
            else decision.action
        self._reach(decision.mac, "asked", now, address=address, serial=decision.serial,
                    decision=what, machine_id=decision.machine_id)

    def fetched(self, mac: str, name: str, address: str, now: datetime) -> None:
        """The boot HTTP server was asked for the file `name`."""
        if name == "vmlinuz":
            self._reach(mac, "kernel", now, address=address)
        elif name in LIVE_FILES:
            self._reach(mac, "initrd", now, address=address)

    def enrolled(self, mac: str, now: datetime) -> None:
        self._reach(mac, "enrolled", now)

    def _reach(self, mac: str, stage: str, now: datetime, *, loader: bool = False,
               address: str | None = None, serial: str | None = None,
               decision: str | None = None, machine_id: int | None = None) -> None:
        with self._lock:
            seen = self._by_mac.get(mac)
            if seen is None:                  # the station started during this boot
                seen = Seen(mac, stage, now, now)
            if _late(seen, stage, now):
                if seen.address is None and address:
                    self._put(replace(seen, address=address))
                return
            if RANK[stage] < RANK[seen.stage] or (RANK[stage] == RANK[seen.stage]
                                                  and stage != seen.stage):
                seen = replace(seen, first_at=now, decision=None, problem=None,
                               problem_at=None)
            moved = stage != seen.stage or decision not in (None, seen.decision)
            seen = replace(seen, stage=stage, stage_at=now if moved else seen.stage_at,
                           loaders=(seen.loaders + 1 if loader else 0 if stage == "asked"
                                    else seen.loaders),
                           address=address or seen.address, serial=serial or seen.serial,
                           decision=decision or seen.decision,
                           machine_id=machine_id or seen.machine_id)
            if moved and seen.problem and RANK[stage] > RANK[PROBLEMS[seen.problem].stage]:
                seen = replace(seen, problem=None, problem_at=None)
            self._put(seen)

    def stalls(self, now: datetime) -> list[Seen]:
        """Name the problem of each boot that stayed too long at its stage."""
        found = []
        with self._lock:
            for mac in [m for m, s in self._by_mac.items() if now - s.stage_at > FORGET]:
                del self._by_mac[mac]             # its row stays in the registry
            for seen in list(self._by_mac.values()):
                code = STALLS.get(seen.stage)
                if code is None or seen.problem == code or _not_expected(seen):
                    continue
                if now - seen.stage_at >= timedelta(seconds=self.seconds[code]):
                    seen = replace(seen, problem=code, problem_at=now)
                    self._put(seen)
                    found.append(seen)
                    _say(seen, code)
        return found

    def waiting_enrolment(self) -> list[Seen]:
        with self._lock:
            return [s for s in self._by_mac.values() if s.stage == "initrd"]

    def changed(self) -> list[Seen]:
        """The boots that changed since the last call."""
        with self._lock:
            out = [self._by_mac[mac] for mac in sorted(self._changed)]
            self._changed.clear()
            return out

    def _put(self, seen: Seen) -> None:
        self._by_mac[seen.mac] = seen
        self._changed.add(seen.mac)


def _late(seen: Seen, stage: str, now: datetime) -> bool:
    """Whether an earlier stage of the same boot comes after a later one: dnsmasq's
    log is read twice a second while the HTTP answers are told at once, so the
    TFTP line of a loader's script may come after that loader asked the station.
    A laptop cannot boot again that fast (its firmware alone takes longer)."""
    return RANK[stage] < RANK[seen.stage] and now - seen.stage_at < LATE


def _not_expected(seen: Seen) -> bool:
    """Whether the boot is where it should stay: at the menu or its local disk
    (asked, not told to boot the live system), or waiting for a pairing code
    (the live system without a token enrols only once a technician types it)."""
    return (seen.stage == "asked" and seen.decision not in ("live", "pairing")) or (
        seen.stage == "initrd" and seen.decision == "pairing")


def _say(seen: Seen, code: str) -> None:
    log.warning("network boot of %s (%s) stopped after %s: %s [%s]", seen.mac,
                seen.address or "no address yet", seen.stage, PROBLEMS[code].meaning, code)


class BootWatch:
    """The thread that feeds `Trails` from dnsmasq's log and writes what changed to
    the registry; the HTTP server calls `asked` and `fetched` itself."""

    POLL = 0.5           # seconds between two reads of the log
    CHECK = 5.0          # seconds between two looks for stalls and enrolments

    def __init__(self, registry: Registry, *, log_file: Path, tftp_root: Path,
                 interface: str, stalls: dict[str, float] | None = None) -> None:
        self.registry, self.log_file, self.interface = registry, log_file, interface
        self.trails = Trails(stalls=stalls)
        self._reader = dnsmasq.LogReader(tftp_root)
        self._macs: dict[str, str] = {}           # address -> MAC, from the HTTP queries
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset = 0

    def start(self) -> None:
        self._offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._thread = threading.Thread(target=self._run, name="boot-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._save()

    # -- the HTTP server's side

    def asked(self, decision: BootDecision, address: str) -> None:
        mac = clean_mac(decision.mac)
        if mac is not None:
            self._macs[address] = mac
            self.trails.asked(replace(decision, mac=mac), address, utcnow())

    def fetched(self, name: str, address: str) -> None:
        mac = self.mac_of(address)
        if mac is not None:
            self.trails.fetched(mac, name, address, utcnow())

    def mac_of(self, address: str) -> str | None:
        return self._macs.get(address) or neighbours(self.interface).get(address)

    # -- the thread

    def _run(self) -> None:
        last_check = 0.0
        while not self._stop.wait(self.POLL):
            try:
                self._read_log()
                last_check += self.POLL
                if last_check >= self.CHECK:
                    last_check = 0.0
                    self._check()
                self._save()
            except Exception:             # the watch must never stop the boot service
                log.exception("boot watch")

    def _read_log(self) -> None:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1           # a line being written waits for its end
        self._offset += end
        now = utcnow()
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            event = self._reader.read(line)
            if isinstance(event, dnsmasq.Offered):
                self.trails.offered(event.mac, event.loader, now, event.firmware)
            elif isinstance(event, dnsmasq.Sent):
                mac = self.mac_of(event.address)
                if mac is not None:
                    self.trails.sent(mac, event.name, event.address, now)

    def _check(self) -> None:
        now = utcnow()
        waiting = self.trails.waiting_enrolment()
        if waiting:
            with self.registry.session(readonly=True) as s:
                done = [w.mac for w in waiting if netboot.enrolled_since(s, w.mac, w.first_at)]
            for mac in done:
                self.trails.enrolled(mac, now)
        self.trails.stalls(now)

    def _save(self) -> None:
        changed = self.trails.changed()
        if changed:
            with self.registry.session() as s:
                netboot.record(s, changed)
