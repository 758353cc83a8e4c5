"""The OS image build's pure parts: the resolved package list, the cache key (a
security update changes it), the spec's dates and ids, what the disk's GRUB and
fstab say, the boot report's parsing, the spec JSON, and the build diff."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DATA, read_recorded

from imager.errors import ImagerError, UsageError
from imager.profile import boot_report, buildkey, disk, rootfs
from imager.profile.build import _check_resolved, cache_key, image_version, os_build_manifest
from imager.profile.build_diff import Difference, diff_builds
from imager.profile.buildspec import BuildSpec, ImageFile
from imager.profile.debs import (
    Package,
    deb_file_name,
    parse_dpkg_query,
    parse_simulated,
    parse_stanzas,
)
from imager.profile.spec_json import spec_from_json

SPEC = BuildSpec(name="lab", version="2026.12.1", packages=("ifupdown",), hostname="lab-poste")


def test_resolution_reads_both_phases_of_mmdebstrap_simulation_once_each() -> None:
    packages = parse_simulated(read_recorded(DATA / "os_build/mmdebstrap-simulate.txt"))
    names = [p.name for p in packages]
    assert len(names) == len(set(names)) == 17
    assert Package("libc6", "2.41-12+deb13u5", "amd64") in packages
    assert Package("libattr1", "1:2.5.2-3", "amd64") in packages       # an epoch
    assert Package("initramfs-tools", "0.148.4", "all") in packages
    assert Package("linux-image-amd64", "6.12.118-1", "amd64") in packages  # from -security


def test_installed_list_from_dpkg_query_matches_the_resolution_form() -> None:
    out = "libc6\t2.41-12+deb13u5\tamd64\nadduser\t3.152\tall\n"
    assert parse_dpkg_query(out) == (Package("adduser", "3.152", "all"),
                                     Package("libc6", "2.41-12+deb13u5", "amd64"))
    assert deb_file_name(Package("libattr1", "1:2.5.2-3", "amd64")) == \
        "libattr1_1%3a2.5.2-3_amd64.deb"


def test_a_security_update_changes_the_cache_key() -> None:
    before = (Package("libc6", "2.41-12+deb13u4", "amd64"), Package("udev", "257", "amd64"))
    after = (Package("libc6", "2.41-12+deb13u5", "amd64"), Package("udev", "257", "amd64"))
    assert cache_key(SPEC, before) != cache_key(SPEC, after)
    assert cache_key(SPEC, before) == cache_key(SPEC, tuple(reversed(before)))
    assert cache_key(SPEC, before) != cache_key(replace(SPEC, hostname="x"), before)
    # the .deb hash known after the build does not change the key
    hashed = tuple(replace(p, sha256="ab" * 32) for p in before)
    assert cache_key(SPEC, before) == cache_key(SPEC, hashed)
    assert image_version(SPEC, cache_key(SPEC, before)).startswith("2026.12.1+")


def test_release_day_from_the_spec_or_its_version() -> None:
    assert buildkey.source_date_epoch(SPEC) == 1796083200          # 2026-12-01 UTC
    assert buildkey.source_date_epoch(replace(SPEC, released="2026-12-24")) == 1798070400
    with pytest.raises(UsageError, match="released '24/12/2026'.*2026-12-01"):
        buildkey.source_date_epoch(replace(SPEC, released="24/12/2026"))
    with pytest.raises(UsageError, match="version 'v1'.*released"):
        buildkey.source_date_epoch(replace(SPEC, version="v1"))


def test_disk_ids_are_stable_for_a_spec_and_differ_between_specs() -> None:
    ids = disk.DiskIds.of(SPEC)
    assert ids == disk.DiskIds.of(replace(SPEC))
    assert ids.root_fs != disk.DiskIds.of(replace(SPEC, version="2026.12.2")).root_fs
    assert len({ids.disk, ids.bios_part, ids.esp_part, ids.root_part, ids.root_fs}) == 5
    assert len(ids.esp_volume) == 8


def test_fstab_and_grub_find_the_root_by_uuid_with_a_serial_console() -> None:
    ids = disk.DiskIds.of(SPEC)
    fstab = rootfs.fstab(SPEC)
    assert f"UUID={ids.root_fs} / ext4" in fstab
    assert f"UUID={ids.esp_volume[:4]}-{ids.esp_volume[4:]} /boot/efi vfat" in fstab
    cfg = disk.grub_cfg(SPEC, ids)
    assert f"search --no-floppy --fs-uuid --set=root {ids.root_fs}" in cfg
    assert f"linux /vmlinuz root=UUID={ids.root_fs} ro console=tty0 console=ttyS0,115200" in cfg
    assert f"--set=root {ids.root_fs}" in disk.esp_grub_cfg(ids)


def test_image_settings_files_say_locale_keyboard_time_zone_and_host() -> None:
    spec = replace(SPEC, keyboard_variant="oss")
    files = {f.path: f.content.decode() for f in rootfs.final_files(spec)}
    assert files["/etc/locale.gen"] == "fr_FR.UTF-8 UTF-8\n"
    assert files["/etc/default/locale"] == "LANG=fr_FR.UTF-8\n"
    assert 'XKBLAYOUT="fr"' in files["/etc/default/keyboard"]
    assert 'XKBVARIANT="oss"' in files["/etc/default/keyboard"]
    assert files["/etc/timezone"] == "Europe/Paris\n"
    assert files["/etc/hostname"] == "lab-poste\n"
    assert files["/etc/imager-profile"] == "NAME=lab\nVERSION=2026.12.1\n"
    sources = files["/etc/apt/sources.list.d/debian.sources"]
    assert "Suites: trixie trixie-updates" in sources and "Suites: trixie-security" in sources
    assert "Components: main non-free-firmware" in sources
    assert "ssh-keygen -A" in files["/etc/systemd/system/ssh.service.d/host-keys.conf"]
    snakeoil = files[f"/etc/systemd/system/{rootfs.SNAKEOIL_UNIT}"]
    assert "ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key" in snakeoil
    assert "make-ssl-cert generate-default-snakeoil" in snakeoil


def test_the_image_keeps_no_key_made_at_install_and_makes_them_at_first_boot(
        tmp_path: Path) -> None:
    """ssl-cert's snakeoil pair and SSH host keys are removed by the build (they would
    be shared by every machine and differ at each build); the snakeoil unit is enabled."""
    rootfs._hooks(SPEC, tmp_path, Path(rootfs.STAGE) / "x", {})
    script = (tmp_path / "customize.sh").read_text()
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in script
    assert ('rm -f "$root"/etc/ssl/certs/ssl-cert-snakeoil.pem '
            '"$root"/etc/ssl/private/ssl-cert-snakeoil.key') in script
    assert f'chroot "$root" systemctl enable {rootfs.SNAKEOIL_UNIT}' in script


def test_boot_report_line_is_parsed_from_a_noisy_console() -> None:
    console = ("\x1b[0;32m  OK  \x1b[0m] Reached target multi-user.target\r\n"
               "IMAGER-BOOT-REPORT profile=lab version=2026.12.1 locale=fr_FR.UTF-8 "
               "locale_ok=yes keyboard=fr hostname=lab-poste firmware=uefi secureboot=on "
               "target=multi-user\r\nDebian GNU/Linux 13 lab-poste ttyS0\r\n")
    report = boot_report.parse_report(console)
    assert report == {"profile": "lab", "version": "2026.12.1", "locale": "fr_FR.UTF-8",
                      "locale_ok": "yes", "keyboard": "fr", "hostname": "lab-poste",
                      "firmware": "uefi", "secureboot": "on", "target": "multi-user"}
    assert boot_report.parse_report("IMAGER-BOOT-REPORT profile=lab vers") is None


def test_spec_json_gives_a_build_spec_and_names_a_bad_field() -> None:
    spec = spec_from_json({"name": "lab", "version": "2026.12.1", "packages": ["ifupdown"],
                           "files": [{"path": "/etc/motd", "text": "Bonjour\n"}],
                           "boot_report": True})
    assert spec.packages == ("ifupdown",)
    assert ImageFile("/etc/motd", b"Bonjour\n") in spec.files
    assert boot_report.UNIT in spec.enable_units
    with pytest.raises(UsageError, match="unknown field 'pakages'"):
        spec_from_json({"name": "lab", "version": "1", "pakages": []})
    with pytest.raises(UsageError, match=r"files\[0\].*absolute"):
        spec_from_json({"name": "lab", "version": "1", "files": [{"path": "etc/x"}]})


def test_packages_index_stanzas_keep_continuation_lines() -> None:
    text = "Package: a\nVersion: 1\nDescription: short\n long line\n\nPackage: b\nVersion: 2\n"
    assert parse_stanzas(text) == [
        {"Package": "a", "Version": "1", "Description": "short\n long line"},
        {"Package": "b", "Version": "2"}]


def _record(packages: list[tuple[str, str, str]], root: str = "aa" * 32,
            version: str = "2026.12.1") -> dict[str, object]:
    return {"key": "k", "profile": "lab", "profile_version": version, "suite": "trixie",
            "spec_sha256": "s", "source_date_epoch": 0, "root_tar_sha256": root,
            "kernel": "6.12", "packages": [{"name": n, "version": v, "arch": "amd64",
                                            "sha256": h} for n, v, h in packages]}


def test_build_diff_is_empty_for_the_same_build_and_lists_what_changed() -> None:
    a = _record([("libc6", "2.41-12+deb13u4", "1" * 64), ("udev", "257", "2" * 64),
                 ("nano", "8.4", "3" * 64)])
    assert diff_builds(a, json.loads(json.dumps(a))) == []
    assert diff_builds({"os_build": os_build_manifest(a)}, a) == []
    b = _record([("libc6", "2.41-12+deb13u5", "4" * 64), ("udev", "257", "5" * 64),
                 ("vim-tiny", "9.1", "6" * 64)], root="bb" * 32, version="2026.12.2")
    found = diff_builds(a, b)
    assert found == [
        Difference("profile", "profile_version", "2026.12.1", "2026.12.2"),
        Difference("added", "vim-tiny:amd64", None, "9.1"),
        Difference("removed", "nano:amd64", "8.4", None),
        Difference("changed", "libc6:amd64", "2.41-12+deb13u4", "2.41-12+deb13u5"),
        Difference("rebuilt", "udev:amd64", "2" * 64, "5" * 64),
        Difference("root_tar", "root_tar_sha256", "aa" * 32, "bb" * 32)]
    assert str(found[3]) == "~ libc6:amd64 2.41-12+deb13u4 -> 2.41-12+deb13u5"
    with pytest.raises(UsageError, match="os_build.packages"):
        diff_builds({"format": "imager-image/1"}, a)


def test_cli_profile_build_takes_a_spec_json(tmp_path: Path) -> None:
    import argparse

    from imager.cli.profile_build import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    spec_file = tmp_path / "lab.json"
    spec_file.write_text(json.dumps({"name": "lab", "version": "2026.12.1"}))
    args = parser.parse_args(["build", "--spec-json", str(spec_file), "--cache-dir",
                              str(tmp_path / "cache"), "--check-reproducible"])
    assert args.spec_json == spec_file and args.check_reproducible


def test_a_shipped_profile_gives_its_build_spec_with_its_own_package(tmp_path: Path) -> None:
    from imager.profile.build_inputs import profile_build_spec, with_boot_report

    first = profile_build_spec("lab", debs_dir=tmp_path / "a")
    again = profile_build_spec("lab", debs_dir=tmp_path / "b")
    assert first.name == "lab" and len(first.local_debs) == 1
    assert first.local_debs[0].read_bytes() == again.local_debs[0].read_bytes()
    assert buildkey.spec_sha256(first) == buildkey.spec_sha256(again)   # the cache holds
    reported = with_boot_report(first)
    assert boot_report.UNIT in reported.enable_units
    assert buildkey.spec_sha256(reported) != buildkey.spec_sha256(first)


def test_a_package_dpkg_removed_as_empty_is_not_a_changed_mirror() -> None:
    """trixie's lsb-base (transitional, its files excluded or taken over) is resolved
    but gone at the end; a package installed that resolution did not list, or in
    another version, means the mirror changed during the build."""
    spec = BuildSpec(name="bureau-solidaire", version="2026.12.1")
    resolved = (Package("lsb-base", "11.6", "all"), Package("tzdata", "2025b-4", "all"))
    _check_resolved(spec, resolved, resolved[1:])
    with pytest.raises(ImagerError, match="tzdata=2025b-5"):
        _check_resolved(spec, resolved, (Package("tzdata", "2025b-5", "all"),))
