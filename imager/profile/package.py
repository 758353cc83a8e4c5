"""The profile's own Debian package: `<slug>-accueil_<version>_all.deb`.

Everything a profile adds to the system it installs (browser policies, the welcome
site and its message service, the first-boot dialog) goes into one versioned
package, so that a later harmonised update of the fleet is just its next version:
dpkg replaces the files, keeps a configuration file (conffile, any file under
/etc) that an admin changed on one machine, and removes what the new version no
longer ships.

The content is a `Payload` value; parts of the profile make their own and the
profile's package adds them up:

    payload = browser_payload(...) + welcome_payload(...) + firstboot_payload(slug)
    deb = build_deb(payload, name=f"{slug}-accueil", version="2026.12.1", out_dir=out,
                    maintainer="Réseau <contact@example.org>", description="...")

`build_deb` stages the files and runs the real `dpkg-deb --build --root-owner-group`.
The result is reproducible: every mtime and the ar timestamps are one fixed date
(SOURCE_DATE_EPOCH), dpkg-deb sorts the members, xz runs single-threaded with fixed
settings, generated files (md5sums, changelog.gz, copyright) are byte-stable, so
building the same payload twice gives the same sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path, PurePosixPath

from imager.errors import ImagerError, UsageError
from imager.host.run import run

# 2025-08-09 00:00 UTC, the day Debian 13 was released: the date of every file when
# neither the caller nor the environment (SOURCE_DATE_EPOCH) gives one.
DEFAULT_EPOCH = 1754697600
UNIT_DIR = "/usr/lib/systemd/system"
# Debian policy 5.6.1 (package names) and 5.6.12 (versions).
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION_CHARS = re.compile(r"[A-Za-z0-9.+~]")
_RELATION = re.compile(r"\s*(?P<name>[a-z0-9][a-z0-9+.-]+)(?::(?P<arch>[a-z0-9-]+))?\s*"
                       r"(?:\(\s*(?P<op><<|<=|=|>=|>>)\s*(?P<version>[^)\s]+)\s*\))?\s*")
_MAINTAINER = re.compile(r"[^<>,\n]+ <[^<>@\s]+@[^<>@\s]+>")
_PATH_BAD = re.compile(r"[\s\x00-\x1f\x7f]")


class PackageError(ImagerError):
    """The package could not be built; the message says which step and why."""


@dataclass(frozen=True)
class PayloadFile:
    """One file of the package.

    path: where it is installed, absolute ("/etc/firefox/policies/policies.json");
    a file under /etc is a conffile (Debian policy 10.7: kept when the admin changed
    it, replaced by a new version otherwise). content: the bytes, or a file on the
    build machine read when the package is built. mode: its permission bits."""

    path: str
    content: bytes | Path
    mode: int = 0o644

    def data(self) -> bytes:
        """The file's bytes (read from `content` if it is a path)."""
        if isinstance(self.content, bytes):
            return self.content
        try:
            return self.content.read_bytes()
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read its source {self.content} "
                             f"({exc.strerror}): check the file exists") from exc


@dataclass(frozen=True)
class Payload:
    """What the profile's package holds and does; add payloads with `+`.

    files: the files (PayloadFile). units: systemd units the package ships under
    /usr/lib/systemd/system and enables at install (like dh_installsystemd; a unit
    an admin or the unit itself disabled stays disabled on upgrade). restart: units
    (re)started after an install or upgrade on a running system (nothing happens
    inside an image build's chroot) and stopped before removal. depends: Debian
    relations, e.g. "firefox-esr (>= 128)" or "chromium | firefox-esr".
    postinst: shell fragments run by postinst on "configure" (install and upgrade;
    "$2" is the version upgraded from, empty on a first install), before the units
    are enabled and restarted (e.g. `systemd-sysusers <file>` for a service's user). prerm: shell
    fragments run by prerm on "remove" and "upgrade" ("$1" says which)."""

    files: tuple[PayloadFile, ...] = ()
    units: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    postinst: tuple[str, ...] = ()
    prerm: tuple[str, ...] = ()

    def __add__(self, other: Payload) -> Payload:
        return Payload(files=self.files + other.files,
                       units=_unique(self.units + other.units),
                       restart=_unique(self.restart + other.restart),
                       depends=_unique(self.depends + other.depends),
                       postinst=self.postinst + other.postinst,
                       prerm=self.prerm + other.prerm)

    @property
    def conffiles(self) -> tuple[str, ...]:
        """The files under /etc, sorted: dpkg keeps an admin's change to them."""
        return tuple(sorted(f.path for f in self.files if f.path.startswith("/etc/")))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- checks ---------------------------------------------------------------------------


