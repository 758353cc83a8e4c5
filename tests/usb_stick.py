"""Stand-ins for the USB stick's tests: a live system folder that boots and says
what it finds, a stick (loop device over a sparse file), and QEMU booting it.

The stand-in live system has what `imager boot build` leaves, from this
machine's Debian packages: Debian's signed kernel (the candidate of
linux-image-amd64, `apt-get download` into IMAGER_USB_TEST_CACHE, default
/var/cache/imager-usb-test), shim, Debian's signed disk GRUB and MokManager.
Its live.img is busybox with the kernel's USB and ext4 modules; its /init
prints on the serial console

    USB-STANDIN-CMDLINE <the kernel command line>
    USB-STANDIN data=/dev/sda3 kit=<files> ca=yes initrd-ca=yes second=yes spool=<files> ...

then powers off. imager.img holds only /imager-second (the second initrd loaded)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from os_image import qemu_argv

DEFAULT_CACHE = Path("/var/cache/imager-usb-test")
# ext4 with metadata_csum asks the crypto API for crc32c: no modprobe here to load it
MODULES = ("xhci_pci", "usb_storage", "sd_mod", "crc32c_generic", "ext4")
LOADERS = {"shimx64.efi": "/usr/lib/shim/shimx64.efi.signed",
           "grubx64-disk.efi": "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
           "mmx64.efi": "/usr/lib/shim/mmx64.efi.signed"}
MARK = "USB-STANDIN"
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/kernel/printk
echo "USB-STANDIN-CMDLINE $(cat /proc/cmdline)"
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "insmod $m failed"; done
part=""
i=0
while [ $i -lt 120 ]; do
    part=$(findfs LABEL=IMAGER-DATA 2>/dev/null) && [ -b "$part" ] && break
    part=""; sleep 0.5; i=$((i+1))
done
yes() { [ -e "$1" ] && echo yes || echo no; }
list() { ls "$1" 2>/dev/null | tr '\n' ',' ; }
mkdir -p /data
if [ -n "$part" ] && mount -t ext4 -o ro "$part" /data; then
    sb=$(dmesg | grep -q "Secure boot enabled" && echo on || echo off)
    [ -d /sys/firmware/efi ] || sb=bios
    echo "USB-STANDIN data=$part kit=$(list /data/kit) ca=$(yes /data/station-ca.pem)" \
         "initrd-ca=$(yes /etc/imager/station-ca.pem) second=$(yes /imager-second)" \
         "spool=$(list /data/spool) secureboot=$sb"
    umount /data
else
    echo "USB-STANDIN data=none"
fi
poweroff -f
"""


def cache_dir() -> Path:
    return Path(os.environ.get("IMAGER_USB_TEST_CACHE") or DEFAULT_CACHE)


