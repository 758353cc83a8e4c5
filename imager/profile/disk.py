"""The raw disk image of an OS build: GPT, BIOS and UEFI (Secure Boot) boot.

    p1  BIOS boot (1 MiB)   GRUB's core.img for SeaBIOS / legacy BIOS
    p2  EFI system (FAT32)  EFI/BOOT/BOOTX64.EFI = shim, grubx64.efi = Debian's signed
                            GRUB, mmx64.efi = MokManager (the removable path: no NVRAM
                            entry needed)
    p3  root (ext4)         the root tar, plus /boot/grub (grub.cfg, i386-pc modules)

Every boot file comes from the image's own packages (trixie's GRUB, shim and
kernel), never from this machine's. Identifiers (GPT GUIDs, filesystem UUIDs,
FAT volume id, ext4 hash seed) derive from the spec's hash and every time stamp
from its release day, so the same root tar gives the same disk."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host import loopdev
from imager.host.run import run
from imager.host.stream import run_streaming
from imager.profile import buildkey
from imager.profile.buildspec import BuildSpec

SECTOR = 512
MiB = 1 << 20
BIOS_BOOT = (2048, 4095)               # sectors of p1
ESP_MIB = 128
CONSOLE = "console=tty0 console=ttyS0,115200"
# What core.img needs to find /boot/grub on its own (the rest loads from there).
BIOS_MODULES = ("biosdisk", "part_gpt", "part_msdos", "ext2", "search_fs_uuid", "search")
StepFn = Callable[[str], None]
_GROUP = re.compile(r"^Group (\d+):")


@dataclass(frozen=True)
class DiskIds:
    """The identifiers of one spec's disk."""

    disk: str
    bios_part: str
    esp_part: str
    root_part: str
    root_fs: str
    root_hash_seed: str
    esp_volume: str                    # 8 hex digits; /etc/fstab says XXXX-XXXX

    @classmethod
    def of(cls, spec: BuildSpec) -> DiskIds:
        def u(purpose: str) -> str:
            return str(buildkey.derived_uuid(spec, purpose))
        return cls(u("disk"), u("bios-part"), u("esp-part"), u("root-part"), u("root-fs"),
                   u("root-hash-seed"), buildkey.fat_volume_id(spec))


@dataclass(frozen=True)
class Disk:
    raw: Path
    size: int
    ids: DiskIds
    kernel: str                        # the kernel version GRUB boots


def grub_cfg(spec: BuildSpec, ids: DiskIds, extra_cmdline: str = "") -> str:
    """/boot/grub/grub.cfg: the root by UUID, the kernel through the /vmlinuz link
    (the kernel package keeps it on the newest kernel), serial console too."""
    args = f"root=UUID={ids.root_fs} ro {CONSOLE} {extra_cmdline}".strip()
    title = f"Debian GNU/Linux — {spec.name} {spec.version}"
    return (
        "set default=0\nset timeout=2\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input console serial\nterminal_output console serial\n"
        f"search --no-floppy --fs-uuid --set=root {ids.root_fs}\n"
        f'menuentry "{title}" {{\n'
        f"    linux /vmlinuz {args}\n    initrd /initrd.img\n}}\n"
        f'menuentry "{title} (noyau précédent / previous kernel)" {{\n'
        f"    linux /vmlinuz.old {args}\n    initrd /initrd.img.old\n}}\n")


def esp_grub_cfg(ids: DiskIds) -> str:
    """The EFI side's grub.cfg: find the root, read its /boot/grub/grub.cfg."""
    return (f"search --no-floppy --fs-uuid --set=root {ids.root_fs}\n"
            "set prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n")


