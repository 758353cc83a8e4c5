"""`imager boot usb`: the live system on a USB stick (a loop device over a sparse
file here) boots under SeaBIOS, OVMF and OVMF with Secure Boot (QEMU TCG, the
stick on an xHCI controller) and its stand-in initrd finds `imager.boot=usb` on
the kernel command line, the offline kit and the CA on the data partition; the
guard refuses a mounted device and one not on USB; writing the stick again keeps
a spool not yet sent; `imager boot usb-sync` uploads a spool made by the real
offline agent to a real station, which certifies the erasure, and moves the
events to spool/sent/; a second sync sends nothing.

Loop devices stand in for sticks through `allow_loop=True`, a keyword of the
library only: no command passes it, so `imager boot usb /dev/loopN` is refused
(tested below). Needs root, qemu-system-x86, ovmf, gdisk, dosfstools, mtools,
grub-pc-bin, grub-efi-amd64-signed, shim-signed, busybox-static, cpio, zstd and
network to this machine's Debian mirror on a cold cache (the stand-in kernel)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from clirun import imager
from conftest import need, need_root
from os_image import missing as boot_missing
from station_proc import Serve, until
from test_agent_offline_erase import _erase_offline
from test_image_after import build_image
from usb_stick import boot_stick, standin_live, stick

from imager.boot import usb, usb_data
from imager.certify.keys import station_keys
from imager.cli import boot_usb
from imager.cli.context import Context
from imager.erase import offline_policy
from imager.errors import RefusedDevice, UsageError
from imager.settings import Settings

pytestmark = pytest.mark.root
GiB = 1 << 30
STATION_URL = "https://station.lan:8470"
EXPECT_SECUREBOOT = {"bios": "bios", "uefi": "off", "secureboot": "on"}


def _need_all() -> None:
    need_root()
    lacking = boot_missing() + usb.missing_tools()
    lacking += [t for t in ("busybox", "zstd", "apt-get", "dpkg-deb") if not shutil.which(t)]
    need(not lacking, f"the USB stick tests need: {', '.join(lacking)} (scripts/install)")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> usb.StickFiles:
    _need_all()
    return usb.StickFiles.in_folder(standin_live(tmp_path_factory.mktemp("live"))).check()


@pytest.fixture(scope="module")
def station_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The station that writes the sticks (its keys sign the kit) and later syncs them."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("station") / "data")
    station_keys(settings)                                  # made at first use
    return settings


@pytest.fixture(scope="module")
def written(live: usb.StickFiles, station_settings: Settings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[usb.WrittenStick, Path]]:
    """One stick, written once for the boot and layout tests (with a station URL)."""
    folder = tmp_path_factory.mktemp("stick")
    with stick(folder, 2 * GiB) as (dev, image):
        content = boot_usb.stick_content(station_settings, STATION_URL)
        result = usb.write_stick(dev, live, content, station_settings, allow_loop=True)
        print(f"\nstick written in {result.seconds} s: ESP {result.esp_used / 1e6:.1f} MB used "
              f"of {result.esp_size / 1e6:.0f} MB, data {result.data_size / 1e9:.2f} GB")
        yield result, image


# -- boot -------------------------------------------------------------------------------

@pytest.mark.parametrize("firmware", ["bios", "uefi", "secureboot"])
def test_the_stick_boots_its_live_system_under_each_firmware(
        written: tuple[usb.WrittenStick, Path], firmware: str, tmp_path: Path) -> None:
    _, image = written
    booted = boot_stick(image, firmware, tmp_path)
    print(f"\n{firmware}: firmware to initrd in {booted.seconds} s")
    assert booted.found is not None, f"no marker under {firmware}:\n{booted.console[-3000:]}"
    assert booted.cmdline is not None
    words = booted.cmdline.split()
    assert {"imager.boot=usb", "console=tty0", "console=ttyS0,115200",
            f"imager.station={STATION_URL}"} <= set(words)
    found = booted.found
    assert set(found["kit"].strip(",").split(",")) == {offline_policy.KIT_POLICY,
                                                       offline_policy.KIT_CERT}
    assert found["ca"] == found["initrd-ca"] == found["second"] == "yes"
    assert found["spool"] == "sent,"
    assert found["secureboot"] == EXPECT_SECUREBOOT[firmware]


# -- what is on the stick ---------------------------------------------------------------

def test_the_stick_is_gpt_with_bios_boot_esp_and_data(
        written: tuple[usb.WrittenStick, Path], station_settings: Settings) -> None:
    result, image = written
    table = json.loads(_out(["sfdisk", "--json", str(image)]))["partitiontable"]
    assert table["label"] == "gpt"
    types = [p["type"] for p in table["partitions"]]
    assert types == ["21686148-6449-6E6F-744E-656564454649",      # BIOS boot
                     "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",      # EFI system
                     "0FC63DAF-8483-4772-8E79-3D69D8477DE4"]      # Linux data
    with open(image, "rb") as fh:
        mbr = fh.read(512)
    assert mbr[446] == 0x80 and mbr[450] == 0xEE, "the protective entry is active"
    assert b"GRUB" in mbr[:446], "GRUB's boot.img is in the MBR"
    esp = f"{image}@@{table['partitions'][1]['start'] * 512}"
    listing = _out(["mdir", "-i", esp, "-/", "-b", "::/"], MTOOLS_SKIP_CHECK="1")
    for name in ("EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", "EFI/BOOT/mmx64.efi",
                 "EFI/debian/grub.cfg", "boot/grub/grub.cfg", "boot/grub/i386-pc/normal.mod",
                 "live/vmlinuz", "live/live.img", "live/imager.img", "live/station.img"):
        assert f"::/{name}" in listing, name
    cfg = _out(["mtype", "-i", esp, "::/EFI/debian/grub.cfg"], MTOOLS_SKIP_CHECK="1")
    assert f"linux /live/vmlinuz {usb.CMDLINE} imager.station={STATION_URL}\n" in cfg
    assert "initrd /live/live.img /live/imager.img /live/station.img\n" in cfg
    assert result.cmdline == f"{usb.CMDLINE} imager.station={STATION_URL}"
    assert 15e6 < result.esp_used < result.esp_size


def test_the_data_partition_holds_a_kit_that_verifies_and_the_stations_ca(
        written: tuple[usb.WrittenStick, Path], station_settings: Settings,
        tmp_path: Path) -> None:
    _, image = written
    with _data_of(image, tmp_path) as root:
        kit = offline_policy.read_kit(root / usb_data.KIT)
        assert kit.policy.label
        assert (root / usb_data.CA).read_bytes() == boot_usb.station_ca(station_settings)
        assert (root / usb_data.SPOOL / usb_data.SENT).is_dir()
        assert oct((root / usb_data.SPOOL).stat().st_mode & 0o777) == "0o700"
        assert "Rapportez la clé à la station" in (root / usb_data.README).read_text()


def test_without_a_station_the_command_line_says_usb_only() -> None:
    assert usb.cmdline(None) == "imager.boot=usb console=tty0 console=ttyS0,115200"
    with pytest.raises(UsageError, match="give a URL"):
        usb.check_station("https://x; rm -rf /")


# -- the guard --------------------------------------------------------------------------

def test_a_mounted_stick_is_refused(live: usb.StickFiles, station_settings: Settings,
                                    tmp_path: Path) -> None:
    with stick(tmp_path, GiB) as (dev, _):
        usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                        station_settings, allow_loop=True)
        (mnt := tmp_path / "mnt").mkdir()
        subprocess.run(["mount", "-o", "ro", f"{dev}p3", str(mnt)], check=True)
        try:
            with pytest.raises(RefusedDevice, match=r"is mounted on .*mnt: unmount it first"):
                usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                                station_settings, allow_loop=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


def test_a_device_not_on_usb_is_refused_and_nothing_is_written(
        live: usb.StickFiles, station_settings: Settings, tmp_path: Path) -> None:
    """The command never lets a loop device through: only the tests' keyword does."""
    with stick(tmp_path, GiB) as (dev, image):
        with pytest.raises(RefusedDevice, match=r"not a USB device \(transport loop\)"):
            usb.check_stick(dev, station_settings)
        code = _cli(station_settings, "usb", dev, "--live", str(live.vmlinuz.parent), "--yes")
        assert code == 2
        with open(image, "rb") as fh:
            assert not any(fh.read(1 << 20)), "nothing was written"


