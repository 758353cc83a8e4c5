"""The live session: what the live system's /init runs (`python3 -m imager.boot.session`).

1. reads the kernel command line (`imager.boot.cmdline`);
2. brings the network up (`imager.boot.network`): `network ip=...`, or
   `network-failed reason=...` (and goes on trying);
3. starts the agent, `python3 -m imager agent run --machine --station URL
   --boot-token T --ca CA --spool RUN/spool --status-file RUN/status.json`:
   `agent-started pid=...`;
4. follows the agent's status file (`AgentConfig.status`): `enrolled agent=N`,
   `pending agent=N code=...`, `job ...`, `failed reason=...`.

From a USB stick (`imager.boot=usb`), first the stick's data partition is mounted
(`stick part=...`, `imager.boot.stick`); then, with `imager.station=`, a network
and the station accepting connections, the online agent as above (`--boot usb`,
its spool on the stick); else (no station named, no interface, no link, no
address, or the station silent, each within a bounded time) the offline agent:
`offline reason=... pid=...` running `imager agent run --machine --offline-kit
<stick>/kit --erase --once --spool <stick>/spool --boot usb`, its jobs (`job
...`), then `offline-done erased=N installed=N` or `failed reason=erase-failed|
image-failed|no-drive`; the stick is synced and unmounted, and after the done
screen the laptop powers off (`poweroff`): restarted, it would boot the stick again.

Each stage is one `IMAGER-LIVE` line on the console (`imager.boot.stages`) and one
screen on tty1 (`imager.boot.screen`). The session is the live system's own
supervisor: it starts the DHCP client and the agent as long-running processes.
`Watch` (pure) turns the agent's status into stages."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from imager.boot import stages, stick
from imager.boot.cmdline import CA_PATH, LiveCmdline, parse_cmdline
from imager.boot.initscript import RUN, UDHCPC_SCRIPT
from imager.boot.network import Lease, Network, wired_interfaces
from imager.boot.screen import SEARCHING, panel, render
from imager.boot.usb_data import LABEL

UNREACHABLE_ATTEMPTS = 3      # attempts of the agent before the screen says so
UNREACHABLE_SECONDS = 45.0    # or seconds without an answer since the agent started
REDRAW_SECONDS = 20.0         # the screen is drawn again (a kernel message may cross it)
RESTART_SECONDS = 8.0         # the "done" screen stays that long before the restart
POWEROFF_SECONDS = 60.0       # the offline "done" screen stays that long before power-off
STICK_MOUNT = f"{RUN}/stick"  # the stick's data partition, from USB
# `imager agent run --machine` exits with this when the station says the laptop is
# done (imager.cli.agent.LAPTOP_DONE): the live system restarts the laptop.
LAPTOP_DONE = 3


class Watch:
    """The agent's status (the JSON it writes) -> the stages to print, each once.
    `current` is what the screen shows: the last stage and its fields."""

    def __init__(self, started: float, *, offline: bool = False) -> None:
        self.started = started
        self.offline = offline        # the offline agent: only its jobs are stages
        self.agent: str | None = None
        self.current: tuple[str, dict[str, str]] = (stages.AGENT_STARTED, {})
        self._printed: tuple[object, ...] | None = None

    def update(self, status: Mapping[str, Any] | None, *, now: float,
               exit_code: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """The new stages to print (often none) for the agent's `status` now."""
        found = self._stage(status, now, exit_code)
        if found is None:
            return []
        stage, fields, key = found
        self.current = (stage, fields)
        if key == self._printed:
            return []
        self._printed = key
        if stage == stages.JOB:      # the line says the tens of percent, the screen more
            fields = {**fields, "percent": str(int(float(fields["percent"]) // 10 * 10))}
        return [(stage, fields)]

    def _stage(self, status: Mapping[str, Any] | None, now: float, exit_code: int | None
               ) -> tuple[str, dict[str, str], tuple[object, ...]] | None:
        state = (status or {}).get("state")
        s = dict(status or {})
        if self.offline:              # its end is judged from the spool (imager.boot.stick)
            return self._job(s) if state == "job" and exit_code is None else None
        if exit_code == LAPTOP_DONE:
            return stages.DONE, {"agent": self.agent or "-"}, (stages.DONE,)
        if exit_code is not None:
            return self._failed(stages.AGENT_EXITED, status=str(exit_code))
        waited = now - self.started
        if state is None or state == "unreachable":
            if state and not s.get("trusted", True):
                return self._failed(stages.STATION_NOT_TRUSTED)
            if int(s.get("attempt") or 0) >= UNREACHABLE_ATTEMPTS \
                    or waited >= UNREACHABLE_SECONDS:
                return self._failed(stages.STATION_UNREACHABLE)
            return None
        if state == "refused":
            return self._failed(stages.STATION_REFUSED)
        if state == "pending":
            self.agent = str(s.get("agent"))
            fields = {"agent": self.agent, "code": str(s.get("code") or "-")}
            return stages.PENDING, fields, (stages.PENDING, fields["code"])
        if state in ("registered", "job-ended"):
            self.agent = str(s.get("agent") or self.agent)
            return stages.ENROLLED, {"agent": self.agent}, (stages.ENROLLED, self.agent)
        if state == "job":
            return self._job(s)
        return None

    def _job(self, s: Mapping[str, Any]) -> tuple[str, dict[str, str], tuple[object, ...]]:
        total = float(s.get("total") or 0)
        percent = 100.0 * float(s.get("done") or 0) / total if total else 0.0
        fields = {"job": str(s.get("job")), "kind": str(s.get("kind")),
                  "phase": str(s.get("phase")), "percent": f"{percent:.1f}"}
        return stages.JOB, fields, (stages.JOB, fields["job"], fields["kind"], fields["phase"],
                                    int(percent // 10))

    def _failed(self, reason: str, **extra: str
                ) -> tuple[str, dict[str, str], tuple[object, ...]]:
        fields = {"reason": reason, **extra}
        return stages.FAILED, fields, (stages.FAILED, reason)


class Screen:
    """The laptop's own screen (tty1): the panel of the stage, drawn again now and
    then. A screen that cannot be written (no console) is not an error."""

    def __init__(self, tty: Path = Path("/dev/tty1")) -> None:
        self.tty = tty
        self.shown: tuple[str, dict[str, str]] = (stages.START, {})
        self.drawn = 0.0

    def show(self, stage: str, fields: Mapping[str, str]) -> None:
        self.shown = (stage, dict(fields))
        self.draw()

    def draw(self) -> None:
        self.drawn = time.monotonic()
        try:
            fd = os.open(self.tty, os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            return
        try:
            rows, columns = _size(fd)
            text = render(panel(*self.shown), columns=columns, rows=rows)
            os.write(fd, text.replace("\n", "\r\n").encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def _size(fd: int) -> tuple[int, int]:
    """(rows, columns) of a terminal; 24 x 64 when it does not say."""
    try:
        rows, columns = struct.unpack("HH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 4))
    except OSError:
        return 24, 64
    return (rows or 24), (columns or 64)


def say(stage: str, **fields: object) -> None:
    """One stage line on the console (the session's stdout)."""
    print(stages.line(stage, **fields), flush=True)


class Session:
    """One run of the live session; `run()` never returns while the laptop is up."""

    def __init__(self, cmd: LiveCmdline, *, run_dir: Path = Path(RUN),
                 screen: Screen | None = None, stick_mount: Path = Path(STICK_MOUNT)) -> None:
        self.cmd, self.run_dir = cmd, run_dir
        self.screen = screen or Screen()
        self.stick_mount = stick_mount
        self.stick: Path | None = None        # the stick's data partition, mounted
        self.info: dict[str, str] = {"station": cmd.station or "-", "boot": cmd.boot}
        self.mac: str | None = cmd.mac
        self.network_failure = stages.NO_STATION

    def show(self, stage: str, fields: Mapping[str, str] | None = None) -> None:
        self.screen.show(stage, {**self.info, **(fields or {})})

    def run(self) -> None:
        for problem in self.cmd.problems:
            print(f"imager-live: {problem}", flush=True)
        if self.cmd.boot == "usb":
            self.from_stick()
            return
        if self.cmd.station is None:
            self.fail(stages.NO_STATION)
        self.show(SEARCHING)
        network = Network(self.run_dir, UDHCPC_SCRIPT)
        self.online(network.bring_up(self.cmd.mac, on_failure=self._network_failed),
                    self.run_dir / "spool")

    def online(self, lease: Lease, spool: Path) -> None:
        """The station's agent, its events in `spool`."""
        self._network(lease)
        if self.cmd.station and self.cmd.station.startswith("https:") \
                and not Path(CA_PATH).is_file():
            say(stages.FAILED, reason=stages.NO_STATION_CA, ca=CA_PATH)
            self.show(stages.FAILED, {"reason": stages.NO_STATION_CA})
            self.idle()
        self.follow(self.start_agent(spool))

    def _network(self, lease: Lease) -> None:
        self.mac = lease.mac
        self.info.update(ip=lease.ip, mac=lease.mac)
        say(stages.NETWORK, ip=lease.ip, iface=lease.iface, mac=lease.mac, router=lease.router)
        self.show(stages.NETWORK)

    def _network_failed(self, reason: str, fields: dict[str, str]) -> None:
        self.network_failure = reason
        say(stages.NETWORK_FAILED, reason=reason, **fields)
        self.show(stages.NETWORK_FAILED, {"reason": reason, **fields})

    def fail(self, reason: str, **fields: str) -> NoReturn:
        """Say `failed reason=...` and keep its screen."""
        say(stages.FAILED, reason=reason, **fields)
        self.show(stages.FAILED, {"reason": reason, **fields})
        self.idle()

    # -- from a USB stick -------------------------------------------------------------

    def from_stick(self) -> None:
        """The stick's data partition mounted, then online (a network and the station
        answering) or offline (with the stick's kit)."""
        self.stick = self.mount_stick()
        if self.cmd.station is not None:
            self.show(SEARCHING)
            network = Network(self.run_dir, UDHCPC_SCRIPT)
            lease = network.try_up(self.cmd.mac, on_failure=self._network_failed)
            if lease is not None and stick.reachable(self.cmd.station):
                self.online(lease, (self.stick or self.run_dir) / "spool")
                return
            if lease is not None:
                self._network(lease)
                self.network_failure = stages.STATION_UNREACHABLE
            network.close()
        if self.stick is None:
            self.fail(stages.NO_STICK)
        self.offline(self.stick, self.network_failure)

    def mount_stick(self) -> Path | None:
        """The stick's data partition, mounted read-write (`stick part=...`); None
        when there is none or it cannot be mounted (said on the console)."""
        part = stick.find_data()
        if part is None:
            print(f"imager-live: no partition labelled {LABEL}", flush=True)
            return None
        why = stick.mount_data(part, self.stick_mount)
        if why is not None:
            print(f"imager-live: cannot mount {part}: {why}", flush=True)
            return None
        say(stages.STICK, part=part, mount=self.stick_mount)
        self.info["stick"] = part
        self.show(stages.STICK)
        return self.stick_mount

    def offline(self, data: Path, reason: str) -> NoReturn:
        """The offline agent with the stick's kit; its jobs on the screen; then the
        stick released and the outcome shown (powered off when all went well)."""
        kit, spool = data / "kit", data / "spool"
        self.info.pop("station", None)        # not called: the stick's kit decides
        before = stick.spooled(spool)
        log = None if _serial_console() else open(self.run_dir / "agent.log", "ab")
        proc = subprocess.Popen(self.offline_argv(kit, spool), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT if log else None)
        say(stages.OFFLINE, reason=reason, pid=proc.pid)
        self.show(stages.OFFLINE, {"reason": reason})
        code = self.follow(proc, offline=True)
        stage, fields = (stages.FAILED, {"reason": stages.AGENT_EXITED, "status": str(code)}) \
            if code else stick.outcome(stick.new_events(spool, before),
                                       image=stick.kit_has_image(kit))
        self.release_stick()
        say(stage, **fields)
        self.show(stage, fields)
        if stage == stages.OFFLINE_DONE:
            self.power_off(POWEROFF_SECONDS)
        self.idle()

    def offline_argv(self, kit: Path, spool: Path) -> list[str]:
        return [sys.executable, "-m", "imager", "agent", "run", "--machine",
                "--offline-kit", str(kit), "--erase", "--once", "--spool", str(spool),
                "--boot", "usb", "--status-file", str(self.run_dir / "status.json"),
                "--name", agent_name(self.mac)]

    def release_stick(self) -> None:
        """The stick synced and unmounted: it may be pulled out."""
        if self.stick is not None and not stick.release(self.stick):
            print(f"imager-live: {self.stick} stayed busy: remounted read-only", flush=True)
        self.stick = None

    # -- the agent ---------------------------------------------------------------------

    def agent_argv(self, spool: Path) -> list[str]:
        """The online agent's command line."""
        assert self.cmd.station is not None
        argv = [sys.executable, "-m", "imager", "agent", "run", "--machine",
                "--station", self.cmd.station, "--spool", str(spool),
                "--status-file", str(self.run_dir / "status.json"),
                "--name", agent_name(self.mac)]
        if Path(CA_PATH).is_file():
            argv += ["--ca", CA_PATH]
        if self.cmd.token:
            argv += ["--boot-token", self.cmd.token]
        if self.cmd.boot == "usb":
            argv += ["--boot", "usb"]
        return argv

    def start_agent(self, spool: Path) -> subprocess.Popen[bytes]:
        log = None if _serial_console() else open(self.run_dir / "agent.log", "ab")
        proc = subprocess.Popen(self.agent_argv(spool), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT if log else None)
        say(stages.AGENT_STARTED, pid=proc.pid)
        self.show(stages.AGENT_STARTED)
        return proc

    def follow(self, agent: subprocess.Popen[bytes], *, offline: bool = False) -> int:
        """Follow the agent's status on the console and the screen. Online: until it
        stops (never returns). Offline: its exit status."""
        watch = Watch(time.monotonic(), offline=offline)
        status_file = self.run_dir / "status.json"
        while True:
            code = agent.poll()
            before = watch.current
            for stage, fields in watch.update(_read_status(status_file), now=time.monotonic(),
                                              exit_code=code):
                say(stage, **fields)
            if watch.current != before:
                self.show(*watch.current)
            elif time.monotonic() - self.screen.drawn >= REDRAW_SECONDS:
                self.screen.draw()
            if code is not None and offline:
                return code
            if code == LAPTOP_DONE:
                self.done()
            if code is not None:
                self.idle()
            time.sleep(0.5)

    def done(self) -> NoReturn:
        """The station says the laptop is done: restart it (the boot service then
        boots its own disk); from a stick, power it off (it would boot the stick)."""
        if self.cmd.boot == "usb":
            self.release_stick()
            self.power_off(RESTART_SECONDS)
        time.sleep(RESTART_SECONDS)
        os.sync()
        subprocess.run(["busybox", "reboot", "-f"], check=False)
        self.idle()

    def power_off(self, after: float) -> NoReturn:
        """Keep the screen `after` seconds, then power the laptop off."""
        deadline = time.monotonic() + after
        while time.monotonic() < deadline:
            time.sleep(min(REDRAW_SECONDS, max(0.0, deadline - time.monotonic())))
            self.screen.draw()
        os.sync()
        say(stages.POWEROFF)
        subprocess.run(["busybox", "poweroff", "-f"], check=False)
        self.idle()

    def idle(self) -> NoReturn:
        """Keep the screen as it is, for a person to read; never returns."""
        while True:
            time.sleep(REDRAW_SECONDS)
            self.screen.draw()


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _serial_console() -> bool:
    """Whether /dev/console is a serial port (the last of the active consoles)."""
    try:
        active = Path("/sys/class/tty/console/active").read_text().split()
    except OSError:
        return False
    return bool(active) and active[-1].startswith("ttyS")


def agent_name(mac: str | None, sys_root: Path = Path("/sys")) -> str:
    """The agent's name on the board: the laptop's serial number, else its MAC (the
    booted one, else its first wired interface's)."""
    try:
        serial = (sys_root / "class/dmi/id/product_serial").read_text().strip()
    except OSError:
        serial = ""
    if serial and serial.lower() not in ("to be filled by o.e.m.", "default string", "0"):
        return f"portable {serial}"
    if mac is None:
        wired = wired_interfaces(sys_root) if (sys_root / "class/net").is_dir() else []
        mac = wired[0].mac if wired else None
    return f"portable {mac or 'sans numéro'}"


def main() -> int:
    try:
        cmd = parse_cmdline(Path("/proc/cmdline").read_text())
    except OSError as exc:
        print(f"imager-live: cannot read the kernel command line: {exc}", flush=True)
        cmd = LiveCmdline()
    Session(cmd).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
