"""`imager boot usb DEVICE`: the live system on a USB stick that boots BIOS and
UEFI (Secure Boot on or off), with the offline kit, the spool and the station's CA.

    p1  BIOS boot (1 MiB)    GRUB's core.img (SeaBIOS, legacy BIOS)
    p2  EFI system (FAT32)   EFI/BOOT/BOOTX64.EFI = shim, grubx64.efi = Debian's signed
                             GRUB, mmx64.efi = MokManager (the removable path: no NVRAM
                             entry needed); EFI/debian/grub.cfg (the signed GRUB's prefix);
                             boot/grub (BIOS: grub.cfg, i386-pc modules); live/ (vmlinuz,
                             live.img, imager.img, station.img = the CA as a cpio)
    p3  IMAGER-DATA (ext4)   kit/, spool/, station-ca.pem (imager.boot.usb_data)

GPT as the OS images (imager.profile.disk), plus the "active" flag on the
protective MBR's entry: some old BIOSes boot only a disk with an active entry,
and UEFI firmware ignores it. No hybrid MBR (fragile, and UEFI firmware may then
take the stick for an MBR disk).

Writing the stick again replaces the system; the spool is copied to the station
first (<data dir>/usb-spools/), written back and checked file by file: reports
never get lost (imager.boot.usb_data.save)."""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from imager.boot import usb_data
from imager.erase import guard
from imager.errors import ImagerError, RefusedDevice, UsageError
from imager.host import devices, loopdev
from imager.host.blockdev import OpenDevice, aligned_buffer, drop_cache, open_device
from imager.host.device_facts import gather
from imager.host.fat import make_fat
from imager.host.loopdev import mounted
from imager.host.run import run
from imager.host.stream import run_streaming
from imager.imaging import bmap
from imager.inventory import lsblk
from imager.model import DriveIdentity
from imager.settings import Settings

MiB = 1 << 20
SECTOR = 512
BIOS_BOOT = (2048, 4095)                       # sectors of p1, as the OS images
MIN_ESP, ESP_STEP, MIN_DATA, DATA_SLACK = 256 * MiB, 64 * MiB, 64 * MiB, 128 * MiB
ESP_LABEL = "IMAGER-EFI"
CMDLINE = "imager.boot=usb console=tty0 console=ttyS0,115200"
GRUB_PC = Path("/usr/lib/grub/i386-pc")        # grub-pc-bin: modules and grub-bios-setup
BIOS_MODULES = ("biosdisk", "part_gpt", "fat", "search_fs_uuid", "search")
INITRDS = ("live.img", "imager.img", "station.img")
CA_IN_INITRD = "etc/imager/station-ca.pem"     # where the live system reads its CA
TOOLS = {"wipefs": "util-linux", "partx": "util-linux", "blkid": "util-linux",
         "mount": "mount", "umount": "mount", "sgdisk": "gdisk", "mkfs.vfat": "dosfstools",
         "mmd": "mtools", "mcopy": "mtools", "mkfs.ext4": "e2fsprogs",
         "grub-mkimage": "grub-common", "cpio": "cpio"}           # tool -> Debian package
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?")
_CHUNK = 4 * MiB
BLOCK = 4096


@dataclass(frozen=True)
class StickFiles:
    """The live system's files a stick needs: Debian's signed kernel, the initrds
    (live.img then imager.img), shim, Debian's signed *disk* GRUB
    (grub-efi-amd64-signed's grubx64.efi.signed, not the network one) and
    MokManager, all from the same build (shim's SBAT rules meet that GRUB)."""

    vmlinuz: Path
    live: Path
    imager: Path
    shim: Path
    grub: Path
    mokmanager: Path

    NAMES: ClassVar[dict[str, str]] = {
        "vmlinuz": "vmlinuz", "live": "live.img", "imager": "imager.img",
        "shim": "shimx64.efi", "grub": "grubx64-disk.efi", "mokmanager": "mmx64.efi"}

    @classmethod
    def in_folder(cls, folder: Path) -> StickFiles:
        """The files as `imager boot build` leaves them in its folder."""
        return cls(**{name: folder / file for name, file in cls.NAMES.items()})

    def paths(self) -> dict[str, Path]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self) -> StickFiles:
        """Self, or UsageError naming the missing files and the fix."""
        missing = [str(p) for p in self.paths().values() if not p.is_file()]
        if missing:
            raise UsageError(
                f"fichiers du système autonome absents / live system files missing: "
                f"{', '.join(missing)}: build it with `imager boot build` (or give its folder "
                "with --live DIR); grubx64-disk.efi is grub-efi-amd64-signed's "
                "grubx64.efi.signed and mmx64.efi shim-helpers-amd64-signed's "
                "mmx64.efi.signed, from the build's own packages")
        return self

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths().values())


