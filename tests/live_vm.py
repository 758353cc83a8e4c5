"""A laptop booting the live system in QEMU (TCG): the kernel and the initrds given
directly (-kernel, one initrd file: live.img, imager.img and the station's CA,
each on a 4-byte boundary, as GRUB and iPXE load them), a user-mode network
(slirp: its DHCP gives 10.0.2.15, the host is 10.0.2.2), SMBIOS strings, the
serial console in a file, QMP for screendumps of the laptop's screen.

    with LiveVM(tmp, system, station=url, ca=pem, token=t) as vm:
        fields = vm.wait_for(stages.ENROLLED, 300)
        vm.screendump(tmp / "screen.png")

QEMU is always killed on exit; a failed wait says the console's last lines."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from imager.boot import stages
from imager.boot.live import LiveSystem

MAC = "52:54:00:4c:49:56"
SERIAL = "LIVE-TEST-0001"


class LiveVM:
    """One boot of the live system; a context manager."""

    def __init__(self, workdir: Path, system: LiveSystem, *, station: str | None,
                 ca: bytes | None = None, token: str | None = None, mac: str = MAC,
                 serial: str = SERIAL, memory_mib: int = 2048, cpus: int = 2,
                 extra_append: str = "") -> None:
        self.workdir, self.system = workdir, system
        self.mac, self.serial = mac, serial
        self.memory_mib, self.cpus = memory_mib, cpus
        params = ["console=tty0", "console=ttyS0,115200", "vga=0x318", "panic=-1",
                  f"imager.mac={mac}", "imager.boot=network"]
        params += [f"imager.station={station}"] if station else []
        params += [f"imager.token={token}"] if token else []
        self.append = " ".join(params + ([extra_append] if extra_append else []))
        self.ca = ca
        self.console = workdir / "serial.log"
        self.qmp_path = workdir / "qmp.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.seen: dict[str, float] = {}          # stage -> seconds after QEMU started

    def __enter__(self) -> LiveVM:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def initrd(self) -> Path:
        """live.img, imager.img and (when given) the CA initrd, as one file."""
        from imager.boot.service import station_img
        parts = [p.read_bytes() for p in self.system.initrds]
        if self.ca is not None:
            parts.append(station_img(self.ca))
        path = self.workdir / "initrd.img"
        path.write_bytes(b"".join(part + b"\0" * (-len(part) % 4) for part in parts))
        return path

    def argv(self) -> list[str]:
        return [
            "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-nodefaults",
            "-m", str(self.memory_mib), "-smp", str(self.cpus), "-vga", "std",
            "-display", "none", "-no-reboot", "-serial", f"file:{self.console}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-kernel", str(self.system.kernel), "-initrd", str(self.initrd()),
            "-append", self.append,
            "-smbios", f"type=1,manufacturer=Lab,product=LiveTest,serial={self.serial}",
            "-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
        ]

    def start(self) -> None:
        self.console.write_bytes(b"")
        with open(self.workdir / "qemu.log", "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def lines(self) -> list[tuple[str, dict[str, str]]]:
        """The IMAGER-LIVE lines printed so far, in order."""
        text = self.console.read_text(errors="replace")
        found = [stages.parse(line) for line in text.splitlines()]
        return [f for f in found if f is not None]

    def wait_for(self, stage: str, seconds: float, **match: str) -> dict[str, str]:
        """The fields of the first `stage` line whose fields include `match`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for found, fields in self.lines():
                if found == stage and all(fields.get(k) == v for k, v in match.items()):
                    self.seen.setdefault(stage, round(time.monotonic() - self.started, 1))
                    return fields
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"no `IMAGER-LIVE stage={stage}` {match or ''} within "
                             f"{seconds:.0f} s; the console ends with:\n{self.tail()}")

    def exited(self, seconds: float) -> int | None:
        """QEMU's exit status once the guest restarted (-no-reboot), else None."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def tail(self, count: int = 40) -> str:
        lines = self.console.read_text(errors="replace").splitlines()
        return "\n".join(lines[-count:])

    def qmp(self, command: str, **arguments: object) -> object:
        """One QMP command's answer (AssertionError on an error)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            deadline = time.monotonic() + 10
            while True:
                try:
                    sock.connect(str(self.qmp_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            stream = sock.makefile("rw")
            json.loads(stream.readline())                     # the greeting
            answer: dict[str, object] = {}
            for message in ({"execute": "qmp_capabilities"},
                            {"execute": command, "arguments": arguments}):
                stream.write(json.dumps(message) + "\n")
                stream.flush()
                while True:
                    answer = json.loads(stream.readline())
                    if "return" in answer or "error" in answer:
                        break
                assert "error" not in answer, answer
        return answer["return"]

    def screendump(self, png: Path) -> Path:
        """The laptop's screen as a PNG."""
        self.qmp("screendump", filename=str(png), format="png")
        return png

    def cable(self, plugged: bool) -> None:
        """Plug the network cable in or pull it out (the NIC's link)."""
        self.qmp("set_link", name="n0", up=plugged)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None
