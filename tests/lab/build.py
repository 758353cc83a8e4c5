"""Build the lab guest once and cache it: a Debian 12 kernel + one initramfs with the whole root.

    python tests/lab/build.py [--force]

The root is made by mmdebstrap (variant minbase, no recommends, no docs/locales),
with python3, udev and the firmware tools. The project's Python dependencies
(read from pyproject.toml) come from PyPI wheels for the guest's Python, because
Debian 12 ships versions older than the project requires. The kernel comes from
Debian's linux-image-amd64, keeping only the modules the lab's emulated hardware
needs. The cache (env IMAGER_LAB_CACHE, default /var/cache/imager-lab) is keyed
on a hash of the recipe below and of this file, so changing either rebuilds. Needs root.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
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
DPKG_EXCLUDES = (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/usr/share/lintian/*", "/usr/share/bug/*",
)
GUEST_SITE = "usr/local/lib/python3.11/dist-packages"
GUEST_PYTHON = "3.11"
GUEST_GLIBC_MINOR = 36  # Debian 12 has glibc 2.36
# pip does not expand a manylinux tag to the older ones it accepts: list them all.
GUEST_PLATFORMS = (
    *[f"manylinux_2_{minor}_x86_64" for minor in range(GUEST_GLIBC_MINOR, 4, -1)],
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
)

# Runs on the host during mmdebstrap's customize phase: fetch the kernel package
# with the guest's apt and unpack it under /lab-kernel (no initramfs-tools needed).
KERNEL_HOOK = f"""\
set -eu
root="$1"
pkg=$(chroot "$root" apt-cache depends --important {KERNEL_PACKAGE} \\
      | sed -n 's/^ *Depends: \\(linux-image-[0-9].*\\)$/\\1/p' | head -n1)
[ -n "$pkg" ] || {{ echo "lab build: cannot resolve {KERNEL_PACKAGE}" >&2; exit 1; }}
chroot "$root" sh -ec "cd /var/cache && apt-get download -q $pkg 2>&1 && \\
    dpkg-deb -x /var/cache/linux-image-*.deb /lab-kernel && rm /var/cache/linux-image-*.deb"
"""

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


class BuildError(RuntimeError):
    """The guest image could not be built; the message says which step and why."""


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
    with open(pyproject, "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def recipe() -> dict[str, object]:
    """Everything that decides the image's content; its hash is the cache key."""
    return {
        "format": 1, "suite": SUITE, "mirrors": MIRRORS, "packages": GUEST_PACKAGES,
        "kernel": KERNEL_PACKAGE, "modules": MODULES, "excludes": DPKG_EXCLUDES,
        "python": [GUEST_PYTHON, GUEST_PLATFORMS, GUEST_SITE, python_requirements()],
        "kernel_hook": KERNEL_HOOK, "init": INIT,
    }