def test_a_partition_and_a_loop_over_a_device_are_refused(
        station_settings: Settings, tmp_path: Path) -> None:
    with stick(tmp_path, GiB) as (dev, _):
        subprocess.run(["sgdisk", "--new=1:2048:+10M", dev], check=True, capture_output=True)
        subprocess.run(["partx", "--update", dev], capture_output=True)
        until(lambda: Path(f"{dev}p1").exists(), 10, "the partition appears")
        with pytest.raises(RefusedDevice, match="is a partition"):
            usb.check_stick(f"{dev}p1", station_settings, allow_loop=True)
        with pytest.raises(RefusedDevice, match="is a regular file, not a USB stick"):
            usb.check_stick(str(tmp_path / "stick.img"), station_settings, allow_loop=True)
        over = subprocess.run(["losetup", "--find", "--show", dev], check=True,
                              capture_output=True, text=True).stdout.strip()
        try:
            with pytest.raises(RefusedDevice, match="not a USB device"):
                usb.check_stick(over, station_settings, allow_loop=True)
        finally:
            subprocess.run(["losetup", "--detach", over])


def test_a_stick_too_small_is_refused(live: usb.StickFiles, station_settings: Settings,
                                      tmp_path: Path) -> None:
    with stick(tmp_path, 200 << 20) as (dev, _):
        with pytest.raises(UsageError, match="clé trop petite / stick too small"):
            usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                            station_settings, allow_loop=True)


