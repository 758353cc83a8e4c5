"""BenchNet: a bench network in network namespaces, with laptops in QEMU (TCG).

    with BenchNet(tmp_path) as net:                     # namespaces, bridge, router
        station = net.start_station(["imager", ..., "boot", "serve", "--interface",
                                     net.bench_if, ...])  # runs in the station namespace
        vm = net.laptop("t480", firmware="secureboot", serial="PF1AB2CD",
                        mac="52:54:00:12:34:56", disk=marker_disk(tmp_path / "d.img"))
        vm.start()
        vm.wait_for(r"IMAGER-STANDIN done", timeout=120)

The shape (what a bench looks like to a laptop):

    [lan]  bridge br0 ── tap of each laptop (QEMU runs in this namespace)
             ├── veth ── [router]  dnsmasq with a normal dhcp-range (the "box")
             ├── veth ── [station] `bench0`, where the boot service runs
             └── veth ── [probe]   a DHCP client, made on demand

Everything is made under a name unique to this BenchNet, and always removed
on exit (QEMU, dnsmasq, the station and any other process left in the
namespaces are killed, the namespaces deleted with their links): never on
the machine's own interfaces. Laptops: SeaBIOS + QEMU's iPXE ROM ("bios"),
OVMF ("uefi"), OVMF Secure Boot with Microsoft's keys ("secureboot"), each
with SMBIOS strings, a MAC, a serial console log and a QMP socket.

The stand-in of the live system (`standin_files`): a Debian-signed kernel,
a busybox /init that prints its command line and the files the three initrds
gave it on the serial console (lines `IMAGER-STANDIN ...`), then powers off.
`marker_disk` makes a disk that says `IMAGER-LOCAL-DISK bios|uefi` when a
firmware boots it (MBR code under BIOS; shim + GRUB on an ESP under UEFI,
which Secure Boot accepts).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from imager.boot.cpio import Entry, newc
from imager.boot.files import BootFiles
from imager.registry import intake
from imager.store import people
from imager.store.db import Registry, utcnow
from imager.store.models import Deployment, Drive

OVMF = Path("/usr/share/OVMF")
SUBNET = "10.66.0"
ROUTER_IP = f"{SUBNET}.1"
STATION_IP = f"{SUBNET}.2"
PROBE_IP_RANGE = (f"{SUBNET}.100", f"{SUBNET}.199")
DEFAULT_CACHE = Path("/var/cache/imager-boot-test")
MARKER = "IMAGER-STANDIN"
# firmware -> (machine, extra arguments, (code, vars template) or None)
FIRMWARES: dict[str, tuple[str, tuple[str, ...], tuple[str, str] | None]] = {
    "bios": ("q35", ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"), None),
    "uefi": ("q35", (), ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
    "secureboot": ("q35,smm=on", ("-global", "driver=cfi.pflash01,property=secure,value=on"),
                   ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")),
}
HOST_LOADERS = {
    "shim": Path("/usr/lib/shim/shimx64.efi.signed"),
    "undionly": Path("/usr/lib/ipxe/undionly.kpxe"),
    "snponly": Path("/usr/lib/ipxe/snponly.efi"),
}
DISK_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
# Debian's signed network GRUB of trixie (2.12): bookworm's (2.06) ignores the
# proxy-DHCP offer and asks the router for its grub.cfg (checked 2026-12-06).
GRUBNET = ("trixie", "grub-efi-amd64-signed",
           "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")


class BenchError(RuntimeError):
    """The bench could not be made, or a laptop did not do what was awaited
    (the message ends with the console's last lines)."""


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 60,
         cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def missing() -> list[str]:
    """What the bench needs and this machine lacks."""
    tools = ["ip", "dnsmasq", "qemu-system-x86_64", "busybox", "zstd", "sgdisk", "mkfs.vfat",
             "mcopy", "sbverify", "dpkg-deb", "apt-get"]
    found = [t for t in tools if shutil.which(t) is None]
    files = [*HOST_LOADERS.values(), DISK_GRUB,
             *(OVMF / n for _, _, f in FIRMWARES.values() if f for n in f)]
    found += [str(p) for p in files if not p.is_file()]
    if os.geteuid() != 0:
        found.append("root (network namespaces, taps)")
    return found


# -- the bench ----------------------------------------------------------------------

class BenchNet:
    """Network namespaces (lan with a bridge, router, station), removed on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.tag = f"ib{secrets.token_hex(3)}"
        self.lan, self.router, self.station = (f"{self.tag}-{n}" for n in ("lan", "rt", "st"))
        self.probe = f"{self.tag}-pb"
        self.bench_if = "bench0"
        self.station_ip = STATION_IP
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._router: subprocess.Popen[bytes] | None = None
        self._laptops: list[Laptop] = []

    def __enter__(self) -> BenchNet:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for ns in (self.lan, self.router, self.station):
            self._add_namespace(ns)
        _run(["ip", "-n", self.lan, "link", "add", "br0", "type", "bridge", "stp_state", "0",
              "forward_delay", "0"])
        _run(["ip", "-n", self.lan, "link", "set", "br0", "up"])
        self._veth("rt", self.router, "eth0", f"{ROUTER_IP}/24")
        self._veth("st", self.station, self.bench_if, f"{STATION_IP}/24")
        self.start_router()

    def _add_namespace(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _veth(self, short: str, ns: str, inner: str, address: str | None) -> None:
        """A veth from the lan's bridge to `inner` in namespace `ns`."""
        port = f"p-{short}"
        _run(["ip", "-n", self.lan, "link", "add", port, "type", "veth", "peer", "name", inner,
              "netns", ns])
        _run(["ip", "-n", self.lan, "link", "set", port, "master", "br0", "up"])
        if address:
            _run(["ip", "-n", ns, "addr", "add", address, "dev", inner])
        _run(["ip", "-n", ns, "link", "set", inner, "up"])

    # -- processes in the namespaces

    def popen(self, ns: str, argv: Sequence[str], *, log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` in namespace `ns`, its output in `log`; killed at close()."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], *, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout)

    def start_router(self) -> None:
        """The network's "box": dnsmasq giving addresses 10.66.0.100-199."""
        if self._router is not None and self._router.poll() is None:
            return
        self._router = self.popen(self.router, [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
            "--port=0", "--interface=eth0", "--bind-interfaces", "--log-dhcp",
            "--log-facility=-", "--dhcp-authoritative", "--user=nobody", "--group=nogroup",
            f"--dhcp-range={PROBE_IP_RANGE[0]},{PROBE_IP_RANGE[1]},255.255.255.0,1h",
            f"--dhcp-option=3,{ROUTER_IP}",
            f"--dhcp-leasefile={self.workdir / 'router.leases'}"],
            log=self.workdir / "router.log")
        time.sleep(0.3)
        if self._router.poll() is not None:
            raise BenchError(f"the router's dnsmasq stopped: {_tail(self.workdir / 'router.log')}")

    def stop_router(self) -> None:
        if self._router is not None:
            stop_process(self._router)
            self._router = None

    def start_station(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                      ready: str = "Arrêt / stop", timeout: float = 60,
                      ) -> subprocess.Popen[bytes]:
        """Run `argv` (the boot service) in the station namespace; wait for `ready`
        in its output."""
        log = self.workdir / "station.log"
        proc = self.popen(self.station, argv, log=log, env=env)
        deadline = time.monotonic() + timeout
        while ready not in _text(log):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the boot service did not start: {_tail(log, 20)}")
            time.sleep(0.2)
        return proc

    def stop_station(self, proc: subprocess.Popen[bytes]) -> int:
        return stop_process(proc)

    def dhcp_probe(self, *, timeout: int = 6) -> str | None:
        """Ask for an address from a fresh client on the lan (busybox udhcpc): the
        address leased, or None when no DHCP server answered."""
        if self.probe not in self._namespaces:
            self._add_namespace(self.probe)
            self._veth("pb", self.probe, "eth0", None)
        out = self.run(self.probe, ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                                    "-t", str(max(1, timeout // 2)), "-T", "2",
                                    "-s", "/bin/true"], check=False, timeout=timeout + 30)
        found = re.search(r"lease of (\d+\.\d+\.\d+\.\d+) obtained", out.stdout + out.stderr)
        return found.group(1) if found else None

    # -- laptops

    def laptop(self, name: str, *, firmware: str, serial: str, mac: str,
               disk: Path | None = None, manufacturer: str = "LENOVO",
               product: str = "ThinkPad T480", memory_mib: int = 1024) -> Laptop:
        """A laptop on the lan (not started): its tap is on the bridge now."""
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware {firmware!r}: use {', '.join(FIRMWARES)}")
        tap = f"t{len(self._laptops)}{self.tag}"[:15]
        _run(["ip", "-n", self.lan, "tuntap", "add", "dev", tap, "mode", "tap"])
        _run(["ip", "-n", self.lan, "link", "set", tap, "master", "br0", "up"])
        vm = Laptop(self, name, firmware=firmware, serial=serial, mac=mac, disk=disk,
                    manufacturer=manufacturer, product=product, memory_mib=memory_mib, tap=tap)
        self._laptops.append(vm)
        return vm

    # -- removal

    def close(self) -> None:
        for vm in self._laptops:
            vm.stop()
        for proc in self._procs:
            stop_process(proc)
        for ns in reversed(self._namespaces):
            self._kill_left(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()

    def _kill_left(self, ns: str) -> None:
        """Kill what still runs in a namespace this bench made (all of it is ours)."""
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10, *,
                 reap: float | None = None) -> int:
    """SIGTERM, then SIGKILL to its process group after `timeout` seconds (then wait
    `reap` seconds, `timeout` unless given); the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout if reap is None else reap)
    return proc.returncode


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _tail(path: Path, lines: int = 12) -> str:
    return "\n".join(_text(path).splitlines()[-lines:])


# -- laptops ------------------------------------------------------------------------

@dataclass
class Laptop:
    """One QEMU laptop on the bench. `start()` boots it (again: the UEFI variables
    persist between boots, as on a real laptop); each boot has its console file."""

    net: BenchNet
    name: str
    firmware: str
    serial: str
    mac: str
    disk: Path | None
    manufacturer: str
    product: str
    memory_mib: int
    tap: str
    boots: int = 0
    started_at: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.dir = self.net.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        files = FIRMWARES[self.firmware][2]
        if files:
            shutil.copyfile(OVMF / files[1], self.dir / "vars.fd")

    @property
    def console(self) -> Path:
        return self.dir / f"console-{self.boots}.log"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    def argv(self) -> list[str]:
        machine, extra, files = FIRMWARES[self.firmware]
        smbios = ",".join(f"{k}={v.replace(',', ',,')}" for k, v in (
            ("manufacturer", self.manufacturer), ("product", self.product),
            ("serial", self.serial)))
        nic = f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1"
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", machine, *extra,
                "-m", str(self.memory_mib), "-smp", "1", "-display", "none", "-vga", "std",
                "-serial", f"file:{self.console}", "-monitor", "none",
                "-qmp", f"unix:{self.qmp},server=on,wait=off",
                "-smbios", f"type=1,{smbios}",
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no"]
        if files:
            code = OVMF / files[0]
            argv += ["-drive", f"if=pflash,format=raw,unit=0,file={code},readonly=on",
                     "-drive", f"if=pflash,format=raw,unit=1,file={self.dir / 'vars.fd'}",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"]
            nic += ",romfile="       # OVMF's own PXE: QEMU's iPXE ROM is not signed
        else:
            argv += ["-fw_cfg", f"name=etc/sercon-port,file={_sercon_file(self.dir)}"]
        argv += ["-device", nic]
        if self.disk is not None:
            argv += ["-drive", f"if=none,id=d0,file={self.disk},format=raw",
                     "-device", "nvme,serial=NVME-" + self.name[:12] + ",drive=d0,bootindex=2"]
        return argv

    def start(self) -> None:
        """Boot (again); the console of this boot is a new file."""
        self.stop()
        self.boots += 1
        self.marks = {}
        self.qmp.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self._proc = self.net.popen(self.net.lan, self.argv(), log=self.dir / "qemu.log")

    def text(self) -> str:
        return _text(self.console)

    def wait_for(self, pattern: str, *, timeout: float, after: str | None = None) -> re.Match[str]:
        """The first match of `pattern` on this boot's console (searched after the
        first match of `after`, when given); records the seconds since start in
        marks[pattern]. BenchError with the console's end on timeout or exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if after is not None:
                cut = re.search(after, text)
                text = text[cut.end():] if cut else ""
            found = regex.search(text)
            if found:
                self.marks.setdefault(pattern, round(time.monotonic() - self.started_at, 1))
                return found
            alive = self._proc is not None and self._proc.poll() is None
            if not alive or time.monotonic() > deadline:
                why = "QEMU exited" if not alive else f"{timeout:.0f} s passed"
                raise BenchError(f"{self.name} ({self.firmware}): {pattern!r} not seen, {why}. "
                                 f"Console:\n{_clean_console(self.text())[-3000:]}")
            time.sleep(0.25)

    def wait_exit(self, *, timeout: float) -> int:
        """QEMU's exit status once the guest powered off (BenchError on timeout)."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{self.name}: still running after {timeout:.0f} s. Console:\n"
                             f"{_clean_console(self.text())[-3000:]}") from exc

    def qmp_command(self, command: str, **arguments: object) -> dict[str, object]:
        """One QMP command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp))
            reader = sock.makefile("r")
            json.loads(reader.readline())                         # greeting
            for message in ({"execute": "qmp_capabilities"},
                            {"execute": command, "arguments": arguments}):
                sock.sendall(json.dumps(message).encode() + b"\n")
                while True:
                    answer = json.loads(reader.readline())
                    if "return" in answer or "error" in answer:
                        break
            return answer

    def send_keys(self, *keys: str) -> None:
        """Press and release each key in turn (QMP qcodes: "down", "ret", "i"...)."""
        for key in keys:
            self.qmp_command("send-key", keys=[{"type": "qcode", "data": key}])
            time.sleep(0.3)

    def screendump(self, path: Path) -> Path:
        """The laptop's screen now, as PNG (QMP screendump, converted)."""
        ppm = path.with_suffix(".ppm")
        self.qmp_command("screendump", filename=str(ppm))
        from PIL import Image
        Image.open(ppm).save(path)
        ppm.unlink()
        return path

    def seconds(self) -> float:
        return round(time.monotonic() - self.started_at, 1)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, timeout=5)
            self._proc = None


def _sercon_file(folder: Path) -> Path:
    """SeaBIOS mirrors the BIOS screen (and iPXE's) on COM1 when fw_cfg says where."""
    path = folder / "sercon-port"
    path.write_bytes((0x3F8).to_bytes(2, "little"))
    return path


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc")


def _clean_console(text: str) -> str:
    """A console log without terminal escape sequences (for messages)."""
    return _ANSI.sub("", text).replace("\r", "")


def clean_console(text: str) -> str:
    return _clean_console(text)


# -- the stand-in live system -------------------------------------------------------

INIT = f"""#!/bin/busybox sh
bb=/bin/busybox
$bb mkdir -p /proc /sys
$bb mount -t proc proc /proc
echo "{MARKER} cmdline: $($bb cat /proc/cmdline)"
echo "{MARKER} files: $(cd / && $bb find etc/imager -type f | $bb sort | $bb tr '\\n' ' ')"
echo "{MARKER} ca-sha256: $($bb sha256sum /etc/imager/station-ca.pem | $bb cut -c1-64)"
echo "{MARKER} done"
$bb poweroff -f
"""


def cache_dir() -> Path:
    path = Path(os.environ.get("IMAGER_BOOT_TEST_CACHE") or DEFAULT_CACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def signed_kernel() -> Path:
    """A Debian-signed amd64 kernel: the lab guest's when it is cached, else
    Debian's linux-image package downloaded once (cached by package version)."""
    for path in sorted(glob.glob("/var/cache/imager-lab/*/vmlinuz")):
        if "Debian Secure Boot" in _run(["sbverify", "--list", path], check=False).stdout:
            return Path(path)
    deps = _run(["apt-cache", "depends", "--important", "linux-image-amd64"]).stdout
    found = re.search(r"Depends: (linux-image-[0-9][^\s]*)", deps)
    if not found:
        raise BenchError("cannot resolve linux-image-amd64: run apt-get update")
    pkg = found.group(1)
    version = _run(["apt-cache", "policy", pkg]).stdout
    cand = re.search(r"Candidate: (\S+)", version)
    key = f"{pkg}_{cand.group(1) if cand else 'unknown'}".replace(":", "_")
    cached = cache_dir() / f"{key}.vmlinuz"
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        _run(["apt-get", "download", "-q", pkg], cwd=tmp, timeout=300)
        deb = next(Path(tmp).glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"])
        kernel = next(Path(tmp, "root", "boot").glob("vmlinuz-*"))
        shutil.copyfile(kernel, f"{cached}.part")
        os.replace(f"{cached}.part", cached)
    return cached


def debian_file(suite: str, package: str, member: str) -> Path:
    """One file of a Debian package of `suite` (apt with its own lists in the
    cache; the package downloaded once per version)."""
    root = cache_dir() / f"apt-{suite}"
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(f"deb http://deb.debian.org/debian {suite} main\n")
    opts = [f"-oDir::Etc::sourcelist={root / 'sources.list'}", "-oDir::Etc::sourceparts=-",
            f"-oDir::State::Lists={root / 'lists'}", "-oAPT::Get::List-Cleanup=0",
            "-oAPT::Sandbox::User=root"]
    stamp = root / "updated"
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > 7 * 86400:
        _run(["apt-get", "-q", *opts, "update"], timeout=300)
        stamp.touch()
    policy = _run(["apt-cache", *opts, "policy", package]).stdout
    cand = re.search(r"Candidate: (\S+)", policy)
    if not cand or cand.group(1) == "(none)":
        raise BenchError(f"{package} not found in Debian {suite}")
    cached = root / f"{package}_{cand.group(1).replace(':', '_')}" / member
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _run(["apt-get", "-q", *opts, "download", f"{package}={cand.group(1)}"], timeout=300,
             cwd=tmp)
        deb = next(Path(tmp).glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"])
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp, "x", member), f"{cached}.part")
        os.replace(f"{cached}.part", cached)
    return cached


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c", "-19"], input=data, capture_output=True,
                          check=True).stdout


def standin_files(folder: Path) -> BootFiles:
    """The stand-in live system and the host's signed loaders, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    live = newc([Entry.file("init", INIT.encode(), 0o755),
                 Entry.file("bin/busybox", busybox, 0o755), Entry.dir("etc/imager")])
    imager = newc([Entry.file("etc/imager/standin-imager.txt", b"second initrd\n")])
    (folder / "live.img").write_bytes(_zstd(live))
    (folder / "imager.img").write_bytes(_zstd(imager))
    shutil.copyfile(signed_kernel(), folder / "vmlinuz")
    shutil.copyfile(debian_file(*GRUBNET), folder / "grubx64.efi")
    for name, source in HOST_LOADERS.items():
        target = {"shim": "shimx64.efi", "undionly": "undionly.kpxe",
                  "snponly": "snponly.efi"}[name]
        shutil.copyfile(source, folder / target)
    return BootFiles.in_folder(folder).check()


# -- the registry's side of a laptop -----------------------------------------------

def tie(registry: Registry, serial: str, reference: str = "DON-1") -> int:
    """A machine with `serial` attached to a donation at intake."""
    with registry.session() as s:
        if reference not in {d.reference for d in people.list_donations(s)}:
            people.add_donor(s, "town_hall", f"Mairie {reference}")
            people.add_donation(s, reference, f"Mairie {reference}", date(2026, 12, 1))
        return intake.attach_machine(s, people.find_donation(s, reference), serial,
                                     actor="test").id


def deploy(registry: Registry, machine_id: int) -> None:
    """An OS image written and verified on the machine's drive."""
    with registry.session() as s:
        drive = Drive(identity=f"test::{machine_id}", size_bytes=1 << 30, machine_id=machine_id,
                      created_at=utcnow(), state="imaged")
        s.add(drive)
        s.flush()
        now = utcnow()
        s.add(Deployment(drive_id=drive.id, machine_id=machine_id, image_name="lab",
                         image_version="1", image_size=1, mapped_bytes=1, verify="full",
                         verified_bytes=1, ok=True, actor="test", started_at=now, ended_at=now))


# -- a disk that says it was booted -------------------------------------------------

LOCAL_MARKER = "IMAGER-LOCAL-DISK"
MiB = 1 << 20


def _mbr_code(text: str) -> bytes:
    """16-bit code at 0x7c00: write `text` to COM1, then end QEMU through the
    isa-debug-exit port (hand-assembled; see the listing)."""
    msg = text.encode() + b"\r\n\0"
    code = bytes.fromhex(
        "fa"            # cli
        "31c0"          # xor ax, ax
        "8ed8"          # mov ds, ax
        "be1c7c"        # mov si, 0x7c1c (msg)
        "baf803"        # mov dx, 0x3f8
        "ac"            # next: lodsb
        "84c0"          # test al, al
        "7403"          # jz done
        "ee"            # out dx, al
        "ebf8"          # jmp next
        "baf400"        # done: mov dx, 0xf4
        "b010"          # mov al, 0x10
        "ee"            # out dx, al (QEMU exits with status 33)
        "f4"            # hlt
        "ebfd")         # jmp hlt
    assert len(code) == 0x1C
    return code + msg


def marker_disk(path: Path, *, size: int = 64 * MiB) -> Path:
    """A GPT disk whose protective MBR boots to `IMAGER-LOCAL-DISK bios` (BIOS) and
    whose ESP holds shim + Debian's signed GRUB, with a grub.cfg that says
    `IMAGER-LOCAL-DISK uefi` and powers off (UEFI, Secure Boot too). Cached."""
    key = hashlib.sha256(_mbr_code(f"{LOCAL_MARKER} bios") + DISK_GRUB.read_bytes()[:4096]
                         + HOST_LOADERS["shim"].read_bytes()[:4096]
                         + str(size).encode()).hexdigest()[:16]
    cached = cache_dir() / f"marker-disk-{key}.img"
    if not cached.is_file():
        _make_marker_disk(cached, size)
    shutil.copyfile(cached, path)
    return path


def _make_marker_disk(target: Path, size: int) -> None:
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        disk, esp = Path(tmp, "disk.img"), Path(tmp, "esp.img")
        with open(disk, "wb") as fh:
            fh.truncate(size)
        _run(["sgdisk", "-n", "1:2048:0", "-t", "1:ef00", "-c", "1:ESP", str(disk)])
        esp_bytes = size - 2048 * 512 - 34 * 512
        esp_bytes -= esp_bytes % MiB
        _run(["mkfs.vfat", "-F", "32", "-C", str(esp), str(esp_bytes // 1024)])
        cfg = Path(tmp, "grub.cfg")
        cfg.write_text(f'echo "{LOCAL_MARKER} uefi"\nsleep 1\nhalt\n')
        _run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"])
        for source, name in ((HOST_LOADERS["shim"], "BOOTX64.EFI"), (DISK_GRUB, "grubx64.efi"),
                             (cfg, "grub.cfg")):
            _run(["mcopy", "-i", str(esp), str(source), f"::/EFI/BOOT/{name}"])
        with open(disk, "r+b") as fh:
            fh.seek(2048 * 512)
            fh.write(esp.read_bytes())
            fh.seek(0)
            fh.write(_mbr_code(f"{LOCAL_MARKER} bios"))
        os.replace(disk, target)
