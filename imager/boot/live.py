"""`imager boot build`: the live system laptops boot, from the network or a stick.

    build(cache_dir=..., progress=...) -> LiveSystem     (cached by content)

Debian (the profiles' suite) made by mmdebstrap, the whole root as an initramfs
(the kernel runs its /init, `imager.boot.initscript`; no switch_root), Debian's
signed kernel with the modules laptops need to reach their drives and the
network (and those modules' firmware), the agent's tools, the project's Python
dependencies from PyPI wheels for the guest's Python. One folder per build:

    vmlinuz         Debian's signed kernel (sbverify --list)
    live.img        zstd newc cpio: the OS root and the Python dependencies
    imager.img      zstd newc cpio: /opt/imager, the `imager` package (byte-compiled
                    by the guest's Python) and its shipped profiles/*.yaml
    shimx64.efi grubx64.efi undionly.kpxe snponly.efi   the boot chain, from the
                    same build's packages (shim-signed, grub-efi-amd64-signed's
                    grubnetx64.efi.signed, ipxe)
    grubx64-disk.efi mmx64.efi   a USB stick's: the signed disk GRUB, MokManager
    manifest.json   keys, kernel, packages and versions, wheels, sizes, seconds

The kernel unpacks its initrds in order: boot `live.img imager.img` and, third,
the station's CA (`/etc/imager/station-ca.pem`, made by the boot service).
live.img is keyed on its recipe (`recipe()`: packages, suite, modules, wheels,
init...) and on the versions the mirror and PyPI give today (imager.boot.
live_versions: a security update builds it again; offline, the newest build of
the recipe is taken) and built once into <cache>/os-<key>; imager.img on the
package's code,
so that a change of code rebuilds only it. The same recipe and the same .deb
files give the same live.img (SOURCE_DATE_EPOCH, sorted cpio, fixed dates)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imager import __version__
from imager.boot import guest, initscript, live_versions
from imager.errors import ImagerError
from imager.profile.buildspec import BuildSpec
from imager.profile.rootfs import network_sources

SOURCE = Path(__file__).resolve().parents[2]        # imager's source tree
DEFAULT_CACHE = Path("/var/cache/imager-live")
CACHE_ENV = "IMAGER_LIVE_CACHE"
_PROFILE = BuildSpec(name="live", version="0")      # the profiles' suite and mirrors
SUITE = _PROFILE.suite
COMPONENTS = _PROFILE.components
SOURCES = network_sources(_PROFILE)
PYTHON = guest.GuestPython("3.13", 41)              # trixie: Python 3.13, glibc 2.41
EPOCH = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())   # SOURCE_DATE_EPOCH
# zstd -9: 120 MB for live.img in 8 s on 2 cores; -19 makes it 104 MB but takes 3 to
# 5 minutes, for a few seconds less on a LAN; the kernel unpacks both as fast.
ZSTD_LEVEL = 9
BUDGET_BYTES = 200_000_000                           # vmlinuz + live.img + imager.img

PACKAGES = (
    "python3", "udev", "kmod", "util-linux", "mount", "fdisk", "e2fsprogs", "procps",
    "hdparm", "nvme-cli", "sg3-utils", "smartmontools", "mmc-utils", "dmidecode",
    "iproute2", "busybox", "kbd", "console-setup",
)
KERNEL = "linux-image-amd64"
# Modules beyond the kernel's built-in ones (modprobe adds their dependencies);
# udev loads those that match the hardware. A built-in name is kept as documentation.
MODULES = (
    # drives: NVMe (also behind Intel VMD), SATA, SCSI disks and generic, USB
    # sticks and docks, SD/MMC readers (PCI, ACPI, Realtek PCI and USB), QEMU's
    "nvme", "vmd", "ahci", "ata_piix", "sd_mod", "sg", "usb_storage", "uas",
    "mmc_block", "sdhci_pci", "sdhci_acpi", "rtsx_pci_sdmmc", "rtsx_usb_sdmmc",
    "virtio_blk", "virtio_scsi",
    # wired Ethernet of laptops and docks, USB adapters, QEMU's
    "e1000e", "e1000", "igb", "igc", "r8169", "tg3", "atl1c", "atl1e", "alx", "sky2",
    "forcedeth", "jme", "b44", "8139cp", "8139too", "r8152", "ax88179_178a", "asix",
    "cdc_ether", "cdc_ncm", "aqc111", "lan78xx", "smsc95xx", "virtio_net",
    # USB host controllers, keyboards (PS/2 ones are built in)
    "xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usbhid", "hid_generic", "atkbd",
    "i8042",
    # EFI variables; a USB stick's FAT partition; ext4 (the image's after-steps, the
    # stick's IMAGER-DATA): its metadata_csum asks the crypto API for crc32c (only a
    # soft dependency of ext4's: named here, not left to modprobe's softdep reading)
    "efivarfs", "vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8", "ext4", "crc32c_generic",
)
FIRMWARE_PACKAGES = ("firmware-realtek", "firmware-misc-nonfree")
BOOT_FILES = {                                       # artefact: (package, path in it)
    "shimx64.efi": ("shim-signed", "usr/lib/shim/shimx64.efi.signed"),
    "grubx64.efi": ("grub-efi-amd64-signed",
                    "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
    # a USB stick's (imager.boot.usb.StickFiles): the signed disk GRUB, MokManager
    "grubx64-disk.efi": ("grub-efi-amd64-signed",
                         "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    "mmx64.efi": ("shim-helpers-amd64-signed", "usr/lib/shim/mmx64.efi.signed"),
    "undionly.kpxe": ("ipxe", "usr/lib/ipxe/undionly.kpxe"),
    "snponly.efi": ("ipxe", "usr/lib/ipxe/snponly.efi"),
}
# Removed from the root: nothing at run time reads them.
PRUNE = ("usr/share/X11/xkb", "var/cache/apt", "var/lib/apt/lists", "var/log",
         "usr/share/keyboard-configuration")
# What imager.img holds beside the package (the agent reads these shipped files).
SHIPPED = ("profiles/*.yaml",)
# This module's siblings whose code decides what live.img holds.
_OS_CODE = ("guest.py", "live.py", "initscript.py", "stages.py", "cmdline.py")
ARTEFACTS = ("vmlinuz", "live.img", *BOOT_FILES)


@dataclass(frozen=True)
class LiveProgress:
    """One step's progress: `done` of `total` (None: unknown); `detail` says what."""

    step: str             # mmdebstrap, kernel, python, initramfs, imager, done
    done: float
    total: float | None
    detail: str = ""


