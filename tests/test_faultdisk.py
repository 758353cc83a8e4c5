"""Tests of the FaultDisk helper itself: a loop device over a FUSE file with bad spots.

They need root, /dev/fuse, loop devices and mfusepy; without them they skip,
or fail when CI=true (conftest.need).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need
from faultdisk import FaultDisk, is_mounted, loop_backing_file, missing_requirements

pytestmark = pytest.mark.root

KiB = 1 << 10
MiB = 1 << 20
SIZE = 64 * MiB
BAD = 8 * MiB  # bad extent: [8 MiB, 8 MiB + 4 KiB)
BAD_LEN = 4096

# After pull() the loop driver gets ENOTCONN from the dead FUSE mount and turns it
# into BLK_STS_IOERR: EIO is what Linux 6.x reports; accept its close relatives.
GONE_ERRNOS = {errno.EIO, errno.ENOTCONN, errno.ENODEV, errno.ENXIO}


def require_faultdisk() -> None:
    why = missing_requirements()
    need(why is None, why or "")


def aligned(size: int, fill: bytes | None = None) -> mmap.mmap:
    """A page-aligned buffer for O_DIRECT."""
    buf = mmap.mmap(-1, size)
    if fill is not None:
        buf.write(fill * (size // len(fill)))
        buf.seek(0)
    return buf


def pattern(size: int, seed: int) -> bytes:
    block = bytes((seed + i) & 0xFF for i in range(4096))
    return block * (size // 4096)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[FaultDisk]:
    require_faultdisk()
    d = FaultDisk.start(tmp_path, SIZE, bad=[(BAD, BAD_LEN)])
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def dio(disk: FaultDisk) -> Iterator[int]:
    assert disk.device is not None
    fd = os.open(disk.device, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def pwrite_all(fd: int, buf: mmap.mmap, offset: int) -> None:
    assert os.pwrite(fd, buf, offset) == len(buf)


def test_device_looks_like_a_disk(disk: FaultDisk, dio: int) -> None:
    assert disk.device is not None and disk.device.startswith("/dev/loop")
    assert loop_backing_file(disk.device) == str(disk.image)
    assert os.lseek(dio, 0, os.SEEK_END) == SIZE
    assert disk.alive and is_mounted(disk.mountpoint)


def test_write_first_4mib_and_read_back(disk: FaultDisk, dio: int) -> None:
    data = pattern(4 * MiB, seed=7)
    pwrite_all(dio, aligned(4 * MiB, data), 0)
    back = aligned(4 * MiB)
    assert os.preadv(dio, [back], 0) == 4 * MiB
    assert back[:] == data
    os.fsync(dio)
    # It reached the backing file, i.e. the "platters".
    with open(disk.backing, "rb") as fh:
        assert fh.read(4 * MiB) == data


def test_write_over_bad_extent_fails_with_eio(disk: FaultDisk, dio: int) -> None:
    buf = aligned(1 * MiB, b"\xa5")
    for start in (BAD, BAD - 512 * KiB, BAD - 1 * MiB + 4 * KiB):  # bad at start/middle/end
        with pytest.raises(OSError) as exc:
            os.pwrite(dio, buf, start)
        assert exc.value.errno == errno.EIO, (start, exc.value)
    # The 4 KiB just before and just after the bad extent are fine.
    pwrite_all(dio, aligned(4 * KiB, b"\x11"), BAD - 4 * KiB)
    pwrite_all(dio, aligned(4 * KiB, b"\x22"), BAD + BAD_LEN)
    # An 8 MiB write spanning it fails as a whole (loop splits it into pieces,
    # only one of which fails).
    with pytest.raises(OSError) as exc:
        os.pwrite(dio, aligned(8 * MiB, b"\x33"), 4 * MiB)
    assert exc.value.errno == errno.EIO


def test_read_of_bad_extent_fails_with_eio(disk: FaultDisk, dio: int) -> None:
    for start, length in ((BAD, 4 * KiB), (BAD - 512 * KiB, 1 * MiB), (BAD - 4 * MiB, 8 * MiB)):
        with pytest.raises(OSError) as exc:
            os.preadv(dio, [aligned(length)], start)
        assert exc.value.errno == errno.EIO, (start, length, exc.value)
    assert os.preadv(dio, [aligned(4 * KiB)], BAD - 4 * KiB) == 4 * KiB
    assert os.preadv(dio, [aligned(4 * KiB)], BAD + BAD_LEN) == 4 * KiB


def test_bad_writes_only_and_runtime_changes(disk: FaultDisk, dio: int) -> None:
    ack = disk.set_faults(bad=[(20 * MiB, 512)], mode="writes")
    assert ack["bad"] == [[20 * MiB, 512]] and ack["mode"] == "writes"
    # The old extent is healed.
    pwrite_all(dio, aligned(1 * MiB, b"\x44"), BAD)
    # Reads of the new one work, writes fail.
    assert os.preadv(dio, [aligned(1 * MiB)], 20 * MiB) == 1 * MiB
    with pytest.raises(OSError) as exc:
        os.pwrite(dio, aligned(4 * KiB, b"\x55"), 20 * MiB)
    assert exc.value.errno == errno.EIO
    # Data read before an extent goes bad is not served from a cache afterwards.
    disk.set_faults(mode="both")
    with pytest.raises(OSError) as exc:
        os.preadv(dio, [aligned(1 * MiB)], 20 * MiB)
    assert exc.value.errno == errno.EIO
    disk.set_bad()
    pwrite_all(dio, aligned(1 * MiB, b"\x66"), 20 * MiB)
    stats = disk.stats()
    assert stats["write_errors"] >= 1 and stats["read_errors"] >= 1


def test_a_slow_drive_takes_its_time_to_write(disk: FaultDisk, dio: int) -> None:
    def seconds_to_write_4mib() -> float:
        start = time.monotonic()
        pwrite_all(dio, aligned(4 * MiB, b"\x77"), 0)
        os.fsync(dio)
        return time.monotonic() - start

    assert disk.set_faults(write_rate=8 * MiB)["write_rate"] == 8 * MiB
    slow = seconds_to_write_4mib()
    disk.set_faults(write_rate=0)
    fast = seconds_to_write_4mib()
    print(f"4 MiB at 8 MiB/s: {slow:.2f} s; unlimited: {fast:.3f} s")
    assert slow >= 0.4 > fast


def test_failed_flush_and_discard(disk: FaultDisk, dio: int) -> None:
    BLKDISCARD = 0x1277
    fcntl.ioctl(dio, BLKDISCARD, struct.pack("QQ", 0, 1 * MiB))
    with pytest.raises(OSError) as exc:
        fcntl.ioctl(dio, BLKDISCARD, struct.pack("QQ", BAD, 1 * MiB))
    assert exc.value.errno == errno.EIO
    disk.set_faults(fail_fsync=True)
    with pytest.raises(OSError) as exc:
        os.fsync(dio)
    assert exc.value.errno == errno.EIO
    disk.set_faults(fail_fsync=False)
    os.fsync(dio)


def test_pull_makes_every_io_fail(disk: FaultDisk, dio: int) -> None:
    data = aligned(4 * MiB, b"\x77")
    pwrite_all(dio, data, 0)
    assert os.preadv(dio, [aligned(4 * MiB)], 0) == 4 * MiB
    disk.pull()
    assert not disk.alive
    for offset in (0, 32 * MiB):
        with pytest.raises(OSError) as exc:
            os.pwrite(dio, aligned(1 * MiB, b"\x88"), offset)
        assert exc.value.errno in GONE_ERRNOS, exc.value
        # Even the data read just before the pull: no cache hides the loss.
        with pytest.raises(OSError) as exc:
            os.preadv(dio, [aligned(1 * MiB)], offset)
        assert exc.value.errno in GONE_ERRNOS, exc.value
    with pytest.raises(OSError) as exc:
        os.fsync(dio)
    assert exc.value.errno in GONE_ERRNOS
    # A fresh open still works (the loop device stays) but its I/O fails.
    fd2 = os.open(disk.device, os.O_RDONLY | os.O_DIRECT)
    try:
        with pytest.raises(OSError):
            os.preadv(fd2, [aligned(4 * KiB)], 0)
    finally:
        os.close(fd2)


@pytest.mark.parametrize("pull", [False, True], ids=["running", "pulled"])
def test_close_leaves_nothing_behind(tmp_path: Path, pull: bool) -> None:
    require_faultdisk()
    with FaultDisk.start(tmp_path, SIZE, bad=[(BAD, BAD_LEN)]) as d:
        dev, mnt, proc = d.device, d.mountpoint, d.proc
        assert dev is not None and proc is not None
        fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
        try:
            pwrite_all(fd, aligned(1 * MiB, b"\x99"), 0)
            if pull:
                d.pull()
        finally:
            os.close(fd)
    assert loop_backing_file(dev) is None
    assert not is_mounted(mnt)
    assert proc.poll() is not None
    d.close()  # idempotent


def test_close_after_a_failing_test_body(tmp_path: Path) -> None:
    require_faultdisk()
    with pytest.raises(ZeroDivisionError):
        with FaultDisk.start(tmp_path, SIZE) as d:
            dev, mnt = d.device, d.mountpoint
            1 / 0  # noqa: B018
    assert loop_backing_file(dev or "") is None and not is_mounted(mnt)
    assert not d.alive


def test_sequential_odirect_write_throughput(disk: FaultDisk, dio: int) -> None:
    disk.set_bad()
    buf = aligned(8 * MiB, b"\x5a")
    t0 = time.perf_counter()
    for offset in range(0, SIZE, 8 * MiB):
        pwrite_all(dio, buf, offset)
    os.fsync(dio)
    seconds = time.perf_counter() - t0
    rate = SIZE / seconds / 1e6
    print(f"FaultDisk O_DIRECT 8 MiB writes: {rate:.0f} MB/s ({SIZE // MiB} MiB in {seconds:.2f}s)")
    assert seconds < 20, f"{rate:.1f} MB/s is too slow to erase test disks"