def make_disk(spec: BuildSpec, root_tar: Path, raw: Path, work: Path, *,
              step: StepFn | None = None) -> Disk:
    """Write the sparse raw disk `raw` of `spec` from its root tar (work: scratch)."""
    say = step or (lambda _: None)
    ids, epoch = DiskIds.of(spec), buildkey.source_date_epoch(spec)
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    try:
        say("extract")
        _extract(root_tar, tree)
        kernel = _kernel_version(tree)
        say("grub-files")
        _grub_files(spec, ids, tree, epoch)
        say("partitions")
        size = _partition(spec, ids, raw)
        with loopdev.attached(raw, partitions=3) as dev:
            say("esp")
            _esp(ids, tree, loopdev.partition(dev, 2), work, epoch)
            say("mkfs")
            _root_fs(ids, tree, loopdev.partition(dev, 3), work, epoch)
            say("grub-bios")
            _grub_bios(tree, dev)
        say("holes")
        _resparse(raw)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return Disk(raw, size, ids, kernel)


def _resparse(raw: Path) -> None:
    """Copy the raw sparsely: blocks of zeros become holes and no unwritten extent
    stays (the loop device's write-zeroes leave some, which SEEK_DATA reports as
    data once they are in the page cache), so the mapped ranges, the bmap and the
    zstd file depend on the content only."""
    sparse = raw.with_name(f"{raw.name}.sparse")
    try:
        run(["cp", "--sparse=always", str(raw), str(sparse)], timeout=900)
        os.replace(sparse, raw)
    finally:
        sparse.unlink(missing_ok=True)


def _extract(root_tar: Path, tree: Path) -> None:
    run(["tar", "--extract", "--file", str(root_tar), "--directory", str(tree),
         "--numeric-owner", "--preserve-permissions", "--xattrs", "--xattrs-include=*"],
        timeout=900)


def _kernel_version(tree: Path) -> str:
    target = os.readlink(tree / "vmlinuz") if (tree / "vmlinuz").is_symlink() else ""
    if not target:
        raise ImagerError("pas de noyau / the root has no /vmlinuz link: the build must "
                          "install linux-image-amd64")
    return Path(target).name.removeprefix("vmlinuz-")


