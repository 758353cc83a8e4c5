"""The deployment engine on real loop devices: only mapped ranges written, each
range's checksum checked on the stream, read-back past the page cache, the
edge cases of the issue (hole of one block, range ending at the last block,
1-byte tail, image bigger than the target), a corrupt image, a byte flipped
on the target, several targets from one stream, one failing target, and the
devices the guard refuses."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import need_root, need_tool
from test_bmap import BS, block, blocks, bmap_of, sparse

from imager.errors import RefusedDevice, UsageError
from imager.imaging import bmap as bm
from imager.imaging import compress, readback
from imager.imaging import deploy as deploy_module
from imager.imaging.deploy import DeployResult, deploy
from imager.imaging.readback import verify_targets
from imager.imaging.source import open_source
from imager.settings import Settings

MiB = 1 << 20
FILL = 0xAA                    # what the target holds before: must stay in every hole

pytestmark = pytest.mark.root


class Image:
    """A generated sparse raw image, its bmap and its compressed file."""

    def __init__(self, tmp: Path, size: int, writes: list[tuple[int, bytes]], *,
                 kind: str = "zstd", flip: int | None = None) -> None:
        self.raw = sparse(tmp / "image.raw", size, writes)
        self.bmap = bmap_of(self.raw)
        if flip is not None:                       # corrupt the image, keep its bmap
            with open(self.raw, "r+b") as fh:
                fh.seek(flip)
                byte = fh.read(1)
                fh.seek(flip)
                fh.write(bytes([byte[0] ^ 0xFF]))
        self.file = tmp / f"image.raw{compress.SUFFIXES[kind]}"
        compress.compress_file(self.raw, self.file, kind=kind, level=1)
        self.data = self.raw.read_bytes()

    def source(self):  # type: ignore[no-untyped-def]
        return open_source(self.file)

    def deploy(self, targets: list[str], settings: Settings, **kw: object) -> DeployResult:
        return deploy(self.source(), self.bmap, targets, settings=settings, **kw)  # type: ignore[arg-type]


def fill(dev: str, size: int, byte: int = FILL) -> None:
    fd = os.open(dev, os.O_WRONLY)
    try:
        for offset in range(0, size, MiB):
            os.pwrite(fd, bytes([byte]) * min(MiB, size - offset), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def content(dev: str) -> bytes:
    fd = os.open(dev, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def flip_byte(dev: str, offset: int) -> None:
    fd = os.open(dev, os.O_RDWR)
    try:
        byte = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([byte[0] ^ 0x01]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def assert_deployed(image: Image, dev: str) -> None:
    """Mapped ranges hold the image; everything else still holds FILL."""
    got = content(dev)
    expected = bytearray([FILL]) * len(got)
    for offset, length, _ in image.bmap.byte_ranges():
        expected[offset:offset + length] = image.data[offset:offset + length]
    assert got == expected


def loaded(loopdev: Callable[..., str], size: int) -> str:
    dev = loopdev(size)
    fill(dev, size)
    return dev


def edge_writes() -> list[tuple[int, bytes]]:
    """Blocks 0-4 and 6-9 (a hole of one block), 40-47, a run of 3 MiB crossing
    buffer boundaries, and the image's last block (a range ending there)."""
    big = b"".join(block(i) for i in range(100, 100 + 768))
    return blocks(0, 1, 2, 3, 4, 6, 7, 8, 9, *range(40, 48)) + [(64 * BS, big),
                                                              (1023 * BS, block(1023))]


# --- what is written, and where ---------------------------------------------------

