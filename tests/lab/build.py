"""Build the lab guest once and cache it: a Debian 12 kernel + one initramfs with the whole root.

    python tests/lab/build.py [--force]

The steps are the live system's (imager.boot.guest): a minbase root made by
mmdebstrap (no recommends, no docs/locales) with python3, udev and the firmware
tools; Debian's linux-image-amd64, keeping only the modules the lab's emulated
hardware needs; the project's Python dependencies (read from pyproject.toml)
from PyPI wheels for the guest's Python, because Debian 12 ships versions older
than the project requires; the root as one reproducible zstd cpio. The guest
runs the project's code from a 9p share, so it holds no copy of it. The cache
(env IMAGER_LAB_CACHE, default /var/cache/imager-lab) is keyed on a hash of the
recipe below and of the build code (this file, imager/boot/guest.py), so changing
either rebuilds. Needs root.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:      # run as a script
    sys.path.insert(0, str(PROJECT))

from imager.boot import guest  # noqa: E402
from imager.errors import ImagerError  # noqa: E402

DEFAULT_CACHE = Path("/var/cache/imager-lab")
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
GUEST_PACKAGES = (
    "python3", "udev", "kmod", "util-linux", "hdparm", "nvme-cli", "sg3-utils",
    "smartmontools", "mmc-utils", "procps",
)
KERNEL_PACKAGE = "linux-image-amd64"
# Modules for the lab's hardware; modprobe adds their dependencies.
MODULES = (
    "nvme", "ahci", "sd_mod", "sg", "virtio_pci", "virtio_scsi", "virtio_blk",
    "virtio_console", "9p", "9pnet_virtio", "xhci_pci", "usb_storage", "uas",
    "sdhci_pci", "mmc_block", "crc32c_generic",
)
PYTHON = guest.GuestPython("3.11", 36)    # Debian 12: Python 3.11, glibc 2.36
EPOCH = 1700000000                        # SOURCE_DATE_EPOCH of the guest's build
# The build code beside this file's: its source is in the key.
BUILD_CODE = (Path(__file__), PROJECT / "imager" / "boot" / "guest.py")

# PID 1 of the guest: mount, coldplug with udev, mount the 9p shares, run the
# agent the host put into the "lab" share, then power off.
INIT = """\
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /project /lab
mount -t devpts devpts /dev/pts
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "lab-init: kernel $(uname -r), starting udev"
/lib/systemd/systemd-udevd --daemon
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
modprobe 9pnet_virtio && modprobe 9p
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $opts,ro project /project || echo "lab-init: no project share"
if mount -t 9p -o $opts lab /lab && [ -f /lab/agent.py ]; then
    echo "lab-init: starting the agent"
    python3 /lab/agent.py
    echo "lab-init: agent exited with status $?"
else
    echo "lab-init: FATAL: cannot mount the lab share or find /lab/agent.py"
fi
sync
echo "lab-init: power off"
echo o > /proc/sysrq-trigger
sleep 30
"""

LogFn = Callable[[str], None]
BuildError = ImagerError          # the guest could not be built; the message says why


@dataclass(frozen=True)
class GuestImage:
    """A built guest: boot it with `qemu -kernel kernel -initrd initrd`."""

    kernel: Path
    initrd: Path
    manifest: dict[str, object]

    @property
    def kernel_version(self) -> str:
        return str(self.manifest["kernel_version"])


def python_requirements(pyproject: Path = PROJECT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies, as pip requirement strings."""
    return guest.python_requirements(pyproject)


def recipe() -> dict[str, object]:
    """Everything that decides the image's content; its hash is the cache key."""
    return {
        "format": 2, "suite": SUITE, "mirrors": MIRRORS, "packages": GUEST_PACKAGES,
        "kernel": KERNEL_PACKAGE, "modules": MODULES, "excludes": guest.DPKG_EXCLUDES,
        "python": [PYTHON.version, PYTHON.glibc_minor, python_requirements()],
        "init": INIT, "epoch": EPOCH,
    }


def recipe_key() -> str:
    """Hash of the recipe and of the build code."""
    blob = json.dumps(recipe(), sort_keys=True).encode()
    blob += b"".join(path.read_bytes() for path in BUILD_CODE)
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("IMAGER_LAB_CACHE") or DEFAULT_CACHE)


