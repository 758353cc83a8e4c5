"""The live session: what the live system's /init runs (`python3 -m imager.boot.session`).

1. reads the kernel command line (`imager.boot.cmdline`);
2. brings the network up (`imager.boot.network`): `network ip=...`, or
   `network-failed reason=...` (and goes on trying);
3. starts the agent, `python3 -m imager agent run --machine --station URL
   --boot-token T --ca CA --spool RUN/spool --status-file RUN/status.json`
   (`--boot usb` from a stick): `agent-started pid=...`;
4. follows the agent's status file (`AgentConfig.status`): `enrolled agent=N`,
   `pending agent=N code=...`, `job ...`, `failed reason=...`.

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

from imager.boot import stages
from imager.boot.cmdline import CA_PATH, LiveCmdline, parse_cmdline
from imager.boot.initscript import RUN, UDHCPC_SCRIPT
from imager.boot.network import Lease, Network
from imager.boot.screen import SEARCHING, panel, render

UNREACHABLE_ATTEMPTS = 3      # attempts of the agent before the screen says so
UNREACHABLE_SECONDS = 45.0    # or seconds without an answer since the agent started
REDRAW_SECONDS = 20.0         # the screen is drawn again (a kernel message may cross it)
RESTART_SECONDS = 8.0         # the "done" screen stays that long before the restart
# `imager agent run --machine` exits with this when the station says the laptop is
# done (imager.cli.agent.LAPTOP_DONE): the live system restarts the laptop.
LAPTOP_DONE = 3


class Watch:
    """The agent's status (the JSON it writes) -> the stages to print, each once.
    `current` is what the screen shows: the last stage and its fields."""

    def __init__(self, started: float) -> None:
        self.started = started
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
        if exit_code == LAPTOP_DONE:
            return stages.DONE, {"agent": self.agent or "-"}, (stages.DONE,)
        if exit_code is not None:
            return self._failed(stages.AGENT_EXITED, status=str(exit_code))
        state = (status or {}).get("state")
        waited = now - self.started
        s = dict(status or {})
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
            total = float(s.get("total") or 0)
            percent = 100.0 * float(s.get("done") or 0) / total if total else 0.0
            fields = {"job": str(s.get("job")), "kind": str(s.get("kind")),
                      "phase": str(s.get("phase")), "percent": f"{percent:.1f}"}
            return stages.JOB, fields, (stages.JOB, fields["job"], fields["phase"],
                                        int(percent // 10))
        return None

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
                 screen: Screen | None = None) -> None:
        self.cmd, self.run_dir = cmd, run_dir
        self.screen = screen or Screen()
        self.info: dict[str, str] = {"station": cmd.station or "-"}

    def show(self, stage: str, fields: Mapping[str, str] | None = None) -> None:
        self.screen.show(stage, {**self.info, **(fields or {})})

    def run(self) -> None:
        for problem in self.cmd.problems:
            print(f"imager-live: {problem}", flush=True)
        if self.cmd.station is None:
            self.offline()
            return
        self.show(SEARCHING)
        network = Network(self.run_dir, UDHCPC_SCRIPT)
        lease = network.bring_up(self.cmd.mac, on_failure=self._network_failed)
        self.info.update(ip=lease.ip, mac=lease.mac)
        say(stages.NETWORK, ip=lease.ip, iface=lease.iface, mac=lease.mac, router=lease.router)
        self.show(stages.NETWORK)
        if self.cmd.station.startswith("https:") and not Path(CA_PATH).is_file():
            say(stages.FAILED, reason=stages.NO_STATION_CA, ca=CA_PATH)
            self.show(stages.FAILED, {"reason": stages.NO_STATION_CA})
            self.idle()
        else:
            self.follow(self.start_agent(lease))

    def _network_failed(self, reason: str, fields: dict[str, str]) -> None:
        say(stages.NETWORK_FAILED, reason=reason, **fields)
        self.show(stages.NETWORK_FAILED, {"reason": reason, **fields})

    def offline(self) -> None:
        """No station named: from a USB stick, the offline path (the agent with the
        stick's offline kit, to come); else a failure to show."""
        if self.cmd.boot == "usb":
            say(stages.OFFLINE, boot="usb")
            self.show(stages.OFFLINE)
        else:
            say(stages.FAILED, reason=stages.NO_STATION)
            self.show(stages.FAILED, {"reason": stages.NO_STATION})
        self.idle()

    def agent_argv(self, lease: Lease) -> list[str]:
        """The agent's command line."""
        assert self.cmd.station is not None
        argv = [sys.executable, "-m", "imager", "agent", "run", "--machine",
                "--station", self.cmd.station, "--spool", str(self.run_dir / "spool"),
                "--status-file", str(self.run_dir / "status.json"),
                "--name", agent_name(lease)]
        if Path(CA_PATH).is_file():
            argv += ["--ca", CA_PATH]
        if self.cmd.token:
            argv += ["--boot-token", self.cmd.token]
        if self.cmd.boot == "usb":
            argv += ["--boot", "usb"]
        return argv

    def start_agent(self, lease: Lease) -> subprocess.Popen[bytes]:
        log = None if _serial_console() else open(self.run_dir / "agent.log", "ab")
        proc = subprocess.Popen(self.agent_argv(lease), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT if log else None)
        say(stages.AGENT_STARTED, pid=proc.pid)
        self.show(stages.AGENT_STARTED)
        return proc

    def follow(self, agent: subprocess.Popen[bytes]) -> None:
        watch = Watch(time.monotonic())
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
            if code == LAPTOP_DONE:
                self.restart()
            if code is not None:
                self.idle()
            time.sleep(0.5)

    def restart(self) -> NoReturn:
        """Restart the laptop (the boot service then boots its own disk)."""
        time.sleep(RESTART_SECONDS)
        os.sync()
        subprocess.run(["busybox", "reboot", "-f"], check=False)
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


def agent_name(lease: Lease, sys_root: Path = Path("/sys")) -> str:
    """The agent's name on the board: the laptop's serial number, else its MAC."""
    try:
        serial = (sys_root / "class/dmi/id/product_serial").read_text().strip()
    except OSError:
        serial = ""
    if serial and serial.lower() not in ("to be filled by o.e.m.", "default string", "0"):
        return f"portable {serial}"
    return f"portable {lease.mac}"


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