def kernel_package(cache: Path) -> Path:
    """The unpacked linux-image package this machine's apt offers (fetched once)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        depends = _run(["apt-cache", "depends", "--important", "linux-image-amd64"])
        name = re.search(r"Depends: (linux-image-\d\S*)", depends)
        assert name, f"apt-cache does not resolve linux-image-amd64: {depends}"
        tree = cache / name[1]
        if not (tree / "boot").is_dir():
            work = cache / f"{name[1]}.part"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            _run(["apt-get", "download", "-q", name[1]], cwd=work)
            (deb,) = work.glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(work / "tree")])
            os.rename(work / "tree", tree)
            shutil.rmtree(work)
        return tree


def standin_live(folder: Path, cache: Path | None = None) -> Path:
    """The stand-in live system's folder (as `imager boot build` leaves it)."""
    tree = kernel_package(cache or cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    (vmlinuz,) = (tree / "boot").glob("vmlinuz-*")
    shutil.copyfile(vmlinuz, folder / "vmlinuz")
    for name, source in LOADERS.items():
        shutil.copyfile(source, folder / name)
    root = folder / "live-root"
    for sub in ("bin", "proc", "sys", "dev", "modules", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/bin/busybox", root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    order = []
    for path in module_files(tree, MODULES):
        shutil.copyfile(path, root / "modules" / path.name)
        order.append(path.name)
    (root / "modules.order").write_text("\n".join(order) + "\n")
    _cpio_zstd(root, folder / "live.img")
    second = folder / "imager-root"
    second.mkdir(exist_ok=True)
    (second / "imager-second").write_text("the second initrd\n")
    _cpio_zstd(second, folder / "imager.img")
    shutil.rmtree(root)
    shutil.rmtree(second)
    return folder


def module_files(tree: Path, names: tuple[str, ...]) -> list[Path]:
    """The .ko files of `names` and their dependencies, each after what it needs
    (read from each module's `depends=`: this machine may have no kmod)."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p
             for p in (tree / "lib/modules").rglob("*.ko")}
    ordered: list[Path] = []

    def visit(name: str) -> None:
        path = index[name.replace("-", "_")]
        if path in ordered:
            return
        found = re.search(rb"\x00depends=([^\x00]*)\x00", path.read_bytes())
        for dep in (found[1].decode().split(",") if found and found[1] else []):
            visit(dep)
        ordered.append(path)

    for name in names:
        visit(name)
    return ordered


def _cpio_zstd(root: Path, out: Path) -> None:
    _run(["bash", "-c", "set -euo pipefail; find . -print0 | LC_ALL=C sort -z | cpio --null "
          f"--create --format=newc --quiet --owner=0:0 | zstd -q -f -o '{out}'"], cwd=root)


def _run(argv: list[str], *, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}{proc.stderr}"
    return proc.stdout


@contextmanager
def stick(folder: Path, size: int) -> Iterator[tuple[str, Path]]:
    """A loop device (partition scanning on, as a stick) over a sparse file of
    `size` bytes: (device, image); its partitions deleted and it detached after,
    whatever happened (partx's partitions would outlive the detach)."""
    image = folder / "stick.img"
    with open(image, "wb") as fh:
        fh.truncate(size)
    dev = _run(["losetup", "--find", "--show", "--partscan", str(image)]).strip()
    try:
        yield dev, image
    finally:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            source, target = line.split()[:2]
            if source.startswith(f"{dev}p"):
                subprocess.run(["umount", "--lazy", target], capture_output=True)
        subprocess.run(["partx", "--delete", dev], capture_output=True)
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


@dataclass(frozen=True)
class StickBoot:
    firmware: str
    cmdline: str | None
    found: dict[str, str] | None      # the USB-STANDIN line's fields
    seconds: float                    # QEMU start -> the line
    console: str


def boot_stick(image: Path, firmware: str, workdir: Path, *, timeout: float = 300) -> StickBoot:
    """Boot the stick image in QEMU (TCG) under `firmware` until the stand-in says
    what it found (or `timeout`); QEMU always killed after."""
    console = workdir / f"{firmware}-console.log"
    console.write_bytes(b"")
    argv = qemu_argv(image, firmware, workdir, console, memory_mib=512, usb=True)
    started = time.monotonic()
    with open(workdir / f"{firmware}-qemu.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        found = None
        while found is None and proc.poll() is None and time.monotonic() - started < timeout:
            time.sleep(0.5)
            found = _fields(console.read_text(errors="replace"))
        seconds = round(time.monotonic() - started, 1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    text = console.read_text(errors="replace")
    line = re.search(rf"{MARK}-CMDLINE (.*)", text)
    return StickBoot(firmware, line[1].strip() if line else None, _fields(text), seconds,
                     text)


def _fields(text: str) -> dict[str, str] | None:
    line = re.search(rf"^{MARK} (.*)$", text, re.MULTILINE)
    if line is None:
        return None
    return dict(w.split("=", 1) for w in line[1].split() if "=" in w)