ProgressFn = Callable[[LiveProgress], None]


@dataclass(frozen=True)
class LiveSystem:
    """A built live system: its folder and what manifest.json says of it."""

    folder: Path
    manifest: dict[str, Any]
    cached: bool                       # nothing was built: all from the cache
    os_cached: bool                    # live.img came from the cache

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def live_img(self) -> Path:
        return self.folder / "live.img"

    @property
    def imager_img(self) -> Path:
        return self.folder / "imager.img"

    @property
    def initrds(self) -> tuple[Path, Path]:
        """The initrds in the order to load them (the station's CA comes third)."""
        return self.live_img, self.imager_img

    @property
    def boot_bytes(self) -> int:
        """vmlinuz + live.img + imager.img: what the size budget counts."""
        return sum(p.stat().st_size for p in (self.kernel, *self.initrds))

    def file(self, name: str) -> Path:
        return self.folder / name


def publish(system: LiveSystem, link: Path) -> Path:
    """Make `link` (e.g. <data dir>/boot/live) point at the live system's folder,
    replacing an older link at once; `link`."""
    if link.exists() and not link.is_symlink():
        raise ImagerError(f"{link} is not a link to a live system's folder: move it away, "
                          "then run `imager boot build` again")
    link.parent.mkdir(parents=True, exist_ok=True)
    fresh = link.with_name(f".{link.name}.{os.getpid()}")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(system.folder.resolve())
    os.replace(fresh, link)
    return link


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def recipe(source: Path = SOURCE) -> dict[str, Any]:
    """Everything that decides live.img's content."""
    return {
        "format": 1, "suite": SUITE, "sources": list(SOURCES), "components": list(COMPONENTS),
        "packages": list(PACKAGES), "kernel": KERNEL, "modules": list(MODULES),
        "firmware": list(FIRMWARE_PACKAGES), "boot_files": BOOT_FILES, "prune": list(PRUNE),
        "excludes": list(guest.DPKG_EXCLUDES), "epoch": EPOCH, "zstd": ZSTD_LEVEL,
        "python": [PYTHON.version, PYTHON.glibc_minor, PYTHON.site],
        "requirements": guest.python_requirements(_pyproject(source)),
        "init": initscript.init_script(), "udhcpc": initscript.udhcpc_script(),
    }


