"""The safety guard: decisions as data, then refusals on real devices."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imager.erase import guard
from imager.errors import RefusedDevice
from imager.host.blockdev import open_device
from imager.host.devices import DeviceFacts, parse_mountinfo
from imager.settings import Settings


def test_refusal_reasons_are_data() -> None:
    f = DeviceFacts(path="/dev/sda", exists=True, is_block=True, sysname="sda", disk="sda",
                    read_only=True, mounts=(("sda2", "/home"),),
                    system_roles=(("sda1", "root"), ("sda3", "swap")),
                    openers=((42, "gparted"),), excluded=True)
    reasons = guard.refusals(f)
    assert any("root filesystem" in r for r in reasons)
    assert any("swap" in r for r in reasons)
    assert any("sda2 is mounted on /home" in r for r in reasons)
    assert any("read-only" in r for r in reasons)
    assert any("gparted (pid 42)" in r for r in reasons)
    assert any("IMAGER_EXCLUDE" in r for r in reasons)
    part = DeviceFacts(path="/dev/sdb1", exists=True, is_block=True, sysname="sdb1", disk="sdb")
    assert guard.refusals(part) == ["sdb1 is a partition: erase the whole disk /dev/sdb"]
    assert "does not exist" in guard.refusals(DeviceFacts(path="/dev/x", exists=False))[0]
    file_ = DeviceFacts(path="/tmp/a.img", exists=True, is_file=True)
    assert "--allow-file" in guard.refusals(file_)[0]
    assert guard.refusals(file_, allow_files=True) == []


def test_mountinfo_parser_handles_escapes() -> None:
    text = ("36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw\n"
            "37 35 0:22 / /run rw shared:5 - tmpfs tmpfs rw\n")
    mounts = parse_mountinfo(text)
    assert mounts[0].mountpoint == "/mnt/my disk" and mounts[0].devno == "98:0"
    assert mounts[1].fstype == "tmpfs"


def _root_disk() -> str:
    src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "/"], capture_output=True,
                         text=True).stdout.strip()
    return src


@pytest.mark.root
def test_guard_refuses_the_root_disk(settings: Settings) -> None:
    src = _root_disk()
    if not src.startswith("/dev/"):
        pytest.fail(f"root is on {src!r}, not a block device: this test needs a real root disk")
    with pytest.raises(RefusedDevice, match="root filesystem"):
        guard.check(src, settings)


@pytest.mark.root
def test_guard_refuses_a_disk_with_a_mounted_partition(loopdev: Callable[..., str],
                                                       tmp_path: Path,
                                                       settings: Settings) -> None:
    dev = loopdev(32 << 20)
    subprocess.run(["sfdisk", "-q", dev], input="label: gpt\n,16M\n,\n", text=True, check=True)
    subprocess.run(["partx", "-u", dev], check=False)
    subprocess.run(["partx", "-a", dev], check=False)
    part = f"{dev}p2"
    for _ in range(50):
        if os.path.exists(part):
            break
        time.sleep(0.1)
    subprocess.run(["mkfs.ext4", "-q", part], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", part, str(mnt)], check=True)
    try:
        with pytest.raises(RefusedDevice) as err:
            guard.check(dev, settings)
        assert f"{os.path.basename(part)} is mounted on {mnt}" in str(err.value)
        with pytest.raises(RefusedDevice, match="partition"):
            guard.check(part, settings)
        with pytest.raises(RefusedDevice, match="in use"):  # the kernel agrees (O_EXCL)
            open_device(dev, write=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
def test_guard_refuses_a_device_open_in_another_process(loopdev: Callable[..., str],
                                                        settings: Settings) -> None:
    dev = loopdev(8 << 20)
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import os,time; fd=os.open({dev!r}, os.O_RDONLY); "
                               "print('ok', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "ok"
        with pytest.raises(RefusedDevice, match=f"open by another program: .*pid {holder.pid}"):
            guard.check(dev, settings)
    finally:
        holder.kill()
        holder.wait()
    guard.check(dev, settings)  # free again


@pytest.mark.root
def test_exclusive_open_refuses_a_device_held_exclusively(loopdev: Callable[..., str]) -> None:
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
