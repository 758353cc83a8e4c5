"""The profile's own package, assembled from the shipped `bureau-solidaire`
profile: the browsers' policies (checked against the installed firefox-esr's own
schema), the rendered welcome page and its message queue, the first-boot dialog;
clean for lintian, and the same bytes when built twice."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from conftest import need

from imager.profile import accueil, spec
from imager.profile.browser import check_firefox

TODAY = date(2026, 12, 6)


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(shutil.which("dpkg-deb") is not None, "needs dpkg-deb")
    return accueil.build(spec.load("bureau-solidaire"), tmp_path_factory.mktemp("deb"),
                         today=TODAY)


def _dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True,
                          check=True).stdout


def test_the_package_holds_the_policies_the_page_the_queue_and_the_first_boot(
        deb: Path) -> None:
    assert deb.name == "rsn05-accueil_2026.12.1_all.deb"
    listed = _dpkg_deb("--contents", str(deb))
    for path in ("./etc/firefox/policies/policies.json",
                 "./etc/chromium/policies/managed/rsn05-accueil.json",
                 "./usr/share/rsn05-accueil/index.html", "./usr/share/rsn05-accueil/en.html",
                 "./usr/lib/rsn05-accueil/accueil_messages.py",
                 "./usr/lib/systemd/system/rsn05-accueil-messages.service",
                 "./usr/lib/systemd/system/rsn05-premier-demarrage.service",
                 "./usr/lib/rsn05-accueil/python/firstboot/dialog.py"):
        assert path in listed, path
    info = _dpkg_deb("--info", str(deb))
    assert "python3-gi" in info and "lightdm" in info          # the dialog's Depends
    conffiles = _dpkg_deb("--info", str(deb), "conffiles").split()   # kept if changed
    assert conffiles == ["/etc/chromium/policies/managed/rsn05-accueil.json",
                         "/etc/firefox/policies/policies.json"]


def test_its_firefox_policies_open_the_welcome_page_and_fit_firefoxs_schema(
        deb: Path, tmp_path: Path) -> None:
    need(Path("/usr/lib/firefox-esr/browser/omni.ja").is_file(),
         "needs firefox-esr (scripts/install --test)")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    policies = json.loads((tmp_path / "etc/firefox/policies/policies.json").read_text())
    check_firefox(policies)
    home = policies["policies"]["Homepage"]
    assert home["URL"] == "file:///usr/share/rsn05-accueil/index.html" and home["Locked"]
    page = (tmp_path / "usr/share/rsn05-accueil/index.html").read_text(encoding="utf-8")
    assert "Prendre en main mon matériel" in page and "6 décembre 2026" in page


def test_it_is_clean_for_lintian_and_the_same_when_built_again(
        deb: Path, tmp_path: Path) -> None:
    need(shutil.which("lintian") is not None, "needs lintian (scripts/install --test)")
    out = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)],
                         capture_output=True, text=True, timeout=300)
    assert [ln for ln in out.stdout.splitlines() if ln[:2] in ("E:", "W:")] == [], out.stdout
    again = accueil.build(spec.load("bureau-solidaire"), tmp_path, today=TODAY)
    assert hashlib.sha256(again.read_bytes()).digest() == \
        hashlib.sha256(deb.read_bytes()).digest()


def test_imager_profile_package_writes_the_same_package(deb: Path, tmp_path: Path) -> None:
    from clirun import imager
    out = imager(tmp_path / "data", "profile", "package", "bureau-solidaire", "--out",
                 str(tmp_path / "out"), "--date", TODAY.isoformat())
    made = tmp_path / "out" / deb.name
    assert str(made) in out.stdout and sorted(p.name for p in made.parent.iterdir()) == [
        deb.name]
    assert hashlib.sha256(made.read_bytes()).hexdigest() in out.stdout
    assert made.read_bytes() == deb.read_bytes()


def test_it_installs_in_a_trixie_root_with_its_user_and_units(deb: Path, tmp_path: Path) -> None:
    """dpkg installs it in a Debian 13 root (the desktop Depends left out: the root has
    no X): its postinst makes the queue's system user and enables its units."""
    from test_firstboot_system import debian_root, in_root
    with debian_root(tmp_path) as root:
        shutil.copy(deb, root / "tmp" / deb.name)
        done = in_root(root, "dpkg", "-i", "--force-depends", f"/tmp/{deb.name}")
        assert "Setting up rsn05-accueil (2026.12.1)" in done.stdout, done.stdout + done.stderr
        assert "error" not in (done.stdout + done.stderr).lower().replace(
            "errors were encountered", "!"), done.stdout + done.stderr
        passwd = (root / "etc/passwd").read_text()
        assert "rsn05-accueil:" in passwd and "messages de la page d'accueil" in passwd
        wants = root / "etc/systemd/system"      # links to the root's /usr/lib: is_symlink
        for link in ("multi-user.target.wants/rsn05-accueil-messages.service",
                     "timers.target.wants/rsn05-accueil-messages-send.timer",
                     "graphical.target.wants/rsn05-premier-demarrage.service"):
            assert (wants / link).is_symlink(), link