def check_name(name: str) -> str:
    """`name` if it is a valid Debian package name, else UsageError saying why."""
    if not _NAME.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9+.-]+", "-", name.lower()).strip("-.+")
        raise UsageError(f"package name {name!r} is not valid: Debian names use lowercase "
                         "letters, digits and + - . only, start with a letter or digit and "
                         f"have 2 characters at least (e.g. {suggestion or 'reseau-accueil'!r})")
    return name


def check_version(version: str, *, where: str = "version") -> str:
    """`version` if it is a valid Debian version ([epoch:]upstream[-revision],
    policy 5.6.12), else UsageError naming the bad character and a fix."""
    why = version_problem(version)
    if why is not None:
        raise UsageError(f"{where} {version!r} is not a valid Debian version: {why}; "
                         f"for example write {_fixed_version(version)!r}")
    return version


def version_problem(version: str) -> str | None:
    """Why `version` is not a valid Debian version, or None if it is."""
    epoch, colon, rest = version.partition(":") if ":" in version else ("", "", version)
    if colon and not epoch.isdigit():
        return f"the epoch before ':' must be a number ({epoch!r})"
    upstream, dash, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    if not upstream:
        return "it is empty" if not version else "the part before the Debian revision is empty"
    if dash and not revision:
        return "it ends with '-': add a Debian revision after it (e.g. '-1') or remove the '-'"
    if not upstream[0].isdigit():
        return f"it must start with a digit, not {upstream[0]!r}"
    offset = len(epoch) + len(colon)
    for part, extra, start in ((upstream, "-", offset), (revision, "", offset + len(upstream) + 1)):
        for i, char in enumerate(part):
            if not (_VERSION_CHARS.fullmatch(char) or char in extra):
                return (f"{char!r} (character {start + i + 1}) is not allowed: use letters, "
                        "digits and . + ~ only (- before a Debian revision, : after an epoch)")
    return None


def _fixed_version(version: str) -> str:
    """A valid version close to `version`: bad characters become '.'."""
    for allowed in ("A-Za-z0-9.+~:-", "A-Za-z0-9.+~"):
        plain = re.sub(f"[^{allowed}]+", ".", version).strip(".-:")
        plain = re.sub(r"^[^0-9]+", "", plain)
        if plain and version_problem(plain) is None:
            return plain
    return "2026.12.1"


def check_relation(relation: str) -> str:
    """`relation` if it is a valid Depends entry ("name", "name (>= 1.2)", "a | b"),
    else UsageError naming the bad part."""
    for alternative in relation.split("|"):
        m = _RELATION.fullmatch(alternative)
        if m is None:
            raise UsageError(f"dependency {relation!r}: {alternative.strip()!r} is not a "
                             "Debian relation: write 'name' or 'name (>= version)' with "
                             "one of << <= = >= >>")
        if m["version"]:
            check_version(m["version"], where=f"dependency {relation!r}: version")
    return " | ".join(" ".join(a.split()).replace("( ", "(").replace(" )", ")")
                      for a in relation.split("|"))


def _check_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path.startswith("/") or str(pure) != path or ".." in pure.parts or path == "/":
        raise UsageError(f"payload file {path!r}: give an absolute, normalised path "
                         "such as /usr/share/<slug>/file (no '..', no trailing '/')")
    if bad := _PATH_BAD.search(path):
        raise UsageError(f"payload file {path!r}: {bad.group()!r} is not allowed in a "
                         "packaged path: rename the file without spaces or control characters")
    if pure.parts[1] == "DEBIAN":
        raise UsageError(f"payload file {path!r}: /DEBIAN is the control area; maintainer "
                         "scripts go in Payload.postinst / Payload.prerm")
    return path


