"""The safety guard: decisions as data, then refusals on real devices."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import need_root

from imager.erase import guard
from imager.errors import RefusedDevice
from imager.host.blockdev import open_device
from imager.host.device_facts import gather, unknown_exclusions
from imager.host.devices import DeviceFacts, parse_mountinfo, read_mounts
from imager.settings import Settings

# --- decisions as data --------------------------------------------------------


def test_refusal_reasons_are_data() -> None:
    f = DeviceFacts(path="/dev/sda", exists=True, is_block=True, sysname="sda", disk="sda",
                    read_only=True, mounts=(("sda2", "/home"),),
                    system_roles=(("sda1", "root"), ("sda3", "swap")),
                    openers=((42, "gparted", "sda2"),), excluded="/dev/sda")
    reasons = guard.refusals(f)
    assert any("root filesystem" in r for r in reasons)
    assert any("swap" in r for r in reasons)
    assert any("sda2 is mounted on /home" in r for r in reasons)
    assert any("read-only" in r for r in reasons)
    assert any("gparted (pid 42) on sda2" in r for r in reasons)
    assert any("IMAGER_EXCLUDE" in r for r in reasons)
    part = DeviceFacts(path="/dev/sdb1", exists=True, is_block=True, sysname="sdb1", disk="sdb")
    assert guard.refusals(part) == ["sdb1 is a partition: erase the whole disk /dev/sdb"]
    assert "does not exist" in guard.refusals(DeviceFacts(path="/dev/x", exists=False))[0]
    file_ = DeviceFacts(path="/tmp/a.img", exists=True, is_file=True)
    assert "--allow-file" in guard.refusals(file_)[0]
    assert guard.refusals(file_, allow_files=True) == []
    held = DeviceFacts(path="/tmp/a.img", exists=True, is_file=True,
                       openers=((7, "qemu", "/tmp/a.img"),))
    assert guard.refusals(held, allow_files=True) == [
        "open by another program: qemu (pid 7) on /tmp/a.img: stop it first"]


def _disk(name: str, **kw: object) -> DeviceFacts:
    return DeviceFacts(path=f"/dev/{name}", exists=True, is_block=True, sysname=name,
                       disk=name, **kw)  # type: ignore[arg-type]


def test_refusals_of_virtual_and_stacked_devices() -> None:
    assert guard.refusals(_disk("dm-0", built_on=("sda",))) == [
        "dm-0 is a device-mapper device (LVM, LUKS, multipath) built on /dev/sda: "
        "erase the physical disk(s) instead"]
    assert "software RAID (md) device built on /dev/sda, /dev/sdb" in \
        guard.refusals(_disk("md127", built_on=("sda", "sdb")))[0]
    assert "a stacked device built on /dev/nvme0n1" in \
        guard.refusals(_disk("bcache0", built_on=("nvme0n1",)))[0]
    for name, what in [("nbd0", "network block device"), ("zram0", "compressed RAM disk"),
                       ("ram1", "a RAM disk"), ("sr0", "optical drive"),
                       ("dm-3", "device-mapper")]:
        [reason] = guard.refusals(_disk(name))
        assert reason.startswith(f"{name} is ") and what in reason
        assert "not a physical disk" in reason
    for name in ("sda", "loop3", "nvme0n1", "mmcblk0", "vda", "sdram"):
        assert guard.refusals(_disk(name)) == [], name


def test_a_loop_inherits_the_refusals_of_its_backing_device() -> None:
    backing = DeviceFacts(path="/dev/loop2", exists=True, is_block=True, sysname="loop2",
                          disk="loop2", mounts=(("loop2p1", "/mnt/x"),), loop_users=("loop5",))
    loop = _disk("loop5", backing=backing)
    assert guard.refusals(loop) == [
        "loop5 is backed by /dev/loop2, which is refused: loop2p1 is mounted on /mnt/x: "
        "unmount it first"]
    clean = _disk("loop5", backing=DeviceFacts(
        path="/dev/loop2", exists=True, is_block=True, sysname="loop2", disk="loop2",
        loop_users=("loop5",)))
    assert guard.refusals(clean) == []  # being our own backing is not a reason
    shared = _disk("loop5", backing=DeviceFacts(
        path="/dev/loop2", exists=True, is_block=True, sysname="loop2", disk="loop2",
        loop_users=("loop5", "loop6")))
    assert "losetup -d /dev/loop6" in guard.refusals(shared)[0]


def test_mountinfo_parser_handles_escapes() -> None:
    text = ("36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw\n"
            "37 35 0:22 / /run rw shared:5 - tmpfs tmpfs rw\n")
    mounts = parse_mountinfo(text)
    assert mounts[0].mountpoint == "/mnt/my disk" and mounts[0].devno == "98:0"
    assert mounts[1].fstype == "tmpfs"


def test_mountinfo_keeps_non_ascii_mount_points(tmp_path: Path) -> None:
    line = ("40 35 8:17 / /media/Clé\\040USB rw - vfat /dev/sdb1 rw\n"
            "41 35 8:18 / /mnt/a\\011b\\012c\\134d\\\\x rw - ext4 /dev/sdb2 rw\n")
    assert parse_mountinfo(line)[0].mountpoint == "/media/Clé USB"
    assert parse_mountinfo(line)[1].mountpoint == "/mnt/a\tb\nc\\d\\\\x"
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_bytes(line.encode("utf-8"))
    mounts = read_mounts(Settings(data_dir=tmp_path, proc_root=tmp_path))
    assert mounts[0].mountpoint == "/media/Clé USB" and mounts[0].source == "/dev/sdb1"


# --- real devices -----------------------------------------------------------------


def _root_source() -> str:
    """The device of / as findmnt prints it, without a btrfs subvolume suffix."""
    src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "/"], capture_output=True,
                         text=True).stdout.strip()
    return re.sub(r"\[[^\]]*\]$", "", src)


def _lsblk(*args: str) -> list[list[str]]:
    out = subprocess.run(["lsblk", "-n", "-r", *args], capture_output=True, text=True,
                         check=True).stdout
    return [ln.split() for ln in out.splitlines() if ln.strip()]


@pytest.mark.root
def test_guard_refuses_the_root_disk(settings: Settings) -> None:
    src = _root_source()
    if not src.startswith("/dev/"):
        pytest.fail(f"root is on {src!r}, not a block device: this test needs a real root disk")
    disks = [f"/dev/{name}" for name, kind in _lsblk("-s", "-o", "NAME,TYPE", src)
             if kind in ("disk", "loop")]
    assert disks, f"no whole disk below {src}"
    for disk in disks:
        with pytest.raises(RefusedDevice, match="root filesystem"):
            guard.check(disk, settings)
    if os.path.realpath(src) in {os.path.realpath(d) for d in disks}:
        return  # root is a whole disk (no partition table), as on this station's VM
    with pytest.raises(RefusedDevice) as err:
        guard.check(src, settings)
    assert "root filesystem" in str(err.value)
    if _lsblk("-d", "-o", "TYPE", src)[0] == ["part"]:
        assert "is a partition" in str(err.value)


def _partition(dev: str, layout: str) -> list[str]:
    """Write a GPT with `layout` (sfdisk) on a loop device; its partition nodes."""
    subprocess.run(["sfdisk", "-q", dev], input=f"label: gpt\n{layout}", text=True, check=True)
    subprocess.run(["partx", "-u", dev], check=False)
    subprocess.run(["partx", "-a", dev], check=False)
    parts = [f"{dev}p{i + 1}" for i in range(len(layout.splitlines()))]
    for _ in range(50):
        if all(os.path.exists(p) for p in parts):
            break
        time.sleep(0.1)
    return parts


@contextmanager
def _mounted(part: str, mnt: Path) -> Iterator[Path]:
    subprocess.run(["mkfs.ext4", "-q", part], check=True)
    mnt.mkdir()
    subprocess.run(["mount", part, str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@contextmanager
def _held_open(path: str) -> Iterator[int]:
    """A separate process holding `path` open read-only (no O_EXCL); yields its pid."""
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import os,time; fd=os.open({path!r}, os.O_RDONLY); "
                               "print('ok', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "ok"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.root
def test_guard_refuses_a_disk_with_a_mounted_partition(loopdev: Callable[..., str],
                                                       tmp_path: Path,
                                                       settings: Settings) -> None:
    dev = loopdev(32 << 20)
    part = _partition(dev, ",16M\n,\n")[1]
    with _mounted(part, tmp_path / "mnt") as mnt:
        with pytest.raises(RefusedDevice) as err:
            guard.check(dev, settings)
        assert f"{os.path.basename(part)} is mounted on {mnt}" in str(err.value)
        with pytest.raises(RefusedDevice, match="partition"):
            guard.check(part, settings)
        with pytest.raises(RefusedDevice, match="in use"):  # the kernel agrees (O_EXCL)
            open_device(dev, write=True)


@pytest.mark.root
def test_guard_refuses_a_device_open_in_another_process(loopdev: Callable[..., str],
                                                        settings: Settings) -> None:
    dev = loopdev(8 << 20)
    with _held_open(dev) as pid:
        with pytest.raises(RefusedDevice, match=f"open by another program: .*pid {pid}"):
            guard.check(dev, settings)
    facts = guard.check(dev, settings)  # free again
    assert facts.rdev == os.stat(dev).st_rdev


@pytest.mark.root
def test_guard_refuses_a_disk_whose_partition_is_open(loopdev: Callable[..., str],
                                                      settings: Settings) -> None:
    dev = loopdev(32 << 20)
    part = _partition(dev, ",8M\n,\n")[0]
    name = os.path.basename(part)
    with _held_open(part) as pid:  # e.g. a backup `dd` reading the partition
        with pytest.raises(RefusedDevice,
                           match=rf"open by another program: \S+ \(pid {pid}\) on {name}"):
            guard.check(dev, settings)
    guard.check(dev, settings)


@pytest.mark.root
def test_guard_refuses_an_image_file_open_in_another_process(tmp_path: Path,
                                                             settings: Settings) -> None:
    need_root()
    img = tmp_path / "donor.img"
    img.write_bytes(b"\0" * 4096)
    with _held_open(str(img)) as pid:
        with pytest.raises(RefusedDevice, match=rf"\(pid {pid}\) on {re.escape(str(img))}"):
            guard.check(str(img), settings, allow_files=True)
    facts = guard.check(str(img), settings, allow_files=True)
    assert facts.is_file and facts.rdev is None


@pytest.mark.root
def test_guard_follows_a_loop_backed_by_a_block_device(loopdev: Callable[..., str],
                                                       tmp_path: Path,
                                                       settings: Settings) -> None:
    lower = loopdev(32 << 20)
    part = _partition(lower, ",16M\n,\n")[0]
    upper = loopdev(0, backing=Path(lower))  # losetup -f /dev/loopN
    upper_name, lower_name = os.path.basename(upper), os.path.basename(lower)
    facts = guard.check(upper, settings)  # nothing mounted yet: a clean view of a clean disk
    assert facts.backing is not None and facts.backing.path == lower
    with pytest.raises(RefusedDevice, match=f"backing device of {upper}: detach it first"):
        guard.check(lower, settings)
    with _mounted(part, tmp_path / "mnt") as mnt:
        with pytest.raises(RefusedDevice) as err:
            guard.check(upper, settings)
        assert (f"{upper_name} is backed by {lower}, which is refused: "
                f"{os.path.basename(part)} is mounted on {mnt}") in str(err.value)
        with _held_open(part) as pid:
            with pytest.raises(RefusedDevice, match=rf"\(pid {pid}\) on {lower_name}p1"):
                guard.check(upper, settings)


@pytest.mark.root
def test_guard_refuses_the_virtual_devices_of_this_host(settings: Settings) -> None:
    need_root()
    names = [n for n in sorted(os.listdir("/sys/class/block"))
             if guard.virtual_kind(n) and os.path.exists(f"/dev/{n}")]
    for name in names:  # zram0 on the station VM; dm-*/md* on an LVM or RAID host
        with pytest.raises(RefusedDevice, match=f"{name} is .*(not a physical disk|built on)"):
            guard.check(f"/dev/{name}", settings)


@pytest.mark.root
def test_guard_refuses_an_exclusively_held_device(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 << 20)
    with open_device(dev, write=True):
        with pytest.raises(RefusedDevice, match="in use"):
            open_device(dev, write=True)


@pytest.mark.root
def test_guard_refuses_a_read_only_device(loopdev: Callable[..., str],
                                          settings: Settings) -> None:
    dev = loopdev(8 << 20, read_only=True)
    with pytest.raises(RefusedDevice, match="read-only"):
        guard.check(dev, settings)
    with pytest.raises(RefusedDevice, match="read-only"):
        open_device(dev, write=True)


@pytest.mark.root
def test_guard_refuses_the_backing_file_of_an_attached_loop(loopdev: Callable[..., str],
                                                            tmp_path: Path,
                                                            settings: Settings) -> None:
    loopdev(8 << 20, name="backed.img")
    with pytest.raises(RefusedDevice, match="losetup -d"):
        guard.check(str(tmp_path / "backed.img"), settings, allow_files=True)


@pytest.mark.root
def test_guard_respects_the_exclusion_list(loopdev: Callable[..., str], tmp_path: Path) -> None:
    dev = loopdev(8 << 20)
    s = Settings(data_dir=tmp_path, excluded_devices=(dev,))
    with pytest.raises(RefusedDevice, match="IMAGER_EXCLUDE"):
        guard.check(dev, s)


@pytest.mark.root
def test_the_exclusion_list_is_read_as_an_operator_writes_it(loopdev: Callable[..., str],
                                                              tmp_path: Path) -> None:
    """IMAGER_EXCLUDE entries are links (/dev/disk/by-id/...), carry spaces, or name
    one partition of a disk: all of them protect the drive, compared by device number."""
    dev = loopdev(16 << 20)
    part = _partition(dev, "size=4MiB\n")[0]
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "ata-DONATED_SSD_S4DXNF0M1").symlink_to(dev)
    (by_id / "ata-DONATED_SSD_S4DXNF0M1-part1").symlink_to(part)
    alias = tmp_path / "alias-node"          # another node of the same device
    os.mknod(alias, 0o600 | stat.S_IFBLK, os.stat(dev).st_rdev)
    for entry in (f" {by_id / 'ata-DONATED_SSD_S4DXNF0M1'} ",
                  str(by_id / "ata-DONATED_SSD_S4DXNF0M1-part1"), f"{alias}  ",
                  os.path.basename(dev)):
        s = Settings(data_dir=tmp_path, excluded_devices=(entry,))
        with pytest.raises(RefusedDevice, match="IMAGER_EXCLUDE") as err:
            guard.check(dev, s)
        assert entry.strip() in str(err.value)
    env = {**os.environ, "IMAGER_EXCLUDE": f" , {by_id / 'ata-DONATED_SSD_S4DXNF0M1'} ,"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env)
        with pytest.raises(RefusedDevice, match="IMAGER_EXCLUDE"):
            guard.check(dev, Settings.from_env(data_dir=tmp_path))
    assert not gather(dev, Settings(data_dir=tmp_path,
                                    excluded_devices=("/dev/disk/by-id/not-here",))).excluded


# --- stacked devices (dm, md) on a built sysfs ----------------------------------------
# This kernel may have no device-mapper or md: the sysfs layout they produce is built
# in a directory instead (Settings.sys_root), with real device nodes (mknod) to stat.


class FakeSys:
    """A /sys subset (class/block, dev/block, block) and /dev nodes under `root`."""

    def __init__(self, root: Path) -> None:
        self.sys, self.dev = root / "sys", root / "dev"
        for d in ("dev/block", "class/block", "block", "devices/virtual/block"):
            (self.sys / d).mkdir(parents=True)
        self.dev.mkdir()

    def add(self, name: str, devno: str, *, slaves: tuple[str, ...] = (),
            holders: tuple[str, ...] = ()) -> str:
        node = self.sys / "devices" / "virtual" / "block" / name
        for sub in ("slaves", "holders"):
            (node / sub).mkdir(parents=True)
        (node / "dev").write_text(devno + "\n")
        (node / "ro").write_text("0\n")
        for s in slaves:
            (node / "slaves" / s).symlink_to(f"../../{s}")
        for h in holders:
            (node / "holders" / h).symlink_to(f"../../{h}")
        for link in (self.sys / "class" / "block" / name, self.sys / "dev" / "block" / devno,
                     self.sys / "block" / name):
            link.symlink_to(node)
        major, minor = (int(x) for x in devno.split(":"))
        path = self.dev / name
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return str(path)


def _fake_proc(root: Path, mountinfo: str) -> Path:
    (root / "self").mkdir(parents=True)
    (root / "self" / "mountinfo").write_text(mountinfo)
    (root / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    return root


@pytest.mark.root
def test_guard_refuses_a_device_mapper_root_and_the_disk_below(tmp_path: Path) -> None:
    need_root()
    fake = FakeSys(tmp_path)
    disk = fake.add("sdz", "240:16", holders=("dm-0",))
    root_lv = fake.add("dm-0", "240:0", slaves=("sdz",))
    proc = _fake_proc(tmp_path / "proc",
                      "30 1 240:0 / / rw - ext4 /dev/mapper/vg-root rw\n")
    s = Settings(data_dir=tmp_path, sys_root=fake.sys, proc_root=proc)
    lv = gather(root_lv, s)
    assert lv.built_on == ("sdz",) and lv.system_roles == (("dm-0", "root"),)
    reasons = guard.refusals(lv)
    assert reasons[0] == ("dm-0 is a device-mapper device (LVM, LUKS, multipath) built on "
                          "/dev/sdz: erase the physical disk(s) instead")
    assert "holds the running system's root filesystem (dm-0)" in reasons
    below = gather(disk, s)
    assert below.related == {"sdz", "dm-0"} and below.built_on == ()
    assert below.system_roles == (("dm-0", "root"),) and below.mounts == (("dm-0", "/"),)


@pytest.mark.root
def test_guard_refuses_a_raid_device(tmp_path: Path) -> None:
    need_root()
    fake = FakeSys(tmp_path)
    fake.add("sdy", "240:32", holders=("md0",))
    fake.add("sdx", "240:48", holders=("md0",))
    md = fake.add("md0", "240:64", slaves=("sdx", "sdy"))
    s = Settings(data_dir=tmp_path, sys_root=fake.sys, proc_root=_fake_proc(tmp_path / "p", ""))
    with pytest.raises(RefusedDevice, match="md0 is a software RAID .* built on /dev/sdx, "
                                            "/dev/sdy: erase the physical disk"):
        guard.check(md, s)


@pytest.mark.root
def test_guard_sees_a_process_holding_a_holder_device(loopdev: Callable[..., str],
                                                      tmp_path: Path) -> None:
    """A reader of a device stacked on the disk (a real loop, as the holder) refuses it."""
    holder = loopdev(8 << 20)
    name = os.path.basename(holder)
    rdev = os.stat(holder).st_rdev
    fake = FakeSys(tmp_path)
    disk = fake.add("sdw", "240:80", holders=(name,))
    fake.add(name, f"{os.major(rdev)}:{os.minor(rdev)}", slaves=("sdw",))
    s = Settings(data_dir=tmp_path, sys_root=fake.sys)  # the real /proc
    with _held_open(holder) as pid:
        with pytest.raises(RefusedDevice, match=rf"\(pid {pid}\) on {name}: stop it first"):
            guard.check(disk, s)
    guard.check(disk, s)


@pytest.mark.root
def test_an_nvme_controller_or_a_relative_name_excludes_the_drive(tmp_path: Path) -> None:
    """`IMAGER_EXCLUDE=/dev/nvme0` (the controller's character node) protects its
    namespaces; `disk/by-id/...` is read under /dev; entries may be separated by
    spaces or newlines; an entry naming no device is reported."""
    need_root()
    fake = FakeSys(tmp_path)
    namespace = fake.add("nvme0n1", "259:0")
    (fake.sys / "class" / "nvme" / "nvme0" / "nvme0n1").mkdir(parents=True)
    os.mknod(fake.dev / "nvme0", stat.S_IFCHR | 0o600, os.makedev(240, 0))
    (fake.dev / "disk" / "by-id").mkdir(parents=True)
    (fake.dev / "disk" / "by-id" / "nvme-SAMSUNG_MZVLB256_S4DX").symlink_to(namespace)
    proc = _fake_proc(tmp_path / "proc", "")
    for entry in ("/dev/nvme0", "nvme0", "disk/by-id/nvme-SAMSUNG_MZVLB256_S4DX"):
        s = Settings(data_dir=tmp_path, sys_root=fake.sys, proc_root=proc, dev_root=fake.dev,
                     excluded_devices=(entry.replace("/dev", str(fake.dev)),))
        assert gather(namespace, s).excluded, entry
    env = {"IMAGER_EXCLUDE": "/dev/sdzz\n  nvme0 /dev/typo"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", env)
        s = dataclasses.replace(Settings.from_env(data_dir=tmp_path), sys_root=fake.sys,
                                proc_root=proc, dev_root=fake.dev)
    assert s.excluded_devices == ("/dev/sdzz", "nvme0", "/dev/typo")
    assert gather(namespace, s).excluded == "nvme0"
    assert unknown_exclusions(s) == ["/dev/sdzz", "/dev/typo"]
