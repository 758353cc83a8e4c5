"""The image's root filesystem, as one reproducible tar, made by mmdebstrap.

Debian from the spec's mirrors (suite, -updates, -security) or, for a rebuild,
from the local repository kept beside an earlier build (`imager.profile.localrepo`):
the same .deb files give the same tar, byte for byte (SOURCE_DATE_EPOCH from the
spec's release day). Locale, keyboard, time zone, host name, apt sources and the
spec's own files are written in the image; machine-id is empty, there are no SSH
host keys nor TLS snakeoil keys (both made at first boot), no logs or caches. The
.deb files the build used and apt's index entries for them are kept, and the
installed packages are listed."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import tarfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host.run import ToolFailed
from imager.host.stream import run_streaming
from imager.imaging.catalogue import file_sha256
from imager.profile import buildkey
from imager.profile.buildspec import BuildSpec, ImageFile
from imager.profile.debs import Package, parse_dpkg_query, parse_simulated

# What every image needs to boot and to be set up, beyond the spec's packages.
BASE_PACKAGES = (
    "systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "locales",
    "keyboard-configuration", "console-setup", "tzdata", "grub-pc-bin",
    "grub-efi-amd64-signed", "shim-signed",
)
VARIANT = "minbase"
STAGE = "/run/imager-os"              # where a build's local inputs are seen, in and out
LineFn = Callable[[str], None]


@dataclass(frozen=True)
class Origin:
    """Where the packages come from: the spec's mirrors, or a local repository."""

    local_repo: Path | None = None    # a flat repository (Packages, Release, pool/)


@dataclass(frozen=True)
class RootFs:
    """What `build_rootfs` made."""

    tar: Path                         # the root, mmdebstrap's reproducible tar
    sha256: str
    packages: tuple[Package, ...]     # installed (no .deb hashes yet)
    debs: Path                        # the .deb files apt used (apt's cache names)
    lists: Path                       # apt's index files (for the local repository)
    seconds: float


def network_sources(spec: BuildSpec) -> tuple[str, ...]:
    """mmdebstrap's MIRROR arguments for the spec's suite, -updates and -security."""
    comps = " ".join(spec.components)
    return (f"deb {spec.mirror} {spec.suite} {comps}",
            f"deb {spec.mirror} {spec.suite}-updates {comps}",
            f"deb {spec.security_mirror} {spec.suite}-security {comps}")


def apt_sources(spec: BuildSpec) -> str:
    """The image's own /etc/apt/sources.list.d/debian.sources (deb822)."""
    comps = " ".join(spec.components)
    key = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (f"Types: deb\nURIs: {spec.mirror}\nSuites: {spec.suite} {spec.suite}-updates\n"
            f"Components: {comps}\nSigned-By: {key}\n\n"
            f"Types: deb\nURIs: {spec.security_mirror}\nSuites: {spec.suite}-security\n"
            f"Components: {comps}\nSigned-By: {key}\n")


def fstab(spec: BuildSpec) -> str:
    """The root and the EFI partition, by UUID (the disk gets the same ids)."""
    root, esp = buildkey.derived_uuid(spec, "root-fs"), buildkey.fat_volume_id(spec)
    return ("# <file system> <mount point> <type> <options> <dump> <pass>\n"
            f"UUID={root} / ext4 errors=remount-ro 0 1\n"
            f"UUID={esp[:4]}-{esp[4:]} /boot/efi vfat umask=0077,nofail 0 1\n")


def settings_files(spec: BuildSpec) -> tuple[ImageFile, ...]:
    """Locale, keyboard, time zone and host name, written before the packages that
    read them are configured (locales, keyboard-configuration, console-setup, tzdata)."""
    lang = spec.locale
    charset = lang.split(".", 1)[1] if "." in lang else "UTF-8"
    return (
        ImageFile("/etc/locale.gen", f"{lang} {charset}\n".encode()),
        ImageFile("/etc/default/locale", f"LANG={lang}\n".encode()),
        ImageFile("/etc/default/keyboard", (
            'XKBMODEL="pc105"\n'
            f'XKBLAYOUT="{spec.keyboard_layout}"\nXKBVARIANT="{spec.keyboard_variant}"\n'
            'XKBOPTIONS=""\n\nBACKSPACE="guess"\n').encode()),
        ImageFile("/etc/timezone", f"{spec.timezone}\n".encode()),
        ImageFile("/etc/hostname", f"{spec.hostname}\n".encode()),
        ImageFile("/etc/hosts", (f"127.0.0.1\tlocalhost\n127.0.1.1\t{spec.hostname}\n\n"
                                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                 "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n").encode()),
        ImageFile("/etc/fstab", fstab(spec).encode()),
    )


def final_files(spec: BuildSpec) -> tuple[ImageFile, ...]:
    """What is written last: the settings again (a package may have rewritten
    them), the apt sources and the spec's own files."""
    return (*settings_files(spec),
            ImageFile("/etc/apt/sources.list.d/debian.sources", apt_sources(spec).encode()),
            ImageFile("/etc/imager-profile", profile_identity(spec).encode()),
            ImageFile("/etc/systemd/system/ssh.service.d/host-keys.conf", SSH_HOST_KEYS),
            ImageFile(f"/etc/systemd/system/{SNAKEOIL_UNIT}", SNAKEOIL),
            *spec.files)