def _check_payload(payload: Payload, name: str) -> None:
    seen: set[str] = set()
    docs = f"/usr/share/doc/{name}/"
    for f in payload.files:
        _check_path(f.path)
        if f.path in seen:
            raise UsageError(f"payload file {f.path} is given twice: keep one")
        if f.path.startswith(docs):
            raise UsageError(f"payload file {f.path}: {docs} is written by the package "
                             "build (copyright, changelog): put the file elsewhere")
        if not 0 <= f.mode <= 0o777:
            raise UsageError(f"payload file {f.path}: mode {oct(f.mode)} is not allowed: "
                             "use permission bits only (e.g. 0o644, 0o755), no setuid/setgid")
        seen.add(f.path)
    units = {PurePosixPath(f.path).name for f in payload.files
             if PurePosixPath(f.path).parent == PurePosixPath(UNIT_DIR)}
    for unit in (*payload.units, *payload.restart):
        if unit not in units:
            raise UsageError(f"systemd unit {unit!r} is to be enabled or restarted but the "
                             f"payload has no {UNIT_DIR}/{unit}: add the unit file")
    for relation in payload.depends:
        check_relation(relation)


# --- the build --------------------------------------------------------------------------


def deb_filename(name: str, version: str) -> str:
    """The Debian file name of an architecture-independent package (no epoch)."""
    return f"{name}_{version.partition(':')[2] or version}_all.deb"


def build_deb(payload: Payload, *, name: str, version: str, out_dir: Path, maintainer: str,
              description: str, epoch: int | None = None,
              changes: Sequence[str] = (), copyright_text: str | None = None) -> Path:
    """Build `<name>_<version>_all.deb` in `out_dir` from `payload`; return its path.

    maintainer: "Name <email>". description: a synopsis line (under 80 characters),
    optionally followed by lines of extended description. epoch: the date of every
    file (seconds since 1970); default SOURCE_DATE_EPOCH, else DEFAULT_EPOCH.
    changes: the changelog entry's lines. copyright_text: the copyright file
    (default: the maintainer, AGPL-3.0-or-later). UsageError for a bad value (named
    with its fix), PackageError if dpkg-deb fails."""
    check_name(name)
    check_version(version)
    _check_payload(payload, name)
    if not _MAINTAINER.fullmatch(maintainer):
        raise UsageError(f"maintainer {maintainer!r}: write it as 'Name <email@example.org>'")
    _check_description(description)
    when = _epoch(epoch)
    if shutil.which("dpkg-deb") is None:
        raise PackageError("building the profile's package needs dpkg-deb: apt-get install dpkg")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / deb_filename(name, version)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out_dir) as tmp:
        stage = Path(tmp) / "root"
        docs = _doc_files(name, version, maintainer, when, changes, copyright_text)
        _stage_files(stage, payload.files + docs)
        _stage_control(stage, payload, docs, name=name, version=version,
                       maintainer=maintainer, description=description)
        _set_mtimes(stage, when)
        partial = Path(tmp) / target.name
        _dpkg_deb_build(stage, partial, when)
        os.replace(partial, target)
    return target


def _check_description(description: str) -> None:
    """A synopsis line under 80 characters and an extended description after it
    (Debian policy 3.4)."""
    synopsis, *body = description.strip().splitlines() or [""]
    if not synopsis.strip() or len(synopsis.strip()) >= 80:
        raise UsageError(f"description: its first line must be a synopsis of 1 to 79 "
                         f"characters (it has {len(synopsis.strip())}): shorten it and put "
                         "details on the following lines")
    if not any(line.strip() for line in body):
        raise UsageError(f"description {synopsis.strip()!r}: add one or more lines after the "
                         "synopsis saying what the package holds (Debian's extended "
                         "description)")


def _epoch(epoch: int | None) -> int:
    if epoch is not None:
        return epoch
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not env:
        return DEFAULT_EPOCH
    if not env.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds: "
                         "unset it or give e.g. SOURCE_DATE_EPOCH=1754697600")
    return int(env)


