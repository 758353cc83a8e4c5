"""LabVM: the lab guest booted in QEMU (TCG) with emulated drives over sparse files.

    with LabVM(tmp_path, drives=DEFAULT_DRIVES) as vm:
        out = vm.run("nvme id-ctrl /dev/nvme0 -o json").check().stdout

One boot serves many commands: the guest's agent (agent.py) answers over a
virtio-serial port. The project is shared read-only at /project (9p), and a
writable directory at /lab (host: `vm.lab_dir`, results under /lab/results).
QEMU is always killed on exit; any failure raises LabError with the console log.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from lab.build import PROJECT, GuestImage, ensure_image

AGENT = Path(__file__).with_name("agent.py")
PORT_NAME = "imager.lab"
MiB = 1 << 20
DriveKind = Literal["nvme", "sata", "scsi", "usb", "sd"]


class LabError(RuntimeError):
    """The guest failed to boot, answer or power off; the message ends with its console."""


@dataclass(frozen=True)
class Drive:
    """One emulated drive backed by a sparse file; `props` are extra -device properties."""

    kind: DriveKind
    name: str
    serial: str
    size: int = 64 * MiB
    model: str | None = None
    props: Mapping[str, str] = field(default_factory=dict)


DEFAULT_DRIVES: tuple[Drive, ...] = (
    Drive("nvme", "nvme", "LABNVME0001"),
    Drive("sata", "sata", "LABSATA0001", model="LAB SATA SSD",
          props={"rotation_rate": "1", "wwn": "0x5000c500a1b2c301"}),
    Drive("scsi", "scsi", "LABSCSI0001", props={"wwn": "0x5000c500a1b2c302"}),
    Drive("usb", "usb", "LABUSB0001"),
    Drive("sd", "sd", "", size=32 * MiB),
)


@dataclass(frozen=True)
class Result:
    """What one command did in the guest."""

    cmd: str
    rc: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def check(self) -> Result:
        """Return self, or raise LabError if the command failed."""
        if not self.ok:
            raise LabError(f"guest command failed (rc={self.rc}, timed_out={self.timed_out}):"
                           f" {self.cmd}\nstdout: {self.stdout[-2000:]}\n"
                           f"stderr: {self.stderr[-2000:]}")
        return self


def device_specs(drives: Sequence[Drive]) -> dict[str, str]:
    """The `-device` value of each drive, by drive name (SATA disks on q35's AHCI ports)."""
    specs: dict[str, str] = {}
    sata_port = 0
    for index, drive in enumerate(drives):
        base = {
            "nvme": "nvme", "sata": f"ide-hd,bus=ide.{sata_port}",
            "scsi": "scsi-hd,bus=scsi0.0", "usb": "usb-storage,bus=xhci.0", "sd": "sd-card",
        }[drive.kind]
        props = {"drive": f"drive{index}", **({"serial": drive.serial} if drive.serial else {}),
                 **({"model": drive.model} if drive.model else {}), **drive.props}
        specs[drive.name] = ",".join([base, *(f"{k}={v}" for k, v in props.items())])
        sata_port += drive.kind == "sata"
    return specs


def drive_args(drives: Sequence[Drive], files: Mapping[str, Path]) -> list[str]:
    """QEMU arguments for the drives (controllers added once, as needed)."""
    args: list[str] = []
    for kind, controller in (("scsi", "virtio-scsi-pci,id=scsi0"), ("usb", "qemu-xhci,id=xhci")):
        if any(d.kind == kind for d in drives):
            args += ["-device", controller]
    specs = device_specs(drives)
    for index, drive in enumerate(drives):
        file = qemu_escape(str(files[drive.name]))
        args += ["-drive", f"if=none,id=drive{index},file={file},format=raw"]
        if drive.kind == "sd":
            args += ["-device", f"sdhci-pci,id=sdhci{index}"]
        args += ["-device", specs[drive.name]]
    return args


# The whole root is one initramfs (about 460 MB unpacked with the station's Python
# dependencies): the kernel unpacks it into a tmpfs of half the guest's memory.
MEMORY_MIB = 2048


class LabVM:
    """The lab guest in QEMU; a context manager that always kills QEMU on exit."""

    def __init__(self, workdir: Path, drives: Iterable[Drive] = DEFAULT_DRIVES, *,
                 project: Path = PROJECT, memory_mib: int = MEMORY_MIB, cpus: int = 1,
                 boot_timeout: float = 240, image: GuestImage | None = None) -> None:
        self.workdir = Path(workdir)
        self.drives = tuple(drives)
        self.project = project
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.boot_timeout = boot_timeout
        self.image = image
        self.lab_dir = self.workdir / "lab"
        self.console = self.workdir / "console.log"
        self.files = {d.name: self.workdir / f"{d.name}.img" for d in self.drives}
        self.boot_seconds: float | None = None
        self.guest_kernel: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._buffer = b""
        self._next_id = 0

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> LabVM:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Boot the guest and wait until its agent says it is ready."""
        self.image = self.image or ensure_image()
        self._prepare()
        start = time.monotonic()
        try:
            self._launch()
            hello = self._read_message(self.boot_timeout - (time.monotonic() - start))
        except BaseException:
            self._kill_now()
            raise
        self.boot_seconds = round(time.monotonic() - start, 1)
        self.guest_kernel = hello.get("kernel")

    def _launch(self) -> None:
        """Start QEMU and accept its connection to the agent socket."""
        sock_path = self.workdir / "agent.sock"
        sock_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server, \
                open(self.workdir / "qemu.log", "wb") as qemu_log:
            server.bind(str(sock_path))
            server.listen(1)
            self._proc = subprocess.Popen(self.qemu_argv(sock_path), stdin=subprocess.DEVNULL,
                                          stdout=qemu_log, stderr=subprocess.STDOUT)
            self._conn = self._accept(server)

    def close(self) -> None:
        """Ask the guest to power off; kill QEMU if it has not exited shortly after."""
        if self._proc is None:
            return
        if self._conn is not None and self._proc.poll() is None:
            try:
                self._request({"op": "poweroff"}, timeout=15)
            except (LabError, OSError):
                pass
        self._stop_qemu()

    def _stop_qemu(self) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._proc = None

    def _prepare(self) -> None:
        if shutil.which("qemu-system-x86_64") is None:
            raise LabError("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        (self.lab_dir / "results").mkdir(exist_ok=True)
        shutil.copyfile(AGENT, self.lab_dir / "agent.py")
        for drive in self.drives:
            with open(self.files[drive.name], "ab") as fh:
                fh.truncate(drive.size)
        self.console.write_bytes(b"")

    def _accept(self, server: socket.socket) -> socket.socket:
        server.settimeout(30)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            raise LabError("QEMU did not connect to the agent socket within 30 s"
                           + self.diagnostics()) from None
        conn.setblocking(True)
        return conn

    def _kill_now(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def qemu_argv(self, sock_path: Path) -> list[str]:
        """The full QEMU command line."""
        assert self.image is not None
        virtfs = "local,path={},mount_tag={},security_model=none{}"
        return [
            "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-nodefaults",
            "-m", str(self.memory_mib), "-smp", str(self.cpus), "-display", "none",
            "-no-reboot", "-chardev", f"file,id=console,path={qemu_escape(str(self.console))}",
            "-serial", "chardev:console",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4",
            "-virtfs", virtfs.format(qemu_escape(str(self.project)), "project", ",readonly=on"),
            "-virtfs", virtfs.format(qemu_escape(str(self.lab_dir)), "lab", ""),
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={sock_path}",
            "-device", f"virtserialport,chardev=agent,name={PORT_NAME}",
            *drive_args(self.drives, self.files),
        ]

    # -- commands ----------------------------------------------------------------

    def run(self, cmd: str, *, timeout: float = 120, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> Result:
        """Run a bash command line in the guest (as root) and return its result."""
        reply = self._request({"op": "run", "cmd": cmd, "timeout": timeout,
                               "env": dict(env or {}), "cwd": cwd}, timeout=timeout + 30)
        if "error" in reply:
            raise LabError(f"the guest agent failed on {cmd!r}: {reply['error']}")
        return Result(cmd, reply["rc"], _decode(reply["stdout"]), _decode(reply["stderr"]),
                      reply["seconds"], reply["timed_out"])

    def python(self, code: str, *, timeout: float = 120) -> Result:
        """Run Python code in the guest with the shared project importable."""
        quoted = code.replace("'", "'\"'\"'")
        return self.run(f"python3 -c '{quoted}'", timeout=timeout,
                        env={"PYTHONPATH": "/project", "PYTHONDONTWRITEBYTECODE": "1"})

    def block_devices(self) -> list[dict[str, Any]]:
        """The guest's `lsblk -J -O -b` top-level block devices (sizes in bytes)."""
        return json.loads(self.run("lsblk -J -O -b").check().stdout)["blockdevices"]

    def device_paths(self) -> dict[str, str]:
        """Guest device path of each drive, found by serial (SD card: by its mmcblk name)."""
        paths: dict[str, str] = {}
        devices = self.block_devices()
        for drive in self.drives:
            for dev in devices:
                if _is_drive(dev, drive):
                    paths[drive.name] = dev["path"]
        missing = [d.name for d in self.drives if d.name not in paths]
        if missing:
            raise LabError(f"the guest does not show the drives {missing}: {devices}")
        return paths

    def _request(self, message: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        if self._conn is None or self._proc is None:
            raise LabError("the lab VM is not running")
        self._next_id += 1
        message = {**message, "id": self._next_id}
        self._conn.sendall((json.dumps(message) + "\n").encode())
        while True:
            reply = self._read_message(timeout)
            if reply.get("id") == message["id"]:
                return reply

    def _read_message(self, timeout: float) -> dict[str, Any]:
        assert self._conn is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            self._receive(deadline)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _receive(self, deadline: float) -> None:
        assert self._conn is not None and self._proc is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError("the guest did not answer in time" + self.diagnostics())
        self._conn.settimeout(min(left, 1.0))
        try:
            chunk = self._conn.recv(1 << 16)
        except TimeoutError:
            if self._proc.poll() is not None:
                raise LabError(f"QEMU exited with status {self._proc.returncode}"
                               + self.diagnostics()) from None
            return
        if not chunk:
            raise LabError("the guest closed the agent channel" + self.diagnostics())
        self._buffer += chunk

    def diagnostics(self, lines: int = 60) -> str:
        """The tail of QEMU's own log and of the guest console, for error messages."""
        parts = []
        for label, path in (("QEMU", self.workdir / "qemu.log"), ("guest console", self.console)):
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"\n--- {label} ({path}) ---\n{tail}")
        return "".join(parts)


def qemu_escape(value: str) -> str:
    """A value for a QEMU option list: commas are doubled."""
    return value.replace(",", ",,")


def _is_drive(dev: Mapping[str, Any], drive: Drive) -> bool:
    if drive.kind == "sd":
        return str(dev["name"]).startswith("mmcblk")
    return bool(drive.serial) and (dev.get("serial") or "").strip() == drive.serial


def nvme_controller(namespace: str) -> str:
    """/dev/nvme0n1 -> /dev/nvme0."""
    return re.sub(r"n\d+$", "", namespace)


def _decode(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", errors="replace")