def recipe_key() -> str:
    """Hash of the recipe and of this file's build steps."""
    blob = json.dumps(recipe(), sort_keys=True).encode() + Path(__file__).read_bytes()
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
    tools = {"mmdebstrap": "mmdebstrap", "cpio": "cpio", "zstd": "zstd", "chroot": "coreutils"}
    return sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})


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
    start = time.monotonic()
    root = work / "root"
    log("lab build: mmdebstrap (a few minutes)")
    _mmdebstrap(work, root)
    log("lab build: kernel and modules")
    kver = _install_kernel(root, work / "vmlinuz")
    log("lab build: Python dependencies from PyPI")
    _install_python_deps(root)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    manifest = _manifest(root, kver)
    shutil.rmtree(root / "var/cache/apt", ignore_errors=True)
    log("lab build: initramfs")
    _make_initramfs(root, work / "initrd.img")
    shutil.rmtree(root)
    manifest["build_seconds"] = round(time.monotonic() - start, 1)
    manifest["initrd_bytes"] = (work / "initrd.img").stat().st_size
    manifest["kernel_bytes"] = (work / "vmlinuz").stat().st_size
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _run(argv: Sequence[str], *, what: str, timeout: float = 900,
         cwd: Path | None = None) -> str:
    """Run a build step; raise BuildError with its output if it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: no result within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _mmdebstrap(work: Path, root: Path) -> None:
    hook = work / "kernel-hook.sh"
    hook.write_text(KERNEL_HOOK)
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
            "--aptopt=APT::Install-Recommends \"false\"",
            f"--include={','.join(GUEST_PACKAGES)}",
            *[f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES],
            f"--customize-hook=sh {hook} \"$1\"",
            SUITE, str(root), *MIRRORS]
    _run(argv, what="mmdebstrap")


def _install_kernel(root: Path, vmlinuz: Path) -> str:
    """Copy the kernel out and keep only the modules the lab needs; return its version."""
    kroot = root / "lab-kernel"
    versions = sorted(p.name for p in (kroot / "lib/modules").iterdir())
    if len(versions) != 1:
        raise BuildError(f"expected one kernel in {kroot}, found {versions}")
    kver = versions[0]
    shutil.copyfile(kroot / f"boot/vmlinuz-{kver}", vmlinuz)
    _check_kernel_config(kroot / f"boot/config-{kver}")
    _run(["chroot", str(root), "depmod", "-b", "/lab-kernel", kver], what="depmod (full)")
    for rel in _module_files(root, kver):
        dest = root / rel.relative_to("/lab-kernel")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel.relative_to("/"), dest)
    src = kroot / "lib/modules" / kver
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(src / name, root / "lib/modules" / kver / name)
    _run(["chroot", str(root), "depmod", kver], what="depmod (lab modules)")
    shutil.rmtree(kroot)
    return kver


def _check_kernel_config(config: Path) -> None:
    text = config.read_text()
    for option in ("CONFIG_RD_ZSTD=y", "CONFIG_BLK_DEV_INITRD=y", "CONFIG_MAGIC_SYSRQ=y"):
        if option not in text:
            raise BuildError(f"the guest kernel lacks {option}: the lab cannot boot it")


def _module_files(root: Path, kver: str) -> set[Path]:
    """The .ko files of MODULES and their dependencies (paths inside the chroot)."""
    files: set[Path] = set()
    for name in MODULES:
        out = _run(["chroot", str(root), "modprobe", "-d", "/lab-kernel", "-S", kver,
                    "--show-depends", name], what=f"modprobe --show-depends {name}")
        files |= {Path(line.split()[1]) for line in out.splitlines()
                  if line.startswith("insmod ")}
    return files


def _install_python_deps(root: Path) -> None:
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--implementation=cp",
            f"--python-version={GUEST_PYTHON}", *[f"--platform={p}" for p in GUEST_PLATFORMS],
            "--target", str(root / GUEST_SITE), *python_requirements()]
    _run(argv, what="pip install (guest Python dependencies)")
    shutil.rmtree(root / GUEST_SITE / "bin", ignore_errors=True)
    # Byte-compile with the guest's Python: TCG makes compiling at import time slow.
    _run(["chroot", str(root), "python3", "-m", "compileall", "-q", "-j0", f"/{GUEST_SITE}"],
         what="compileall (guest Python dependencies)")


def _manifest(root: Path, kver: str) -> dict[str, object]:
    debs = _run(["chroot", str(root), "dpkg-query", "-W", "-f=${Package}\t${Version}\n"],
                what="dpkg-query")
    wheels = sorted(p.name.removesuffix(".dist-info")
                    for p in (root / GUEST_SITE).glob("*.dist-info"))
    return {
        "recipe_key": recipe_key(), "kernel_version": kver, "suite": SUITE,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "debian_packages": dict(line.split("\t") for line in debs.splitlines()),
        "python_wheels": wheels,
    }


def _make_initramfs(root: Path, dest: Path) -> None:
    script = ("set -euo pipefail; find . -print0 | LC_ALL=C sort -z"
              " | cpio --null --create --format=newc --quiet"
              f" | zstd -q -T0 -9 -o '{dest}'")
    _run(["bash", "-c", script], what="cpio | zstd", cwd=root)


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