def test_edge_cases_only_mapped_ranges_written_and_verified(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    assert [(r.first, r.last) for r in image.bmap.ranges] == [(0, 4), (6, 9), (40, 47),
                                                             (64, 831), (1023, 1023)]
    dev = loaded(loopdev, 6 * MiB)
    seen: list[tuple[str, int, int]] = []
    result = image.deploy([dev], settings, progress=lambda *a: seen.append(a), chunk=MiB)
    assert result.ok, result
    target = result.targets[0]
    assert (target.written_bytes, target.ranges) == (image.bmap.mapped_bytes, 5)
    assert (target.verify, target.verified_bytes, target.mismatches) == (
        "full", image.bmap.mapped_bytes, [])
    assert result.source_sha256 == hashlib.sha256(image.file.read_bytes()).hexdigest()
    assert_deployed(image, dev)                 # block 5, 10-39... and past the image: FILL
    assert seen[-2:] == [("write", image.bmap.mapped_bytes, image.bmap.mapped_bytes),
                         ("verify", image.bmap.mapped_bytes, image.bmap.mapped_bytes)]


@pytest.mark.parametrize("sector", [512, 4096])
def test_one_byte_tail_keeps_the_rest_of_its_sector(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings, sector: int) -> None:
    need_root()
    image = Image(tmp_path, 64 * BS + 1, [*blocks(0, 62), (64 * BS, b"z")])
    assert image.bmap.ranges[-1].first == 64 and image.bmap.mapped_bytes == 2 * BS + 1
    size = 64 * BS + sector                     # the device ends with the tail's sector
    backing = tmp_path / "target.img"
    backing.write_bytes(bytes([FILL]) * size)
    dev = subprocess.run(["losetup", "--find", "--show", "--sector-size", str(sector),
                          str(backing)], check=True, capture_output=True,
                         text=True).stdout.strip()
    loopdev.devices.append(dev)                 # type: ignore[attr-defined] (detached after)
    result = image.deploy([dev], settings)
    assert result.ok, result
    got = content(dev)
    assert got[64 * BS] == ord("z") and got[64 * BS + 1:] == bytes([FILL]) * (sector - 1)
    assert_deployed(image, dev)


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_xz_and_gzip_images(tmp_path: Path, loopdev: Callable[..., str], settings: Settings,
                            kind: str) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes(), kind=kind)
    dev = loaded(loopdev, 4 * MiB)
    result = image.deploy([dev], settings)
    assert result.ok, result
    assert_deployed(image, dev)


# --- refused before anything is written ---------------------------------------------