def test_a_spool_left_by_an_interrupted_write_is_put_back_never_mixed(
        live: usb.StickFiles, station_settings: Settings, tmp_path: Path) -> None:
    def event(folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"0000000000000000000{name}-abc.event.json").write_text(name)

    with stick(tmp_path, GiB) as (dev, image):
        saved = usb_data.saved_folder(station_settings, f"loop:{image.resolve()}")
        event(saved / usb_data.SPOOL, "1")                 # left by a write that failed
        made = usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                               station_settings, allow_loop=True)
        assert made.carried == 1 and not saved.exists(), "put back on the stick"
        with _data_of(image, tmp_path, dev=dev) as root:
            assert [p.name for p in usb_data.pending(root / usb_data.SPOOL)] == [
                "00000000000000000001-abc.event.json"]
            event(root / usb_data.SPOOL, "2")              # the laptop spooled more since
        event(saved / usb_data.SPOOL, "3")                 # and another write failed
        before = _head(image)
        with pytest.raises(UsageError, match="a spool saved by an interrupted write waits"):
            usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                            station_settings, allow_loop=True)
        assert _head(image) == before, "the stick was not touched"
        shutil.rmtree(saved)


def test_a_stick_whose_data_partition_cannot_be_read_is_not_overwritten(
        live: usb.StickFiles, station_settings: Settings, tmp_path: Path) -> None:
    with stick(tmp_path, GiB) as (dev, image):
        usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                        station_settings, allow_loop=True)
        fd = os.open(f"{dev}p3", os.O_WRONLY)          # the ext4 superblock destroyed
        try:
            os.pwrite(fd, bytes(1024), 1024)
            os.fsync(fd)
        finally:
            os.close(fd)
        before = _head(image)
        with pytest.raises(UsageError, match="may hold reports not yet sent"):
            usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                            station_settings, allow_loop=True)
        assert _head(image) == before


def test_the_command_asks_before_erasing_and_needs_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    one = usb.Stick("/dev/sdz", 16_000_000_000, "SanDisk Cruzer Blade", "serial:x:1")
    with open(os.devnull) as null:
        monkeypatch.setattr(sys, "stdin", null)
        with pytest.raises(UsageError, match=r"give --yes to write /dev/sdz \(SanDisk Cruzer "
                                             r"Blade, 16.0 Go\)"):
            boot_usb._confirmed(one)


# -- offline erasure, rewrite, sync -----------------------------------------------------