def _grub_files(spec: BuildSpec, ids: DiskIds, tree: Path, epoch: int) -> None:
    """/boot/grub: grub.cfg, the i386-pc modules and core.img (made by the image's
    own grub-mkimage, with a first config that finds the root by UUID)."""
    touched = {d: d.stat().st_mtime_ns for d in (tree / "boot", tree / "tmp")}
    grub = tree / "boot/grub"
    modules = grub / "i386-pc"
    shutil.copytree(tree / "usr/lib/grub/i386-pc", modules, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("grub-*", "*.sh", "config.h"))
    (grub / "grub.cfg").write_text(grub_cfg(spec, ids))
    early = tree / "tmp/imager-early.cfg"
    early.write_text(f"search.fs_uuid {ids.root_fs} root\nset prefix=($root)/boot/grub\n")
    run(["chroot", str(tree), "grub-mkimage", "--format=i386-pc",
         "--output=/boot/grub/i386-pc/core.img", "--config=/tmp/imager-early.cfg",
         "--prefix=/boot/grub", *BIOS_MODULES], timeout=120)
    early.unlink()
    for path in [grub, *grub.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    for directory, mtime in touched.items():    # as they were in the root tar
        os.utime(directory, ns=(mtime, mtime))


def _partition(spec: BuildSpec, ids: DiskIds, raw: Path) -> int:
    size = int(spec.disk_gib * (1 << 30)) // MiB * MiB
    if size < 1 << 30:
        raise ImagerError(f"disque trop petit / disk_gib {spec.disk_gib} of the profile "
                          f"{spec.name}: give at least 1 (GiB)")
    raw.unlink(missing_ok=True)
    with open(raw, "wb") as fh:
        fh.truncate(size)
    esp_first = BIOS_BOOT[1] + 1
    esp_last = esp_first + ESP_MIB * MiB // SECTOR - 1
    run(["sgdisk", "--clear", f"--disk-guid={ids.disk}",
         f"--new=1:{BIOS_BOOT[0]}:{BIOS_BOOT[1]}", "--typecode=1:EF02",
         f"--partition-guid=1:{ids.bios_part}", "--change-name=1:BIOS boot",
         f"--new=2:{esp_first}:{esp_last}", "--typecode=2:EF00",
         f"--partition-guid=2:{ids.esp_part}", "--change-name=2:EFI system",
         "--new=3:0:0", "--typecode=3:8304", f"--partition-guid=3:{ids.root_part}",
         "--change-name=3:root", str(raw)])
    return size


def _esp(ids: DiskIds, tree: Path, part: str, work: Path, epoch: int) -> None:
    """FAT32 with shim, Debian's signed GRUB and MokManager at the removable path."""
    run(["mkfs.vfat", "-F", "32", "--invariant", "-i", ids.esp_volume, "-n", "EFI", part])
    cfg = work / "esp-grub.cfg"
    cfg.write_text(esp_grub_cfg(ids))
    files = {
        "EFI/BOOT/BOOTX64.EFI": tree / "usr/lib/shim/shimx64.efi.signed",
        "EFI/BOOT/mmx64.efi": tree / "usr/lib/shim/mmx64.efi.signed",
        "EFI/BOOT/grubx64.efi": tree / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        "EFI/BOOT/grub.cfg": cfg, "EFI/debian/grub.cfg": cfg,
    }
    for source in files.values():
        if not source.is_file():
            raise ImagerError(f"fichier de démarrage absent / {source.relative_to(tree)} is "
                              "not in the image: the build must install shim-signed and "
                              "grub-efi-amd64-signed")
        os.utime(source, (epoch, epoch))
    env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    run_streaming(["mmd", "-i", part, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"], env=env,
                  timeout=60)
    for target, source in files.items():
        run_streaming(["mcopy", "-i", part, "-m", str(source), f"::/{target}"], env=env,
                      timeout=60)


def _root_fs(ids: DiskIds, tree: Path, part: str, work: Path, epoch: int) -> None:
    """ext4 filled from the tree, then every inode's atime and ctime set to the
    release day (mke2fs -d copies them from the extracted files)."""
    env = {"E2FSPROGS_FAKE_TIME": str(epoch), "SOURCE_DATE_EPOCH": str(epoch)}
    run_streaming(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", ids.root_fs,
                   "-E", f"hash_seed={ids.root_hash_seed},root_owner=0:0,nodiscard",
                   "-d", str(tree), part], env=env, timeout=1800)
    script = work / "debugfs-times"
    with open(script, "w") as fh:
        for ino in _used_inodes(part):
            fh.write(f"sif <{ino}> atime @{epoch}\nsif <{ino}> ctime @{epoch}\n")
    run_streaming(["debugfs", "-w", "-f", str(script), part], env=env, timeout=1800)


def _used_inodes(part: str) -> list[int]:
    """Inode numbers in use, from dumpe2fs's free-inode ranges per group."""
    out = run(["dumpe2fs", part], timeout=300).stdout
    per_group = int(next(line.split(":")[1] for line in out.splitlines()
                         if line.startswith("Inodes per group:")))
    used: list[int] = []
    group = -1
    for line in out.splitlines():
        if (match := _GROUP.match(line)) is not None:
            group = int(match[1])
        elif line.strip().startswith("Free inodes:") and group >= 0:
            free = _ranges(line.split(":", 1)[1])
            first = group * per_group + 1
            used += [i for i in range(first, first + per_group) if i not in free]
    return used


def _ranges(text: str) -> set[int]:
    numbers: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if part:
            low, _, high = part.partition("-")
            numbers.update(range(int(low), int(high or low) + 1))
    return numbers


def _grub_bios(tree: Path, dev: str) -> None:
    """boot.img into the MBR, core.img into the BIOS boot partition: the image's own
    grub-bios-setup, run in the extracted tree with /dev bound and the new root
    mounted read-only (it finds the root device from its GRUB directory)."""
    with loopdev.chroot_mounts(tree), \
            loopdev.mounted(loopdev.partition(dev, 3), tree / "mnt", options=("ro", "noload")):
        run(["chroot", str(tree), "/usr/lib/grub/i386-pc/grub-bios-setup",
             "--directory=/mnt/boot/grub/i386-pc", dev], timeout=120)
