#!/usr/bin/env python3
"""The `bureau-solidaire` image booted in QEMU (TCG, UEFI with Secure Boot) up to
its first-boot dialog, seen on its screen.

    sudo .venv/bin/python bench/desktop_first_boot.py [--seconds 600] [--every 30]
                                                      [--out DIR] [--firmware F]

Builds the image (or takes it from the build cache, IMAGER_OS_CACHE or
/var/cache/imager-os), boots it with writes kept in a snapshot (the image is not
changed) and takes a screenshot through QMP's `screendump` every `--every`
seconds until `--seconds`, into DIR (default: a temporary folder): the last ones
show what a beneficiary sees at the first start. Prints the time of each one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import os_image  # noqa: E402


class Qmp:
    """QEMU's machine protocol on a Unix socket: one command at a time."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX)
                self._sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._file = self._sock.makefile("rw", encoding="utf-8")
        self._file.readline()                               # the greeting
        self.run("qmp_capabilities")

    def run(self, command: str, **arguments: object) -> object:
        self._file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self._file.flush()
        while True:
            answer = json.loads(self._file.readline())
            if "return" in answer or "error" in answer:   # events come in between
                if "error" in answer:
                    raise RuntimeError(f"QMP {command}: {answer['error']}")
                return answer["return"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--firmware", choices=tuple(os_image.FIRMWARES), default="secureboot")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="first-boot-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="first-boot-work-") as tmp:
        work = Path(tmp)
        built = os_image.profile_image("bureau-solidaire")
        print(f"image: {built.raw} ({'cache' if built.cached else 'built'})", flush=True)
        argv = os_image.qemu_argv(built.raw, args.firmware, work, work / "console.log",
                                  memory_mib=2048)                   # a desktop: 2 GiB
        argv += ["-device", "VGA", "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
                 "-device", "qemu-xhci", "-device", "usb-tablet"]
        started = time.monotonic()
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            qmp = Qmp(work / "qmp.sock")
            shot = 0
            while time.monotonic() - started < args.seconds and qemu.poll() is None:
                time.sleep(args.every)
                shot += 1
                png = out / f"ecran-{shot:02d}.png"
                qmp.run("screendump", filename=str(png), format="png")
                print(f"{time.monotonic() - started:6.0f} s  {png}", flush=True)
        finally:
            qemu.kill()
            qemu.wait(timeout=30)
        console = (work / "console.log").read_text(errors="replace")
        print("serial console, last lines:\n" + "\n".join(console.splitlines()[-15:]))
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
