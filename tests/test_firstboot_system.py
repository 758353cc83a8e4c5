"""The first boot for real in a Debian 13 root: account, password hash, groups,
hostname, the unit disabled after, a second run doing nothing.

The root is a cached `mmdebstrap --variant=minbase` of trixie with python3 and
systemd (what the first boot needs from the desktop image), extracted afresh for
each test; the profile's package is installed in it with dpkg, then the shipped
first-boot program runs in it with `chroot`. This module also provides that
root to tests/test_profile_package.py (its upgrade test).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import need

ROOTS_CACHE = Path(os.environ.get("IMAGER_TEST_ROOTS") or "/var/cache/imager-test-roots")
# Everything that decides the root's content: its hash names the cached tar.
ROOT_RECIPE = {
    "suite": "trixie",
    "variant": "minbase",
    "include": ["python3", "systemd", "init-system-helpers", "passwd"],
    "mirrors": [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ],
    "excludes": ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                 "/usr/share/info/*"],
}


def root_tar() -> Path:
    """The cached tar of the test root, built first (a few minutes) if missing."""
    need(os.geteuid() == 0, "a Debian root needs root (mmdebstrap --mode=root, chroot)")
    need(shutil.which("mmdebstrap") is not None, "needs mmdebstrap (see scripts/install)")
    key = hashlib.sha256(json.dumps(ROOT_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    ROOTS_CACHE.mkdir(parents=True, exist_ok=True)
    tar = ROOTS_CACHE / f"{ROOT_RECIPE['suite']}-{ROOT_RECIPE['variant']}-{key}.tar"
    with open(ROOTS_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.is_file():
            _build(tar)
    return tar


def _build(tar: Path) -> None:
    partial = tar.with_suffix(f".partial-{os.getpid()}")
    argv = ["mmdebstrap", "--mode=root", f"--variant={ROOT_RECIPE['variant']}",
            "--format=tar", "--aptopt=APT::Install-Recommends \"false\"",
            f"--include={','.join(ROOT_RECIPE['include'])}",
            *[f"--dpkgopt=path-exclude={p}" for p in ROOT_RECIPE["excludes"]],
            str(ROOT_RECIPE["suite"]), str(partial), *ROOT_RECIPE["mirrors"]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"mmdebstrap of the test root failed:\n{tail}")
    os.rename(partial, tar)


@contextmanager
def debian_root(base: Path) -> Iterator[Path]:
    """A fresh copy of the cached trixie root under `base`; removed afterwards
    (never while something is mounted in it)."""
    root = base / "root"
    root.mkdir()
    with tarfile.open(root_tar()) as tf:
        tf.extractall(root, filter="fully_trusted")
    try:
        yield root
    finally:
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(root))]
        if mounted:
            raise RuntimeError(f"still mounted in the test root, not removed: {mounted}")
        shutil.rmtree(root)


@pytest.fixture
def trixie_root(tmp_path: Path) -> Iterator[Path]:
    """A throwaway Debian 13 root (minbase + python3 + systemd)."""
    with debian_root(tmp_path) as root:
        yield root


# --- the first boot in the root ---------------------------------------------------------

SLUG = "reseau"
LIB = f"/usr/lib/{SLUG}-accueil"
UNIT = f"{SLUG}-premier-demarrage.service"
WANTS = f"etc/systemd/system/graphical.target.wants/{UNIT}"
PASSWORD = "soleil du matin"


def in_root(root: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `root`, in its own UTS, PID and mount namespaces (its own /proc;
    a hostname it sets never reaches this machine)."""
    need(shutil.which("unshare") is not None, "needs unshare (util-linux)")
    return subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", f"--mount-proc={root}/proc",
         "chroot", str(root), *argv], input=stdin, capture_output=True, text=True,
        timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
                          "PYTHONPATH": f"{LIB}/python"})


def firstboot(root: Path, *args: str, stdin: str | None = None,
              ) -> subprocess.CompletedProcess[str]:
    return in_root(root, "python3", "-B", "-P", "-m", "firstboot", *args, stdin=stdin)


def install_package(root: Path, out: Path) -> None:
    """The profile's package with the first boot, as the image build installs it.
    The test root has no X: the package's Depends (for the desktop) are left out."""
    from dataclasses import replace

    from imager.profile.firstboot import firstboot_payload
    from imager.profile.package import build_deb

    deb = build_deb(replace(firstboot_payload(SLUG), depends=()), name=f"{SLUG}-accueil",
                    version="2026.12.1", out_dir=out, maintainer="Réseau <contact@example.org>",
                    description="Accueil du réseau\nLe premier démarrage.")
    shutil.copy(deb, root / "tmp" / deb.name)
    done = in_root(root, "dpkg", "-i", f"/tmp/{deb.name}")
    assert done.returncode == 0, done.stdout + done.stderr
    (root / "etc/hostname").write_text("poste\n")               # the image's name
    (root / f"etc/{SLUG}").mkdir(exist_ok=True)
    (root / f"etc/{SLUG}/asset-tag").write_text("RS05-0042\n")  # written by the deployment


@pytest.fixture
def installed(tmp_path: Path, trixie_root: Path) -> Path:
    install_package(trixie_root, tmp_path / "deb")
    return trixie_root


def account(name: str = "Marie-Hélène Dupont", autologin: bool = True) -> str:
    return json.dumps({"name": name, "password": PASSWORD, "autologin": autologin})