# The image has no SSH host keys: if sshd is installed, it makes them at its start
# (a drop-in for a unit that is not installed is ignored).
SSH_HOST_KEYS = (b"[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                 b"ExecStartPre=/usr/sbin/sshd -t\n")

# ssl-cert makes a "snakeoil" key pair when it is installed: the build removes it
# (every machine would share one private key, and the image would differ at each
# build); this unit makes the machine's own at its first boot, if ssl-cert is there.
SNAKEOIL_UNIT = "imager-snakeoil.service"
SNAKEOIL = b"""\
[Unit]
Description=Make this machine's own self-signed TLS key pair (ssl-cert's snakeoil)
ConditionPathExists=/usr/sbin/make-ssl-cert
ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key
After=local-fs.target systemd-hostnamed.service
Before=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/sbin/make-ssl-cert generate-default-snakeoil --force-overwrite

[Install]
WantedBy=multi-user.target
"""


def profile_identity(spec: BuildSpec) -> str:
    """/etc/imager-profile: which profile and version the machine was built from
    (shell syntax, read by the boot report and later by fleet updates)."""
    return f"NAME={shlex.quote(spec.name)}\nVERSION={shlex.quote(spec.version)}\n"


def overlay_tar(files: Sequence[ImageFile], epoch: int, dest: Path, *,
                timezone: str) -> Path:
    """A tar of `files` and the /etc/localtime link (root-owned, dated `epoch`)
    for mmdebstrap's tar-in hook."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for item in files:
            info = tarfile.TarInfo(item.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(item.content), item.mode, epoch
            tar.addfile(info, io.BytesIO(item.content))
        link = tarfile.TarInfo("etc/localtime")
        link.type, link.mtime = tarfile.SYMTYPE, epoch
        link.linkname = f"/usr/share/zoneinfo/{timezone}"
        tar.addfile(link)
    return dest


# Runs on the host at the end of mmdebstrap's customize phase ("$1": the root).
CUSTOMIZE = """\
set -eu
root="$1"
rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf"
ln -sf "/usr/share/zoneinfo/$(cat "$root/etc/timezone")" "$root/etc/localtime"
chroot "$root" locale-gen >/dev/null
{enable}mkdir -p "$root/boot/efi"
chmod 0700 "$root/boot/efi"
rm -f "$root"/etc/ssh/ssh_host_*
rm -f "$root"/etc/ssl/certs/ssl-cert-snakeoil.pem "$root"/etc/ssl/private/ssl-cert-snakeoil.key
find "$root/var/log" -type f -delete
rm -rf "$root"/var/log/journal/*
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/etc/*-
rm -f "$root"/var/cache/apt/*.bin
chroot "$root" dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{Architecture}}\\n' \\
    > {installed}
"""

# Stage the build's local inputs inside the root at the same path as outside.
SETUP = """\
set -eu
root="$1"
mkdir -p "$root{stage}"
{mounts}
"""
UNSTAGE = """\
set -eu
root="$1"
{umounts}
rm -rf "$root{stage_top}"
"""


@dataclass(frozen=True)
class _Plan:
    """The mmdebstrap command of one build (or of its resolution)."""

    argv: list[str]
    stage: Path


def _plan(spec: BuildSpec, origin: Origin, work: Path, *, output: str,
          simulate: bool = False) -> _Plan:
    """mmdebstrap's command line; its inputs staged under STAGE/<id> (host: symlinks)."""
    stage = Path(STAGE) / uuid.uuid4().hex[:12]
    links: dict[str, Path] = {}
    if origin.local_repo is not None:
        links["repo"] = origin.local_repo.resolve()
    for index, deb in enumerate(spec.local_debs):
        links[f"deb{index}.deb"] = deb.resolve()
    sources = ([f"deb [trusted=yes] file:{stage / 'repo'} ./"]
               if origin.local_repo is not None else list(network_sources(spec)))
    includes = [*BASE_PACKAGES, *spec.packages]
    argv = ["mmdebstrap", "--verbose", "--mode=root", f"--variant={VARIANT}",
            f"--format={'null' if simulate else 'tar'}",
            f"--components={','.join(spec.components)}",
            '--aptopt=APT::Install-Recommends "false"', "--skip=essential/unlink",
            f"--include={','.join(includes)}",
            *[f"--include={stage / name}" for name in links if name.endswith(".deb")]]
    if simulate:
        argv.append("--simulate")
    else:
        argv += _hooks(spec, work, stage, links)
    argv += [spec.suite, output, *sources]
    _link_stage(stage, links)
    return _Plan(argv, stage)


def _hooks(spec: BuildSpec, work: Path, stage: Path, links: dict[str, Path]) -> list[str]:
    epoch = buildkey.source_date_epoch(spec)
    settings = overlay_tar(settings_files(spec), epoch, work / "settings.tar",
                           timezone=spec.timezone)
    final = overlay_tar(final_files(spec), epoch, work / "final.tar", timezone=spec.timezone)
    mounts = "\n".join(
        f'mkdir -p "$root{stage / n}" && mount -o ro,bind {shlex.quote(str(p))} '
        f'"$root{stage / n}"' if p.is_dir() else
        f'cp {shlex.quote(str(p))} "$root{stage / n}"' for n, p in links.items())
    umounts = "\n".join(f'umount "$root{stage / n}"' for n, p in links.items() if p.is_dir())
    enable = "".join(f'chroot "$root" systemctl enable {shlex.quote(u)}\n'
                     for u in (SNAKEOIL_UNIT, *spec.enable_units))
    scripts = {
        "setup.sh": SETUP.format(stage=stage, mounts=mounts),
        "customize.sh": CUSTOMIZE.format(enable=enable,
                                         installed=shlex.quote(str(work / "installed.tsv"))),
        "unstage.sh": UNSTAGE.format(umounts=umounts, stage_top=STAGE),
    }
    for name, text in scripts.items():
        (work / name).write_text(text)
    (work / "debs").mkdir(exist_ok=True)
    return [f"--setup-hook=sh {work / 'setup.sh'} \"$1\"",
            f"--essential-hook=tar-in {settings} /",
            f"--customize-hook=tar-in {final} /",
            f"--customize-hook=sh {work / 'customize.sh'} \"$1\"",
            f"--customize-hook=sync-out /var/cache/apt/archives {work / 'debs'}",
            f"--customize-hook=copy-out /var/lib/apt/lists {work}",
            f"--customize-hook=sh {work / 'unstage.sh'} \"$1\""]


def _link_stage(stage: Path, links: dict[str, Path]) -> None:
    """On the host, STAGE/<id>/<name> is each input: a symlink to a directory, a
    copy of a .deb (mmdebstrap resolves links, and the path must be the same in
    the root, where the setup hook copies it)."""
    stage.mkdir(parents=True, exist_ok=True)
    try:
        for name, target in links.items():
            if target.is_dir():
                (stage / name).symlink_to(target)
            else:
                shutil.copyfile(target, stage / name)
    except OSError as exc:
        _unlink_stage(stage)
        raise ImagerError(f"entrée absente / cannot stage {exc.filename} for the build: "
                          f"{exc.strerror}; build the profile's package again") from exc


def _unlink_stage(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)


def _env(spec: BuildSpec) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(buildkey.source_date_epoch(spec)),
            "DEBIAN_FRONTEND": "noninteractive", "TMPDIR": "/var/tmp"}


def resolve(spec: BuildSpec, work: Path, *, origin: Origin = Origin(),
            on_line: LineFn | None = None) -> tuple[Package, ...]:
    """The packages (name, version, arch) a build of `spec` would install now:
    mmdebstrap's own selection, simulated (nothing downloaded but the indexes)."""
    work.mkdir(parents=True, exist_ok=True)
    plan = _plan(spec, origin, work, output="/dev/null", simulate=True)
    try:
        result = run_streaming(plan.argv, env=_env(spec), on_line=on_line, timeout=900)
    except ToolFailed as exc:
        tail = "\n".join(exc.result.stdout.splitlines()[-8:])
        raise ImagerError(f"résolution impossible / cannot resolve the packages of the "
                          f"profile {spec.name} on {spec.mirror} ({spec.suite}): the build "
                          "needs the mirror to know today's versions; check the network and "
                          f"the package names:\n{tail}") from exc
    finally:
        _unlink_stage(plan.stage)
    packages = parse_simulated(result.stdout)
    if not packages:
        raise ImagerError(f"résolution vide / mmdebstrap --simulate listed no package for "
                          f"the profile {spec.name} ({spec.suite}): check the mirror "
                          f"{spec.mirror} and the package names")
    return packages


def build_rootfs(spec: BuildSpec, work: Path, *, origin: Origin = Origin(),
                 on_line: LineFn | None = None) -> RootFs:
    """Run mmdebstrap for `spec` into `work`/root.tar; keep its .deb files and
    apt's index files in `work`/debs and `work`/lists."""
    work.mkdir(parents=True, exist_ok=True)
    for old in ("debs", "lists", "installed.tsv"):
        path = work / old
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)
    tar = work / "root.tar"
    plan = _plan(spec, origin, work, output=str(tar))
    log_path = work / "mmdebstrap.log"
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            def line(text: str) -> None:
                log.write(text + "\n")
                if on_line is not None:
                    on_line(text)
            result = run_streaming(plan.argv, env=_env(spec), on_line=line, timeout=3600)
    except ToolFailed as exc:
        tail = "\n".join(exc.result.stdout.splitlines()[-25:])
        raise ImagerError(f"mmdebstrap a échoué / mmdebstrap failed for the profile "
                          f"{spec.name} (exit {exc.result.returncode}; whole log: {log_path}):"
                          f"\n{tail}") from exc
    finally:
        _unlink_stage(plan.stage)
    packages = parse_dpkg_query((work / "installed.tsv").read_text())
    os.chmod(tar, 0o644)
    return RootFs(tar, file_sha256(tar), packages, work / "debs", work / "lists",
                  result.seconds)