@dataclass(frozen=True)
class StickContent:
    """What the station puts on a stick besides the live system."""

    kit: Callable[[Path], Sequence[Path]]   # writes the offline kit into a folder
    ca_pem: bytes                    # the CA the live system's agent pins
    station: str | None = None       # imager.station= on the command line (bench network)


@dataclass(frozen=True)
class Stick:
    """A device the guard and the USB rule accept, as the technician confirms it."""

    path: str
    size: int
    model: str
    key: str                         # the drive's identity (serial...): the same stick

    def describe(self) -> str:
        return f"{self.path} ({self.model}, {self.size / 1e9:.1f} Go)"


@dataclass(frozen=True)
class StickProgress:
    step: str                        # check, save-spool, partition, esp, verify, data,
    done: int = 0                    # bios, check-spool, done; bytes for esp and verify
    total: int | None = None


ProgressFn = Callable[[StickProgress], None]


@dataclass(frozen=True)
class WrittenStick:
    stick: Stick
    cmdline: str
    esp_size: int
    esp_used: int                    # the live system, the loaders, GRUB's modules
    data_size: int
    carried: int                     # spool files carried over (0: a new spool)
    seconds: float


# -- the target -----------------------------------------------------------------------

def check_stick(device: str, settings: Settings, *, allow_loop: bool = False) -> Stick:
    """The stick at `device`, or RefusedDevice with every reason: the safety guard's
    (mounted, the running system, a partition, read-only, open by a program...)
    and a device that is not on USB. `allow_loop` lets a loop device over a file
    stand in for a stick: for the tests only, no command passes it."""
    facts = gather(device, settings)
    reasons = guard.refusals(facts, stick_writer=True) if not facts.is_file else [
        f"{device} est un fichier, pas une clé USB / is a regular file, not a USB stick: "
        "give the stick's device, e.g. /dev/sdb"]
    ident = lsblk.probe(device, settings) if facts.exists and facts.is_block else None
    if ident is not None:
        reasons += _not_a_stick(ident, facts.backing is not None, allow_loop=allow_loop)
    if reasons or ident is None:
        raise RefusedDevice(device, ["clé refusée, rien n'a été écrit / stick refused, "
                                     "nothing was written", *reasons])
    model = " ".join(p for p in (ident.vendor, ident.model) if p) or "modèle inconnu"
    return Stick(device, ident.size, model, ident.key)


def _not_a_stick(ident: DriveIdentity, backed_by_device: bool, *,
                 allow_loop: bool) -> list[str]:
    if ident.transport == "usb":
        return []
    if ident.transport == "loop" and allow_loop and not backed_by_device:
        return []
    bus = ident.transport or "inconnu / unknown"
    return [f"ce n'est pas une clé USB (bus : {bus}) / not a USB device (transport {bus}): "
            "plug the stick into a USB port and give its device (`lsblk -o "
            "NAME,TRAN,MODEL,SIZE` lists them)"]


# -- layout and boot configuration ----------------------------------------------------

@dataclass(frozen=True)
class Layout:
    esp: tuple[int, int]             # first and last sectors
    data_first: int
    size: int

    @property
    def esp_bytes(self) -> int:
        return (self.esp[1] - self.esp[0] + 1) * SECTOR