def verify_password(password: str, hashed: str) -> bool:
    """Check a shadow hash with this machine's libcrypt (yescrypt, sha512...)."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    out = libcrypt.crypt(password.encode(), hashed.encode())
    return out is not None and out.decode() == hashed


@pytest.mark.root
def test_first_boot_creates_the_account_names_the_machine_and_disables_itself(
        installed: Path) -> None:
    root = installed
    assert (root / WANTS).is_symlink(), "the package enables the first boot"
    assert firstboot(root, "--status").returncode == 0, "no account yet: it must ask"

    run = firstboot(root, "--from-stdin", stdin=account())
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["login"] == "marie-helene"

    passwd = (root / "etc/passwd").read_text()
    assert "marie-helene:x:1000:1000:Marie-Hélène Dupont:/home/marie-helene:/bin/bash\n" \
        in passwd
    shadow = {ln.split(":")[0]: ln.split(":")[1]
              for ln in (root / "etc/shadow").read_text().splitlines()}
    assert shadow["marie-helene"].startswith(("$y$", "$6$")), "yescrypt or sha512"
    assert verify_password(PASSWORD, shadow["marie-helene"])
    assert shadow["root"] in ("*", "!", "!*"), "root stays locked"
    for etc in (root / "etc").rglob("*"):
        if etc.is_file() and not etc.is_symlink():
            assert PASSWORD.encode() not in etc.read_bytes(), f"clear password in {etc}"
    groups = in_root(root, "id", "-nG", "marie-helene").stdout.split()
    assert {"marie-helene", "sudo", "audio", "video", "plugdev", "users"} <= set(groups)
    assert (root / "home/marie-helene").stat().st_uid == 1000
    # the change is the one of the account only: no forced password change
    aging = next(ln for ln in (root / "etc/shadow").read_text().splitlines()
                 if ln.startswith("marie-helene:")).split(":")
    assert aging[2] not in ("0", ""), "no 'must change the password at next login'"

    assert (root / "etc/hostname").read_text() == "poste-rs05-0042\n"
    assert "127.0.1.1\tposte-rs05-0042\n" in (root / "etc/hosts").read_text()
    autologin = root / f"etc/lightdm/lightdm.conf.d/70-{SLUG}-autologin.conf"
    assert "autologin-user=marie-helene\n" in autologin.read_text()

    assert not (root / WANTS).is_symlink(), "the first boot disabled itself"
    assert in_root(root, "systemctl", "is-enabled", UNIT).stdout.strip() == "disabled"
    assert (root / f"var/lib/{SLUG}-premier-demarrage/fait").is_file()


@pytest.mark.root
def test_a_second_run_does_nothing(installed: Path) -> None:
    root = installed
    assert firstboot(root, "--from-stdin", stdin=account()).returncode == 0
    before = {p: (root / p).read_bytes() for p in ("etc/passwd", "etc/shadow", "etc/group",
                                                   "etc/hostname")}
    assert firstboot(root, "--status").returncode == 3, "nothing to ask any more"
    again = firstboot(root, "--from-stdin", stdin=account("Awa Diallo"))
    assert again.returncode == 0 and again.stdout == ""
    assert "nothing to ask" in again.stderr
    # the unit's own start script steps aside too, without starting X
    script = in_root(root, f"{LIB}/premier-demarrage")
    assert script.returncode == 0, script.stderr
    assert {p: (root / p).read_bytes() for p in before} == before


@pytest.mark.root
def test_a_machine_that_already_has_a_user_is_left_alone(installed: Path) -> None:
    root = installed
    made = in_root(root, "useradd", "--create-home", "benevole")
    assert made.returncode == 0
    in_root(root, "chpasswd", stdin="benevole:mot de passe long\n")
    assert firstboot(root, "--status").returncode == 3
    assert not (root / WANTS).is_symlink()
    assert "skipped: the machine already has a user with a password (benevole)" in \
        (root / f"var/lib/{SLUG}-premier-demarrage/fait").read_text()


@pytest.mark.root
def test_a_failed_step_removes_the_half_made_account(installed: Path) -> None:
    root = installed
    (root / "etc/lightdm").write_text("not a directory")    # the autologin file cannot go
    run = firstboot(root, "--from-stdin", stdin=account())
    assert run.returncode == 3
    assert "cannot write /etc/lightdm/lightdm.conf.d/70-reseau-autologin.conf" in run.stderr
    assert "marie-helene" not in (root / "etc/passwd").read_text()
    assert not (root / "home/marie-helene").exists()
    assert (root / WANTS).is_symlink(), "not done: it asks again at the next boot"


@pytest.mark.root
def test_a_taken_name_gets_another_login(installed: Path) -> None:
    run = firstboot(installed, "--from-stdin", stdin=account("Games Night", autologin=False))
    assert json.loads(run.stdout)["login"] == "games2"    # Debian has a "games" user
    assert not (installed / f"etc/lightdm/lightdm.conf.d/70-{SLUG}-autologin.conf").exists()


@pytest.mark.root
def test_form_problems_are_refused_in_french_and_english(installed: Path) -> None:
    run = firstboot(installed, "--from-stdin",
                    stdin=json.dumps({"name": "Awa", "password": "court"}))
    assert run.returncode == 2
    assert "Le mot de passe est trop court : il faut au moins 8 caractères" in run.stderr
    assert "The password is too short" in run.stderr
    assert "awa" not in (installed / "etc/passwd").read_text()


@pytest.mark.root
def test_the_unit_passes_systemd_analyze_verify(installed: Path) -> None:
    out = in_root(installed, "systemd-analyze", "verify", f"/usr/lib/systemd/system/{UNIT}")
    problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                if UNIT in ln or "premier-demarrage" in ln]
    assert problems == [], out.stdout + out.stderr