def os_key(source: Path = SOURCE) -> str:
    """sha256 of the recipe and of the build code: live.img's key."""
    digest = hashlib.sha256(json.dumps(recipe(source), sort_keys=True).encode())
    here = Path(__file__).parent
    for name in _OS_CODE:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()


def code_files(source: Path = SOURCE) -> list[Path]:
    """imager.img's files, relative to `source`: the package and SHIPPED."""
    found = [p.relative_to(source) for p in (source / "imager").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    for pattern in SHIPPED:
        found += [p.relative_to(source) for p in source.glob(pattern) if p.is_file()]
    return sorted(found)


def code_key(source: Path = SOURCE, *, os: str | None = None) -> str:
    """sha256 of imager.img's files and of live.img's key (its Python compiles them)."""
    digest = hashlib.sha256((os or os_key(source)).encode() + __version__.encode())
    for rel in code_files(source):
        digest.update(str(rel).encode() + b"\0" + (source / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def _pyproject(source: Path) -> Path:
    path = source / "pyproject.toml"
    if not path.is_file():
        raise ImagerError(f"{path} is missing: `imager boot build` runs from imager's source "
                          "tree (the live system's Python dependencies are read there)")
    return path


def build(*, cache: Path | None = None, source: Path = SOURCE, force: bool = False,
          progress: ProgressFn | None = None) -> LiveSystem:
    """The live system for the current recipe and code: from the cache, or built
    (only imager.img when only the code changed). `force`: build all again."""
    report = progress or (lambda _: None)
    cache = cache or cache_dir()
    rkey = os_key(source)
    resolved, okey = _resolve(cache, rkey, source, report, force=force)
    ckey = code_key(source, os=okey)
    folder = cache / f"live-{okey[:12]}-{ckey[:12]}"
    with _locked(cache):
        if not force and (folder / "manifest.json").is_file():
            report(LiveProgress("done", 1, 1, "cache"))
            return LiveSystem(folder, _read_json(folder / "manifest.json"), True, True)
        _check_host()
        osdir = cache / f"os-{okey[:16]}"
        os_cached = not force and (osdir / "os.json").is_file()
        work = cache / f"{folder.name}.work-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            root = None
            if not os_cached:
                assert resolved is not None          # _resolve: only cached builds lack it
                root = _build_os(osdir, (okey, rkey, resolved), source, work, report)
            manifest = _build_imager(osdir, work, ckey, source, root, report)
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(cache, keep={folder, osdir})
    report(LiveProgress("done", 1, 1, str(folder)))
    return LiveSystem(folder, manifest, False, os_cached)


def _resolve(cache: Path, recipe_key: str, source: Path, report: ProgressFn, *,
             force: bool) -> tuple[live_versions.Resolved | None, str]:
    """Today's versions and the key they make with the recipe; offline, the key of
    the newest build of the same recipe in the cache (None for the versions)."""
    report(LiveProgress("resolve", 0, 1, "Debian, PyPI"))
    try:
        resolved = live_versions.resolve(
            suite=SUITE, sources=SOURCES, components=COMPONENTS,
            packages=[*PACKAGES, *FIRMWARE_PACKAGES, *_boot_packages(), KERNEL],
            python=PYTHON, requirements=guest.python_requirements(_pyproject(source)),
            work=cache / f"resolve.work-{os.getpid()}")
    except ImagerError:
        fallback = None if force else live_versions.newest_for_recipe(cache, recipe_key)
        if fallback is None:
            raise
        report(LiveProgress("resolve", 1, 1, f"hors ligne / offline: built {fallback[1]}"))
        return None, fallback[0]
    digest = hashlib.sha256(recipe_key.encode())
    for line in resolved.lines():
        digest.update(line.encode() + b"\n")
    report(LiveProgress("resolve", 1, 1, f"{len(resolved.debs)} debs, "
                                         f"{len(resolved.wheels)} wheels"))
    return resolved, digest.hexdigest()


def _check_host() -> None:
    if os.geteuid() != 0:
        raise ImagerError("building the live system needs root (mmdebstrap --mode=root, "
                          "chroot): run `sudo imager boot build`")
    if missing := guest.missing_tools():
        raise ImagerError(f"outils absents / missing host packages: apt-get install "
                          f"{' '.join(missing)}")


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time in a cache (a second one waits, then finds it built)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# -- live.img -------------------------------------------------------------------------

def _build_os(osdir: Path, keys: tuple[str, str, live_versions.Resolved], source: Path,
              work: Path, report: ProgressFn) -> Path:
    """Build the OS part into `osdir` (keys: its key, its recipe's, the versions
    resolved); return the root, left in `work` for imager.img."""
    key, recipe_key, resolved = keys
    started, since = time.monotonic(), time.time() - 1
    out = osdir.with_name(f"{osdir.name}.work-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    root, scratch = work / "root", work / "scratch"
    scratch.mkdir()
    try:
        seconds = _os_steps(root, out, scratch, source, report)
        manifest = _os_manifest(root, key, seconds, scratch)
        live_versions.check(resolved, manifest["debian_packages"],
                            [(f["name"], f["version"]) for f in manifest["fetched_packages"]],
                            manifest["python_wheels"])
        manifest.update(recipe_key=recipe_key, resolved=resolved.lines())
        shutil.copyfile(scratch / "mmdebstrap.log", out / "mmdebstrap.log")
        shutil.rmtree(scratch)
        _finish_root(root)
        report(LiveProgress("initramfs", 0, 1, "cpio | zstd"))
        guest.clamp_mtimes(root, since=since, epoch=EPOCH)
        step = time.monotonic()
        guest.make_initramfs(root, out / "live.img", level=ZSTD_LEVEL)
        seconds["initramfs"] = round(time.monotonic() - step, 1)
        report(LiveProgress("initramfs", 1, 1, "live.img"))
        manifest["seconds"] = {**seconds, "total": round(time.monotonic() - started, 1)}
        manifest["artefacts"] = {name: _describe(out / name) for name in ARTEFACTS}
        (out / "os.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(osdir, ignore_errors=True)
        os.rename(out, osdir)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return root


def _os_steps(root: Path, out: Path, scratch: Path, source: Path,
              report: ProgressFn) -> dict[str, float]:
    seconds: dict[str, float] = {}
    step = time.monotonic()
    report(LiveProgress("mmdebstrap", 0, None, f"{SUITE}: {len(PACKAGES)} packages"))
    guest.mmdebstrap(root, suite=SUITE, sources=SOURCES, packages=PACKAGES,
                     components=COMPONENTS, work=scratch, epoch=EPOCH,
                     hooks=[guest.fetch_hook([*FIRMWARE_PACKAGES, *_boot_packages()],
                                             kernel=KERNEL)],
                     on_line=_SetUp(report))
    seconds["mmdebstrap"] = round(time.monotonic() - step, 1)
    step = time.monotonic()
    report(LiveProgress("kernel", 0, 2, "modules"))
    kernel_pkg = next(f.name for f in guest.fetched(root) if f.name.startswith("linux-image-"))
    kernel = guest.install_kernel(root, guest.staged(root, kernel_pkg), out / "vmlinuz",
                                  MODULES)
    report(LiveProgress("kernel", 1, 2, "firmware"))
    wanted = guest.firmware_names(root, kernel)
    copied = guest.install_firmware(root, [guest.staged(root, p) for p in FIRMWARE_PACKAGES],
                                    wanted)
    for name, (package, path) in BOOT_FILES.items():
        shutil.copyfile(guest.staged(root, package) / path, out / name)
    seconds["kernel"] = round(time.monotonic() - step, 1)
    report(LiveProgress("kernel", 2, 2, f"{kernel.version}: {len(kernel.modules)} modules"))
    step = time.monotonic()
    report(LiveProgress("python", 0, 2, "PyPI"))
    wheels = guest.install_wheels(root, PYTHON, guest.python_requirements(_pyproject(source)))
    report(LiveProgress("python", 1, 2, "compileall"))
    guest.compile_python(root, [f"/{PYTHON.site}"], epoch=EPOCH)
    report(LiveProgress("python", 2, 2, f"{len(wheels)} wheels"))
    seconds["python"] = round(time.monotonic() - step, 1)
    _configure(root)
    (scratch / "facts.json").write_text(json.dumps({
        "kernel_version": kernel.version, "modules": len(kernel.modules),
        "firmware": copied, "firmware_missing": sorted(set(wanted) - set(copied)),
        "wheels": wheels}))
    return seconds


def _boot_packages() -> list[str]:
    return sorted({package for package, _ in BOOT_FILES.values()})


def _configure(root: Path) -> None:
    """The live system's own files: /init, the DHCP script, the French keymap."""
    files = {
        "init": (initscript.init_script(), 0o755),
        initscript.UDHCPC_SCRIPT.lstrip("/"): (initscript.udhcpc_script(), 0o755),
        "etc/hostname": ("imager-live\n", 0o644),
        "etc/hosts": ("127.0.0.1\tlocalhost\n127.0.1.1\timager-live\n", 0o644),
        "etc/machine-id": ("", 0o444),
        "etc/resolv.conf": ("", 0o644),
    }
    for rel, (text, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_text(text)
        path.chmod(mode)
    keymap = guest.chroot(root, "ckbcomp", "-model", "pc105", "-layout", "fr",
                          what="ckbcomp (the French console keymap)")
    path = root / initscript.KEYMAP.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(keymap)


def _finish_root(root: Path) -> None:
    """Remove what the live system does not need: the fetched packages, apt's
    lists and caches, the fonts but the one shown, the keyboard data."""
    shutil.rmtree(root / guest.STAGING)
    for rel in PRUNE:
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
    fonts = {Path(initscript.FONT).name, Path(initscript.TEXT_FONT).name}
    for other in (root / "usr/share/consolefonts").glob("*"):
        if other.name not in fonts:
            other.unlink()
    for stale in ("etc/apt/sources.list", "var/cache/ldconfig/aux-cache",
                  "etc/nvme/hostid", "etc/nvme/hostnqn"):   # random, made at each boot
        (root / stale).unlink(missing_ok=True)
    for pattern in ("var/cache/debconf/*-old", "var/lib/dpkg/*-old", "etc/*-"):
        for path in root.glob(pattern):
            path.unlink()


def _os_manifest(root: Path, key: str, seconds: dict[str, float],
                 scratch: Path) -> dict[str, Any]:
    facts = _read_json(scratch / "facts.json")
    debs = guest.chroot(root, "dpkg-query", "-W", "-f=${Package}\t${Version}\n",
                        what="dpkg-query")
    return {
        "format": "imager-live/1", "os_key": key, "suite": SUITE, "epoch": EPOCH,
        "kernel_version": facts["kernel_version"], "modules": facts["modules"],
        "firmware": facts["firmware"], "firmware_missing": facts["firmware_missing"],
        "debian_packages": dict(line.split("\t") for line in debs.splitlines()),
        "fetched_packages": [f.as_dict() for f in guest.fetched(root)],
        "python": PYTHON.version, "python_wheels": facts["wheels"],
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
    }


class _SetUp:
    """mmdebstrap's verbose output -> packages set up so far."""

    def __init__(self, report: ProgressFn) -> None:
        self.report, self.count = report, 0

    def __call__(self, line: str) -> None:
        if line.startswith("Setting up "):
            self.count += 1
            self.report(LiveProgress("mmdebstrap", self.count, None,
                                     line.removeprefix("Setting up ")[:60]))
        elif line.startswith("I: running --customize-hook"):
            self.report(LiveProgress("mmdebstrap", self.count, None, "kernel, firmware, boot"))


# -- imager.img -----------------------------------------------------------------------

def _build_imager(osdir: Path, work: Path, ckey: str, source: Path, root: Path | None,
                  report: ProgressFn) -> dict[str, Any]:
    """imager.img into `work`, beside links to `osdir`'s artefacts; the manifest."""
    started = time.monotonic()
    report(LiveProgress("imager", 0, 3, "guest Python"))
    if root is None:                           # live.img from the cache: unpack its root
        root = work / "root"
        guest.extract_initramfs(osdir / "live.img", root)
    tree = root / initscript.IMAGER_ROOT.lstrip("/")
    shutil.rmtree(tree, ignore_errors=True)
    for rel in code_files(source):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, tree / rel)
    report(LiveProgress("imager", 1, 3, "compileall"))
    guest.compile_python(root, [f"{initscript.IMAGER_ROOT}/imager"], epoch=EPOCH)
    image_root = work / "imager-root"
    (image_root / tree.relative_to(root)).parent.mkdir(parents=True)
    os.rename(tree, image_root / tree.relative_to(root))
    shutil.rmtree(root)
    _normalise(image_root)
    report(LiveProgress("imager", 2, 3, "cpio | zstd"))
    guest.make_initramfs(image_root, work / "imager.img", level=ZSTD_LEVEL)
    shutil.rmtree(image_root)
    for name in ARTEFACTS:
        os.link(osdir / name, work / name)
    manifest = _read_json(osdir / "os.json")
    manifest["code_key"] = ckey
    manifest["seconds"]["imager"] = round(time.monotonic() - started, 1)
    manifest["artefacts"]["imager.img"] = _describe(work / "imager.img")
    boot = sum(manifest["artefacts"][n]["bytes"] for n in ("vmlinuz", "live.img",
                                                           "imager.img"))
    manifest["budget"] = {"boot_bytes": boot, "limit_bytes": BUDGET_BYTES,
                          "within": boot <= BUDGET_BYTES}
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    report(LiveProgress("imager", 3, 3, "imager.img"))
    return manifest


def _normalise(tree: Path) -> None:
    """Owner root, modes 0755 (folders) / 0644 (files), dated EPOCH."""
    for folder, dirs, files in os.walk(tree):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(tree, 0o755)
    guest.clamp_mtimes(tree, since=0, epoch=EPOCH)


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _prune(cache: Path, *, keep: set[Path]) -> None:
    """Keep the three newest OS builds and the ten newest live folders (older
    recipes and code); never those in `keep`, never a build under way."""
    for prefix, count in (("os-", 3), ("live-", 10)):
        done = sorted((p for p in cache.glob(f"{prefix}*")
                       if p.is_dir() and ".work-" not in p.name),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for old in done[count:]:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)