def _doc_files(name: str, version: str, maintainer: str, when: int, changes: Sequence[str],
               copyright_text: str | None) -> tuple[PayloadFile, ...]:
    """/usr/share/doc/<name>/: copyright and the changelog (Debian policy 12.5, 12.7)."""
    date = format_datetime(datetime.fromtimestamp(when, UTC))
    lines = list(changes) or [f"Version {version} of the profile."]
    entry = (f"{name} ({version}) unstable; urgency=medium\n\n"
             + "".join(f"  * {line}\n" for line in lines)
             + f"\n -- {maintainer}  {date}\n")
    native = "-" not in (version.partition(":")[2] if ":" in version else version)
    log = "changelog.gz" if native else "changelog.Debian.gz"
    copyright_text = copyright_text or _default_copyright(maintainer, when)
    doc = f"/usr/share/doc/{name}"
    return (PayloadFile(f"{doc}/copyright", copyright_text.encode()),
            PayloadFile(f"{doc}/{log}", gzip.compress(entry.encode(), 9, mtime=0)))


def _default_copyright(maintainer: str, when: int) -> str:
    year = datetime.fromtimestamp(when, UTC).year
    return ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            f"Files: *\nCopyright: {year} {maintainer}\nLicense: AGPL-3+\n"
            " This program is free software: you can redistribute it and/or modify it\n"
            " under the terms of the GNU Affero General Public License as published by\n"
            " the Free Software Foundation, either version 3 of the License, or (at your\n"
            " option) any later version.\n .\n"
            " The full text of the license is at https://www.gnu.org/licenses/agpl-3.0.txt\n")


def _stage_files(stage: Path, files: Iterable[PayloadFile]) -> None:
    _make_dirs(stage.parent, stage)
    for f in files:
        dest = stage / f.path.lstrip("/")
        _make_dirs(stage, dest.parent)
        dest.write_bytes(f.data())
        os.chmod(dest, f.mode)


def _make_dirs(stage: Path, folder: Path) -> None:
    """Create `folder` and its parents below `stage`, each 0755 whatever the umask."""
    for parent in reversed([folder, *folder.parents]):
        if parent != stage and parent.is_relative_to(stage) and not parent.is_dir():
            parent.mkdir(mode=0o755)
            os.chmod(parent, 0o755)


def _stage_control(stage: Path, payload: Payload, docs: tuple[PayloadFile, ...], *,
                   name: str, version: str, maintainer: str, description: str) -> None:
    control = stage / "DEBIAN"
    _make_dirs(stage, control)
    files = payload.files + docs
    depends = _unique([*payload.depends,
                       *(["init-system-helpers (>= 1.54~)"] if payload.units else [])])
    fields = {"Package": name, "Version": version, "Architecture": "all",
              "Maintainer": maintainer, "Installed-Size": str(installed_size(files)),
              "Depends": ", ".join(check_relation(d) for d in depends),
              "Section": "misc", "Priority": "optional",
              "Description": _description_field(description)}
    text = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
    _control_file(control / "control", text, 0o644)
    if payload.conffiles:
        _control_file(control / "conffiles", "".join(f"{p}\n" for p in payload.conffiles),
                      0o644)
    sums = sorted((f.path.lstrip("/"), hashlib.md5(f.data()).hexdigest())
                  for f in files if f.path not in payload.conffiles)
    _control_file(control / "md5sums", "".join(f"{h}  {p}\n" for p, h in sums), 0o644)
    for script, text in maintainer_scripts(payload).items():
        _control_file(control / script, text, 0o755)