def test_image_bigger_than_target_refused_nothing_written(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    big, small = loaded(loopdev, 4 * MiB), loaded(loopdev, 2 * MiB)
    with pytest.raises(RefusedDevice) as refused:
        image.deploy([big, small], settings)
    assert small in str(refused.value)
    assert "2097152 bytes" in str(refused.value) and "4194304 bytes" in str(refused.value)
    assert content(small) == bytes([FILL]) * 2 * MiB
    assert content(big) == bytes([FILL]) * 4 * MiB   # one refusal: no target written


def test_mounted_device_refused_before_any_write(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    need_tool("mkfs.ext4")
    image = Image(tmp_path, 1024 * BS, edge_writes())
    good = loaded(loopdev, 4 * MiB)
    mounted = loopdev(8 * MiB)
    # Inode tables and journal initialised now: otherwise the kernel's ext4lazyinit
    # thread writes to the mounted filesystem (bg_flags INODE_ZEROED) during the test.
    subprocess.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    mounted], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", mounted, str(mnt)], check=True)
    try:
        before = content(mounted)
        with pytest.raises(RefusedDevice, match="mounted"):
            image.deploy([good, mounted], settings)
        assert content(mounted) == before
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert content(good) == bytes([FILL]) * 4 * MiB


def test_regular_file_needs_allow_files(tmp_path: Path, settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    target = tmp_path / "target.img"
    target.write_bytes(bytes([FILL]) * 4 * MiB)
    with pytest.raises(RefusedDevice, match="regular file"):
        image.deploy([str(target)], settings)
    assert image.deploy([str(target)], settings, allow_files=True).ok
    assert_deployed(image, str(target))


def test_same_device_twice_and_bad_arguments_refused(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    dev = loaded(loopdev, 4 * MiB)
    with pytest.raises(UsageError, match="same drive"):
        image.deploy([dev, dev], settings)
    with pytest.raises(UsageError, match="verify"):
        image.deploy([dev], settings, verify="quick")
    assert content(dev) == bytes([FILL]) * 4 * MiB


# --- the image checked on the stream ------------------------------------------------

def test_corrupt_image_detected_every_target_fails_naming_the_range(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes(), flip=41 * BS + 7)   # inside range 3
    devs = [loaded(loopdev, 4 * MiB) for _ in range(2)]
    result = image.deploy(devs, settings)
    assert not result.ok
    for target in result.targets:
        assert not target.ok and target.verified_bytes == 0
        assert "corrupt" in target.error and "range 3 of 5 (blocks 40-47" in target.error


def test_expected_sha256_of_the_compressed_file(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    dev = loaded(loopdev, 4 * MiB)
    good = hashlib.sha256(image.file.read_bytes()).hexdigest()
    assert image.deploy([dev], settings, expected_sha256=good.upper()).ok
    result = image.deploy([dev], settings, expected_sha256="0" * 64)
    assert not result.ok and result.source_sha256 == good
    assert "manifest" in result.targets[0].error and good in result.targets[0].error


def test_truncated_image_fails(tmp_path: Path, loopdev: Callable[..., str],
                               settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    data = image.file.read_bytes()
    image.file.write_bytes(data[:len(data) // 2])
    result = image.deploy([loaded(loopdev, 4 * MiB)], settings)
    assert not result.ok
    assert "truncated" in result.targets[0].error or "damaged" in result.targets[0].error


def test_image_longer_than_its_bmap_fails(tmp_path: Path, loopdev: Callable[..., str],
                                          settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    short = bm.make(image_size=1023 * BS + 1, block_size=BS, ranges=image.bmap.ranges[:-1])
    result = deploy(image.source(), short, [loaded(loopdev, 4 * MiB)], settings=settings)
    assert not result.ok and "goes on past the 4190209 bytes" in result.targets[0].error


def test_uncompressed_raw_image(tmp_path: Path, loopdev: Callable[..., str],
                                settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS + 1, [*edge_writes(), (1024 * BS, b"!")])
    dev = loaded(loopdev, 4 * MiB + BS)
    result = deploy(open_source(image.raw), image.bmap, [dev], settings=settings)
    assert result.ok, result
    assert_deployed(image, dev)


# --- read back ----------------------------------------------------------------------

def test_read_back_catches_a_byte_flipped_on_the_target(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    dev = loaded(loopdev, 4 * MiB)
    written = image.deploy([dev], settings, verify="none")
    assert written.ok and written.targets[0].verified_bytes == 0
    assert all(r.ok for r in verify_targets(image.bmap, [dev]))
    flip_byte(dev, 1023 * BS + 100)              # in the last range
    full, = verify_targets(image.bmap, [dev])
    assert not full.ok and full.mismatches == [(1023 * BS, BS)]
    assert "reads back wrong" in full.error and str(1023 * BS) in full.error
    sampled, = verify_targets(image.bmap, [dev], mode="sample", sample=0.01)
    assert sampled.mismatches == [(1023 * BS, BS)] and sampled.seed   # last range: always


@pytest.mark.parametrize("verify", ["full", "sample"])
def test_read_back_during_the_deployment_catches_a_drive_returning_wrong_data(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings,
        faultdisk: Callable[..., object], monkeypatch: pytest.MonkeyPatch,
        verify: str) -> None:
    """The drive takes the writes but reads back other bytes, without an error:
    the read-back compares with what was written, range by range."""
    monkeypatch.setattr(deploy_module, "CHECKPOINT", 256 << 10)
    image = Image(tmp_path, 1024 * BS, edge_writes())
    disk = faultdisk(4 * MiB)
    disk.set_faults(rot=[(500 * BS + 10, 1), (1023 * BS + 5, 1)])  # type: ignore[attr-defined]
    good = loaded(loopdev, 4 * MiB)
    result = image.deploy([disk.device, good], settings, chunk=MiB,  # type: ignore[attr-defined]
                          verify=verify, sample=0.01)
    bad, fine = result.targets
    assert fine.ok and not bad.ok and not result.ok
    assert "reads back wrong" in bad.error
    if verify == "full":      # each wrong range once, though range 4 spans 3 buffers
        assert f"the data at byte {64 * BS} differs" in bad.error
        assert bad.mismatches == [(64 * BS, 768 * BS), (1023 * BS, BS)]
        assert fine.verified_bytes == image.bmap.mapped_bytes   # (a wrong range: to its first
        assert bad.verified_bytes < image.bmap.mapped_bytes     # wrong buffer, not further)
    else:                     # the last range is always in the sample
        assert (1023 * BS, BS) in bad.mismatches and bad.sample_seed == fine.sample_seed
    assert_deployed(image, good)
    with open(disk.backing, "rb") as fh:  # type: ignore[attr-defined]
        fh.seek(1023 * BS)
        assert fh.read(BS) == image.data[1023 * BS:]     # written right, read back wrong


def test_a_read_back_that_cannot_start_fails_its_target_and_frees_the_ring(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError("no buffer for the read-back")

    monkeypatch.setattr(deploy_module, "Comparer", no_memory)
    image = Image(tmp_path, 1024 * BS, edge_writes())
    dev = loaded(loopdev, 4 * MiB)
    result = image.deploy([dev], settings, chunk=256 << 10, depth=2)  # more buffers than ring
    target, = result.targets
    assert not result.ok and not target.ok and target.verified_bytes == 0
    assert "back failed" in target.error and "no buffer" in target.error
    assert target.written_bytes == image.bmap.mapped_bytes     # every buffer came back


def test_sample_is_seeded_and_covers_first_last_and_the_fraction(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 4096 * BS, blocks(*range(0, 4096, 2)))
    bmap = bmap_of(raw)
    indexes, seed = readback.choose(bmap, "sample", sample=0.1)
    assert seed and (indexes, seed) == readback.choose(bmap, "sample", sample=0.1, seed=seed)
    assert indexes[0] == 0 and indexes[-1] == len(bmap.ranges) - 1
    assert 0.1 * 2048 <= len(indexes) <= 0.1 * 2048 + 2
    other, _ = readback.choose(bmap, "sample", sample=0.1, seed="00" * 8)
    assert other != indexes
    assert readback.choose(bmap, "full")[0] == list(range(2048))


def test_sampled_deployment_records_its_seed(tmp_path: Path, loopdev: Callable[..., str],
                                             settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    result = image.deploy([loaded(loopdev, 4 * MiB)], settings, verify="sample", sample=0.01)
    target = result.targets[0]
    assert result.ok and target.verify == "sample" and target.sample_seed
    indexes, _ = readback.choose(image.bmap, "sample", sample=0.01, seed=target.sample_seed)
    spans = list(image.bmap.byte_ranges())
    assert target.verified_bytes == sum(spans[i][1] for i in indexes)


# --- several targets ----------------------------------------------------------------

def test_three_targets_from_one_stream_each_verified(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Flushed every 256 KiB, each target is read back behind its writes."""
    monkeypatch.setattr(deploy_module, "CHECKPOINT", 256 << 10)
    image = Image(tmp_path, 1024 * BS, edge_writes())
    devs = [loaded(loopdev, 4 * MiB) for _ in range(3)]
    seen: list[tuple[str, int, int]] = []
    result = image.deploy(devs, settings, chunk=MiB, depth=3,
                          progress=lambda *a: seen.append(a))
    assert result.ok, result
    assert [t.path for t in result.targets] == devs
    for target in result.targets:
        assert target.verified_bytes == image.bmap.mapped_bytes
    assert ("verify", 3 * image.bmap.mapped_bytes, 3 * image.bmap.mapped_bytes) in seen
    for dev in devs:
        assert_deployed(image, dev)


def test_one_failing_target_does_not_fail_the_others(
        tmp_path: Path, loopdev: Callable[..., str], settings: Settings,
        faultdisk: Callable[..., object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy_module, "CHECKPOINT", 64 << 10)
    image = Image(tmp_path, 1024 * BS, edge_writes())
    disk = faultdisk(4 * MiB, [(100 * BS, BS)], mode="writes")   # inside range 4
    good = [loaded(loopdev, 4 * MiB) for _ in range(2)]
    targets = [good[0], disk.device, good[1]]                   # type: ignore[attr-defined]
    result = image.deploy(targets, settings, chunk=MiB)
    assert not result.ok
    ok, failed, ok2 = result.targets
    assert ok.ok and ok2.ok and not failed.ok
    assert failed.path == disk.device and "failed while writing" in failed.error  # type: ignore[attr-defined]
    for dev in good:
        assert_deployed(image, dev)


def test_stop_event_stops_at_a_safe_point(tmp_path: Path, loopdev: Callable[..., str],
                                          settings: Settings) -> None:
    image = Image(tmp_path, 1024 * BS, edge_writes())
    dev = loaded(loopdev, 4 * MiB)
    stop = threading.Event()
    stop.set()
    result = image.deploy([dev], settings, stop=stop)
    assert not result.ok and result.targets[0].error.startswith("stopped")
    assert result.source_sha256 is None and result.targets[0].written_bytes == 0
    assert content(dev) == bytes([FILL]) * 4 * MiB


def test_bmaptool_bmap_and_image_deploy(tmp_path: Path, loopdev: Callable[..., str],
                                        settings: Settings) -> None:
    """A bmap made by Debian's bmaptool drives our deployment."""
    bmaptool = need_tool("bmaptool")
    image = Image(tmp_path, 1024 * BS + 1, [*edge_writes(), (1024 * BS, b"!")])
    made = tmp_path / "tool.bmap"
    subprocess.run([bmaptool, "create", "-o", str(made), str(image.raw)], check=True,
                   capture_output=True)
    bmap = bm.read(made)
    dev = loaded(loopdev, 4 * MiB + 4096)
    result = deploy(image.source(), bmap, [dev], settings=settings)
    assert result.ok, result
    assert_deployed(image, dev)