@pytest.fixture(scope="module")
def erased_offline(live: usb.StickFiles, station_settings: Settings,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A stick whose kit carries a signed catalogue image and whose spool holds a
    real offline erasure and installation: the agent ran with the stick's own kit
    and spool (its data partition mounted, as on the laptop)."""
    folder = tmp_path_factory.mktemp("offline")
    small = build_image(folder, "label: gpt\nsize=2MiB, type=uefi\ntype=linux\n",
                        size=12 << 20)
    imager(station_settings.data_dir, "image", "create", str(small), "--name", "lab",
           "--version", "1")
    imager(station_settings.data_dir, "image", "sign", "lab", "1")
    with stick(folder, GiB) as (dev, image):
        usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None, image="lab"),
                        station_settings, allow_loop=True)
        with _data_of(image, folder, dev=dev) as root:
            _erase_offline(folder / "laptop", root / usb_data.KIT, root / usb_data.SPOOL)
            kinds = [json.loads(p.read_text())["kind"]
                     for p in usb_data.pending(root / usb_data.SPOOL)]
            assert kinds == ["offline_erasure", "offline_deployment"]
        yield dev, image


def test_writing_the_stick_again_keeps_the_spool_not_yet_sent(
        erased_offline: tuple[str, Path], live: usb.StickFiles, station_settings: Settings,
        tmp_path: Path) -> None:
    dev, image = erased_offline
    with _data_of(image, tmp_path, dev=dev) as root:
        before = usb_data.digest(root / usb_data.SPOOL)
        pending = len(usb_data.pending(root / usb_data.SPOOL))
    assert pending and any(name.endswith("agent.key") for name in before)
    again = boot_usb.write(dev, live, boot_usb.stick_content(station_settings, STATION_URL),
                           station_settings, allow_loop=True)      # the command's progress
    assert again.carried == len(before)
    with _data_of(image, tmp_path, dev=dev) as root:
        assert usb_data.digest(root / usb_data.SPOOL) == before
        assert len(usb_data.pending(root / usb_data.SPOOL)) == pending
    assert not (station_settings.data_dir / usb_data.SAVED).exists() or \
        not any((station_settings.data_dir / usb_data.SAVED).iterdir())


def test_usb_sync_uploads_the_spool_the_station_certifies_and_a_second_sync_sends_nothing(
        erased_offline: tuple[str, Path], station_settings: Settings, tmp_path: Path) -> None:
    dev, image = erased_offline
    station = Serve(station_settings.data_dir, "--no-local-agent")
    try:
        station.start()
        with pytest.raises(UsageError, match="waits for a technician"):
            boot_usb.sync_stick(dev, station_settings, station=station.url)
        station.approve("live-usb")
        assert _cli(station_settings, "usb-sync", dev, "--station", station.url) == 0
        until(lambda: [d for d in station.get("/api/v1/drives") if d["state"] == "certified"],
              60, "the drive erased offline is certified")
        (record,) = [json.loads(p.read_text())["document"]
                     for p in (station.data / "documents").glob("EFF-*.json")]
        assert record["agent"]["name"] == "live-usb" and record["agent"]["boot"] == "usb"
        with closing(sqlite3.connect(station.data / "registry.sqlite3")) as db:
            assert db.execute("SELECT image_name, ok, verify FROM deployments").fetchall() \
                == [("lab", 1, "full")]
        again = boot_usb.sync_stick(dev, station_settings, station=station.url)
        assert again.result is None and again.pending_before == 0 and again.sent_total == 2
    finally:
        station.close()
    with _data_of(image, tmp_path, dev=dev) as root:
        spool = root / usb_data.SPOOL
        assert usb_data.pending(spool) == []
        assert [json.loads(p.read_text())["kind"] for p in usb_data.sent(spool)] == [
            "offline_erasure", "offline_deployment"]


# -- helpers ----------------------------------------------------------------------------

def _head(image: Path) -> str:
    with open(image, "rb") as fh:
        return hashlib.sha256(fh.read(300 << 20)).hexdigest()


def _out(argv: list[str], **env: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env})
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout


def _cli(settings: Settings, *argv: str) -> int:
    """`imager boot ARGV` through this module's parser (the `boot` group is
    registered by `imager boot build`'s module), errors rendered as main() does."""
    from imager.errors import ImagerError
    parser = argparse.ArgumentParser(prog="imager")
    boot_usb.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["boot", *argv])
    ctx = Context(settings)
    try:
        return int(args.func(args, ctx))
    except ImagerError as exc:
        print(f"imager: erreur / error: {exc}", file=sys.stderr)
        return 2
    finally:
        ctx.close()


@contextmanager
def _data_of(image: Path, folder: Path, *, dev: str | None = None) -> Iterator[Path]:
    """The stick's data partition mounted for the block: through its loop device
    `dev` if given (read-write), else read-only through a loop of its own over
    `image`; unmounted and detached after, whatever happened."""
    mnt = folder / f"data-{time.monotonic_ns()}"
    mnt.mkdir()
    loop = None
    try:
        if dev is None:
            loop = dev = _out(["losetup", "--find", "--show", "--read-only",
                               str(image)]).strip()
            _out(["partx", "--add", dev])      # the kernel's own scan does not work everywhere
            until(lambda: Path(f"{dev}p3").exists(), 10, "the data partition appears")
        subprocess.run(["mount", "-o", "ro" if loop else "rw", f"{dev}p3", str(mnt)],
                       check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        if loop:
            subprocess.run(["partx", "--delete", loop], check=False)
            subprocess.run(["losetup", "--detach", loop], check=False)
