"""The `lab` OS image (profiles/lab), built by the real build (mmdebstrap from Debian's mirror,
cached by content in IMAGER_OS_CACHE), boots in QEMU (TCG) under SeaBIOS, OVMF and
OVMF with Secure Boot (Microsoft keys enrolled: shim -> Debian's signed GRUB ->
Debian's signed kernel), reaches multi-user and says on the serial console its
locale, keyboard, host name, profile and version, and whether Secure Boot is on.
Also: the image in a catalogue with the package list in its manifest, and the
root rebuilt from the kept .deb files alone gives the same sha256, and the same disk.

Needs root, network to deb.debian.org (on a cold cache), qemu-system-x86, ovmf,
mmdebstrap, gdisk, dosfstools, mtools: under CI=true a missing one fails."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from conftest import need
from os_image import BootResult, boot, cache_dir, lab_image, missing

from imager.certify.keys import station_keys
from imager.certify.signing import Trust
from imager.imaging.catalogue import Catalogue
from imager.profile import disk
from imager.profile.build import BuiltImage, rebuild_root
from imager.profile.build_diff import diff_builds
from imager.settings import Settings

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> BuiltImage:
    need(os.geteuid() == 0, "the OS image build needs root (mmdebstrap --mode=root, loop)")
    lacking = missing()
    need(not lacking, f"the OS image tests need: {', '.join(lacking)} (scripts/install)")
    started = time.monotonic()
    built = lab_image()
    print(f"\nlab image: {'cache' if built.cached else 'built'} in "
          f"{time.monotonic() - started:.0f} s ({built.seconds}), key {built.key[:16]}")
    return built


EXPECTED_FIRMWARE = {"bios": ("bios", "none"), "uefi": ("uefi", "off"),
                     "secureboot": ("uefi", "on")}


# Under Secure Boot the same image boots, with the same report, at the end of the
# laptops' flows (tests/test_laptop_e2e.py, tests/test_usb_flow.py): not booted a
# third time here, for the CI's minutes.
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_lab_image_boots_to_multi_user_and_reports_on_serial(
        lab: BuiltImage, firmware: str, tmp_path: Path) -> None:
    result: BootResult = boot(lab.raw, firmware, tmp_path)
    print(f"\n{firmware}: boot report after {result.seconds} s")
    assert result.report is not None, (
        f"no boot report within the time limit under {firmware}; console tail:\n"
        + result.console[-3000:])
    kind, secure = EXPECTED_FIRMWARE[firmware]
    assert result.report == {
        "profile": "lab", "version": lab.spec.version, "locale": "fr_FR.UTF-8",
        "locale_ok": "yes", "keyboard": "fr", "hostname": lab.spec.hostname,
        "firmware": kind, "secureboot": secure, "target": "multi-user"}


def test_lab_image_goes_into_the_catalogue_with_its_packages_signed(
        lab: BuiltImage, tmp_path: Path, settings: Settings) -> None:
    keys = station_keys(settings)
    built = lab_image(catalogue=tmp_path / "images", keys=keys)
    assert built.cached and built.key == lab.key
    entry = Catalogue(tmp_path / "images").get("lab")
    assert entry.signed
    assert entry.version == f"{lab.spec.version}+{lab.key[:8]}"
    os_build = entry.manifest["os_build"]
    assert os_build["profile"] == "lab" and os_build["profile_version"] == lab.spec.version
    names = {p["name"] for p in os_build["packages"]}
    assert {"linux-image-amd64", "systemd-sysv", "shim-signed", "grub-efi-amd64-signed",
            "locales", "keyboard-configuration", "console-setup", "tzdata"} <= names
    assert all(len(p["sha256"]) == 64 for p in os_build["packages"])
    own_deb = lab.spec.local_debs[0]                     # the profile's own package
    own = next(p for p in os_build["packages"] if p["name"] == own_deb.name.split("_")[0])
    assert own["sha256"] == _sha256(own_deb)
    assert os_build["root_tar_sha256"] == lab.root_tar_sha256
    report = Catalogue(tmp_path / "images").verify(entry, full=True,
                                                  trust=Trust([keys.station_cert]),
                                                  require_signature=True)
    assert report.ok, report.lines
    print(f"\nlab image: raw {entry.manifest['image_size']} B, mapped "
          f"{entry.manifest['mapped_bytes']} B, zstd {entry.manifest['image']['size']} B")


def test_lab_image_rebuilt_from_the_kept_packages_alone_is_the_same(
        lab: BuiltImage, tmp_path: Path) -> None:
    """No network: the root tar from the local repository has the build's sha256,
    and the disk made from it is the cached disk, byte for byte."""
    started = time.monotonic()
    again = rebuild_root(lab, tmp_path / "rebuild")
    print(f"\nrebuild from the local repository: {time.monotonic() - started:.0f} s")
    assert again.sha256 == lab.root_tar_sha256
    rebuilt = {**lab.record, "root_tar_sha256": again.sha256,
               "packages": [p.as_dict() for p in lab.packages]}
    assert diff_builds(lab.record, rebuilt) == []
    made = disk.make_disk(lab.spec, again.tar, tmp_path / "disk.raw", tmp_path / "disk")
    assert _sha256(made.raw) == _sha256(lab.raw)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def test_profile_build_command_says_the_image_it_put_in_the_catalogue(
        lab: BuiltImage, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from imager.cli.profile_build import run

    assert run(lab.spec, settings=settings, cache_dir=cache_dir(), json_out=True) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cached"] is True and out["key"] == lab.key
    assert out["image"]["name"] == "lab"
    assert out["image"]["version"] == f"{lab.spec.version}+{lab.key[:8]}"
    assert out["zstd_bytes"] < out["mapped_bytes"] < out["raw_bytes"] == 2 << 30
    assert out["root_tar_sha256"] == lab.root_tar_sha256
