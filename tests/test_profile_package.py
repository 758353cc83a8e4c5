"""The profile's own package: a versioned .deb built with the real dpkg-deb,
reproducible, clean for lintian, and upgraded by the next version as a fleet
update needs (files replaced, an admin's change to a conffile kept)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import need
from test_firstboot_system import trixie_root  # noqa: F401  (fixture)

from imager.errors import UsageError
from imager.profile.package import (
    Payload,
    PayloadFile,
    build_deb,
    check_relation,
    check_version,
)

MAINTAINER = "Réseau Solidaire <contact@example.org>"
DESCRIPTION = ("Accueil du réseau solidaire\n"
               "Le système harmonisé des postes donnés : page d'accueil,\n"
               "marque-pages et premier démarrage.")
UNIT = (b"[Unit]\nDescription=Service de test du paquet\nDocumentation=man:true(1)\n\n"
        b"[Service]\nType=oneshot\nExecStart=/bin/true\n\n"
        b"[Install]\nWantedBy=multi-user.target\n")


def payload(v: int) -> Payload:
    """The test package at version `v`: one conffile an admin changes, one left
    alone, a data file, a file only version 1 has, a unit, a postinst fragment."""
    files = [
        PayloadFile("/etc/reseau/edited.conf", f"setting = {v}\n".encode()),
        PayloadFile("/etc/reseau/untouched.conf", f"other = {v}\n".encode()),
        PayloadFile("/usr/share/reseau/accueil.html", f"<p>version {v}</p>\n".encode()),
        PayloadFile("/usr/lib/systemd/system/reseau-test.service", UNIT),
        PayloadFile("/usr/lib/reseau-accueil/outil", b"#!/bin/sh\necho outil\n", 0o755),
    ]
    if v == 1:
        files.append(PayloadFile("/usr/share/reseau/ancien.txt", b"only in version 1\n"))
    return Payload(files=tuple(files), units=("reseau-test.service",),
                   depends=("base-files (>= 12)",),
                   postinst=('echo "reseau-accueil configured (was: ${2:-none})" '
                             '> /var/lib/reseau-accueil.log',))


def build(v: int, out: Path, **kw: object) -> Path:
    return build_deb(payload(v), name="reseau-accueil", version=f"2026.12.{v}", out_dir=out,
                     maintainer=MAINTAINER, description=DESCRIPTION, **kw)  # type: ignore[arg-type]


def dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], check=True, capture_output=True,
                          text=True).stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_package_has_the_payload_with_root_owner_and_fixed_dates(tmp_path: Path) -> None:
    deb = build(1, tmp_path)
    assert deb.name == "reseau-accueil_2026.12.1_all.deb"
    info = dpkg_deb("--info", str(deb))
    assert "Package: reseau-accueil" in info and "Version: 2026.12.1" in info
    assert "Architecture: all" in info
    assert "Depends: base-files (>= 12), init-system-helpers (>= 1.54~)" in info
    assert " Description: Accueil du réseau solidaire\n  Le système harmonisé" in info
    assert dpkg_deb("--field", str(deb), "Installed-Size").strip().isdigit()
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text() == \
        "/etc/reseau/edited.conf\n/etc/reseau/untouched.conf\n"
    assert "usr/share/reseau/accueil.html" in (control / "md5sums").read_text()
    assert "etc/reseau" not in (control / "md5sums").read_text()  # conffiles: dpkg's own
    postinst = (control / "postinst").read_text()
    assert "deb-systemd-helper enable" in postinst and "reseau-accueil configured" in postinst
    assert os.access(control / "postinst", os.X_OK)
    listing = {line.split()[-1]: line.split() for line in
               dpkg_deb("--contents", str(deb)).splitlines()}
    assert listing["./usr/lib/reseau-accueil/outil"][0] == "-rwxr-xr-x"
    assert listing["./etc/reseau/edited.conf"][0] == "-rw-r--r--"
    assert "./usr/share/doc/reseau-accueil/copyright" in listing
    assert "./usr/share/doc/reseau-accueil/changelog.gz" in listing
    assert {row[1] for row in listing.values()} == {"root/root"}
    assert {(row[3], row[4]) for row in listing.values()} == {("2025-08-09", "00:00")}


def test_building_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first = build(1, tmp_path / "a")
    old = os.umask(0o077)          # another umask must not change the modes either
    try:
        second = build(1, tmp_path / "b")
    finally:
        os.umask(old)
    assert sha256(first) == sha256(second)
    later = build(1, tmp_path / "c", epoch=1767225600)      # another date: other bytes
    assert sha256(later) != sha256(first)


def test_source_date_epoch_sets_the_files_date(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")   # 2026-01-01
    deb = build(1, tmp_path)
    assert "2026-01-01 00:00 ./etc/reseau/edited.conf" in dpkg_deb("--contents", str(deb))


def test_lintian_finds_no_error_and_no_warning(tmp_path: Path) -> None:
    need(shutil.which("lintian") is not None, "needs lintian (see scripts/install)")
    deb = build(1, tmp_path)
    out = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)],
                         capture_output=True, text=True, timeout=300)
    tags = [ln for ln in out.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert tags == [], out.stdout


@pytest.mark.parametrize(("version", "said"), [
    ("", "it is empty"),
    ("v2026.12", "must start with a digit, not 'v'; for example write '2026.12'"),
    ("2026_12_1", "'_' (character 5) is not allowed"),
    ("2026.12 1", "' ' (character 8) is not allowed"),
    ("2026.12.1-", "it ends with '-'"),
    ("2026.12.1-r_1", "'_' (character 12) is not allowed"),
    ("2026.12.1-r_1", "for example write '2026.12.1-r.1'"),
    ("a:2026.12", "the epoch before ':' must be a number"),
    ("2026/12", "for example write '2026.12'"),
])
def test_bad_versions_name_the_character_and_the_fix(version: str, said: str) -> None:
    with pytest.raises(UsageError) as err:
        check_version(version)
    assert said in str(err.value)
    assert "is not a valid Debian version" in str(err.value)


@pytest.mark.parametrize("version", ["2026.12.1", "1:2026.12.1", "2026.12.1-1",
                                     "1.0~rc1", "2026.12.1+deb13u1", "1.2-3-4"])
def test_good_versions_pass(version: str) -> None:
    assert check_version(version) == version


def test_relations_are_checked_and_normalised() -> None:
    assert check_relation("firefox-esr ( >= 128.5 )") == "firefox-esr (>= 128.5)"
    assert check_relation("chromium|firefox-esr") == "chromium | firefox-esr"
    for bad, said in (("Firefox", "is not a Debian relation"),
                      ("firefox-esr (=> 1)", "is not a Debian relation"),
                      ("firefox-esr (>= v1)", "must start with a digit")):
        with pytest.raises(UsageError, match=said):
            check_relation(bad)


@pytest.mark.parametrize(("change", "said"), [
    ({"files": (PayloadFile("etc/x", b""),)}, "give an absolute, normalised path"),
    ({"files": (PayloadFile("/usr/share/a/../b", b""),)}, "no '..'"),
    ({"files": (PayloadFile("/usr/share/a b", b""),)}, "' ' is not allowed"),
    ({"files": (PayloadFile("/etc/x", b"1"), PayloadFile("/etc/x", b"2"))}, "given twice"),
    ({"files": (PayloadFile("/usr/bin/x", b"", 0o4755),)}, "no setuid"),
    ({"files": (PayloadFile("/usr/share/doc/reseau-accueil/README", b""),)},
     "written by the package build"),
    ({"units": ("absent.service",)}, "has no /usr/lib/systemd/system/absent.service"),
    ({"depends": ("firefox-esr (>= 1_0)",)}, "'_' (character 2) is not allowed"),
    ({"files": (PayloadFile("/usr/share/x", Path("/nonexistent/source")),)},
     "cannot read its source /nonexistent/source"),
])
def test_bad_payloads_are_refused_with_the_fix(tmp_path: Path, change: dict[str, object],
                                               said: str) -> None:
    with pytest.raises(UsageError, match=None) as err:
        build_deb(Payload(**change), name="reseau-accueil",  # type: ignore[arg-type]
                  version="1.0", out_dir=tmp_path, maintainer=MAINTAINER,
                  description=DESCRIPTION)
    assert said in str(err.value)
    assert list(tmp_path.iterdir()) == []       # nothing half built is left


def test_bad_package_fields_are_refused(tmp_path: Path) -> None:
    kw = {"version": "1.0", "out_dir": tmp_path, "maintainer": MAINTAINER,
          "description": DESCRIPTION, "name": "reseau-accueil"}
    for key, value, said in (("name", "Réseau_Accueil", "e.g. 'r-seau-accueil'"),
                             ("maintainer", "contact@example.org", "'Name <email"),
                             ("description", "x" * 80, "1 to 79 characters (it has 80)"),
                             ("description", "Accueil\n\n", "add one or more lines")):
        with pytest.raises(UsageError) as err:
            build_deb(Payload(), **{**kw, key: value})  # type: ignore[arg-type]
        assert said in str(err.value)


def test_payloads_add_up_without_repeating_units_or_depends() -> None:
    unit = PayloadFile("/usr/lib/systemd/system/a.service", UNIT)
    a = Payload(files=(unit,), units=("a.service",), depends=("python3",), postinst=("a",))
    b = Payload(files=(PayloadFile("/etc/b", b""),), depends=("python3", "lightdm"),
                postinst=("b",))
    total = a + b
    assert [f.path for f in total.files] == ["/usr/lib/systemd/system/a.service", "/etc/b"]
    assert total.depends == ("python3", "lightdm") and total.units == ("a.service",)
    assert total.postinst == ("a", "b") and total.conffiles == ("/etc/b",)


def test_source_path_content_is_read_at_build(tmp_path: Path) -> None:
    src = tmp_path / "policies.json"
    src.write_text('{"policies": {}}\n')
    deb = build_deb(Payload(files=(PayloadFile("/etc/firefox/policies/policies.json", src),)),
                    name="reseau-accueil", version="1.0", out_dir=tmp_path / "out",
                    maintainer=MAINTAINER, description=DESCRIPTION)
    extracted = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    assert (extracted / "etc/firefox/policies/policies.json").read_text() == \
        '{"policies": {}}\n'


# --- the upgrade, in a Debian 13 root -----------------------------------------------------


def dpkg_install(root: Path, deb: Path) -> str:
    """Install `deb` in `root` as a fleet update does (no question; an admin's
    change to a conffile is kept)."""
    shutil.copy(deb, root / "tmp" / deb.name)
    proc = subprocess.run(["chroot", str(root), "dpkg", "--force-confold", "--force-confdef",
                           "-i", f"/tmp/{deb.name}"], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                               "DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def installed_version(root: Path) -> str:
    return subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f=${Version}",
                           "reseau-accueil"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.root
def test_next_version_replaces_files_and_keeps_an_admins_conffile(
        tmp_path: Path, trixie_root: Path) -> None:  # noqa: F811
    need(os.geteuid() == 0, "needs root (chroot)")
    root = trixie_root
    dpkg_install(root, build(1, tmp_path / "v1"))
    assert installed_version(root) == "2026.12.1"
    wants = root / "etc/systemd/system/multi-user.target.wants/reseau-test.service"
    assert wants.is_symlink(), "postinst enables the payload's unit"
    assert (root / "var/lib/reseau-accueil.log").read_text().strip() == \
        "reseau-accueil configured (was: none)"
    (root / "etc/reseau/edited.conf").write_text("setting = local\n")   # the admin's change

    dpkg_install(root, build(2, tmp_path / "v2"))
    assert installed_version(root) == "2026.12.2"
    assert (root / "usr/share/reseau/accueil.html").read_text() == "<p>version 2</p>\n"
    assert not (root / "usr/share/reseau/ancien.txt").exists(), "dropped by version 2"
    assert (root / "etc/reseau/untouched.conf").read_text() == "other = 2\n"
    assert (root / "etc/reseau/edited.conf").read_text() == "setting = local\n"
    assert (root / "etc/reseau/edited.conf.dpkg-dist").read_text() == "setting = 2\n"
    assert (root / "var/lib/reseau-accueil.log").read_text().strip() == \
        "reseau-accueil configured (was: 2026.12.1)"
    assert wants.is_symlink()


@pytest.mark.root
def test_a_unit_disabled_since_stays_disabled_after_an_upgrade(
        tmp_path: Path, trixie_root: Path) -> None:  # noqa: F811
    need(os.geteuid() == 0, "needs root (chroot)")
    root = trixie_root
    dpkg_install(root, build(1, tmp_path / "v1"))
    subprocess.run(["chroot", str(root), "systemctl", "disable", "reseau-test.service"],
                   check=True, capture_output=True)
    wants = root / "etc/systemd/system/multi-user.target.wants/reseau-test.service"
    assert not wants.is_symlink()
    dpkg_install(root, build(2, tmp_path / "v2"))
    assert not wants.is_symlink(), "an upgrade must not re-enable a unit disabled since"