def layout(size: int, live_bytes: int, data_bytes: int = 0, *, where: str = "") -> Layout:
    """The partitions for a stick of `size` bytes carrying `live_bytes` of boot
    files and `data_bytes` of kit; UsageError when it does not fit."""
    esp = max(MIN_ESP, -(-(live_bytes * 5 // 4 + ESP_STEP) // ESP_STEP) * ESP_STEP)
    esp_first = BIOS_BOOT[1] + 1
    esp_last = esp_first + esp // SECTOR - 1
    data = max(MIN_DATA, data_bytes * 11 // 10 + DATA_SLACK)   # ext4's own room, the spool
    need = (esp_last + 1) * SECTOR + data + MiB
    if size < need:
        raise UsageError(f"clé trop petite / stick too small: {where} holds {size / 1e9:.2f} GB, "
                         f"the live system and its data need {need / 1e9:.2f} GB: use a "
                         "bigger stick")
    return Layout((esp_first, esp_last), esp_last + 1, size)


def check_station(url: str | None) -> str | None:
    """The station URL for the command line, or UsageError."""
    if url is not None and not _URL.fullmatch(url):
        raise UsageError(f"--station {url!r} : donnez une adresse comme / give a URL such as "
                         "https://station.lan:8470 (no spaces or quotes)")
    return url


def cmdline(station: str | None) -> str:
    """The live system's kernel command line on a stick."""
    return f"{CMDLINE} imager.station={station}" if station else CMDLINE


def grub_cfg(esp_uuid: str, station: str | None) -> str:
    """The one grub.cfg of both GRUBs: the ESP by its volume id, the live system."""
    initrds = " ".join(f"/live/{name}" for name in INITRDS)
    return ("set default=0\nset timeout=3\n"
            "serial --unit=0 --speed=115200\n"
            "terminal_input console serial\nterminal_output console serial\n"
            f"search --no-floppy --fs-uuid --set=root {esp_uuid}\n"
            'menuentry "Station imager : système autonome (clé USB)" {\n'
            f"    linux /live/vmlinuz {cmdline(station)}\n"
            f"    initrd {initrds}\n}}\n")


# -- writing ----------------------------------------------------------------------------

def missing_tools() -> list[str]:
    """The Debian packages writing a stick needs and this machine lacks."""
    lacking = {pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}
    if not (GRUB_PC / "grub-bios-setup").is_file():
        lacking.add("grub-pc-bin")
    return sorted(lacking)


def write_stick(device: str, files: StickFiles, content: StickContent, settings: Settings,
                *, expect: Stick | None = None, progress: ProgressFn | None = None,
                allow_loop: bool = False) -> WrittenStick:
    """Write the live system, the kit, the CA and the spool (carried over) to the
    stick `device`, checked again here (`expect`: the stick the technician
    confirmed, refused if another one is there now)."""
    say = progress or (lambda _: None)
    started = time.monotonic()
    if lacking := missing_tools():
        raise ImagerError(f"outils absents / tools missing to write a stick: apt-get install "
                          f"{' '.join(lacking)}")
    files.check()
    station = check_station(content.station)
    say(StickProgress("check"))
    stick = check_stick(device, settings, allow_loop=allow_loop)
    if expect is not None and stick.key != expect.key:
        raise RefusedDevice(device, [f"ce n'est plus la clé confirmée / not the stick that "
                                     f"was confirmed ({expect.describe()}): check and retry"])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="usb-work-", dir=settings.data_dir) as tmp:
        work = Path(tmp)
        say(StickProgress("kit"))                          # nothing written to the stick yet
        tree = _data_tree(work, content)
        plan = layout(stick.size, files.size(), _bytes(tree), where=stick.describe())
        say(StickProgress("esp-image"))
        esp_image, used = _esp_image(work, plan, files, content.ca_pem, station)
        say(StickProgress("save-spool"))
        saved = usb_data.save(usb_data.find(device, settings), settings, stick.key)
        try:
            data = _write(stick.path, plan, esp_image, tree, saved, work, settings, say)
            carried = 0
            if saved is not None:
                say(StickProgress("check-spool"))
                carried = usb_data.check_carried(data, saved, settings)
        except ImagerError as exc:
            if saved is not None:
                raise ImagerError(f"{exc} — le spool de la clé est gardé dans / the stick's "
                                  f"spool is kept in {saved / usb_data.SPOOL}: write the stick "
                                  "again to put it back") from exc
            raise
    say(StickProgress("done"))
    size = settings.sys_root / "class" / "block" / os.path.basename(data) / "size"
    return WrittenStick(stick, cmdline(station), plan.esp_bytes, used,
                        int(size.read_text()) * SECTOR, carried,
                        round(time.monotonic() - started, 1))


def _write(dev: str, plan: Layout, esp_image: Path, tree: Path, saved: Path | None,
           work: Path, settings: Settings, say: ProgressFn) -> str:
    """Partitions, the ESP image, the data partition, BIOS boot; the data partition."""
    say(StickProgress("partition"))
    esp, data = _partition(dev, plan, settings)
    _write_image(esp_image, esp, say)
    say(StickProgress("data"))
    _data(data, tree, saved)
    say(StickProgress("bios"))
    _grub_bios(dev, work / "core.img", work)
    _set_active_flag(dev)
    return data


def _partition(dev: str, plan: Layout, settings: Settings) -> tuple[str, str]:
    """GPT: BIOS boot, ESP, data; the kernel told; the ESP's and data's paths."""
    run(["wipefs", "--all", "--force", dev])
    run(["sgdisk", "--zap-all", dev], check=False)      # a damaged table: no error
    run(["sgdisk", "--clear",
         f"--new=1:{BIOS_BOOT[0]}:{BIOS_BOOT[1]}", "--typecode=1:EF02",
         "--change-name=1:BIOS boot",
         f"--new=2:{plan.esp[0]}:{plan.esp[1]}", "--typecode=2:EF00",
         "--change-name=2:EFI system",
         f"--new=3:{plan.data_first}:0", "--typecode=3:8300",
         f"--change-name=3:{usb_data.LABEL}", dev])
    run(["partx", "--update", dev], check=False)       # the kernel may have read it already
    if shutil.which("udevadm"):                         # udev probes the new partitions
        run(["udevadm", "settle", "--timeout=30"], check=False)
    parts = _partitions(dev, settings, 3)
    for part in parts:
        run(["wipefs", "--all", "--force", part])
    return parts[1], parts[2]


def _partitions(dev: str, settings: Settings, count: int, timeout: float = 15) -> list[str]:
    """/dev paths of partitions 1..count of `dev`, once the kernel shows them."""
    disk = os.path.basename(os.path.realpath(dev))
    deadline = time.monotonic() + timeout
    while True:
        numbers = {}
        for name in devices.partitions_of(disk, settings):
            node = settings.sys_root / "class" / "block" / name / "partition"
            numbers[int(node.read_text())] = f"/dev/{name}"
        found = [numbers.get(n) for n in range(1, count + 1)]
        if all(p and os.path.exists(p) for p in found):
            return [p for p in found if p]
        if time.monotonic() > deadline:
            raise ImagerError(f"partitions absentes / the partitions of {dev} did not appear "
                              f"within {timeout:.0f} s (found {sorted(numbers)}): unplug the "
                              "stick, plug it in again and retry")
        time.sleep(0.2)


def _esp_image(work: Path, plan: Layout, files: StickFiles, ca_pem: bytes,
               station: str | None) -> tuple[Path, int]:
    """The ESP as a sparse image file made here (nothing written to the stick yet):
    FAT32 with the loaders, GRUB for both firmwares, the live system. Bytes used."""
    uuid = f"{secrets.randbits(32):08X}"
    copies = {"EFI/BOOT/BOOTX64.EFI": files.shim, "EFI/BOOT/grubx64.efi": files.grub,
              "EFI/BOOT/mmx64.efi": files.mokmanager, "live/vmlinuz": files.vmlinuz,
              "live/live.img": files.live, "live/imager.img": files.imager,
              **_boot_extras(work, f"{uuid[:4]}-{uuid[4:]}", ca_pem, station),
              **{f"boot/grub/i386-pc/{m.name}": m for m in sorted(GRUB_PC.iterdir())
                 if m.suffix in (".mod", ".lst") or m.name == "boot.img"}}
    image = work / "esp.img"
    with open(image, "wb") as fh:
        fh.truncate(plan.esp_bytes)
    make_fat(image, copies, volume_id=uuid, label=ESP_LABEL)
    return image, sum(p.stat().st_size for p in copies.values())


def _boot_extras(work: Path, fs_uuid: str, ca_pem: bytes, station: str | None) -> dict[str, Path]:
    """grub.cfg where each GRUB looks for it; core.img; the CA as a third initrd."""
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg(fs_uuid, station))
    early = work / "early.cfg"
    early.write_text(f"search.fs_uuid {fs_uuid} root\nset prefix=($root)/boot/grub\n")
    core = work / "core.img"
    run(["grub-mkimage", "--format=i386-pc", f"--directory={GRUB_PC}", f"--output={core}",
         f"--config={early}", "--prefix=/boot/grub", *BIOS_MODULES], timeout=120)
    return {"EFI/debian/grub.cfg": cfg, "EFI/BOOT/grub.cfg": cfg, "boot/grub/grub.cfg": cfg,
            "boot/grub/i386-pc/core.img": core, "live/station.img": _ca_initrd(work, ca_pem)}


def _ca_initrd(work: Path, ca_pem: bytes) -> Path:
    """An uncompressed newc cpio holding the CA where the live system reads it."""
    tree = work / "ca-tree"
    target = tree / CA_IN_INITRD
    target.parent.mkdir(parents=True)
    target.write_bytes(ca_pem)
    out = work / "station.img"
    parts = Path(CA_IN_INITRD).parts
    names = "".join(f"{'/'.join(parts[:i])}\n" for i in range(1, len(parts) + 1))
    run(["cpio", "--create", "--format=newc", "--reproducible", "--quiet", "--owner=0:0",
         "-D", str(tree), "-O", str(out)], input=names)
    return out


def _write_image(image: Path, part: str, say: ProgressFn) -> None:
    """Write the mapped ranges of `image` to the partition `part` (O_EXCL, O_DIRECT
    where it can), then read them back past the cache and compare."""
    ranges = bmap.map_file(image, block_size=BLOCK)
    total = sum((last - first + 1) * BLOCK for first, last in ranges)
    size = image.stat().st_size
    sums: list[str] = []
    buf = aligned_buffer(_CHUNK)          # freed with its last view
    with open(image, "rb") as src, open_device(part, write=True) as dev:
        if dev.size < size:
            raise ImagerError(f"{part} holds {dev.size} bytes, the ESP image {size}: "
                              "write the stick again")
        done = 0
        for first, last in ranges:
            digest = hashlib.sha256()
            for offset, length in _pieces(first, last, size):
                view = memoryview(buf)[:length]
                if os.preadv(src.fileno(), [view], offset) != length:
                    raise ImagerError(f"short read in {image} at byte {offset}")
                dev.pwrite(view, offset)
                digest.update(view)
                done += length
                say(StickProgress("esp", done, total))
            sums.append(digest.hexdigest())
        dev.flush()
        _read_back(dev, ranges, sums, size, buf, total, say)


def _pieces(first: int, last: int, size: int) -> list[tuple[int, int]]:
    start, end = first * BLOCK, min((last + 1) * BLOCK, size)
    return [(o, min(_CHUNK, end - o)) for o in range(start, end, _CHUNK)]


def _read_back(dev: OpenDevice, ranges: list[tuple[int, int]], sums: list[str], size: int,
               buf: mmap.mmap, total: int, say: ProgressFn) -> None:
    """Each range read again from the stick (past the page cache) and its sha256 compared."""
    if not dev.direct:
        drop_cache(dev)
    done = 0
    for (first, last), expected in zip(ranges, sums, strict=True):
        digest = hashlib.sha256()
        for offset, length in _pieces(first, last, size):
            view = memoryview(buf)[:length]
            dev.preadinto(view, offset)
            digest.update(view)
            done += length
            say(StickProgress("verify", done, total))
        if digest.hexdigest() != expected:
            raise ImagerError(f"relecture fausse / read-back mismatch on {dev.path} at byte "
                              f"{first * BLOCK}: the stick may be failing, try another one")


def _data_tree(work: Path, content: StickContent) -> Path:
    """The data partition's files staged here: the kit, the CA, the README."""
    tree = work / "data"
    tree.mkdir()
    if not content.kit(tree / usb_data.KIT):
        raise ImagerError(f"{tree / usb_data.KIT}: the offline kit was not written")
    usb_data.stage(tree, ca_pem=content.ca_pem)
    return tree


def _bytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def _data(part: str, tree: Path, saved: Path | None) -> None:
    """ext4 IMAGER-DATA made from the staged tree and the spool (carried or new)."""
    usb_data.add_spool(tree, saved / usb_data.SPOOL if saved is not None else None)
    run_streaming(["mkfs.ext4", "-q", "-F", "-L", usb_data.LABEL, "-m", "0",
                   "-E", "nodiscard,root_owner=0:0", "-d", str(tree), part], timeout=3600)


def _grub_bios(disk: str, core: Path, work: Path) -> None:
    """boot.img into the MBR, core.img into the BIOS boot partition. grub-bios-setup
    wants a "root" device for the folder holding both and stops when it cannot
    name one (a loop partition with no udev, an encrypted or LVM station root):
    the folder sits on a small ext2 image of its own, on a loop device."""
    image = work / "grub-setup.img"
    with open(image, "wb") as fh:
        fh.truncate(4 * MiB)
    run(["mkfs.ext4", "-q", "-t", "ext2", str(image)])
    with loopdev.attached(image) as loop, \
            tempfile.TemporaryDirectory(prefix="imager-grub-") as folder, \
            mounted(loop, Path(folder), fstype="ext2") as root:
        shutil.copyfile(GRUB_PC / "boot.img", root / "boot.img")
        shutil.copyfile(core, root / "core.img")
        run([str(GRUB_PC / "grub-bios-setup"), f"--directory={root}", disk], timeout=120)


def _set_active_flag(dev: str) -> None:
    """The boot flag on the protective MBR's entry (type 0xEE), for old BIOSes; then
    the whole stick flushed (fsync of the device), before it is unplugged."""
    fd = os.open(dev, os.O_RDWR)
    try:
        mbr = bytearray(os.pread(fd, SECTOR, 0))
        if mbr[450] != 0xEE or mbr[510:512] != b"\x55\xaa":
            raise ImagerError(f"{dev}: no protective MBR after partitioning (type "
                              f"{mbr[450]:#x}): write the stick again")
        mbr[446] = 0x80
        os.pwrite(fd, bytes(mbr), 0)
        os.fsync(fd)
    finally:
        os.close(fd)

