"""The `lab` OS image (profiles/lab: a minimal trixie, no desktop, with the
profile's own package): built once by the real image build, cached by content
(the build's own key: spec + resolved packages + build code), and booted in QEMU
(TCG) under SeaBIOS, OVMF and OVMF with Secure Boot.

    built = lab_image()                  # cached in IMAGER_OS_CACHE (/var/cache/imager-os)
    result = boot(built.raw, "secureboot", tmp_path)
    result.report["secureboot"] == "on"

The image reports on its serial console once multi-user.target is reached
(imager.profile.boot_report)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.vm import qemu_escape

from imager.certify.keys import StationKeys
from imager.profile import boot_report
from imager.profile.build import BuiltImage, ProgressFn, build, prune
from imager.profile.build_inputs import profile_build_spec, with_boot_report
from imager.profile.buildspec import BuildSpec

DEFAULT_CACHE = Path("/var/cache/imager-os")
OVMF = Path("/usr/share/OVMF")
PROFILES = Path(__file__).resolve().parents[1] / "profiles"
# firmware -> (machine, extra QEMU arguments, (code, vars template) or None)
FIRMWARES: dict[str, tuple[str, tuple[str, ...], tuple[str, str] | None]] = {
    "bios": ("q35", (), None),
    "uefi": ("q35", (), ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
    "secureboot": ("q35,smm=on", ("-global", "driver=cfi.pflash01,property=secure,value=on"),
                   ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")),
}


def cache_dir() -> Path:
    return Path(os.environ.get("IMAGER_OS_CACHE") or DEFAULT_CACHE)


def lab_spec() -> BuildSpec:
    """The shipped `lab` profile's BuildSpec (its own package built first) with the
    serial-console boot report."""
    return with_boot_report(profile_build_spec("lab", profiles=PROFILES,
                                               debs_dir=cache_dir() / "profile-debs"))


def profile_image(name: str) -> BuiltImage:
    """Shipped profile `name`'s image as it is deployed (no boot report), built or
    from the cache (the desktop's benches)."""
    spec = profile_build_spec(name, profiles=PROFILES, debs_dir=cache_dir() / "profile-debs")
    return build(spec, cache_dir=cache_dir())


def lab_image(progress: ProgressFn | None = None, *, catalogue: Path | None = None,
              keys: StationKeys | None = None) -> BuiltImage:
    """The lab image, from the cache when its key has not changed (older lab
    builds are removed from the cache)."""
    built = build(lab_spec(), cache_dir=cache_dir(), catalogue=catalogue, keys=keys,
                  progress=progress)
    prune(cache_dir(), built.spec.name, {built.key})
    return built


def missing() -> list[str]:
    """What booting the lab image needs and this machine lacks."""
    needs = [tool for tool in ("qemu-system-x86_64", "mmdebstrap", "sgdisk", "mkfs.vfat",
                               "mcopy", "mkfs.ext4") if shutil.which(tool) is None]
    needs += [str(OVMF / name) for _, _, files in FIRMWARES.values() if files
              for name in files if not (OVMF / name).is_file()]
    return needs


@dataclass(frozen=True)
class BootResult:
    firmware: str
    report: dict[str, str] | None      # the boot report, None if none came in time
    seconds: float                     # QEMU start -> the report line
    console: str                       # the serial console's whole text


def qemu_argv(raw: Path, firmware: str, workdir: Path, console: Path, *,
              memory_mib: int = 1024, usb: bool = False) -> list[str]:
    """QEMU (TCG) booting `raw` (writes kept in a snapshot, the image is not changed);
    `usb`: as a USB stick on an xHCI controller, the first boot device."""
    machine, extra, files = FIRMWARES[firmware]
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", machine, "-m", str(memory_mib),
            "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{qemu_escape(str(console))}", *extra]
    if files is not None:
        code, template = files
        variables = workdir / f"{firmware}-vars.fd"
        shutil.copyfile(OVMF / template, variables)
        argv += ["-drive", f"if=pflash,format=raw,unit=0,file={OVMF / code},readonly=on",
                 "-drive", f"if=pflash,format=raw,unit=1,file={qemu_escape(str(variables))}"]
    drive = f"file={qemu_escape(str(raw))},format=raw,snapshot=on"
    if usb:
        return argv + ["-device", "qemu-xhci,id=xhci", "-drive", f"{drive},if=none,id=stick",
                       "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"]
    return argv + ["-drive", f"{drive},if=virtio"]


def boot(raw: Path, firmware: str, workdir: Path, *, timeout: float = 360,
         after_login: float = 120) -> BootResult:
    """Boot `raw` under `firmware` until its boot report shows on the serial
    console (or `timeout`, or `after_login` seconds after the login prompt, or
    QEMU exits); QEMU is always killed after."""
    console = workdir / f"{firmware}-console.log"
    console.write_bytes(b"")
    started = time.monotonic()
    with open(workdir / f"{firmware}-qemu.log", "wb") as log:
        proc = subprocess.Popen(qemu_argv(raw, firmware, workdir, console),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        report, login = None, None
        while report is None and proc.poll() is None and time.monotonic() - started < timeout:
            time.sleep(0.5)
            text = console.read_text(errors="replace")
            report = boot_report.parse_report(text)
            if login is None and " login: " in text:
                login = time.monotonic()
            if login is not None and time.monotonic() - login > after_login:
                break
        seconds = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return BootResult(firmware, report, round(seconds, 1), console.read_text(errors="replace"))