def cached_image(cache: Path | None = None) -> GuestImage | None:
    """The image for the current recipe if it is already built, else None."""
    out = (cache or cache_dir()) / f"{SUITE}-{recipe_key()}"
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return None
    return GuestImage(out / "vmlinuz", out / "initrd.img", json.loads(manifest.read_text()))


def missing_tools() -> list[str]:
    """Host tools the build needs that are not installed (Debian package names)."""
    return guest.missing_tools()


def ensure_image(cache: Path | None = None, *, force: bool = False,
                 log: LogFn = print) -> GuestImage:
    """Return the cached guest image, building it first if the recipe changed."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        image = None if force else cached_image(cache)
        if image is None:
            image = _build(cache, log)
        return image


def _build(cache: Path, log: LogFn) -> GuestImage:
    if os.geteuid() != 0:
        raise BuildError("building the lab guest needs root (mmdebstrap --mode=root, chroot)")
    if missing := missing_tools():
        raise BuildError(f"missing host packages: apt-get install {' '.join(missing)}")
    out = cache / f"{SUITE}-{recipe_key()}"
    work = cache / f"{out.name}.build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir()
    try:
        manifest = _build_into(work, log)
        os.rename(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in cache.glob(f"{SUITE}-*"):
        if old != out and old.is_dir() and ".build-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)  # built from an older recipe
    log(f"lab build: {out} ready in {manifest['build_seconds']:.0f} s")
    return GuestImage(out / "vmlinuz", out / "initrd.img", manifest)


def _build_into(work: Path, log: LogFn) -> dict[str, object]:
    start, since = time.monotonic(), time.time() - 1
    root, scratch = work / "root", work / "scratch"
    scratch.mkdir()
    log("lab build: mmdebstrap (a few minutes)")
    guest.mmdebstrap(root, suite=SUITE, sources=MIRRORS, packages=GUEST_PACKAGES,
                     hooks=[guest.fetch_hook([], kernel=KERNEL_PACKAGE)], work=scratch,
                     epoch=EPOCH)
    log("lab build: kernel and modules")
    kernel_pkg = next(f.name for f in guest.fetched(root) if f.name.startswith("linux-image-"))
    kernel = guest.install_kernel(root, guest.staged(root, kernel_pkg), work / "vmlinuz",
                                  MODULES)
    shutil.rmtree(root / guest.STAGING)
    log("lab build: Python dependencies from PyPI")
    wheels = guest.install_wheels(root, PYTHON, python_requirements())
    guest.compile_python(root, [f"/{PYTHON.site}"], epoch=EPOCH)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    manifest = _manifest(root, kernel.version, wheels)
    shutil.rmtree(root / "var/cache/apt", ignore_errors=True)
    shutil.rmtree(scratch)
    log("lab build: initramfs")
    guest.clamp_mtimes(root, since=since, epoch=EPOCH)
    guest.make_initramfs(root, work / "initrd.img", level=9)
    shutil.rmtree(root)
    manifest["build_seconds"] = round(time.monotonic() - start, 1)
    manifest["initrd_bytes"] = (work / "initrd.img").stat().st_size
    manifest["kernel_bytes"] = (work / "vmlinuz").stat().st_size
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _manifest(root: Path, kver: str, wheels: list[str]) -> dict[str, object]:
    debs = guest.chroot(root, "dpkg-query", "-W", "-f=${Package}\t${Version}\n",
                        what="dpkg-query")
    return {
        "recipe_key": recipe_key(), "kernel_version": kver, "suite": SUITE,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "debian_packages": dict(line.split("\t") for line in debs.splitlines()),
        "python_wheels": wheels,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        image = ensure_image(force=args.force)
    except BuildError as exc:
        print(f"lab build: {exc}", file=sys.stderr)
        return 1
    print(f"kernel {image.kernel}\ninitrd {image.initrd}\n"
          f"kernel version {image.kernel_version}, initrd "
          f"{image.manifest['initrd_bytes'] / 2**20:.1f} MiB, "
          f"built in {image.manifest['build_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
