"""Helpers of the laptops' end-to-end proof (tests/test_laptop_e2e.py, bench/laptops.py):
a real station on a BenchNet, donor disks with markers, a timeline per laptop.

    with BenchNet(work / "net") as net:
        station = BenchStation(net, work / "data", live_folder)
        station.start("--laptop-image", "lab")   # `imager serve` + `imager boot serve`
        station.cli("donors", "add", ...)        # the real CLI on the station's data dir

The station runs in the bench's station namespace, as it would on the bench
machine: `imager serve` listening on the bench address (HTTPS with the station's
own CA, the default away from loopback) and `imager boot serve` on the bench
interface (its default station URL, https://<bench address>:8470). The test
reads the registry (SQLite) directly and calls the CLI on the same data dir;
the HTTPS API is reached from inside the namespace (curl, the station's CA).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootnet import BenchError, BenchNet, Laptop, clean_console, stop_process
from sqlalchemy import select

from imager.profile import boot_report
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import Document, Drive, Job, Machine

ROOT = Path(__file__).resolve().parents[1]
STATION_PORT = 8470                      # imager boot serve's default station URL port
# A station stops once its open requests end: a laptop's long poll, then the TLS
# closing of connections whose laptop was switched off (asyncio waits 30 s for it).
STOP_SECONDS = 90
MiB = 1 << 20
GiB = 1 << 30


# -- the station on the bench -------------------------------------------------------

class BenchStation:
    """`imager serve` and `imager boot serve` in the bench's station namespace,
    on one data dir; stopped (and checked to stop cleanly) by `stop()`."""

    def __init__(self, net: BenchNet, data: Path, live_folder: Path) -> None:
        self.net, self.data, self.live_folder = net, data, live_folder
        self.url = f"https://{net.station_ip}:{STATION_PORT}"
        self.run_dir = Path("/run/imager-boot") / net.tag
        self.serve_log = net.workdir / "serve.log"
        self.boot_log = net.workdir / "boot-serve.log"
        self._serve: subprocess.Popen[bytes] | None = None
        self._boot: subprocess.Popen[bytes] | None = None
        self.registry: Registry | None = None

    @property
    def ca(self) -> Path:
        return self.data / "keys" / "tls-ca.crt"

    def env(self) -> dict[str, str]:
        return {**os.environ, "IMAGER_DATA_DIR": str(self.data), "PYTHONPATH": str(ROOT),
                "COLUMNS": "200"}

    def start(self, *serve_args: str) -> None:
        """The station (HTTPS on the bench address), then the boot service once the
        station's TLS CA exists (the boot service gives it to the live system)."""
        self._serve = self.net.popen(self.net.station, [
            sys.executable, "-m", "imager", "serve", "--listen",
            f"{self.net.station_ip}:{STATION_PORT}", "--no-local-agent", *serve_args],
            log=self.serve_log, env=self.env())
        self._until(self.healthy, 90, "imager serve answers over HTTPS", self._serve,
                    self.serve_log)
        self._boot = self.net.popen(self.net.station, [
            sys.executable, "-m", "imager", "boot", "serve", "--interface", self.net.bench_if,
            "--files", str(self.live_folder), "--run-dir", str(self.run_dir)],
            log=self.boot_log, env=self.env())
        self._until(lambda: "Arrêt / stop" in _text(self.boot_log), 60,
                    "imager boot serve is ready", self._boot, self.boot_log)
        self.registry = Registry.open(Settings(data_dir=self.data))

    def _until(self, check: Callable[[], bool], seconds: float, what: str,
               proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"not done: {what}; its log ends with:\n"
                                 + "\n".join(_text(log).splitlines()[-25:]))
            time.sleep(0.3)

    def curl(self, path: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """GET `path` of the station's API from the station namespace, over HTTPS
        checked against the station's CA, with the operator's token."""
        token = json.loads((self.data / "tokens.json").read_text())["operator"] \
            if (self.data / "tokens.json").is_file() else ""
        return self.net.run(self.net.station, [
            "curl", "-sS", "--fail", "--max-time", str(int(timeout)), "--cacert",
            str(self.ca), "-H", f"Authorization: Bearer {token}", f"{self.url}{path}"],
            check=False, timeout=timeout + 5)

    def healthy(self) -> bool:
        return self.ca.is_file() and self.curl("/api/v1/health", timeout=3).returncode == 0

    def api(self, path: str) -> Any:
        out = self.curl(path)
        if out.returncode != 0:
            raise BenchError(f"GET {path}: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real `imager` command on the station's data dir (from the host: the
        registry is a file)."""
        proc = subprocess.run([sys.executable, "-m", "imager", *args], capture_output=True,
                              text=True, env=self.env(), timeout=300)
        if check and proc.returncode != 0:
            raise BenchError(f"imager {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def session(self) -> Any:
        """A read-only session on the station's registry."""
        assert self.registry is not None, "start() the station first"
        return self.registry.session(readonly=True)

    def machine(self, serial: str) -> Machine | None:
        with self.session() as s:
            found = s.scalar(select(Machine).where(Machine.serial == serial))
            if found is not None:
                s.expunge(found)
            return found

    def jobs(self, machine_id: int, kind: str) -> list[Job]:
        """The `kind` jobs of the machine's drives, oldest first."""
        with self.session() as s:
            drives = select(Drive.id).where(Drive.machine_id == machine_id)
            found = list(s.scalars(select(Job).where(Job.kind == kind,
                                                     Job.drive_id.in_(drives)).order_by(Job.id)))
            for job in found:
                s.expunge(job)
            return found

    def job_ended(self, machine_id: int, kind: str, success: str) -> Job | None:
        """The machine's `kind` job once it reached `success`; BenchError once one
        failed (its reason said)."""
        for job in self.jobs(machine_id, kind):
            if job.state in ("failed", "cancelled", "unverified"):
                raise BenchError(f"{kind} job {job.id} is {job.state}: {job.reason}")
            if job.state == success:
                return job
        return None

    def certificate(self, drive_id: int) -> Document | None:
        """The drive's erasure certificate, once issued."""
        with self.session() as s:
            found = s.scalar(select(Document).where(Document.drive_id == drive_id,
                                                    Document.kind == "erasure"))
            if found is not None:
                s.expunge(found)
            return found

    def boot_answers(self, serial: str) -> list[str]:
        """What the boot service answered for `serial`, in order (its log)."""
        return re.findall(rf"boot \w+/\w+ from \S+ mac=\S+ serial='{re.escape(serial)}': "
                          r"(\w+)", _text(self.boot_log))

    def stop(self) -> dict[str, int]:
        """Stop both (SIGTERM); their exit statuses."""
        codes = {}
        if self.registry is not None:
            self.registry.close()
            self.registry = None
        for name, proc in (("boot serve", self._boot), ("serve", self._serve)):
            if proc is not None:
                codes[name] = stop_process(proc, STOP_SECONDS, reap=30)
        self._boot = self._serve = None
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return codes




def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# -- a donor's disk ---------------------------------------------------------------------

@dataclass(frozen=True)
class DonorDisk:
    """A sparse disk image holding marked "donor data": one marker block every
    `every` bytes and one in the last MiB. `prefix` is unique to this disk."""

    path: Path
    size: int
    prefix: bytes
    offsets: tuple[int, ...]


def donor_disk(path: Path, *, size: int = 4 * GiB, every: int = 64 * MiB) -> DonorDisk:
    """Make the disk: at each offset, 64 KiB of text lines that name the marker
    (`DONOR-DATA-<random>-<n>`), as a donor's files would be scattered."""
    prefix = f"DONOR-DATA-{secrets.token_hex(6)}-".encode()
    offsets = [*range(every // 2, size - MiB, every), size - MiB + 4096]
    with open(path, "wb") as fh:
        fh.truncate(size)
        for n, offset in enumerate(offsets):
            line = prefix + f"{n:04d} Mes documents/factures/2026-{n:04d}.pdf\n".encode()
            fh.seek(offset)
            fh.write((line * (64 * 1024 // len(line) + 1))[:64 * 1024])
    return DonorDisk(path, size, prefix, tuple(offsets))


def scan(path: Path, needle: bytes, *, chunk: int = 16 * MiB) -> list[int]:
    """Offsets (in the file) of every chunk holding `needle` (chunks overlap by
    its length: a marker across a boundary is found too)."""
    found: list[int] = []
    overlap = len(needle) - 1
    with open(path, "rb") as fh:
        offset, tail = 0, b""
        while block := fh.read(chunk):
            data = tail + block
            if needle in data:
                found.append(offset - len(tail) + data.index(needle))
            tail = data[-overlap:]
            offset += len(block)
    return found


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- what a laptop went through, and when -----------------------------------------------

@dataclass
class Timeline:
    """Seconds from the laptop's power-on to each stage, in the order reached."""

    laptop: str
    started: float = field(default_factory=time.monotonic)
    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> float:
        seconds = round(time.monotonic() - self.started, 1)
        self.stages.setdefault(stage, seconds)
        return seconds

    def line(self) -> str:
        steps, before = [], 0.0
        for stage, at in self.stages.items():
            steps.append(f"{stage} {at:.0f} s (+{at - before:.0f})")
            before = at
        return f"{self.laptop}: " + ", ".join(steps)


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, vm: Laptop | None = None,
               every: float = 1.0) -> Any:
    """`check()`'s first true value; BenchError after `timeout` (or when the laptop's
    QEMU ended), with the laptop's console end."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        ended = vm is not None and (vm._proc is None or vm._proc.poll() is not None)
        if ended or time.monotonic() > deadline:
            why = "QEMU ended" if ended else f"{timeout:.0f} s passed"
            console = clean_console(vm.text())[-3000:] if vm is not None else ""
            raise BenchError(f"not seen: {what} ({why}). Console:\n{console}")
        time.sleep(every)


# -- a laptop of a donation, from power-on to its installed system ----------------------

LIVE = "IMAGER-LIVE stage="


def live_line(stage: str, **fields: str) -> str:
    """A regex for one `IMAGER-LIVE` line of `stage` holding these fields."""
    return re.escape(LIVE + stage) + "".join(rf"(?=.*\b{k}={re.escape(v)}\b)"
                                             for k, v in fields.items()) + r"[^\n]*"


@dataclass
class LaptopRun:
    """Where one laptop's flow got: its machine and drive, its installed system's
    boot report, the stages' times."""

    vm: Laptop
    timeline: Timeline
    machine_id: int | None = None
    drive_id: int | None = None
    report: dict[str, str] | None = None


Shot = Callable[[str], None]


def to_installed_system(station: BenchStation, vm: Laptop, *, technician: str, why: str,
                        enrol_seconds: float = 900, shot: Shot | None = None,
                        stages: dict[str, float] | None = None) -> LaptopRun:
    """Power `vm` on (a laptop of a donation, its serial taken in) and follow it, as
    the bench sees it, until its installed system reports on its serial console:
    enrolled (console), inventoried (registry; `technician` then confirms reuse,
    `why` said), erased, certified, imaged (registry), done (console), restarted
    with the boot service answering `local`, the boot report. `shot(stage)` is
    called while erasing, imaging, when done and on the installed system. The
    laptop is left running. `stages` receives the stages' times as they come (also
    when a stage is not reached)."""
    vm.start()
    timeline = Timeline(vm.name, started=vm.started_at)
    if stages is not None:
        timeline.stages = stages
    run = LaptopRun(vm, timeline)
    tl, take = run.timeline, shot or (lambda _: None)
    vm.wait_for(live_line("enrolled"), timeout=enrol_seconds)
    tl.mark("enrolled")
    machine = wait_until(lambda: (m := station.machine(vm.serial)) is not None
                         and m.inventory is not None and m, timeout=300,
                         what="the laptop's inventory at the station", vm=vm, every=0.5)
    run.machine_id = machine.id
    tl.mark("inventoried")
    station.cli("machines", "orient", str(machine.id), "reuse", "--technician", technician,
                "--why", why)
    vm.wait_for(live_line("job", kind="erase", phase="verify"), timeout=600)
    take("erasing")
    wait_until(lambda: station.job_ended(machine.id, "erase", "erased"), timeout=1800,
               what="the erase job erased and verified", vm=vm, every=0.5)
    tl.mark("erased")
    run.drive_id = drive_id = station.jobs(machine.id, "erase")[0].drive_id
    wait_until(lambda: station.certificate(drive_id), timeout=300,
               what="the erasure certificate", vm=vm, every=0.5)
    tl.mark("certified")
    vm.wait_for(live_line("job", kind="image", phase="write", percent="30"), timeout=600)
    take("imaging")
    wait_until(lambda: station.job_ended(machine.id, "image", "imaged"), timeout=1800,
               what="the image job written and read back", vm=vm, every=0.5)
    tl.mark("imaged")
    vm.wait_for(live_line("done"), timeout=300)
    tl.mark("done")
    take("done")
    wait_until(lambda: station.boot_answers(vm.serial)[-1:] == ["local"], timeout=600,
               what="the boot service answers local", vm=vm, every=0.5)
    tl.mark("restarted: local")
    found = vm.wait_for(boot_report.MARK + r"[^\n]*target=\S+", timeout=900,
                        after=live_line("done"))
    tl.mark("installed system's boot report")
    run.report = boot_report.parse_report(found.group(0))
    take("installed")
    return run


def console_text(vm: Laptop) -> str:
    return clean_console(vm.text())