def _control_file(path: Path, text: str, mode: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _description_field(description: str) -> str:
    synopsis, *body = description.strip().splitlines()
    lines = [synopsis.strip()] + [f" {ln.rstrip()}" if ln.strip() else " ." for ln in body]
    return "\n".join(lines)


def installed_size(files: Iterable[PayloadFile]) -> int:
    """Installed-Size in KiB as dpkg-gencontrol counts it: each file rounded up to
    1 KiB, each directory 1."""
    files = list(files)
    dirs = {str(p) for f in files for p in PurePosixPath(f.path).parents if str(p) != "/"}
    return sum(math.ceil(len(f.data()) / 1024) or 1 for f in files) + len(dirs)


def _set_mtimes(stage: Path, when: int) -> None:
    for here, dirs, names in os.walk(stage):
        for entry in (*dirs, *names):
            os.utime(os.path.join(here, entry), (when, when), follow_symlinks=False)
    os.utime(stage, (when, when))


def _dpkg_deb_build(stage: Path, out: Path, when: int) -> None:
    # SOURCE_DATE_EPOCH fixes the ar members' dates and clamps the tar mtimes;
    # one xz thread, as xz's multi-threaded output differs from the single-threaded one.
    result = run(["env", f"SOURCE_DATE_EPOCH={when}", "dpkg-deb", "--root-owner-group",
                  "-Zxz", "-z6", "--threads-max=1", "--build", str(stage), str(out)],
                 timeout=900, check=False)
    if not result.ok:
        raise PackageError(f"dpkg-deb --build {out.name} failed: "
                           f"{(result.stderr or result.stdout).strip()}")


# --- maintainer scripts -------------------------------------------------------------------


def maintainer_scripts(payload: Payload) -> dict[str, str]:
    """postinst, prerm and postrm for the payload's units and fragments (only the
    scripts that have something to do)."""
    scripts = {"postinst": _postinst(payload), "prerm": _prerm(payload),
               "postrm": _postrm(payload)}
    return {name: f"#!/bin/sh\nset -e\n\n{body}" for name, body in scripts.items() if body}


def _quoted(units: Iterable[str]) -> str:
    return " ".join(f"'{u}'" for u in units)


def _postinst(payload: Payload) -> str:
    # The fragments first (as debhelper puts a package's own code before its
    # snippets): e.g. systemd-sysusers must make a service's user before it starts.
    body = ""
    if payload.postinst:
        body += 'if [ "$1" = configure ]; then\n' + _fragments(payload.postinst) + "fi\n\n"
    if payload.units:
        body += (
            'if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || '
            '[ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then\n'
            f"\tfor unit in {_quoted(payload.units)}; do\n"
            "\t\t# A unit disabled since (by an admin, or by itself) stays disabled.\n"
            '\t\tif deb-systemd-helper --quiet was-enabled "$unit"; then\n'
            '\t\t\tdeb-systemd-helper enable "$unit" >/dev/null || true\n'
            "\t\telse\n"
            '\t\t\tdeb-systemd-helper update-state "$unit" >/dev/null || true\n'
            "\t\tfi\n\tdone\n"
            "\tif [ -d /run/systemd/system ]; then systemctl --system daemon-reload "
            ">/dev/null || true; fi\nfi\n\n")
    if payload.restart:
        body += ('if [ "$1" = configure ] && [ -d /run/systemd/system ]; then\n'
                 f"\tdeb-systemd-invoke restart {_quoted(payload.restart)} >/dev/null || true\n"
                 "fi\n")
    return body


def _prerm(payload: Payload) -> str:
    body = ""
    if payload.restart:
        body += ('if [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n'
                 f"\tdeb-systemd-invoke stop {_quoted(payload.restart)} >/dev/null || true\n"
                 "fi\n\n")
    if payload.prerm:
        body += ('if [ "$1" = remove ] || [ "$1" = upgrade ]; then\n'
                 + _fragments(payload.prerm) + "fi\n")
    return body


def _postrm(payload: Payload) -> str:
    if not payload.units:
        return ""
    units = _quoted(payload.units)
    helper = "command -v deb-systemd-helper >/dev/null"
    return ('if [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n'
            "\tsystemctl --system daemon-reload >/dev/null || true\nfi\n"
            f'if [ "$1" = remove ] && {helper}; then\n'
            f"\tdeb-systemd-helper mask {units} >/dev/null || true\nfi\n"
            f'if [ "$1" = purge ] && {helper}; then\n'
            f"\tdeb-systemd-helper purge {units} >/dev/null || true\n"
            f"\tdeb-systemd-helper unmask {units} >/dev/null || true\nfi\n")


def _fragments(fragments: Iterable[str]) -> str:
    """The fragments in order, indented one tab inside their `if` block."""
    out = ""
    for fragment in fragments:
        out += "".join(f"\t{ln}\n" if ln.strip() else "\n"
                       for ln in fragment.strip("\n").splitlines())
    return out
